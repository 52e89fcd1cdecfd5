#!/usr/bin/env bash
# Every throwaway service the integration tests and local development use: PostgreSQL and MariaDB servers and
# a BigQuery emulator (here), FerretDB (deployments/ferretdb/ferretdb.sh) and Cassandra
# (deployments/cassandra/cassandra.sh), which this script runs with the same subcommand. `install` also installs
# Debian's `chromium` (not a server: the headless browser of tests/integration/test_webserver_ui.py).
#
#   bash deployments/local/services.sh install start   # install what is missing, then start all five
#   eval "$(bash deployments/local/services.sh env)"   # export DERIVE_TEST_POSTGRES_URL, _MYSQL_URL,
#                                                      # _BIGQUERY_*, _MONGODB_URL, _CASSANDRA_*
#   bash deployments/local/services.sh status | stop
#
# The PostgreSQL and MariaDB servers listen on 127.0.0.1 only, on non-standard ports, with their own data
# directories under ${DERIVE_SERVICES_DIR:-/tmp/derive-services}; they never touch the system clusters that the
# Debian packages create. Durability is switched off (fsync=off etc.): this is test data. Every subcommand is
# idempotent. The helpers the three service scripts share are in lib.sh, next to this script.
#
# The BigQuery emulator (`bqemulator`, in-memory) comes from the project venv (.venv, `make venv`); it needs
# DuckDB's spatial extension, installed from the `duckdb-extension-spatial` wheel because DuckDB cannot
# download extensions here.
#
# The login derive/derive is a fixed, throwaway test credential (superuser on PostgreSQL, ALL PRIVILEGES WITH
# GRANT OPTION on MariaDB); never reuse this script for anything that holds real data.
set -euo pipefail

LOG_TAG=services
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh" # SERVICES_DIR, REPO_ROOT, VENV_PYTHON, helpers

PG_PORT="${DERIVE_PG_PORT:-55432}"
MYSQL_PORT="${DERIVE_MYSQL_PORT:-53306}"
BQ_REST_PORT="${DERIVE_BQ_REST_PORT:-9050}"
BQ_GRPC_PORT="${DERIVE_BQ_GRPC_PORT:-9060}"
BQ_PROJECT="derive-test"
START_TIMEOUT=60 # seconds to wait for a server to accept connections

PG_HOME="$SERVICES_DIR/pg"
PG_DATA="$PG_HOME/data"
PG_RUN="$PG_HOME/run" # unix socket dir: /var/run/postgresql may not exist on a fresh machine
PG_LOG="$PG_HOME/postgres.log"

MY_HOME="$SERVICES_DIR/mysql"
MY_DATA="$MY_HOME/data"
MY_SOCK="$MY_HOME/mysqld.sock"
MY_PID="$MY_HOME/mysqld.pid"
MY_LOG="$MY_HOME/mysqld.log"

BQ_HOME="$SERVICES_DIR/bigquery"
BQ_PID="$BQ_HOME/bqemulator.pid"
BQ_LOG="$BQ_HOME/bqemulator.log"
BQ_URL="http://127.0.0.1:$BQ_REST_PORT"

# ----------------------------------------------------------------------------------------------- binaries

pg_bindir() {
    # Newest installed major version, e.g. /usr/lib/postgresql/15/bin.
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

mariadbd_bin() {
    # /usr/sbin is not on a non-root user's PATH.
    command -v mariadbd 2>/dev/null || { [ -x /usr/sbin/mariadbd ] && echo /usr/sbin/mariadbd; }
}

have_binaries() {
    pg_bindir >/dev/null && mariadbd_bin >/dev/null &&
        command -v mariadb-install-db >/dev/null && command -v mariadb-admin >/dev/null &&
        command -v mariadb >/dev/null
}

# Run a command as the OS user that owns a server's files. initdb and mariadbd refuse to run as root, so when
# we are root we use the accounts that the Debian packages create; otherwise we simply run as ourselves.
as_pg() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_my() { if is_root; then runuser -u mysql -- "$@"; else "$@"; fi; }

# Debian's chromium package, as the UI test runs it (tests/integration/test_webserver_ui.py).
CHROMIUM_BIN=/usr/bin/chromium

# ----------------------------------------------------------------------------------------------- install

chromium_install() {
    if [ -x "$CHROMIUM_BIN" ]; then
        log "Chromium already installed ($CHROMIUM_BIN)"
        return
    fi
    apt_install chromium
    [ -x "$CHROMIUM_BIN" ] || die "apt-get installed chromium but $CHROMIUM_BIN is still missing"
    log "installed Chromium ($("$CHROMIUM_BIN" --version 2>/dev/null || echo "$CHROMIUM_BIN"))"
}

cmd_install() {
    bash "$REPO_ROOT/deployments/ferretdb/ferretdb.sh" install
    bash "$REPO_ROOT/deployments/cassandra/cassandra.sh" install
    chromium_install
    if have_binaries; then
        log "PostgreSQL ($(pg_bindir)) and MariaDB ($(mariadbd_bin)) already installed"
        return
    fi
    # If apt starts the packaged servers (fresh VM), they sit on the default ports 5432/3306, not ours.
    apt_install postgresql mariadb-server mariadb-client
    have_binaries || die "apt-get succeeded but PostgreSQL/MariaDB binaries are still missing"
    log "installed PostgreSQL ($(pg_bindir)) and MariaDB ($(mariadbd_bin))"
}

# ----------------------------------------------------------------------------------------------- PostgreSQL

pg_running() {
    local bin
    bin="$(pg_bindir)" || return 1
    [ -f "$PG_DATA/PG_VERSION" ] && as_pg "$bin/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_ready() { "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_init() {
    local bin="$1"
    if [ -f "$PG_DATA/PG_VERSION" ]; then
        local have want
        have="$(cat "$PG_DATA/PG_VERSION")"
        want="$(basename "$(dirname "$bin")")"
        [ "$have" = "$want" ] || die "$PG_DATA was made by PostgreSQL $have, binaries are $want: run 'stop', delete $SERVICES_DIR"
        return
    fi
    log "initializing PostgreSQL data dir $PG_DATA"
    mkdir -p "$PG_HOME"
    if is_root; then chown postgres: "$PG_HOME"; fi
    chmod 700 "$PG_HOME"
    as_pg test -w "$PG_HOME" || die "the postgres user cannot write $PG_HOME (is a parent directory private?)"
    as_pg mkdir -p "$PG_RUN"
    # Local (unix socket, in a dir only the server's user can reach) is trusted so this script can manage
    # roles without a password; TCP needs a password.
    as_pg "$bin/initdb" -D "$PG_DATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >"$PG_HOME/initdb.log" 2>&1 ||
        {
            cat "$PG_HOME/initdb.log" >&2
            die "initdb failed"
        }
    # Settings live in the data dir so that a manual `pg_ctl start -D ...` behaves the same way.
    as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# --- derive test server (deployments/local/services.sh) ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_RUN'
max_connections = 200
# Throwaway test data: trade durability for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'UTC'
EOF
}

pg_start() {
    local bin
    bin="$(pg_bindir)" || die "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin: run 'install'"
    pg_init "$bin"
    if pg_running; then
        log "PostgreSQL already running (port $PG_PORT)"
    else
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        # -w waits until the server accepts connections (or fails); -t bounds the wait.
        as_pg "$bin/pg_ctl" start -w -t "$START_TIMEOUT" -D "$PG_DATA" -l "$PG_LOG" >/dev/null ||
            {
                tail -n 30 "$PG_LOG" >&2 || true
                die "PostgreSQL failed to start (log: $PG_LOG)"
            }
    fi
    wait_until "$START_TIMEOUT" pg_ready || die "PostgreSQL does not accept connections on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    # Create or refresh the test login on every start, so a half-finished earlier run heals itself.
    as_pg "$bin/psql" -q -X -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$PG_PORT" -U postgres -d postgres >/dev/null <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'derive') THEN
        CREATE ROLE derive LOGIN;
    END IF;
END
$$;
ALTER ROLE derive WITH LOGIN SUPERUSER CREATEDB CREATEROLE PASSWORD 'derive';
SQL
    log "PostgreSQL ready on 127.0.0.1:$PG_PORT"
}

pg_stop() {
    local bin
    if ! bin="$(pg_bindir)" || ! pg_running; then
        log "PostgreSQL not running"
        return
    fi
    log "stopping PostgreSQL"
    as_pg "$bin/pg_ctl" stop -w -m fast -D "$PG_DATA" >/dev/null
}

# ----------------------------------------------------------------------------------------------- MariaDB

my_pid() { live_pid "$MY_PID" pid_comm_is mariadbd; } # PID of our mariadbd, if it is alive

# Admin access goes through the unix socket with unix_socket authentication: OS root is MariaDB root; as a
# non-root user, mariadb-install-db --user=<me> created a <me>@localhost superuser.
my_admin_user() { if is_root; then echo root; else id -un; fi; }

my_ping() { mariadb-admin --no-defaults --socket="$MY_SOCK" -u "$(my_admin_user)" ping >/dev/null 2>&1; }

my_init() {
    if [ -d "$MY_DATA/mysql" ]; then
        return
    fi
    log "initializing MariaDB data dir $MY_DATA"
    rm -rf "$MY_DATA" # a failed earlier init may have left a partial dir
    mkdir -p "$MY_HOME"
    if is_root; then chown mysql: "$MY_HOME"; fi
    chmod 750 "$MY_HOME"
    as_my test -w "$MY_HOME" || die "the mysql user cannot write $MY_HOME (is a parent directory private?)"
    local user
    user="$(if is_root; then echo mysql; else id -un; fi)"
    # Default root authentication is unix_socket (OS root = MariaDB root, socket only); 10.4+ creates no
    # anonymous accounts, so nothing shadows derive@'%'.
    if ! mariadb-install-db --no-defaults --datadir="$MY_DATA" --user="$user" \
        --skip-test-db --skip-name-resolve >"$MY_HOME/install-db.log" 2>&1; then
        cat "$MY_HOME/install-db.log" >&2
        rm -rf "$MY_DATA"
        die "mariadb-install-db failed"
    fi
}

my_start() {
    local bin
    bin="$(mariadbd_bin)" || die "mariadbd not found: run 'install'"
    my_init
    if my_pid >/dev/null || my_ping; then
        log "MariaDB already running (port $MYSQL_PORT)"
    else
        log "starting MariaDB on 127.0.0.1:$MYSQL_PORT"
        local user_opt=()
        if is_root; then user_opt=(--user=mysql); fi
        # --no-defaults: ignore /etc/mysql/*, which points at the system datadir, socket and port.
        detach "$MY_HOME/mysqld.stdout" "$bin" --no-defaults "${user_opt[@]}" \
            --datadir="$MY_DATA" --socket="$MY_SOCK" --pid-file="$MY_PID" --log-error="$MY_LOG" \
            --port="$MYSQL_PORT" --bind-address=127.0.0.1 --skip-networking=0 --skip-name-resolve \
            --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
            --default-time-zone=+00:00 --max-connections=200 \
            --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --innodb-flush-method=nosync \
            --sync-binlog=0 --skip-log-bin
    fi
    wait_until "$START_TIMEOUT" my_ping || {
        tail -n 30 "$MY_LOG" >&2 || true
        die "MariaDB does not accept connections (log: $MY_LOG)"
    }
    # Create or refresh the test login on every start.
    mariadb --no-defaults --socket="$MY_SOCK" -u "$(my_admin_user)" <<'SQL'
CREATE USER IF NOT EXISTS 'derive'@'%' IDENTIFIED BY 'derive';
ALTER USER 'derive'@'%' IDENTIFIED BY 'derive';
GRANT ALL PRIVILEGES ON *.* TO 'derive'@'%' WITH GRANT OPTION;
SQL
    # Prove the path the tests use: TCP on 127.0.0.1 with the test login.
    MYSQL_PWD=derive mariadb-admin --no-defaults --host=127.0.0.1 --port="$MYSQL_PORT" -u derive ping \
        >/dev/null || die "MariaDB runs but derive@127.0.0.1:$MYSQL_PORT cannot log in (log: $MY_LOG)"
    log "MariaDB ready on 127.0.0.1:$MYSQL_PORT"
}

my_stop() {
    local pid
    if ! pid="$(my_pid)"; then
        log "MariaDB not running"
        return
    fi
    # mariadbd removes its pid file itself.
    stop_pid MariaDB "$pid" "$START_TIMEOUT" || die "MariaDB (pid $pid) did not stop within ${START_TIMEOUT}s"
}

# ----------------------------------------------------------------------------------------------- BigQuery

# PID of the emulator this script started, if it is alive.
bq_pid() { live_pid "$BQ_PID" pid_cmdline_has "bqemulator start"; }

# The REST API answers (whoever started the emulator).
bq_ready() { curl -sf -o /dev/null --max-time 2 "$BQ_URL/bigquery/v2/projects/$BQ_PROJECT/datasets"; }

bq_start() {
    [ -x "$VENV_PYTHON" ] || die "$VENV_PYTHON not found: run 'make venv' (the BigQuery emulator is in the venv)"
    if bq_pid >/dev/null || bq_ready; then
        log "BigQuery emulator already running ($BQ_URL)"
        return
    fi
    mkdir -p "$BQ_HOME"
    # DuckDB cannot download extensions here: install spatial from the wheel's file (a no-op when present).
    "$VENV_PYTHON" - <<'PY' || die "could not install DuckDB's spatial extension (duckdb-extension-spatial)"
from pathlib import Path

import duckdb
import duckdb_extension_spatial

extensions = Path(duckdb_extension_spatial.__file__).parent / "extensions"
path = extensions / f"v{duckdb.__version__}" / "spatial.duckdb_extension"
duckdb.connect().execute(f"INSTALL '{path}'")
PY
    log "starting BigQuery emulator on 127.0.0.1:$BQ_REST_PORT (gRPC $BQ_GRPC_PORT, project $BQ_PROJECT)"
    detach "$BQ_LOG" "$VENV_PYTHON" -m bqemulator start --rest-host 127.0.0.1 --rest-port "$BQ_REST_PORT" \
        --grpc-host 127.0.0.1 --grpc-port "$BQ_GRPC_PORT" --project "$BQ_PROJECT" --ephemeral
    echo $! >"$BQ_PID"
    wait_until "$START_TIMEOUT" bq_ready bq_pid || {
        tail -n 30 "$BQ_LOG" >&2 || true
        die "the BigQuery emulator does not answer on $BQ_URL (log: $BQ_LOG)"
    }
    log "BigQuery emulator ready on $BQ_URL"
}

bq_stop() {
    local pid
    if ! pid="$(bq_pid)"; then
        if bq_ready; then
            log "a BigQuery emulator answers on $BQ_URL but this script did not start it (no $BQ_PID): left running"
        else
            log "BigQuery emulator not running"
        fi
        return
    fi
    stop_pid "BigQuery emulator" "$pid" "$START_TIMEOUT" "$BQ_PID" || die "BigQuery emulator (pid $pid) did not stop within ${START_TIMEOUT}s"
}

# ----------------------------------------------------------------------------------------------- commands

cmd_start() {
    mkdir -p "$SERVICES_DIR"
    chmod 755 "$SERVICES_DIR" # the postgres and mysql users must be able to traverse it
    pg_start
    my_start
    bq_start
    bash "$REPO_ROOT/deployments/ferretdb/ferretdb.sh" start
    bash "$REPO_ROOT/deployments/cassandra/cassandra.sh" start
}

cmd_stop() {
    pg_stop
    my_stop
    bq_stop
    bash "$REPO_ROOT/deployments/ferretdb/ferretdb.sh" stop
    bash "$REPO_ROOT/deployments/cassandra/cassandra.sh" stop
}

cmd_status() {
    local rc=0
    if pg_bindir >/dev/null && pg_running && pg_ready; then
        echo "postgresql: running on 127.0.0.1:$PG_PORT (data: $PG_DATA)"
    else
        echo "postgresql: stopped"
        rc=3
    fi
    if mariadbd_bin >/dev/null && my_ping; then
        echo "mariadb:    running on 127.0.0.1:$MYSQL_PORT (data: $MY_DATA)"
    else
        echo "mariadb:    stopped"
        rc=3
    fi
    if bq_ready; then
        echo "bigquery:   emulator running on $BQ_URL (project $BQ_PROJECT, in-memory)"
    else
        echo "bigquery:   stopped"
        rc=3
    fi
    bash "$REPO_ROOT/deployments/ferretdb/ferretdb.sh" status || rc=3
    bash "$REPO_ROOT/deployments/cassandra/cassandra.sh" status || rc=3
    return "$rc"
}

cmd_env() {
    echo "export DERIVE_TEST_POSTGRES_URL=postgresql://derive:derive@127.0.0.1:$PG_PORT/postgres"
    echo "export DERIVE_TEST_MYSQL_URL=mysql://derive:derive@127.0.0.1:$MYSQL_PORT/mysql"
    echo "export DERIVE_TEST_BIGQUERY_ENDPOINT=$BQ_URL"
    echo "export DERIVE_TEST_BIGQUERY_PROJECT=$BQ_PROJECT"
    bash "$REPO_ROOT/deployments/ferretdb/ferretdb.sh" env
    bash "$REPO_ROOT/deployments/cassandra/cassandra.sh" env
}

usage() {
    cat <<EOF
usage: $0 COMMAND [COMMAND...]   (run in order, e.g. "install start")
  install   apt-get install postgresql + mariadb-server if their binaries are missing (emulator: in .venv),
            chromium (the UI test's headless browser) if $CHROMIUM_BIN is missing,
            build FerretDB and fetch Cassandra (their scripts' install)
  start     init (first time) and start PostgreSQL on 127.0.0.1:$PG_PORT, MariaDB on :$MYSQL_PORT, the BigQuery
            emulator on :$BQ_REST_PORT, FerretDB and Cassandra; waits until each is ready
  stop      stop all five (data is kept under $SERVICES_DIR; the emulator's is in memory)
  status    print whether each service runs; exit 3 if any is stopped
  env       print export lines for DERIVE_TEST_POSTGRES_URL, DERIVE_TEST_MYSQL_URL, DERIVE_TEST_BIGQUERY_*,
            DERIVE_TEST_MONGODB_URL, DERIVE_TEST_CASSANDRA_*
EOF
}

[ "$#" -gt 0 ] || {
    usage >&2
    exit 2
}
for cmd in "$@"; do
    case "$cmd" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
done
