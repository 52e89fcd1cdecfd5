#!/usr/bin/env bash
# A throwaway MongoDB-wire-protocol server for the integration tests: FerretDB v1 on its SQLite backend (no
# other server needed), built from the Go module proxy with the machine's Go.
#
#   bash deployments/ferretdb/ferretdb.sh install start   # build once (cached), then start in the background
#   eval "$(bash deployments/ferretdb/ferretdb.sh env)"   # export DERIVE_TEST_MONGODB_URL
#   bash deployments/ferretdb/ferretdb.sh status | stop
#
# The binary is cached in ${DERIVE_CACHE_DIR:-~/.cache/derive}/ferretdb-<version>/ferretdb; the server listens
# on 127.0.0.1 only (port ${DERIVE_FERRETDB_PORT:-57017}), without authentication or telemetry, and keeps its
# SQLite files, state, log and pid under ${DERIVE_SERVICES_DIR:-/tmp/derive-services}/ferretdb. Test data
# only. Every subcommand is idempotent.
set -euo pipefail

LOG_TAG=ferretdb
# shellcheck source-path=SCRIPTDIR source=../local/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../local/lib.sh" # SERVICES_DIR, REPO_ROOT, VENV_PYTHON, helpers

FERRETDB_MODULE="github.com/FerretDB/FerretDB"
FERRETDB_VERSION="${DERIVE_FERRETDB_VERSION:-v1.24.2}"
GO_MIN="1.24" # the `go` line of FerretDB v1.24's go.mod

PORT="${DERIVE_FERRETDB_PORT:-57017}"
START_TIMEOUT=60 # seconds to wait for the server to answer a ping

CACHE_DIR="${DERIVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/derive}/ferretdb-$FERRETDB_VERSION"
BIN="$CACHE_DIR/ferretdb"

HOME_DIR="$SERVICES_DIR/ferretdb"
DATA_DIR="$HOME_DIR/data" # one SQLite file per database
PID_FILE="$HOME_DIR/ferretdb.pid"
LOG_FILE="$HOME_DIR/ferretdb.log"
URL="mongodb://127.0.0.1:$PORT/"

# ----------------------------------------------------------------------------------------------- install

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

go_version() { go env GOVERSION 2>/dev/null | sed 's/^go//'; }

ensure_go() {
    # Go is on the project's machines (/usr/local/go). Debian's golang is only good enough from trixie (1.24)
    # on; bookworm ships 1.19, which cannot build FerretDB v1.24.
    if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
        export PATH="/usr/local/go/bin:$PATH"
    fi
    if ! command -v go >/dev/null; then
        local candidate
        apt-get update -qq >/dev/null 2>&1 || true
        candidate="$(apt-cache policy golang-go 2>/dev/null | awk '/Candidate:/ {print $2}' | sed 's/^[0-9]*://; s/[~+-].*//')"
        if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] && version_ge "$candidate" "$GO_MIN"; then
            log "Go not found: installing Debian's golang-go $candidate"
            apt_install golang-go
        else
            die "Go >= $GO_MIN is needed to build FerretDB $FERRETDB_VERSION, and Go is not installed; Debian's" \
                "golang-go is ${candidate:-unavailable} here (too old). Install Go >= $GO_MIN (e.g. from a newer" \
                "Debian release) and run 'install' again."
        fi
    fi
    local have
    have="$(go_version)"
    version_ge "$have" "$GO_MIN" ||
        die "Go $have is too old to build FerretDB $FERRETDB_VERSION (needs >= $GO_MIN, see its go.mod)"
}

binary_ok() { [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; }

cmd_install() {
    if binary_ok; then
        log "FerretDB $FERRETDB_VERSION already built: $BIN"
        return
    fi
    ensure_go
    mkdir -p "$CACHE_DIR"
    local start end tmp
    start="$(date +%s)"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/derive-ferretdb-build.XXXXXX")"
    # shellcheck disable=SC2064 # expand now: $tmp is local
    trap "rm -rf '$tmp'" EXIT
    log "building $FERRETDB_MODULE/cmd/ferretdb@$FERRETDB_VERSION with Go $(go_version) (first build: 1-3 minutes)"
    # Not `go install pkg@version`: that builds, but the binary panics at start-up because the module lacks
    # the generated build/version/version.txt. So: download the module, copy it (the module cache is
    # read-only), write version.txt, and build there.
    local dir
    dir="$(go mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')" ||
        die "go mod download $FERRETDB_MODULE@$FERRETDB_VERSION failed"
    [ -n "$dir" ] && [ -d "$dir" ] || die "go mod download $FERRETDB_MODULE@$FERRETDB_VERSION gave no directory"
    cp -r "$dir" "$tmp/src"
    chmod -R u+w "$tmp/src"
    echo "$FERRETDB_VERSION" >"$tmp/src/build/version/version.txt"
    echo "derive" >"$tmp/src/build/version/package.txt"
    mkdir -p "$tmp/bin"
    # SQLite (modernc.org/sqlite, pure Go) and PostgreSQL are in the default build: no build tags (the
    # ferretdb_debug tag would make a debug build). CGO off: no C compiler needed, static binary. GOFLAGS is
    # replaced so a developer's settings (e.g. -mod=vendor) cannot break the build; -buildvcs=false because the
    # copy is not a git checkout.
    (cd "$tmp/src" && env CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -o "$tmp/bin/ferretdb" \
        ./cmd/ferretdb) || die "go build of FerretDB $FERRETDB_VERSION failed"
    [ -x "$tmp/bin/ferretdb" ] || die "the build produced no binary"
    # Copy next to the target, then rename: a concurrent start never sees a half-written binary.
    cp "$tmp/bin/ferretdb" "$BIN.tmp.$$"
    mv -f "$BIN.tmp.$$" "$BIN"
    end="$(date +%s)"
    binary_ok || die "$BIN was built but does not run"
    log "built $BIN in $((end - start))s"
}

# ----------------------------------------------------------------------------------------------- server

server_pid() { live_pid "$PID_FILE" pid_exe_is "$BIN"; } # PID of the ferretdb this script started, if alive

ping_server() {
    # The path the tests use: pymongo over TCP. Without the venv, fall back to FerretDB's own `ping`.
    if [ -x "$VENV_PYTHON" ]; then
        "$VENV_PYTHON" - "$URL" <<'PY' >/dev/null 2>&1
import sys

import pymongo

client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
try:
    client.admin.command("ping")
finally:
    client.close()
PY
    else
        "$BIN" ping --listen-addr="127.0.0.1:$PORT" >/dev/null 2>&1
    fi
}

cmd_start() {
    binary_ok || die "$BIN not found: run 'install' first"
    if server_pid >/dev/null; then
        log "FerretDB already running ($URL)"
    elif ping_server; then
        log "something already answers on $URL (not started by this script): using it"
        return
    else
        mkdir -p "$DATA_DIR"
        log "starting FerretDB $FERRETDB_VERSION (SQLite, $DATA_DIR) on 127.0.0.1:$PORT"
        # --debug-addr=- : no metrics/pprof HTTP listener (its default port 8088 may be taken).
        # --state-dir    : FerretDB writes state.json there (default: the current directory).
        detach "$LOG_FILE" "$BIN" \
            --handler=sqlite --sqlite-url="file:$DATA_DIR/" \
            --listen-addr="127.0.0.1:$PORT" --state-dir="$HOME_DIR" --debug-addr=- \
            --telemetry=disable --log-level=error
        echo $! >"$PID_FILE"
    fi
    wait_until "$START_TIMEOUT" ping_server server_pid || {
        tail -n 30 "$LOG_FILE" >&2 || true
        die "FerretDB does not answer on $URL (log: $LOG_FILE)"
    }
    log "FerretDB ready on $URL"
}

cmd_stop() {
    local pid
    if ! pid="$(server_pid)"; then
        log "FerretDB not running"
        return
    fi
    stop_pid FerretDB "$pid" "$START_TIMEOUT" "$PID_FILE" || die "FerretDB (pid $pid) did not stop within ${START_TIMEOUT}s"
}

cmd_status() {
    local pid
    if pid="$(server_pid)" && ping_server; then
        echo "ferretdb:   running on 127.0.0.1:$PORT (pid $pid, data: $DATA_DIR)"
    elif ping_server; then
        echo "ferretdb:   something answers on 127.0.0.1:$PORT, not started by this script"
    else
        echo "ferretdb:   stopped"
        return 3
    fi
}

cmd_env() { echo "export DERIVE_TEST_MONGODB_URL=$URL"; }

usage() {
    echo "usage: $0 {install|start|stop|status|env}..." >&2
    exit 2
}

[ $# -gt 0 ] || usage
for cmd in "$@"; do
    case "$cmd" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) usage ;;
    esac
done
