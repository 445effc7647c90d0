#!/usr/bin/env bash
# BM25 speed side by side in one run: Landfall's keyword index (tantivy, release build) and
# bm25s (PyPI) index the same BEIR corpus (repeated N times) and answer the same queries,
# top-10, one query at a time, single-threaded. Prints both JSON lines and the ratios.
#
# Usage: scripts/bench-bm25.sh [DATASET_DIR] [REPEAT]   (default nfcorpus-test, 10)
# Needs: python3 (bm25s and PyStemmer go into the benchmark venv), ../shared/data/ir.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATASET="${1:-$ROOT/../shared/data/ir/nfcorpus-test}"
REPEAT="${2:-10}"
VENV="${LANDFALL_BENCH_VENV:-$HOME/.cache/landfall-bench/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/landfall-ci-target}"

[[ -f "$DATASET/corpus.jsonl" ]] || { echo "bench-bm25: $DATASET/corpus.jsonl not found" >&2; exit 1; }
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c 'import bm25s, Stemmer' 2>/dev/null || "$VENV/bin/pip" install --quiet bm25s PyStemmer
cargo build --quiet --release -p landfall-retrieval --example bm25_bench

ours="$(RAYON_NUM_THREADS=1 "$CARGO_TARGET_DIR/release/examples/bm25_bench" "$DATASET" --repeat "$REPEAT")"
theirs="$(OMP_NUM_THREADS=1 "$VENV/bin/python" "$ROOT/scripts/bench/bm25.py" "$DATASET" --repeat "$REPEAT")"
echo "landfall: $ours"
echo "bm25s:    $theirs"
"$VENV/bin/python" - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = map(json.loads, sys.argv[1:])
print(f"{ours['documents']} documents, {ours['queries']} queries: "
      f"queries/s {ours['queries_per_second']:.0f} vs {theirs['queries_per_second']:.0f} "
      f"({ours['queries_per_second'] / theirs['queries_per_second']:.2f}x), "
      f"p99 {ours['p99_ms']:.2f} vs {theirs['p99_ms']:.2f} ms, "
      f"build {ours['build_seconds']:.1f} vs {theirs['build_seconds']:.1f} s")
PY
