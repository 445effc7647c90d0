#!/usr/bin/env bash
# The Python venv the tests use: the openai SDK and pytest for the end-to-end test, aiosmtpd
# and trustme for the SMTP peer of the email tool's tests, vl-convert-python for the
# report-assistant example's chart.
#
# Creates or reuses a venv at $LANDFALL_VENV (default ~/.cache/landfall-test/venv), installs
# tests/e2e/requirements.txt into it when that file changed, and prints its python's path.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

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
  python3 -m venv --clear "$venv" >&2
fi

# The stamp covers the requirements and the interpreter, so a rebuilt Python reinstalls too.
wanted="$( { sha256sum "$requirements"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$wanted" ]]; then
  step "install $requirements"
  rm -f "$stamp"
  "$python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
  printf '%s\n' "$wanted" >"$stamp"
fi

printf '%s\n' "$python"
