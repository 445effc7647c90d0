"""Writes crates/models/tests/fixtures/minilm_reference.json: all-MiniLM-L6-v2 embeddings of a
few sentences as the real sentence-transformers library computes them (CPU torch), which the
`landfall-models` tests compare against.

Run in the benchmark venv (see scripts/bench-embeddings.sh for how it is made):
    ~/.cache/landfall-bench/venv/bin/python scripts/bench/minilm_reference.py
The model folder is the one scripts/fetch-test-models.sh fills.
"""

import json
import os
import pathlib
import sys

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = pathlib.Path(
    os.environ.get("LANDFALL_TEST_MODELS") or pathlib.Path.home() / ".cache/landfall-test"
)
OUT = ROOT / "crates/models/tests/fixtures/minilm_reference.json"

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome!",
    "Retrieval-augmented generation grounds answers in company documents.",
    "",
    "    Leading and trailing   spaces, UPPER case, accents: café naïve résumé.  ",
    "知识库中的文档需要被切分成小块，然后计算向量。",
    # Longer than the model's 256-token limit: checks truncation matches.
    " ".join(
        f"Sentence {i} describes how the retrieval system splits manuals into chunks, "
        "embeds them and fuses keyword with vector scores."
        for i in range(20)
    ),
]


def main() -> int:
    torch.set_num_threads(2)
    model_dir = MODELS / "all-MiniLM-L6-v2"
    if not (model_dir / "config.json").is_file():
        print(f"{model_dir} is missing: run scripts/fetch-test-models.sh", file=sys.stderr)
        return 1
    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
    fixture = {
        "model": "all-MiniLM-L6-v2",
        "generator": (
            f"scripts/bench/minilm_reference.py with sentence-transformers "
            f"{sentence_transformers.__version__}, torch {torch.__version__} (CPU)"
        ),
        "max_seq_length": model.max_seq_length,
        "sentences": [
            {
                "text": text,
                "tokens": len(model.tokenizer(text)["input_ids"]),
                "embedding": [float(f"{x:.7g}") for x in vector.tolist()],
            }
            for text, vector in zip(SENTENCES, vectors)
        ],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(SENTENCES)} sentences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
