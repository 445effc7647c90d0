"""bm25s on a BEIR corpus, measured like crates/retrieval/examples/bm25_bench.rs: index build
time, then top-10 for each query one at a time (p50/p99 latency, queries/s), as one JSON line.
Called by scripts/bench-bm25.sh.

    bm25.py DATASET_DIR [--repeat N]
"""

import argparse
import json
import pathlib
import time

import bm25s
import Stemmer


def read_jsonl(path):
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    root = pathlib.Path(args.dataset)
    corpus = read_jsonl(root / "corpus.jsonl")
    judged = {line.split("\t")[0] for line in (root / "qrels/test.tsv").read_text().splitlines()[1:]}
    queries = [q["text"] for q in read_jsonl(root / "queries.jsonl") if q["_id"] in judged]
    texts = [f"{d.get('title', '')} {d['text']}" for d in corpus] * args.repeat

    stemmer = Stemmer.Stemmer("english")
    started = time.perf_counter()
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    build_seconds = time.perf_counter() - started

    def search(query):
        query_tokens = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, show_progress=False)
        return retriever.retrieve(query_tokens, k=10, show_progress=False)

    for query in queries[:10]:
        search(query)
    latencies = []
    started = time.perf_counter()
    for query in queries:
        one = time.perf_counter()
        search(query)
        latencies.append((time.perf_counter() - one) * 1000)
    total = time.perf_counter() - started
    latencies.sort()
    at = lambda q: latencies[round((len(latencies) - 1) * q)]
    print(json.dumps({
        "implementation": f"bm25s {bm25s.__version__}",
        "documents": len(texts),
        "queries": len(queries),
        "build_seconds": build_seconds,
        "queries_per_second": len(queries) / total,
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
    }))


if __name__ == "__main__":
    main()
