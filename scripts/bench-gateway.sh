#!/usr/bin/env bash
# Whole-system gateway benchmark (issue 2): wrk -> {mock upstream directly, landfall, LiteLLM}
# -> landfall-mock-upstream, all on 127.0.0.1 on this machine.
#
# Measures, per target: req/s, p50 and p99 for non-stream and stream chat completions at 1 and 50
# connections; the latency landfall and LiteLLM add over going direct; their peak RSS; stream
# stalls (wrk errors plus a Python check that streams end in `data: [DONE]`). Prints a markdown
# report and writes it into docs/benchmarks.md as "## Gateway overhead (issue 2)".
#
# Usage: scripts/bench-gateway.sh
# Environment (all optional):
#   BENCH_DURATION=10s        length of each wrk run
#   BENCH_WARMUP=3s           warm-up at 50 connections before each target's runs (0 to skip)
#   BENCH_WRK_TIMEOUT=10s     wrk --timeout: slower responses count as timeouts
#   BENCH_STREAM_CHECK=500    streamed requests checked for `data: [DONE]` through landfall
#                             (LiteLLM gets a fifth of that)
#   BENCH_STALL_MS=25         a pause longer than this inside a checked stream is a stall
#   BENCH_LANDFALL_LOG=       LANDFALL_LOG for landfall (default: unset, i.e. its default "info",
#                             which logs one line per request)
#   BENCH_PIN=0               1: pin the mock upstream to CPU 1 and wrk to CPU 0 with taskset
#                             (the gateway floats); 0: no pinning
#   BENCH_UPSTREAM_WORKERS=1  tokio workers of the mock upstream
#   BENCH_SKIP_LITELLM=0      1: skip LiteLLM (no venv needed)
#   BENCH_SKIP_BUILD=0        1: use the release binaries already built
#   BENCH_DOCS=docs/benchmarks.md
#   BENCH_KEEP=0              1: keep the work directory (logs, configs, raw JSON)
#   LANDFALL_BENCH_VENV=$HOME/.cache/landfall-bench/venv
#   LANDFALL_BENCH_LITELLM_VERSION=1.100.5
#   CARGO_TARGET_DIR          honoured
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
WRK_TIMEOUT=${BENCH_WRK_TIMEOUT:-10s}
STREAM_CHECK=${BENCH_STREAM_CHECK:-500}
STALL_MS=${BENCH_STALL_MS:-25}
LANDFALL_LOG_LEVEL=${BENCH_LANDFALL_LOG:-}
PIN=${BENCH_PIN:-0}
UPSTREAM_WORKERS=${BENCH_UPSTREAM_WORKERS:-1}
SKIP_LITELLM=${BENCH_SKIP_LITELLM:-0}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
DOCS=${BENCH_DOCS:-docs/benchmarks.md}
[[ "$DOCS" == /* ]] || DOCS="$ROOT/$DOCS"
VENV=${LANDFALL_BENCH_VENV:-$HOME/.cache/landfall-bench/venv}
LITELLM_VERSION=${LANDFALL_BENCH_LITELLM_VERSION:-1.100.5}
PY=${PYTHON:-python3}
BENCH_PY="$ROOT/scripts/bench/bench.py"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bench-gateway: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/landfall-bench.XXXXXX")
PIDS=()

# Each server runs in its own process group (setsid), so stopping it takes its children too.
stop_pid() {
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local status=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ "${BENCH_KEEP:-0}" == 1 || $status -ne 0 ]]; then
    printf 'bench-gateway: logs and raw results kept in %s\n' "$WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL SECONDS PID: until URL answers 200, the process dies, or time runs out.
wait_http() {
  local url=$1 limit=$2 pid=$3 deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
    sleep 0.25
  done
  printf 'bench-gateway: %s not ready after %ss\n' "$url" "$limit" >&2
  return 1
}

# ---------------------------------------------------------------- tools

step "load generator: wrk"
if ! command -v wrk >/dev/null 2>&1; then
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; } ||
    die "cannot install wrk (apt-get install -y wrk)"
fi
command -v curl >/dev/null 2>&1 || apt-get install -y curl >/dev/null 2>&1 ||
  { apt-get update >/dev/null && apt-get install -y curl >/dev/null; } || die "cannot install curl"
WRK_VERSION=$(wrk -v 2>&1 | head -n1 | sed 's/ Copyright.*//' || true)
printf '%s\n' "$WRK_VERSION" >&2

if [[ "$SKIP_LITELLM" != 1 ]]; then
  step "LiteLLM $LITELLM_VERSION in $VENV"
  have=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true)
  if [[ "$have" != "$LITELLM_VERSION" || ! -x "$VENV/bin/litellm" ]]; then
    [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    # The newest releases need a litellm-proxy package that is not on PyPI; this pin resolves.
    "$VENV/bin/pip" install --quiet "litellm[proxy]==$LITELLM_VERSION"
  fi
  LITELLM_HAVE=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')
  printf 'litellm %s\n' "$LITELLM_HAVE" >&2
fi

# ---------------------------------------------------------------- build

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
  "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
if [[ "$SKIP_BUILD" != 1 ]]; then
  step "cargo build --release (landfall, landfall-mock-upstream)"
  cargo build --release --locked -p landfall-cli -p landfall-testkit --bins
fi
LANDFALL="$TARGET_DIR/release/landfall"
UPSTREAM="$TARGET_DIR/release/landfall-mock-upstream"
[[ -x "$LANDFALL" && -x "$UPSTREAM" ]] || die "release binaries missing under $TARGET_DIR/release"

# ---------------------------------------------------------------- processes

UPSTREAM_PIN=() WRK_CPUS=""
if [[ "$PIN" == 1 ]]; then
  UPSTREAM_PIN=(taskset -c 1)
  WRK_CPUS=0
fi

step "start the mock upstream"
setsid "${UPSTREAM_PIN[@]}" "$UPSTREAM" --listen 127.0.0.1:0 --workers "$UPSTREAM_WORKERS" \
  >"$WORK/upstream.out" 2>"$WORK/upstream.err" &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")
UPSTREAM_ADDR=""
for _ in $(seq 1 100); do
  UPSTREAM_ADDR=$(sed -n 's/^listening on //p' "$WORK/upstream.out" | head -n1)
  [[ -n "$UPSTREAM_ADDR" ]] && break
  kill -0 "$UPSTREAM_PID" 2>/dev/null || break
  sleep 0.1
done
[[ "$UPSTREAM_ADDR" == 127.0.0.1:* ]] || { cat "$WORK/upstream.err" >&2; die "mock upstream did not start"; }
printf 'mock upstream on %s (pid %s)\n' "$UPSTREAM_ADDR" "$UPSTREAM_PID" >&2

step "start landfall"
cat >"$WORK/landfall.toml" <<EOF
[providers.mock]
type = "openai"
base_url = "http://$UPSTREAM_ADDR/v1"
api_key = "x"

[models.bench]
targets = [{ provider = "mock", model = "bench" }]
EOF
LANDFALL_PORT=$(free_port)
# Landfall runs with its defaults (log level info, to a file) unless BENCH_LANDFALL_LOG is set.
LANDFALL_ENV=()
[[ -n "$LANDFALL_LOG_LEVEL" ]] && LANDFALL_ENV=(env "LANDFALL_LOG=$LANDFALL_LOG_LEVEL")
setsid "${LANDFALL_ENV[@]}" "$LANDFALL" serve --config "$WORK/landfall.toml" --listen "127.0.0.1:$LANDFALL_PORT" \
  >"$WORK/landfall.out" 2>"$WORK/landfall.err" &
LANDFALL_PID=$!
PIDS+=("$LANDFALL_PID")
wait_http "http://127.0.0.1:$LANDFALL_PORT/readyz" 30 "$LANDFALL_PID" ||
  { cat "$WORK/landfall.err" >&2; die "landfall did not start"; }
printf 'landfall on 127.0.0.1:%s (pid %s)\n' "$LANDFALL_PORT" "$LANDFALL_PID" >&2

MEASURE=("$PY" "$BENCH_PY" measure --duration "$DURATION" --warmup "$WARMUP" --timeout "$WRK_TIMEOUT"
  --upstream-pid "$UPSTREAM_PID" --stall-ms "$STALL_MS")
[[ -n "$WRK_CPUS" ]] && MEASURE+=(--wrk-cpus "$WRK_CPUS")

step "measure: direct to the mock upstream"
"${MEASURE[@]}" --name direct --url "http://$UPSTREAM_ADDR" --stream-check "$STREAM_CHECK" \
  --out "$WORK/direct.json"

step "measure: landfall"
"${MEASURE[@]}" --name landfall --url "http://127.0.0.1:$LANDFALL_PORT" --pid "$LANDFALL_PID" \
  --stream-check "$STREAM_CHECK" --out "$WORK/landfall.json"
grep -ciE ' (error|warn)' "$WORK/landfall.err" >"$WORK/landfall.warnings" || true
# Landfall is stopped before LiteLLM starts so that it takes no CPU during LiteLLM's runs.
stop_pid "$LANDFALL_PID"

LITELLM_SETTINGS="LiteLLM was not measured (BENCH_SKIP_LITELLM=1)."
if [[ "$SKIP_LITELLM" != 1 ]]; then
  step "start LiteLLM proxy (1 worker)"
  LITELLM_PORT=$(free_port)
  cat >"$WORK/litellm.yaml" <<EOF
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://$UPSTREAM_ADDR/v1
      api_key: x
litellm_settings:
  set_verbose: false
  json_logs: false
  telemetry: false
  turn_off_message_logging: true
  request_timeout: 30
general_settings:
  disable_spend_logs: true
  disable_error_logs: true
EOF
  # uvicorn's loggers at WARNING: no per-request access log line.
  cat >"$WORK/litellm-logging.json" <<'EOF'
{
  "version": 1,
  "disable_existing_loggers": false,
  "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
  "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
  "loggers": {
    "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": false},
    "uvicorn.error": {"handlers": ["stderr"], "level": "WARNING", "propagate": false},
    "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": false}
  }
}
EOF
  # Fair-user speed settings: no telemetry, no debug/verbose logging, only errors logged, no
  # per-request access log, the bundled model cost map (no download at start), no database.
  # The stock `litellm[proxy]` install is used as is (uvicorn with uvloop; httptools is not
  # part of it, so uvicorn parses HTTP with h11).
  env -u DATABASE_URL \
    LITELLM_LOG=ERROR LITELLM_TELEMETRY=False LITELLM_LOCAL_MODEL_COST_MAP=True \
    DISABLE_ADMIN_UI=True NO_DOCS=True \
    setsid "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" \
    --num_workers 1 --telemetry False --log_config "$WORK/litellm-logging.json" \
    >"$WORK/litellm.out" 2>"$WORK/litellm.err" &
  LITELLM_PID=$!
  PIDS+=("$LITELLM_PID")
  wait_http "http://127.0.0.1:$LITELLM_PORT/health/liveliness" 180 "$LITELLM_PID" ||
    { tail -n 40 "$WORK/litellm.err" "$WORK/litellm.out" >&2; die "LiteLLM did not start"; }
  printf 'LiteLLM on 127.0.0.1:%s (pid %s)\n' "$LITELLM_PORT" "$LITELLM_PID" >&2
  LITELLM_SETTINGS="LiteLLM $LITELLM_HAVE proxy: \`litellm --config cfg.yaml --host 127.0.0.1 --port N --num_workers 1 --telemetry False --log_config logging.json\` (uvicorn loggers, access log included, at WARNING) with LITELLM_LOG=ERROR, LITELLM_TELEMETRY=False, LITELLM_LOCAL_MODEL_COST_MAP=True, DISABLE_ADMIN_UI=True, NO_DOCS=True, no database; config \`model_list: [{model_name: bench, litellm_params: {model: openai/bench, api_base: http://127.0.0.1:UPSTREAM/v1, api_key: x}}]\`, \`litellm_settings: {set_verbose: false, json_logs: false, telemetry: false, turn_off_message_logging: true, request_timeout: 30}\`, \`general_settings: {disable_spend_logs: true, disable_error_logs: true}\`."

  step "measure: LiteLLM"
  "${MEASURE[@]}" --name litellm --url "http://127.0.0.1:$LITELLM_PORT" --pid "$LITELLM_PID" \
    --stream-check $(((STREAM_CHECK + 4) / 5)) --out "$WORK/litellm.json"
fi

# ---------------------------------------------------------------- report

step "report"
REV=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then REV="$REV (with uncommitted changes)"; fi
if [[ "$PIN" == 1 ]]; then
  PINNING="Pinning: mock upstream on CPU 1, wrk on CPU 0 (taskset), gateway unpinned."
else
  PINNING="No CPU pinning: the scheduler places all processes."
fi
export BENCH_META_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
export BENCH_META_NPROC=$(nproc)
export BENCH_META_CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
export BENCH_META_MEM=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
export BENCH_META_KERNEL="Linux $(uname -r)"
export BENCH_META_REV="$REV" BENCH_META_WRK="$WRK_VERSION" BENCH_META_PINNING="$PINNING"
export BENCH_META_LITELLM="${LITELLM_HAVE:-not measured}"
export BENCH_META_PYVER=$({ [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -V || "$PY" -V; } 2>&1 | awk '{print $2}')
export BENCH_META_DURATION="$DURATION" BENCH_META_TIMEOUT="$WRK_TIMEOUT" BENCH_META_WORKERS="$UPSTREAM_WORKERS"
export BENCH_META_LITELLM_SETTINGS="$LITELLM_SETTINGS"
export BENCH_META_LANDFALL_SETTINGS="Landfall: \`landfall serve --config landfall.toml --listen 127.0.0.1:N\`, release build, default settings (tokio multi-thread runtime with one worker per CPU; log level ${LANDFALL_LOG_LEVEL:-info (default: one line per request)}, stderr to a file; $(cat "$WORK/landfall.warnings" 2>/dev/null || echo 0) warn/error log lines during the run), config \`[providers.mock] type=\"openai\" base_url=\"http://127.0.0.1:UPSTREAM/v1\"\` and \`[models.bench] targets=[{provider=\"mock\", model=\"bench\"}]\`."
export BENCH_META_NOTES="${BENCH_NOTES:-}"
"$PY" - "$WORK/meta.json" <<'EOF'
import json, os, sys
e = os.environ
json.dump({
    "date": e["BENCH_META_DATE"], "nproc": e["BENCH_META_NPROC"], "cpu_model": e["BENCH_META_CPU"],
    "mem": e["BENCH_META_MEM"], "kernel": e["BENCH_META_KERNEL"], "landfall_rev": e["BENCH_META_REV"],
    "wrk_version": e["BENCH_META_WRK"], "litellm_version": e["BENCH_META_LITELLM"],
    "python_version": e["BENCH_META_PYVER"], "pinning": e["BENCH_META_PINNING"],
    "duration": e["BENCH_META_DURATION"], "wrk_timeout": e["BENCH_META_TIMEOUT"],
    "upstream_workers": e["BENCH_META_WORKERS"], "litellm_settings": e["BENCH_META_LITELLM_SETTINGS"],
    "landfall_settings": e["BENCH_META_LANDFALL_SETTINGS"], "notes": e["BENCH_META_NOTES"],
}, open(sys.argv[1], "w"), indent=2)
EOF
"$PY" "$BENCH_PY" report --meta "$WORK/meta.json" --results "$WORK" --docs "$DOCS"
