#!/usr/bin/env bash
# End-to-end test: the official `openai` Python SDK drives a running `landfall` in front of
# the mock upstream and the scripted model (tests/e2e).
#
# Uses the test venv (scripts/venv.sh), builds `landfall`, `landfall-mock-upstream` and
# `landfall-mcp-peer` (honouring CARGO_TARGET_DIR), and runs pytest. Extra arguments go to
# pytest, e.g. `scripts/e2e.sh -k embeddings -v`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

python="$(scripts/venv.sh)"

step "build landfall and landfall-mock-upstream"
cargo build --locked -p landfall-cli -p landfall-testkit --bins
target_dir="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')"
export LANDFALL_BIN="$target_dir/debug/landfall"
export MOCK_UPSTREAM_BIN="$target_dir/debug/landfall-mock-upstream"
export MCP_PEER_BIN="$target_dir/debug/landfall-mcp-peer"
for binary in "$LANDFALL_BIN" "$MOCK_UPSTREAM_BIN" "$MCP_PEER_BIN"; do
  if [[ ! -x "$binary" ]]; then
    echo "error: $binary was not built" >&2
    exit 1
  fi
done

step "pytest tests/e2e"
status=0
# -p no:cacheprovider: no .pytest_cache in the work tree.
"$python" -m pytest -q -p no:cacheprovider tests/e2e "$@" || status=$?
if [[ $status -eq 5 ]]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
