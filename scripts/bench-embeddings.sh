#!/usr/bin/env bash
# Embedding throughput, side by side in one run: sentence-transformers (PyTorch CPU, 2 threads)
# and landfall-models (candle, release build) embed the same texts with all-MiniLM-L6-v2 at the
# same batch size. Two workloads from the CISI corpus: short texts (titles) and 128-token
# chunks. Prints texts/s for both, the ratio, and the largest |1 - cosine| between the two
# outputs over the first 100 texts.
#
# Usage: scripts/bench-embeddings.sh [N]   (N texts per workload, default 2000)
# Needs: python3 (a venv with sentence-transformers is made at ~/.cache/landfall-bench/venv),
# ../shared/data/ir/cisi/corpus.jsonl, and the test model (scripts/fetch-test-models.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:-2000}"
BATCH=32
THREADS=2
MODELS_DIR="${LANDFALL_TEST_MODELS:-$HOME/.cache/landfall-test}"
MODEL="$MODELS_DIR/all-MiniLM-L6-v2"
VENV="${LANDFALL_BENCH_VENV:-$HOME/.cache/landfall-bench/venv}"
CORPUS="${CISI_CORPUS:-$ROOT/../shared/data/ir/cisi/corpus.jsonl}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/landfall-ci-target}"

[[ -f "$CORPUS" ]] || { echo "bench-embeddings: $CORPUS not found" >&2; exit 1; }
"$ROOT/scripts/fetch-test-models.sh"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sentence_transformers' 2>/dev/null; then
    echo "bench-embeddings: creating $VENV with sentence-transformers (downloads torch)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet sentence-transformers
fi
cargo build --quiet --release -p landfall-models --example embed_bench
OURS="$CARGO_TARGET_DIR/release/examples/embed_bench"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PY="$VENV/bin/python"
HELPER="$ROOT/scripts/bench/embeddings.py"
"$PY" "$HELPER" prepare --corpus "$CORPUS" --model-dir "$MODEL" --out-dir "$WORK" --n "$N"

for workload in short chunks; do
    st_json="$("$PY" "$HELPER" st --model-dir "$MODEL" --texts "$WORK/$workload.jsonl" \
        --vectors-out "$WORK/$workload.st.json" --batch-size "$BATCH" --threads "$THREADS" 2>/dev/null)"
    ours_json="$(RAYON_NUM_THREADS="$THREADS" "$OURS" "$MODEL" "$WORK/$workload.jsonl" \
        --batch-size "$BATCH" --out "$WORK/$workload.ours.json")"
    diff_json="$("$PY" "$HELPER" compare "$WORK/$workload.st.json" "$WORK/$workload.ours.json")"
    echo "$workload sentence-transformers: $st_json"
    echo "$workload landfall-models:       $ours_json"
    "$PY" - "$workload" "$st_json" "$ours_json" "$diff_json" <<'PY'
import json, sys
name, st, ours, diff = sys.argv[1], *map(json.loads, sys.argv[2:])
ratio = ours["texts_per_second"] / st["texts_per_second"]
print(f"{name}: sentence-transformers {st['texts_per_second']:.1f} texts/s, "
      f"landfall-models {ours['texts_per_second']:.1f} texts/s, ratio {ratio:.2f}x, "
      f"max |1-cos| over {diff['compared']} = {diff['max_abs_cosine_difference']:.2e}")
PY
done
