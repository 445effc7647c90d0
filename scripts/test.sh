#!/usr/bin/env bash
# Runs everything CI runs: formatting, lints, the Rust test suite, and the end-to-end test
# in which the official `openai` Python SDK drives a running `landfall`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "End-to-end: openai Python SDK against landfall"
scripts/e2e.sh
