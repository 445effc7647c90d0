#!/usr/bin/env bash
# Prepares the scale-out vector backends the retrieval tests run against:
#   start  installs pgvector into the local PostgreSQL 15 if missing, then starts a Chroma
#          server and prints `export LANDFALL_TEST_CHROMA_URL=...` for the caller to `eval`;
#   stop   stops the Chroma server started by `start`;
#   pgvector  only installs pgvector.
# Idempotent and quick when already done. Progress goes to stderr; stdout carries only the
# `export` line, so `eval "$(scripts/vector-backends.sh start)"` works.
#
# Environment: LANDFALL_CACHE (default ~/.cache/landfall-test), PGHOST/PGPORT/PGUSER/PGDATABASE
# for the pgvector check (default 127.0.0.1:5432, postgres, test).
set -euo pipefail

CACHE="${LANDFALL_CACHE:-$HOME/.cache/landfall-test}"
CHROMA_VERSION="1.5.9"
CHROMA_VENV="$CACHE/chroma-venv"
CHROMA_DIR="$CACHE/chroma"
CHROMA_PID_FILE="$CHROMA_DIR/chroma.pid"
CHROMA_PORT_FILE="$CHROMA_DIR/chroma.port"
PG_MAJOR=15
PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"

log() { echo "vector-backends: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        log "need root (or sudo) to run: $*"
        return 1
    fi
}

psql_query() {
    psql -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" -U "${PGUSER:-postgres}" \
        -d "${PGDATABASE:-test}" -tAc "$1"
}

# The machine's Debian mirror, from deb822 or one-line APT sources.
debian_mirror() {
    local uri
    uri=$(grep -hE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 |
        awk '{print $2}' || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hE '^deb .*/debian/? ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            2>/dev/null | head -n1 | awk '{print $2}' || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

ensure_pgvector() {
    local available
    if ! available=$(psql_query "select 1 from pg_available_extensions where name='vector'" 2>&1); then
        log "PostgreSQL not reachable, skipping pgvector: $available"
        return 0
    fi
    if [ "$available" = 1 ]; then
        log "pgvector already available"
        return 0
    fi
    log "pgvector missing: building it from Debian's source package"
    if ! dpkg -s "postgresql-server-dev-$PG_MAJOR" >/dev/null 2>&1; then
        as_root apt-get install -y -q "postgresql-server-dev-$PG_MAJOR" >&2 ||
            { as_root apt-get update -q >&2 && as_root apt-get install -y -q "postgresql-server-dev-$PG_MAJOR" >&2; }
    fi
    command -v dpkg-source >/dev/null || as_root apt-get install -y -q dpkg-dev >&2

    # A private APT configuration with only a deb-src entry, so the system's sources and
    # package lists stay untouched.
    local apt_dir="$CACHE/apt" build_dir="$CACHE/pgvector-build"
    mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$build_dir"
    cat >"$apt_dir/sources.list.d/trixie-src.sources" <<EOF
Types: deb-src
URIs: $(debian_mirror)
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    : >"$apt_dir/sources.list"
    cat >"$apt_dir/apt.conf" <<EOF
Dir::Etc::SourceList "$apt_dir/sources.list";
Dir::Etc::SourceParts "$apt_dir/sources.list.d";
Dir::State::Lists "$apt_dir/lists";
Dir::Cache::Archives "$apt_dir/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    export APT_CONFIG="$apt_dir/apt.conf"
    apt-get update -q >&2
    (cd "$build_dir" && rm -rf pgvector-*/ && apt-get source --download-only pgvector >&2 &&
        dpkg-source -x --no-check ./pgvector_*.dsc >&2)
    unset APT_CONFIG
    local source
    source=$(find "$build_dir" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
    [ -n "$source" ] || { log "pgvector source not found in $build_dir"; return 1; }
    make -C "$source" PG_CONFIG="$PG_CONFIG" >&2
    as_root make -C "$source" PG_CONFIG="$PG_CONFIG" install >&2
    available=$(psql_query "select 1 from pg_available_extensions where name='vector'")
    [ "$available" = 1 ] || { log "pgvector installed but PostgreSQL does not see it"; return 1; }
    log "pgvector installed"
}

chroma_running() {
    [ -f "$CHROMA_PID_FILE" ] && [ -f "$CHROMA_PORT_FILE" ] &&
        kill -0 "$(cat "$CHROMA_PID_FILE")" 2>/dev/null &&
        curl -fsS -m 2 "http://127.0.0.1:$(cat "$CHROMA_PORT_FILE")/api/v2/heartbeat" >/dev/null 2>&1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_chroma() {
    mkdir -p "$CHROMA_DIR"
    if chroma_running; then
        log "Chroma already running on port $(cat "$CHROMA_PORT_FILE")"
    else
        if [ ! -x "$CHROMA_VENV/bin/chroma" ] ||
            ! "$CHROMA_VENV/bin/pip" show chromadb 2>/dev/null | grep -qx "Version: $CHROMA_VERSION"; then
            log "installing chromadb $CHROMA_VERSION into $CHROMA_VENV"
            python3 -m venv "$CHROMA_VENV"
            "$CHROMA_VENV/bin/pip" install -q "chromadb==$CHROMA_VERSION" >&2
        fi
        local port
        port=$(free_port)
        # setsid: the server outlives this script, and `stop` ends exactly its process group.
        setsid "$CHROMA_VENV/bin/chroma" run --path "$CHROMA_DIR/data" --host 127.0.0.1 --port "$port" \
            >"$CHROMA_DIR/chroma.log" 2>&1 </dev/null &
        echo $! >"$CHROMA_PID_FILE"
        echo "$port" >"$CHROMA_PORT_FILE"
        local attempt
        for attempt in $(seq 1 120); do
            if curl -fsS -m 2 "http://127.0.0.1:$port/api/v2/heartbeat" >/dev/null 2>&1; then
                break
            fi
            if ! kill -0 "$(cat "$CHROMA_PID_FILE")" 2>/dev/null; then
                log "Chroma exited; its log:"
                tail -n 20 "$CHROMA_DIR/chroma.log" >&2
                return 1
            fi
            [ "$attempt" = 120 ] && { log "Chroma did not answer within 60 s"; return 1; }
            sleep 0.5
        done
        log "Chroma $CHROMA_VERSION started on port $port (pid $(cat "$CHROMA_PID_FILE"))"
    fi
    echo "export LANDFALL_TEST_CHROMA_URL=http://127.0.0.1:$(cat "$CHROMA_PORT_FILE")"
}

stop_chroma() {
    if [ -f "$CHROMA_PID_FILE" ]; then
        local pid
        pid=$(cat "$CHROMA_PID_FILE")
        if kill -0 "$pid" 2>/dev/null; then
            kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
            log "Chroma (pid $pid) stopped"
        fi
        rm -f "$CHROMA_PID_FILE" "$CHROMA_PORT_FILE"
    fi
}

case "${1:-start}" in
start)
    # A child process, so `set -e` still stops the install at its first failure.
    if ! "$0" pgvector; then
        if [ "${LANDFALL_REQUIRE_VECTOR_BACKENDS:-}" = 1 ]; then
            exit 1
        fi
        log "pgvector unavailable: its tests will be skipped"
    fi
    start_chroma
    ;;
stop) stop_chroma ;;
pgvector) ensure_pgvector ;;
*)
    echo "usage: $0 [start|stop|pgvector]" >&2
    exit 2
    ;;
esac
