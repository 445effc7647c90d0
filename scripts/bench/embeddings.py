"""Side-by-side embedding benchmark helper: builds the workloads, runs sentence-transformers on
them, and compares its vectors with ours. Called by scripts/bench-embeddings.sh.

    embeddings.py prepare --corpus corpus.jsonl --model-dir DIR --out-dir DIR [--n 2000]
    embeddings.py st --model-dir DIR --texts T.jsonl --vectors-out V.json [--batch-size 32]
    embeddings.py compare A.json B.json
"""

import argparse
import json
import math
import sys
import time


def prepare(args):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    short, chunks = [], []
    with open(args.corpus, encoding="utf-8") as corpus:
        for line in corpus:
            doc = json.loads(line)
            text = " ".join(part for part in (doc.get("title"), doc.get("text")) if part)
            if doc.get("title") and len(short) < args.n:
                short.append(doc["title"].strip())
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = encoded["offset_mapping"]
            # Windows of exactly `chunk_tokens` tokens (plus [CLS]/[SEP] when embedded).
            for start in range(0, len(offsets) - args.chunk_tokens + 1, args.chunk_tokens):
                window = offsets[start : start + args.chunk_tokens]
                if len(chunks) < args.n:
                    chunks.append(text[window[0][0] : window[-1][1]])
            if len(short) >= args.n and len(chunks) >= args.n:
                break
    # Short sentences: cycle the titles when the corpus has fewer than n.
    short = [short[i % len(short)] for i in range(args.n)]
    chunks = [chunks[i % len(chunks)] for i in range(args.n)]
    for name, texts in (("short", short), ("chunks", chunks)):
        path = f"{args.out_dir}/{name}.jsonl"
        with open(path, "w", encoding="utf-8") as out:
            for text in texts:
                out.write(json.dumps(text, ensure_ascii=False) + "\n")
        mean_tokens = sum(len(tokenizer(t)["input_ids"]) for t in texts) / len(texts)
        print(f"{name}: {len(texts)} texts, mean {mean_tokens:.1f} tokens -> {path}", file=sys.stderr)


def run_st(args):
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    with open(args.texts, encoding="utf-8") as f:
        texts = [json.loads(line) for line in f]
    started = time.perf_counter()
    model = SentenceTransformer(args.model_dir, device="cpu")
    load_seconds = time.perf_counter() - started
    model.encode(texts[: args.batch_size], batch_size=args.batch_size)  # warm-up
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)
    seconds = time.perf_counter() - started
    with open(args.vectors_out, "w") as out:
        json.dump(vectors[: args.vectors].tolist(), out)
    print(json.dumps({
        "implementation": f"sentence-transformers {sentence_transformers.__version__} "
                          f"(torch {torch.__version__}, CPU)",
        "texts": len(texts),
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "load_seconds": load_seconds,
        "seconds": seconds,
        "texts_per_second": len(texts) / seconds,
    }))


def compare(args):
    with open(args.a) as f:
        a = json.load(f)
    with open(args.b) as f:
        b = json.load(f)
    worst = 0.0
    for x, y in zip(a, b):
        dot = sum(p * q for p, q in zip(x, y))
        cos = dot / (math.sqrt(sum(p * p for p in x)) * math.sqrt(sum(q * q for q in y)))
        worst = max(worst, abs(1.0 - cos))
    print(json.dumps({"compared": min(len(a), len(b)), "max_abs_cosine_difference": worst}))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--corpus", required=True)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--chunk-tokens", type=int, default=126)
    p.set_defaults(func=prepare)
    s = sub.add_parser("st")
    s.add_argument("--model-dir", required=True)
    s.add_argument("--texts", required=True)
    s.add_argument("--vectors-out", required=True)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--vectors", type=int, default=100)
    s.set_defaults(func=run_st)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.set_defaults(func=compare)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
