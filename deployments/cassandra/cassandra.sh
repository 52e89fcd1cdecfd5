#!/usr/bin/env bash
# A throwaway single-node Apache Cassandra 5.0 server (CQL, the protocol ScyllaDB speaks too) for the
# integration tests and local development.
#
#   bash deployments/cassandra/cassandra.sh install start   # Java 17 + Maven if needed, fetch jars, start
#   eval "$(bash deployments/cassandra/cassandra.sh env)"   # export DERIVE_TEST_CASSANDRA_HOSTS / _PORT
#   bash deployments/cassandra/cassandra.sh status | stop
#   bash deployments/cassandra/cassandra.sh nodetool status # nodetool from the same jars (JMX on 127.0.0.1)
#
# There is no Cassandra package in Debian or PyPI, so the server comes from Maven Central: pom.xml (next to
# this script) names org.apache.cassandra:cassandra-all, which contains CassandraDaemon, and Maven copies it
# and its runtime dependencies into a persistent cache (~/.cache/derive/cassandra-<version>/lib, ~70 MB);
# a second install is a no-op. The jar has no conf/, so cassandra.yaml and logback.xml live next to this
# script, and the JVM flags of Cassandra's conf/jvm-server.options + conf/jvm17-server.options are below.
#
# The server listens on 127.0.0.1 only, on non-standard ports (CQL 59042, storage 57000, JMX 57199), with
# its data, log and pid under ${DERIVE_SERVICES_DIR:-/tmp/derive-services}/cassandra. No authentication
# (AllowAllAuthenticator); never reuse this for anything that holds real data. Every subcommand is idempotent.
set -euo pipefail

LOG_TAG=cassandra
# shellcheck source-path=SCRIPTDIR source=../local/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../local/lib.sh" # SERVICES_DIR, REPO_ROOT, VENV_PYTHON, helpers

CASSANDRA_VERSION="${DERIVE_CASSANDRA_VERSION:-5.0.9}"
CQL_PORT="${DERIVE_CASSANDRA_PORT:-59042}"
STORAGE_PORT="${DERIVE_CASSANDRA_STORAGE_PORT:-57000}"
JMX_PORT="${DERIVE_CASSANDRA_JMX_PORT:-57199}"
HEAP="${DERIVE_CASSANDRA_HEAP:-1g}" # -Xmx; -Xms is fixed at 256m so an idle node stays small
START_TIMEOUT="${DERIVE_CASSANDRA_START_TIMEOUT:-180}" # seconds to wait for CQL
HOST=127.0.0.1

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIG="${DERIVE_CASSANDRA_CONFIG:-$SCRIPT_DIR/cassandra.yaml}" # e.g. a copy with PasswordAuthenticator

CACHE_DIR="${DERIVE_CASSANDRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/derive/cassandra-$CASSANDRA_VERSION}"
LIB_DIR="$CACHE_DIR/lib"
LIB_STAMP="$CACHE_DIR/lib.complete" # written only after Maven copied everything

CA_HOME="$SERVICES_DIR/cassandra"
CA_DATA="$CA_HOME/data" # -Dcassandra.storagedir: data/, commitlog/, saved_caches/, hints/ go under it
CA_LOG="$CA_HOME/cassandra.log"
CA_PID="$CA_HOME/cassandra.pid"
DAEMON_CLASS=org.apache.cassandra.service.CassandraDaemon

# ----------------------------------------------------------------------------------------------- install

java_major() {
    # "openjdk version "17.0.15" 2025-04-15" -> 17 (and "1.8.0_x" -> 1).
    "$1" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1
}

# Cassandra 5.0 runs on Java 11 or 17; the flags below are the Java 17 ones. Print a Java 17 binary.
find_java() {
    local candidate
    for candidate in "${DERIVE_CASSANDRA_JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" \
        "$(command -v java 2>/dev/null || true)" /usr/lib/jvm/java-17-openjdk-*/bin/java; do
        [ -n "$candidate" ] && [ -x "$candidate" ] || continue
        if [ "$(java_major "$candidate")" = 17 ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

have_jars() { [ -f "$LIB_STAMP" ] && [ -f "$LIB_DIR/cassandra-all-$CASSANDRA_VERSION.jar" ]; }

fetch_jars() {
    if have_jars; then
        log "cassandra-all $CASSANDRA_VERSION jars cached in $LIB_DIR"
        return
    fi
    local tmp="$CACHE_DIR/lib.tmp.$$" started=$SECONDS mvn_log
    mkdir -p "$CACHE_DIR"
    rm -rf "$tmp"
    mvn_log="$CACHE_DIR/mvn.log"
    log "fetching cassandra-all $CASSANDRA_VERSION and dependencies from Maven Central into $LIB_DIR"
    if ! mvn -q -B -f "$SCRIPT_DIR/pom.xml" dependency:copy-dependencies \
        -Dcassandra.version="$CASSANDRA_VERSION" -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
        tail -n 40 "$mvn_log" >&2
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies failed (log: $mvn_log)"
    fi
    [ -f "$tmp/cassandra-all-$CASSANDRA_VERSION.jar" ] || die "Maven did not produce cassandra-all-$CASSANDRA_VERSION.jar"
    rm -rf "$LIB_DIR"
    mv "$tmp" "$LIB_DIR"
    echo "$CASSANDRA_VERSION" >"$LIB_STAMP"
    log "fetched $(ls "$LIB_DIR" | wc -l) jars ($(du -sh "$LIB_DIR" | cut -f1)) in $((SECONDS - started))s"
}

cmd_install() {
    local pkgs=()
    find_java >/dev/null || pkgs+=(openjdk-17-jre-headless)
    if ! have_jars && ! command -v mvn >/dev/null; then pkgs+=(maven); fi
    if [ "${#pkgs[@]}" -gt 0 ]; then apt_install "${pkgs[@]}"; fi
    local java
    java="$(find_java)" || die "no Java 17 found (java on PATH is: $(java -version 2>&1 | head -n 1 || echo none))"
    log "Java 17: $java"
    fetch_jars
}

# ----------------------------------------------------------------------------------------------- server

# PID of the CassandraDaemon this script started, if it is alive.
ca_pid() { live_pid "$CA_PID" pid_cmdline_has "-Dcassandra.storagedir=$CA_DATA .*$DAEMON_CLASS"; }

# A real CQL handshake + query through the Python driver the tests use; prints the server's release_version.
cql_ready() {
    port_open "$CQL_PORT" "$HOST" || return 1
    [ -x "$VENV_PYTHON" ] || die "$VENV_PYTHON not found: run 'make venv' (the CQL probe uses cassandra-driver)"
    # The login only matters with a DERIVE_CASSANDRA_CONFIG that sets PasswordAuthenticator (Cassandra's default
    # superuser is cassandra/cassandra); AllowAllAuthenticator ignores it.
    "$VENV_PYTHON" - "$HOST" "$CQL_PORT" "${DERIVE_CASSANDRA_USER:-cassandra}" "${DERIVE_CASSANDRA_PASSWORD:-cassandra}" \
        2>/dev/null <<'PY'
import logging
import sys

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster

logging.disable(logging.CRITICAL)  # protocol-downgrade chatter on the first connection
cluster = Cluster(
    [sys.argv[1]],
    port=int(sys.argv[2]),
    auth_provider=PlainTextAuthProvider(sys.argv[3], sys.argv[4]),
    connect_timeout=5,
    control_connection_timeout=5,
)
try:
    session = cluster.connect()
    print(session.execute("SELECT release_version FROM system.local", timeout=5).one()[0])
finally:
    cluster.shutdown()
PY
}

# The JPMS part of conf/jvm17-server.options: Cassandra reaches into JDK internals (direct buffers, JMX, attach).
# nodetool needs them too.
JPMS_FLAGS=(
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
)

jvm_flags() {
    local java="$1"
    # From conf/jvm-server.options (Cassandra 5.0), minus -XX:+AlwaysPreTouch (would commit the whole heap up
    # front), -XX:-UseBiasedLocking (obsolete on 17) and -XX:+UseNUMA.
    local flags=(
        -ea -da:net.openhft...
        -XX:+UseThreadPriorities
        -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$CA_HOME"
        -XX:+ExitOnOutOfMemoryError # what cassandra-env.sh does; Cassandra warns at startup without it
        -Xss256k
        -XX:+UseTLAB -XX:+ResizeTLAB
        -XX:+PerfDisableSharedMem
        -Djava.net.preferIPv4Stack=true
        # Heap: small (machine has 2 cores). The node is idle most of the time.
        -Xms256m -Xmx"$HEAP"
        # From conf/jvm17-server.options: G1 settings, JPMS exports/opens, Netty.
        -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
        -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
        "${JPMS_FLAGS[@]}"
        -Dio.netty.tryReflectionSetAccessible=true
        -Dio.netty.allocator.useCacheForAllThreads=true
        -Dio.netty.allocator.maxOrder=11
        # What bin/cassandra and conf/cassandra-env.sh add.
        -Dcassandra.jmx.local.port="$JMX_PORT" # JMX on localhost only, for nodetool
        -Dcassandra.config="file://$CONFIG"
        -Dlogback.configurationFile="$SCRIPT_DIR/logback.xml"
        -Dcassandra.storagedir="$CA_DATA"
        -Dcassandra.logdir="$CA_HOME"
        -Dcassandra.triggers_dir="$CA_HOME/triggers"
        -Dcassandra-foreground=yes # keep logging to stdout (the log file); we background it ourselves
        -Dcassandra.native_transport_port="$CQL_PORT"
        -Dcassandra.storage_port="$STORAGE_PORT"
        # Single node: don't wait for gossip to settle, nor before creating the default superuser.
        -Dcassandra.skip_wait_for_gossip_to_settle=0
        -Dcassandra.superuser_setup_delay_ms=0
        -Djava.io.tmpdir="$CA_HOME/tmp" # JNA and Netty unpack native libraries here
    )
    local jamm
    jamm="$(ls "$LIB_DIR"/jamm-*.jar 2>/dev/null | head -n 1 || true)"
    [ -n "$jamm" ] && flags+=(-javaagent:"$jamm") # object sizes for memtable accounting (cassandra-env.sh)
    printf '%s\n' "${flags[@]}"
}

cmd_start() {
    local java pid version
    if pid="$(ca_pid)"; then
        log "Cassandra already running (pid $pid)"
    elif version="$(cql_ready)"; then
        log "a CQL server ($version) already answers on $HOST:$CQL_PORT but this script did not start it: using it"
        return
    else
        java="$(find_java)" || die "no Java 17 found: run 'install'"
        have_jars || die "cassandra-all $CASSANDRA_VERSION jars not in $LIB_DIR: run 'install'"
        port_open "$CQL_PORT" "$HOST" && die "something else listens on $HOST:$CQL_PORT (not CQL?)"
        mkdir -p "$CA_DATA" "$CA_HOME/tmp" "$CA_HOME/triggers"
        local flags=()
        mapfile -t flags < <(jvm_flags "$java")
        log "starting Cassandra $CASSANDRA_VERSION on $HOST:$CQL_PORT (log: $CA_LOG)"
        echo "=== $(date -Is) start: $java" >>"$CA_LOG"
        # setsid + nohup: the server must outlive this script and the make recipe that ran it. Both exec, so
        # $! is the JVM's pid.
        (cd "$CA_HOME" && exec setsid nohup "$java" "${flags[@]}" -cp "$LIB_DIR/*" "$DAEMON_CLASS" \
            </dev/null >>"$CA_LOG" 2>&1) &
        echo $! >"$CA_PID"
    fi
    local started=$SECONDS next=10
    while ! version="$(cql_ready)"; do
        if ! ca_pid >/dev/null; then
            tail -n 40 "$CA_LOG" >&2 || true
            die "Cassandra exited during startup (log: $CA_LOG)"
        fi
        if ((SECONDS - started >= START_TIMEOUT)); then
            tail -n 40 "$CA_LOG" >&2 || true
            die "Cassandra does not answer CQL on $HOST:$CQL_PORT after ${START_TIMEOUT}s (log: $CA_LOG)"
        fi
        if ((SECONDS - started >= next)); then
            log "waiting for CQL on $HOST:$CQL_PORT ... $((SECONDS - started))s"
            next=$((next + 10))
        fi
        sleep 1
    done
    log "Cassandra $version ready on $HOST:$CQL_PORT after $((SECONDS - started))s (pid $(ca_pid || echo '?'))"
}

cmd_stop() {
    local pid
    if ! pid="$(ca_pid)"; then
        log "Cassandra not running"
        return
    fi
    # SIGTERM: the shutdown hook drains (flushes memtables, closes the commit log).
    stop_pid Cassandra "$pid" 60 "$CA_PID" && return 0
    log "Cassandra (pid $pid) did not stop within 60s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$CA_PID"
}

cmd_status() {
    local pid version
    if version="$(cql_ready)"; then
        pid="$(ca_pid || echo 'not started by this script')"
        echo "cassandra:  running $version on $HOST:$CQL_PORT (pid $pid, data: $CA_DATA)"
    elif pid="$(ca_pid)"; then
        echo "cassandra:  starting (pid $pid), CQL not ready yet on $HOST:$CQL_PORT (log: $CA_LOG)"
        return 3
    else
        echo "cassandra:  stopped"
        return 3
    fi
}

cmd_env() {
    echo "export DERIVE_TEST_CASSANDRA_HOSTS=$HOST"
    echo "export DERIVE_TEST_CASSANDRA_PORT=$CQL_PORT"
}

cmd_nodetool() {
    local java
    java="$(find_java)" || die "no Java 17 found: run 'install'"
    have_jars || die "jars not in $LIB_DIR: run 'install'"
    exec "$java" -Xmx128m "${JPMS_FLAGS[@]}" -Dlogback.configurationFile="$SCRIPT_DIR/logback.xml" -cp "$LIB_DIR/*" \
        org.apache.cassandra.tools.NodeTool -h "$HOST" -p "$JMX_PORT" "$@"
}

# ----------------------------------------------------------------------------------------------- main

usage() {
    echo "usage: $0 {install|start|stop|status|env}... | $0 nodetool <args>" >&2
    exit 2
}

[ $# -gt 0 ] || usage
if [ "$1" = nodetool ]; then
    shift
    cmd_nodetool "$@"
fi
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
