#!/usr/bin/env bash
# Hybrid search latency and memory at N chunks (default 100k), end to end through the
# knowledge layer: MiniLM query embedding, BM25, exact vector search, fusion, hydration from
# SQLite. See crates/knowledge/examples/hybrid_bench.rs for what is real and what is not.
#
# Usage: scripts/bench-hybrid.sh [CHUNKS] [QUERIES]
# Needs: ../shared/data/ir (BEIR sets) and the test model (scripts/fetch-test-models.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHUNKS="${1:-100000}"
QUERIES="${2:-1000}"
MODEL="${LANDFALL_TEST_MODELS:-$HOME/.cache/landfall-test}/all-MiniLM-L6-v2"
DATA="${LANDFALL_IR_DATA:-$ROOT/../shared/data/ir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/landfall-ci-target}"

[[ -d "$DATA" ]] || { echo "bench-hybrid: $DATA not found" >&2; exit 1; }
"$ROOT/scripts/fetch-test-models.sh"
cargo build --quiet --release -p landfall-knowledge --example hybrid_bench
RAYON_NUM_THREADS=2 "$CARGO_TARGET_DIR/release/examples/hybrid_bench" \
    --model "$MODEL" --data "$DATA" --chunks "$CHUNKS" --queries "$QUERIES"
