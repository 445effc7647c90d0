#!/usr/bin/env bash
# End-to-end test: the official `openai` Python SDK drives a running `landfall` in front of
# the mock upstream (tests/e2e).
#
# Creates or reuses a venv at $LANDFALL_VENV (default ~/.cache/landfall-test/venv), installs
# tests/e2e/requirements.txt into it when that file changed, builds `landfall` and
# `landfall-mock-upstream` (honouring CARGO_TARGET_DIR), and runs pytest. Extra arguments go to
# pytest, e.g. `scripts/e2e.sh -k embeddings -v`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

requirements=tests/e2e/requirements.txt
venv="${LANDFALL_VENV:-$HOME/.cache/landfall-test/venv}"
python="$venv/bin/python"
stamp="$venv/.landfall-requirements.sha256"

# A venv whose interpreter or pip no longer runs (Python upgraded, half-created) is rebuilt.
if [[ ! -x "$python" ]] || ! "$python" -m pip --version >/dev/null 2>&1; then
  if [[ -e "$venv" && ! -f "$venv/pyvenv.cfg" ]]; then
    echo "error: $venv exists and is not a venv; set LANDFALL_VENV to another path" >&2
    exit 1
  fi
  step "create the venv at $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv --clear "$venv"
fi

# The stamp covers the requirements and the interpreter, so a rebuilt Python reinstalls too.
wanted="$( { sha256sum "$requirements"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$wanted" ]]; then
  step "install $requirements"
  rm -f "$stamp"
  "$python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  printf '%s\n' "$wanted" >"$stamp"
fi

step "build landfall and landfall-mock-upstream"
cargo build --locked -p landfall-cli -p landfall-testkit --bins
target_dir="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')"
export LANDFALL_BIN="$target_dir/debug/landfall"
export MOCK_UPSTREAM_BIN="$target_dir/debug/landfall-mock-upstream"
for binary in "$LANDFALL_BIN" "$MOCK_UPSTREAM_BIN"; do
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
