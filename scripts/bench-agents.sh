#!/usr/bin/env bash
# Agent benchmarks (issue 8): /v1/responses with a text answer, a stored prompt template, the
# built-in sql tool, a conversation and long-term memory recall, next to chat completions
# through landfall and the mock upstream alone, at 1 and 16 connections (wrk, 127.0.0.1 only).
# Writes "## Agents (issue 8)" into docs/benchmarks.md.
#
# Environment: BENCH_DURATION=10s, BENCH_SKIP_BUILD=0 (1: use the release binaries already
# built), CARGO_TARGET_DIR honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release --locked -p landfall-cli -p landfall-testkit --bins
fi
exec python3 scripts/bench/agents.py \
  --landfall "$target/release/landfall" \
  --upstream "$target/release/landfall-mock-upstream" \
  --duration "${BENCH_DURATION:-10s}" \
  --version "$(git rev-parse --short=12 HEAD)" \
  --docs docs/benchmarks.md
