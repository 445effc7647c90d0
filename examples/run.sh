#!/usr/bin/env bash
# Runs both examples end to end against the scripted model (examples/scripted_model.py):
# the customer-service assistant and the report assistant. Uses the test venv
# (scripts/venv.sh: the openai SDK and vl-convert-python) and `landfall` from $LANDFALL_BIN,
# else builds it (honouring CARGO_TARGET_DIR). Exit status 0 only if both succeed.
#
# Usage: examples/run.sh [OUT_DIR]   (OUT_DIR keeps each example's data, log and chart)
set -euo pipefail
cd "$(dirname "$0")/.."

python="$(scripts/venv.sh)"
if [[ -z "${LANDFALL_BIN:-}" ]]; then
  cargo build --locked -p landfall-cli --bin landfall
  target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')"
  LANDFALL_BIN="$target_dir/debug/landfall"
fi

status=0
for example in customer-service report-assistant; do
  printf '\n==> example: %s\n' "$example"
  out=()
  [[ -n "${1:-}" ]] && out=(--out "$1/$example")
  timeout 300 "$python" "examples/$example/run.py" --landfall "$LANDFALL_BIN" "${out[@]}" || status=1
done
exit "$status"
