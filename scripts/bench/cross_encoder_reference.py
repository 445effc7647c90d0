"""Writes crates/models/tests/fixtures/tiny-cross-encoder/: a tiny BERT cross-encoder
(BertForSequenceClassification, hidden 32, 2 layers, seeded random weights, a 60-word
WordPiece vocabulary) and `reference.json`, the scores the real sentence-transformers
`CrossEncoder` gives it for a few (query, passage) pairs. The `landfall-models` tests load the
folder and compare. No real cross-encoder is available from the registries here.

Run in the benchmark venv (see scripts/bench-embeddings.sh for how it is made):
    ~/.cache/landfall-bench/venv/bin/python scripts/bench/cross_encoder_reference.py
"""

import json
import pathlib

import torch
from sentence_transformers import CrossEncoder
from tokenizers import BertWordPieceTokenizer
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/models/tests/fixtures/tiny-cross-encoder"

WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] the a of to and is in how do i reset my password "
    "account printer paper jam clear tray open close door error code light blinks red "
    "green what dose aspirin mg per day adult child policy refund return within days "
    "receipt ##s ##ed ##ing , . ? 知 识 库 重 置 密 码"
).split()

PAIRS = [
    ["how do i reset my password", "open the account page and reset the password ."],
    ["how do i reset my password", "clear the paper jam in the tray ."],
    ["printer error light blinks red", "the red light blinks when the tray is open ."],
    ["what dose of aspirin per day", "adult dose is 500 mg per day ."],
    ["refund policy", "return within 30 days with a receipt ."],
    ["重置密码", "知识库 密码 重置"],
    ["", "an empty query still scores"],
    ["the " * 40, "a long query is truncated , not rejected ."],
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    config = BertConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=48,
        num_labels=1,
    )
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm" not in name:
                parameter.normal_(0.0, 0.1)
        # A wide classifier spreads the scores, so a wrong forward pass shows.
        model.classifier.weight.normal_(0.0, 3.0)
    wordpiece = BertWordPieceTokenizer(
        {word: index for index, word in enumerate(WORDS)}, lowercase=True
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece._tokenizer,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    model.save_pretrained(OUT, safe_serialization=True)
    tokenizer.save_pretrained(OUT)
    for extra in ["vocab.txt", "special_tokens_map.json", "tokenizer_config.json"]:
        (OUT / extra).unlink(missing_ok=True)

    encoder = CrossEncoder(str(OUT), device="cpu", max_length=48)
    logits = encoder.predict(PAIRS, activation_fn=torch.nn.Identity(), batch_size=3)
    reference = {
        "max_length": 48,
        "pairs": PAIRS,
        "logits": [float(value) for value in logits],
    }
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
