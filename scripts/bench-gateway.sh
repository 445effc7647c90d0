#!/usr/bin/env bash
# Whole-system gateway benchmarks, all on 127.0.0.1 on this machine, in three sections:
#
# "gateway" (issue 2): wrk -> {mock upstream directly, landfall, LiteLLM} -> landfall-mock-upstream.
# Measures, per target: req/s, p50 and p99 for non-stream and stream chat completions at 1 and 50
# connections; the latency landfall and LiteLLM add over going direct; their peak RSS; stream
# stalls (wrk errors plus a Python check that streams end in `data: [DONE]`). Prints a markdown
# report and writes it into docs/benchmarks.md as "## Gateway overhead (issue 2)".
#
# "governance" (issue 3): the same four wrk scenarios, in rounds, against four landfalls on the
# same mock upstream: bare (anonymous requests, no limits), governed-embedded (an API key whose
# tenant and key have generous rps/rpm/tpm/concurrency limits and budgets, priced target, cache
# on but requests not cacheable; SQLite and in-process counters), governed-typical (the same
# with 4 counters instead of 11) and governed-redis (the same on PostgreSQL and Redis). Then the Redis limiter alone (crates/kv/examples/limiter_bench.rs).
# Writes "## Governance overhead (issue 3)".
#
# "accounting" (issue 4): the same four wrk scenarios, in rounds, against five anonymous landfalls
# on the same mock upstream: bare (metrics, audit log and access log off), metrics (metrics
# only), audit (metrics + audit log on SQLite), everything (the defaults: metrics, audit log on
# SQLite, one access log line per request) and postgres (metrics + audit log on PostgreSQL).
# Then, per configuration with the audit log on: scrape /metrics, stop landfall with SIGTERM
# and wait for it, count the audit records in the store against the requests served, and run
# `landfall audit verify`. Then the audit writer alone (crates/storage/examples/audit_bench.rs)
# on SQLite and PostgreSQL. Writes "## Accounting overhead (issue 4)".
#
# Usage: scripts/bench-gateway.sh
# Environment (all optional):
#   BENCH_SECTIONS="gateway governance accounting"   which sections to measure and write
#   BENCH_GOV_ROUNDS=3        governance: rounds over the four configurations (median reported)
#   BENCH_ACC_ROUNDS=3        accounting: rounds over the five configurations (median reported)
#   BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test   governance, accounting: a
#                             server where a fresh database is created for the run and dropped
#                             after it
#   BENCH_REDIS_URL=redis://127.0.0.1:6379   governance: keys under a fresh prefix, deleted after
#   BENCH_GOV_NOTES=          governance: a notes paragraph for the report
#   BENCH_ACC_NOTES=          accounting: a notes paragraph for the report
#   BENCH_AUDIT_RECORDS=100000   accounting: records the audit writer benchmark appends per store
#   BENCH_DURATION=10s        length of each wrk run
#   BENCH_WARMUP=3s           warm-up at 50 connections before each target's runs (0 to skip)
#   BENCH_WRK_TIMEOUT=10s     wrk --timeout: slower responses count as timeouts
#   BENCH_STREAM_CHECK=500    streamed requests checked for `data: [DONE]` through landfall
#                             (LiteLLM gets a fifth of that)
#   BENCH_STALL_MS=25         a pause longer than this inside a checked stream is a stall
#   BENCH_LANDFALL_LOG=       LANDFALL_LOG for landfall (default: unset, i.e. its default "info",
#                             which logs one line per request); the accounting section sets its
#                             own per configuration
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
SECTIONS=" ${BENCH_SECTIONS:-gateway governance accounting} "
GOV_ROUNDS=${BENCH_GOV_ROUNDS:-3}
ACC_ROUNDS=${BENCH_ACC_ROUNDS:-3}
AUDIT_RECORDS=${BENCH_AUDIT_RECORDS:-100000}
POSTGRES_URL=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379}
DOCS=${BENCH_DOCS:-docs/benchmarks.md}
[[ "$DOCS" == /* ]] || DOCS="$ROOT/$DOCS"
VENV=${LANDFALL_BENCH_VENV:-$HOME/.cache/landfall-bench/venv}
LITELLM_VERSION=${LANDFALL_BENCH_LITELLM_VERSION:-1.100.5}
PY=${PYTHON:-python3}
BENCH_PY="$ROOT/scripts/bench/bench.py"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bench-gateway: %s\n' "$*" >&2; exit 1; }
has_section() { [[ "$SECTIONS" == *" $1 "* ]]; }
has_section gateway || has_section governance || has_section accounting ||
  die "BENCH_SECTIONS names no known section (gateway, governance, accounting)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/landfall-bench.XXXXXX")
PIDS=()
BENCH_DBS=() GOV_PREFIX=""

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
  local status=$? pid db
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  # The governance and accounting runs' databases, and the governance run's Redis keys.
  for db in "${BENCH_DBS[@]}"; do
    psql "$POSTGRES_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 ||
      printf 'bench-gateway: could not drop database %s\n' "$db" >&2
  done
  if [[ -n "$GOV_PREFIX" ]]; then
    redis-cli -u "$REDIS_URL" --scan --pattern "$GOV_PREFIX*" 2>/dev/null |
      xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null 2>&1 || true
  fi
  if [[ "${BENCH_KEEP:-0}" == 1 || $status -ne 0 ]]; then
    printf 'bench-gateway: logs and raw results kept in %s\n' "$WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_gracefully PID SECONDS: SIGTERM to the process only, then waits for it to exit on its own
# (a clean shutdown drains the audit queue); after SECONDS it is killed. Sets STOP_STATUS to its
# exit status, or "killed", and STOP_SECONDS to how long it took.
stop_gracefully() {
  local pid=$1 limit=$2 started=$EPOCHREALTIME deadline=$((SECONDS + $2))
  STOP_STATUS=gone
  if kill -TERM "$pid" 2>/dev/null; then
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      STOP_STATUS=killed
    else
      STOP_STATUS=0
      wait "$pid" 2>/dev/null || STOP_STATUS=$?
    fi
  fi
  STOP_SECONDS=$("$PY" -c "print(round($EPOCHREALTIME - $started, 2))")
}

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

has_section gateway || SKIP_LITELLM=1
if has_section governance; then
  for tool in psql redis-cli; do
    command -v "$tool" >/dev/null 2>&1 || die "the governance section needs $tool (apt-get install -y postgresql-client redis-tools)"
  done
fi
if has_section accounting; then
  command -v psql >/dev/null 2>&1 || die "the accounting section needs psql (apt-get install -y postgresql-client)"
fi
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
  if has_section governance; then
    step "cargo build --release (the Redis limiter benchmark)"
    cargo build --release --locked -p landfall-kv --example limiter_bench
  fi
  if has_section accounting; then
    step "cargo build --release (the audit writer benchmark)"
    cargo build --release --locked -p landfall-storage --example audit_bench
  fi
fi
LANDFALL="$TARGET_DIR/release/landfall"
UPSTREAM="$TARGET_DIR/release/landfall-mock-upstream"
LIMITER_BENCH="$TARGET_DIR/release/examples/limiter_bench"
AUDIT_BENCH="$TARGET_DIR/release/examples/audit_bench"
[[ -x "$LANDFALL" && -x "$UPSTREAM" ]] || die "release binaries missing under $TARGET_DIR/release"
if has_section governance; then
  [[ -x "$LIMITER_BENCH" ]] || die "$LIMITER_BENCH missing"
fi
if has_section accounting; then
  [[ -x "$AUDIT_BENCH" ]] || die "$AUDIT_BENCH missing"
fi

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

PROVIDER_TOML="[providers.mock]
type = \"openai\"
base_url = \"http://$UPSTREAM_ADDR/v1\"
api_key = \"x\""
# The bare gateway: requests without a key are served as tenant "anonymous", with no limits
# (the store still receives their usage); cache and shedding at their defaults.
bare_config() {
  cat <<EOF
[auth]
allow_anonymous = true

[storage.metadata]
type = "sqlite"
path = "$1"

$PROVIDER_TOML

[models.bench]
targets = [{ provider = "mock", model = "bench" }]
EOF
}

# Landfall runs with its defaults (log level info, to a file) unless BENCH_LANDFALL_LOG is set.
LANDFALL_ENV=()
[[ -n "$LANDFALL_LOG_LEVEL" ]] && LANDFALL_ENV=(env "LANDFALL_LOG=$LANDFALL_LOG_LEVEL")
# start_landfall NAME CONFIG [ENV_ARGS...]: starts landfall on a free port, its environment
# changed by `env ENV_ARGS...` when given (else by BENCH_LANDFALL_LOG); sets LANDFALL_PID and
# LANDFALL_PORT.
start_landfall() {
  local name=$1 config=$2
  shift 2
  local launch=("${LANDFALL_ENV[@]}")
  (($# > 0)) && launch=(env "$@")
  LANDFALL_PORT=$(free_port)
  setsid "${launch[@]}" "$LANDFALL" serve --config "$config" --listen "127.0.0.1:$LANDFALL_PORT" \
    >"$WORK/$name.out" 2>"$WORK/$name.err" &
  LANDFALL_PID=$!
  PIDS+=("$LANDFALL_PID")
  wait_http "http://127.0.0.1:$LANDFALL_PORT/readyz" 30 "$LANDFALL_PID" ||
    { cat "$WORK/$name.err" >&2; die "landfall ($name) did not start"; }
  printf 'landfall (%s) on 127.0.0.1:%s (pid %s)\n' "$name" "$LANDFALL_PORT" "$LANDFALL_PID" >&2
}

MEASURE=("$PY" "$BENCH_PY" measure --duration "$DURATION" --warmup "$WARMUP" --timeout "$WRK_TIMEOUT"
  --upstream-pid "$UPSTREAM_PID" --stall-ms "$STALL_MS")
[[ -n "$WRK_CPUS" ]] && MEASURE+=(--wrk-cpus "$WRK_CPUS")

LITELLM_SETTINGS="LiteLLM was not measured (BENCH_SKIP_LITELLM=1)."
if has_section gateway; then
step "start landfall"
mkdir -p "$WORK/landfall-data"
bare_config "$WORK/landfall-data/landfall.db" >"$WORK/landfall.toml"
start_landfall landfall "$WORK/landfall.toml"

step "measure: direct to the mock upstream"
"${MEASURE[@]}" --name direct --url "http://$UPSTREAM_ADDR" --stream-check "$STREAM_CHECK" \
  --out "$WORK/direct.json"

step "measure: landfall"
"${MEASURE[@]}" --name landfall --url "http://127.0.0.1:$LANDFALL_PORT" --pid "$LANDFALL_PID" \
  --stream-check "$STREAM_CHECK" --out "$WORK/landfall.json"
grep -ciE ' (error|warn)' "$WORK/landfall.err" >"$WORK/landfall.warnings" || true
# Landfall is stopped before LiteLLM starts so that it takes no CPU during LiteLLM's runs.
stop_pid "$LANDFALL_PID"

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
  stop_pid "$LITELLM_PID"
fi
fi # gateway section

# ---------------------------------------------------------------- governance (issue 3)

if has_section governance; then
  step "governance: a fresh PostgreSQL database and Redis prefix"
  SUFFIX="$$_$(date +%s%N | tail -c 7)"
  psql "$POSTGRES_URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE \"landfall_bench_$SUFFIX\"" >/dev/null ||
    die "cannot create a database at $POSTGRES_URL (BENCH_POSTGRES_URL)"
  GOV_DB="landfall_bench_$SUFFIX"
  BENCH_DBS+=("$GOV_DB")
  GOV_DB_URL="${POSTGRES_URL%/*}/$GOV_DB"
  GOV_PREFIX="landfall-bench-$SUFFIX:"
  [[ "$(redis-cli -u "$REDIS_URL" PING 2>&1)" == PONG ]] ||
    die "Redis at $REDIS_URL (BENCH_REDIS_URL) does not answer PING"
  REDIS_VERSION="Redis $(redis-cli -u "$REDIS_URL" INFO server | tr -d '\r' | sed -n 's/^redis_version://p')"
  POSTGRES_VERSION="PostgreSQL $(psql "$POSTGRES_URL" -Atc 'SHOW server_version' | awk '{print $1}')"

  # Generous limits, so nothing is refused but every counter is taken and settled: 1M req/s,
  # 60M req/min, 1e11 tokens/min, 10,000 in flight, 1e13 tokens a day; the tenant also has a
  # monthly money budget, priced from the target's price.
  LIMIT_FLAGS=(--rps 1000000 --rpm 60000000 --tpm 100000000000 --concurrency 10000 --daily-tokens 10000000000000)
  governed_config() { # METADATA_TOML KV_TOML
    cat <<EOF
$1

$2

[limits]
# A counter backend failure shows as a refused request here, not as an unlimited one.
on_backend_error = "fail_closed"

[cache]
enabled = true
mode = "deterministic"

$PROVIDER_TOML

[models.bench]
targets = [{ provider = "mock", model = "bench", price = { input = 0.15, cached_input = 0.075, output = 0.60 } }]
EOF
  }
  mkdir -p "$WORK/gov-bare" "$WORK/gov-embedded" "$WORK/gov-typical"
  bare_config "$WORK/gov-bare/landfall.db" >"$WORK/gov-bare.toml"
  governed_config "[storage.metadata]
type = \"sqlite\"
path = \"$WORK/gov-embedded/landfall.db\"" "[storage.kv]
type = \"memory\"" >"$WORK/gov-embedded.toml"
  governed_config "[storage.metadata]
type = \"sqlite\"
path = \"$WORK/gov-typical/landfall.db\"" "[storage.kv]
type = \"memory\"" >"$WORK/gov-typical.toml"
  # "typical": what a tenant usually gets: a request rate, a token rate and a daily budget on
  # the tenant, a per-minute request limit on the key (4 counters instead of 11).
  TYPICAL_TENANT_FLAGS=(--rps 1000000 --tpm 100000000000 --daily-tokens 10000000000000)
  TYPICAL_KEY_FLAGS=(--rpm 60000000)
  governed_config "[storage.metadata]
type = \"postgres\"
url = \"$GOV_DB_URL\"" "[storage.kv]
type = \"redis\"
url = \"$REDIS_URL\"
prefix = \"$GOV_PREFIX\"" >"$WORK/gov-redis.toml"

  declare -A GOV_PID GOV_PORT GOV_KEY
  for name in bare embedded typical redis; do
    if [[ "$name" != bare ]]; then
      tenant_flags=("${LIMIT_FLAGS[@]}" --monthly-cost 1000000)
      key_flags=("${LIMIT_FLAGS[@]}")
      if [[ "$name" == typical ]]; then
        tenant_flags=("${TYPICAL_TENANT_FLAGS[@]}")
        key_flags=("${TYPICAL_KEY_FLAGS[@]}")
      fi
      "$LANDFALL" tenants create --config "$WORK/gov-$name.toml" --id bench --name bench "${tenant_flags[@]}" \
        >"$WORK/tenant-$name.json" 2>>"$WORK/cli-$name.err" ||
        { cat "$WORK/cli-$name.err" >&2; die "cannot create the tenant ($name)"; }
      GOV_KEY[$name]=$("$LANDFALL" keys create --config "$WORK/gov-$name.toml" --tenant bench --name wrk \
        "${key_flags[@]}" 2>>"$WORK/cli-$name.err" |
        "$PY" -c 'import json, sys; print(json.load(sys.stdin)["secret"])') ||
        { cat "$WORK/cli-$name.err" >&2; die "cannot create the key ($name)"; }
    fi
    start_landfall "gov-$name" "$WORK/gov-$name.toml"
    GOV_PID[$name]=$LANDFALL_PID
    GOV_PORT[$name]=$LANDFALL_PORT
  done

  # Redis's and PostgreSQL's CPU time too, when they run on this machine.
  WATCH=()
  pid=$(pgrep -xo redis-server || true)
  [[ -n "$pid" ]] && WATCH+=(--watch "redis=$pid")
  pid=$(pgrep -xo postgres || pgrep -xo postmaster || true)
  [[ -n "$pid" ]] && WATCH+=(--watch "postgres=$pid")

  # Rounds rotate the order, so no configuration is always measured first or last.
  ORDER=(bare embedded typical redis)
  for round in $(seq 1 "$GOV_ROUNDS"); do
    for i in "${!ORDER[@]}"; do
      name=${ORDER[$(((i + round - 1) % ${#ORDER[@]}))]}
      step "governance round $round/$GOV_ROUNDS: $name"
      args=(--name "$name" --url "http://127.0.0.1:${GOV_PORT[$name]}" --pid "${GOV_PID[$name]}"
        --stream-check 100 --out "$WORK/gov-$name-$round.json" "${WATCH[@]}")
      [[ "$name" != bare ]] && args+=(--api-key "${GOV_KEY[$name]}" --expect-ratelimit-headers)
      "${MEASURE[@]}" "${args[@]}"
    done
  done

  step "governance: the ledger"
  sleep 1.5 # more than accounting.flush_interval_ms (500): the last usage is written
  REDIS_LEDGER=$(psql "$GOV_DB_URL" -Atc "SELECT COALESCE(SUM(requests), 0) FROM usage WHERE tenant_id = 'bench'")
  "$PY" - "$WORK/ledger.json" "$WORK/gov-bare/landfall.db" "$WORK/gov-embedded/landfall.db" "$REDIS_LEDGER" "$WORK/gov-typical/landfall.db" <<'PYEOF'
import json, sqlite3, sys
out, bare, embedded, redis, typical = sys.argv[1:]
def total(path, tenant):
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT COALESCE(SUM(requests), 0) FROM usage WHERE tenant_id = ?", (tenant,)).fetchone()[0]
json.dump({"bare": total(bare, "anonymous"), "embedded": total(embedded, "bench"),
           "typical": total(typical, "bench"), "redis": int(redis)}, open(out, "w"))
PYEOF
  cat "$WORK/ledger.json" >&2
  echo >&2
  GOV_WARNINGS=""
  for name in bare embedded typical redis; do
    GOV_WARNINGS+="$name $(grep -ciE ' (error|warn)' "$WORK/gov-$name.err" || true), "
    stop_pid "${GOV_PID[$name]}"
  done

  for checks in rate governed; do
    step "Redis limiter alone: $checks"
    "$LIMITER_BENCH" --url "$REDIS_URL" --checks "$checks" --tasks 64 --seconds 5 >"$WORK/limiter-$checks.json"
  done

  LIMITS_TEXT="${LIMIT_FLAGS[*]}"
  {
    printf '%s\n' "**bare**: \`[auth] allow_anonymous = true\`, SQLite store; requests carry no key (tenant \`anonymous\`: no limits, no budgets, usage still written to the ledger); cache (deterministic mode) and shedding at their defaults."
    printf '%s\n' "**governed, embedded**: every request carries an API key; its tenant and the key each have requests-per-second, requests-per-minute, tokens-per-minute and concurrency limits and a daily token budget (\`$LIMITS_TEXT\`: nothing is refused), the tenant also a monthly money budget; the target is priced (\`price = { input = 0.15, cached_input = 0.075, output = 0.60 }\`); \`[cache] enabled = true\` but the requests are not cacheable (no temperature). So every request is authenticated (keys cached for \`auth.key_cache_ttl_ms = 500\`), admitted (11 counters in one step: 6 of the tenant, 5 of the key), served by the upstream, settled (leases returned, token reservations corrected) and added to the ledger (written every \`accounting.flush_interval_ms = 500\`). SQLite store, in-process counters, \`limits.on_backend_error = \"fail_closed\"\`."
    printf '%s\n' "**governed, embedded, typical limits**: the same, with what a tenant usually gets: the tenant has a requests-per-second limit, a tokens-per-minute limit and a daily token budget, the key a requests-per-minute limit (\`${TYPICAL_TENANT_FLAGS[*]}\` and \`${TYPICAL_KEY_FLAGS[*]}\`): 4 counters per request."
    printf '%s\n' "**governed, Redis + PostgreSQL**: the same with \`[storage.metadata] type = \"postgres\"\` (a fresh database) and \`[storage.kv] type = \"redis\"\` (default \`timeout_ms = 250\`): one Lua script call to admit and one to settle per request."
    printf '%s\n' "All four: release build, otherwise default settings (one tokio worker per CPU, log level ${LANDFALL_LOG_LEVEL:-info}, stderr to a file; warn/error log lines during the runs: ${GOV_WARNINGS%, })."
  } >"$WORK/gov-configs.txt"
fi

# ---------------------------------------------------------------- accounting (issue 4)

if has_section accounting; then
  step "accounting: a fresh PostgreSQL database"
  SUFFIX="$$_$(date +%s%N | tail -c 7)"
  psql "$POSTGRES_URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE \"landfall_bench_acc_$SUFFIX\"" >/dev/null ||
    die "cannot create a database at $POSTGRES_URL (BENCH_POSTGRES_URL)"
  ACC_DB="landfall_bench_acc_$SUFFIX"
  BENCH_DBS+=("$ACC_DB")
  ACC_DB_URL="${POSTGRES_URL%/*}/$ACC_DB"
  POSTGRES_VERSION="PostgreSQL $(psql "$POSTGRES_URL" -Atc 'SHOW server_version' | awk '{print $1}')"

  # Anonymous requests, as the bare gateway; only [metrics], [audit] and the store change.
  accounting_config() { # METRICS AUDIT METADATA_TOML
    cat <<EOF
[auth]
allow_anonymous = true

[metrics]
enabled = $1

[audit]
enabled = $2

$3

$PROVIDER_TOML

[models.bench]
targets = [{ provider = "mock", model = "bench" }]
EOF
  }
  sqlite_toml() { printf '[storage.metadata]\ntype = "sqlite"\npath = "%s"\n' "$1"; }
  ACC_NAMES=(bare metrics audit everything postgres)
  for name in "${ACC_NAMES[@]}"; do mkdir -p "$WORK/acc-$name"; done
  accounting_config false false "$(sqlite_toml "$WORK/acc-bare/landfall.db")" >"$WORK/acc-bare.toml"
  accounting_config true false "$(sqlite_toml "$WORK/acc-metrics/landfall.db")" >"$WORK/acc-metrics.toml"
  accounting_config true true "$(sqlite_toml "$WORK/acc-audit/landfall.db")" >"$WORK/acc-audit.toml"
  accounting_config true true "$(sqlite_toml "$WORK/acc-everything/landfall.db")" >"$WORK/acc-everything.toml"
  accounting_config true true "[storage.metadata]
type = \"postgres\"
url = \"$ACC_DB_URL\"" >"$WORK/acc-postgres.toml"

  # The access log is silenced everywhere but in "everything", which logs at landfall's
  # default (info, one line per request); BENCH_LANDFALL_LOG does not apply here.
  QUIET_LOG="info,landfall::access=off"
  declare -A ACC_PID ACC_PORT
  for name in "${ACC_NAMES[@]}"; do
    if [[ "$name" == everything ]]; then
      start_landfall "acc-$name" "$WORK/acc-$name.toml" -u RUST_LOG -u LANDFALL_LOG
    else
      start_landfall "acc-$name" "$WORK/acc-$name.toml" -u RUST_LOG "LANDFALL_LOG=$QUIET_LOG"
    fi
    ACC_PID[$name]=$LANDFALL_PID
    ACC_PORT[$name]=$LANDFALL_PORT
  done

  WATCH=()
  pid=$(pgrep -xo postgres || pgrep -xo postmaster || true)
  [[ -n "$pid" ]] && WATCH+=(--watch "postgres=$pid")

  # Rounds rotate the order, so no configuration is always measured first or last.
  for round in $(seq 1 "$ACC_ROUNDS"); do
    for i in "${!ACC_NAMES[@]}"; do
      name=${ACC_NAMES[$(((i + round - 1) % ${#ACC_NAMES[@]}))]}
      step "accounting round $round/$ACC_ROUNDS: $name"
      "${MEASURE[@]}" --name "$name" --url "http://127.0.0.1:${ACC_PORT[$name]}" --pid "${ACC_PID[$name]}" \
        --stream-check 100 --out "$WORK/acc-$name-$round.json" "${WATCH[@]}"
    done
  done

  step "accounting: requests served against audit records"
  sleep 1.5 # well over audit.flush_interval_ms (200): the queue has been written
  ACC_WARNINGS=""
  for name in "${ACC_NAMES[@]}"; do
    # The counters just before the stop; nothing is requested between the scrape and SIGTERM.
    if [[ "$name" != bare ]]; then
      curl -fsS --max-time 10 "http://127.0.0.1:${ACC_PORT[$name]}/metrics" >"$WORK/acc-$name.metrics" ||
        die "cannot scrape /metrics of landfall ($name)"
    fi
    stop_gracefully "${ACC_PID[$name]}" 60
    printf '{"exit": "%s", "seconds": %s}\n' "$STOP_STATUS" "$STOP_SECONDS" >"$WORK/acc-$name.stop.json"
    printf 'landfall (%s) stopped: exit %s after %ss\n' "$name" "$STOP_STATUS" "$STOP_SECONDS" >&2
    ACC_WARNINGS+="$name $(grep -cE ' (ERROR|WARN) ' "$WORK/acc-$name.err" || true), "
  done
  for name in audit everything postgres; do
    if [[ "$name" == postgres ]]; then
      audited=$(psql "$ACC_DB_URL" -v ON_ERROR_STOP=1 -Atc "SELECT COUNT(*) FROM audit_records WHERE kind = 'request'")
    else
      audited=$("$PY" - "$WORK/acc-$name/landfall.db" <<'PYEOF'
import sqlite3, sys
with sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True) as db:
    print(db.execute("SELECT COUNT(*) FROM audit_records WHERE kind = 'request'").fetchone()[0])
PYEOF
      )
    fi
    started=$EPOCHREALTIME
    status=0
    "$LANDFALL" audit verify --config "$WORK/acc-$name.toml" --json \
      >"$WORK/acc-$name.verify.json" 2>"$WORK/acc-$name.verify.err" || status=$?
    seconds=$("$PY" -c "print(round($EPOCHREALTIME - $started, 2))")
    printf '{"audited": %s, "verify_exit": %s, "verify_seconds": %s}\n' "$audited" "$status" "$seconds" \
      >"$WORK/acc-$name.store.json"
    printf 'landfall (%s): %s request records in the store; audit verify exit %s in %ss\n' \
      "$name" "$audited" "$status" "$seconds" >&2
  done
  ACC_LOG_MIB=$(( $(stat -c %s "$WORK/acc-everything.err") / 1048576 ))

  step "the audit writer alone: SQLite and PostgreSQL, $AUDIT_RECORDS records each"
  status=0
  "$AUDIT_BENCH" --postgres "$ACC_DB_URL" --records "$AUDIT_RECORDS" >"$WORK/audit-bench.txt" \
    2>"$WORK/audit-bench.err" || status=$?
  cat "$WORK/audit-bench.txt" >&2
  if ((status != 0)); then
    cat "$WORK/audit-bench.err" >&2
    printf 'bench-gateway: audit_bench exited %s\n' "$status" >&2
  fi

  {
    printf '%s\n' "**bare**: \`[auth] allow_anonymous = true\` (requests carry no key), SQLite store, \`[metrics] enabled = false\`, \`[audit] enabled = false\`, \`LANDFALL_LOG=$QUIET_LOG\` (no access log); usage is still written to the ledger, cache and shedding at their defaults."
    printf '%s\n' "**metrics**: the same with \`[metrics] enabled = true\` (defaults: \`per_key = true\`, \`/metrics\` open on the main listener): what counting every request in Prometheus metrics costs."
    printf '%s\n' "**metrics + audit (SQLite)**: metrics on and \`[audit] enabled = true\` with its defaults (\`queue_capacity = 65536\`, \`batch_size = 1024\`, \`flush_interval_ms = 200\`, no bodies kept): one hash-chained record per request, queued in memory and appended in batches to the SQLite store; access log off."
    printf '%s\n' "**everything (SQLite)**: landfall's defaults: metrics, the audit log on SQLite, and one access log line per request (\`landfall::access\` at info; \`LANDFALL_LOG\` and \`RUST_LOG\` unset), stderr to a file ($ACC_LOG_MIB MiB after the runs)."
    printf '%s\n' "**metrics + audit (PostgreSQL)**: as metrics + audit (SQLite), with \`[storage.metadata] type = \"postgres\"\` on a fresh database (default pool)."
    printf '%s\n' "All five: release build, otherwise default settings (one tokio worker per CPU, stderr to a file; warn/error log lines during the runs: ${ACC_WARNINGS%, })."
  } >"$WORK/acc-configs.txt"
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
export BENCH_META_LANDFALL_SETTINGS="Landfall: \`landfall serve --config landfall.toml --listen 127.0.0.1:N\`, release build, default settings (tokio multi-thread runtime with one worker per CPU; log level ${LANDFALL_LOG_LEVEL:-info (default: one line per request)}, stderr to a file; $(cat "$WORK/landfall.warnings" 2>/dev/null || echo 0) warn/error log lines during the run), config \`[auth] allow_anonymous=true\` (requests carry no key), \`[storage.metadata] type=\"sqlite\"\`, \`[providers.mock] type=\"openai\" base_url=\"http://127.0.0.1:UPSTREAM/v1\"\` and \`[models.bench] targets=[{provider=\"mock\", model=\"bench\"}]\`."
export BENCH_META_NOTES="${BENCH_NOTES:-}"
export BENCH_META_GOV_NOTES="${BENCH_GOV_NOTES:-}" BENCH_META_REDIS="${REDIS_VERSION:-}"
export BENCH_META_POSTGRES="${POSTGRES_VERSION:-}" BENCH_META_GOV_CONFIGS="$WORK/gov-configs.txt"
export BENCH_META_ACC_NOTES="${BENCH_ACC_NOTES:-}" BENCH_META_ACC_CONFIGS="$WORK/acc-configs.txt"
export BENCH_META_AUDIT_RECORDS="$AUDIT_RECORDS"
"$PY" - "$WORK/meta.json" <<'EOF'
import json, os, sys
from pathlib import Path
e = os.environ
configs = Path(e["BENCH_META_GOV_CONFIGS"])
acc_configs = Path(e["BENCH_META_ACC_CONFIGS"])
json.dump({
    "accounting_notes": e["BENCH_META_ACC_NOTES"], "audit_bench_records": int(e["BENCH_META_AUDIT_RECORDS"]),
    "accounting_configs": acc_configs.read_text().splitlines() if acc_configs.exists() else [],
    "governance_notes": e["BENCH_META_GOV_NOTES"], "redis_version": e["BENCH_META_REDIS"],
    "postgres_version": e["BENCH_META_POSTGRES"],
    "governance_configs": configs.read_text().splitlines() if configs.exists() else [],
    "date": e["BENCH_META_DATE"], "nproc": e["BENCH_META_NPROC"], "cpu_model": e["BENCH_META_CPU"],
    "mem": e["BENCH_META_MEM"], "kernel": e["BENCH_META_KERNEL"], "landfall_rev": e["BENCH_META_REV"],
    "wrk_version": e["BENCH_META_WRK"], "litellm_version": e["BENCH_META_LITELLM"],
    "python_version": e["BENCH_META_PYVER"], "pinning": e["BENCH_META_PINNING"],
    "duration": e["BENCH_META_DURATION"], "wrk_timeout": e["BENCH_META_TIMEOUT"],
    "upstream_workers": e["BENCH_META_WORKERS"], "litellm_settings": e["BENCH_META_LITELLM_SETTINGS"],
    "landfall_settings": e["BENCH_META_LANDFALL_SETTINGS"], "notes": e["BENCH_META_NOTES"],
}, open(sys.argv[1], "w"), indent=2)
EOF
if has_section gateway; then
  "$PY" "$BENCH_PY" report --meta "$WORK/meta.json" --results "$WORK" --docs "$DOCS"
fi
if has_section governance; then
  "$PY" "$BENCH_PY" report-governance --meta "$WORK/meta.json" --results "$WORK" --docs "$DOCS"
fi
if has_section accounting; then
  "$PY" "$BENCH_PY" report-accounting --meta "$WORK/meta.json" --results "$WORK" --docs "$DOCS"
fi
