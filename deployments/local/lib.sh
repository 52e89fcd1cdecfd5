# shellcheck shell=bash
# Helpers shared by the test-service scripts (deployments/local/services.sh, deployments/ferretdb/ferretdb.sh,
# deployments/cassandra/cassandra.sh). Source it by a path relative to the script, after setting LOG_TAG:
#
#   LOG_TAG=ferretdb
#   source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../local/lib.sh"
#
# It defines functions and REPO_ROOT, VENV_PYTHON and SERVICES_DIR (${DERIVE_SERVICES_DIR:-/tmp/derive-services}),
# and runs nothing else. The callers run with `set -euo pipefail`.

# shellcheck disable=SC2034 # these three are for the scripts that source this file
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV_PYTHON="$REPO_ROOT/.venv/bin/python"
SERVICES_DIR="${DERIVE_SERVICES_DIR:-/tmp/derive-services}"

# ----------------------------------------------------------------------------------------------- messages

log() { echo "[${LOG_TAG:?set LOG_TAG before sourcing lib.sh}] $*"; }
die() {
    echo "[${LOG_TAG:?}] ERROR: $*" >&2
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# ----------------------------------------------------------------------------------------------- install

# apt_install PACKAGE...: apt-get update + install (sudo when not root), quiet, with a log file whose tail is
# shown when it fails.
apt_install() {
    local sudo=""
    if ! is_root; then
        command -v sudo >/dev/null || die "$* missing and not root (no sudo) to apt-get install them"
        sudo="sudo"
    fi
    local apt_log
    apt_log="$(mktemp "/tmp/derive-$LOG_TAG-apt.XXXXXX.log")"
    log "installing $* with apt-get (log: $apt_log)"
    # policy-rc.d may keep apt from starting a packaged service; if it does start one (fresh VM), it sits on
    # the default port and does not conflict with ours.
    if ! { $sudo apt-get update -qq &&
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
        >"$apt_log" 2>&1; then
        tail -n 40 "$apt_log" >&2
        die "apt-get failed (full log: $apt_log)"
    fi
}

# ----------------------------------------------------------------------------------------------- processes

# live_pid PIDFILE CHECK [ARG...]: print the pid in PIDFILE if that process is alive and `CHECK ARG... PID`
# accepts it. A stale pid file (crash, reboot) may name a reused pid: CHECK makes sure it is really ours.
# pid_alive PID: the process exists and is not a zombie (an exited process its parent has not reaped yet; where
# PID 1 does not reap orphans, a stopped server stays one, and `kill -0` alone would still find it).
pid_alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != "Z" ]
}

live_pid() {
    local file="$1" pid
    shift
    [ -f "$file" ] || return 1
    pid="$(cat "$file" 2>/dev/null)" || return 1
    [ -n "$pid" ] && pid_alive "$pid" && "$@" "$pid" && echo "$pid"
}

# CHECKs for live_pid: the process's name, executable, or command line (a grep pattern).
pid_comm_is() { [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]; }
pid_exe_is() { [ "$(readlink "/proc/$2/exe" 2>/dev/null)" = "$1" ]; }
pid_cmdline_has() { tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null | grep -q -- "$1"; }

# detach LOGFILE COMMAND [ARG...]: start COMMAND in the background, appending its output to LOGFILE; $! is its
# pid. setsid + nohup: the server must outlive the script and the make recipe that ran it.
detach() {
    local logfile="$1"
    shift
    setsid nohup "$@" </dev/null >>"$logfile" 2>&1 &
}

# port_open PORT [HOST]: something accepts TCP connections on HOST (default 127.0.0.1):PORT.
port_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# wait_until SECONDS PROBE [ALIVE]: run PROBE (silent) every 0.5 s until it succeeds, for at most SECONDS;
# give up early when ALIVE is given and fails (the server died: no point waiting). Returns PROBE's last result.
wait_until() {
    local timeout="$1" probe="$2" alive="${3:-}" i
    for ((i = 0; i < timeout * 2; i++)); do
        "$probe" && return 0
        if [ -n "$alive" ] && ! "$alive" >/dev/null; then
            break
        fi
        sleep 0.5
    done
    "$probe"
}

# stop_pid NAME PID SECONDS [PIDFILE]: SIGTERM, then wait up to SECONDS for the process to exit and remove
# PIDFILE. Returns 1 if it is still alive (the caller decides: die, or SIGKILL).
stop_pid() {
    local name="$1" pid="$2" timeout="$3" pidfile="${4:-}" i
    log "stopping $name (pid $pid)"
    kill -TERM "$pid"
    kill -CONT "$pid" 2>/dev/null || true # a stopped process acts on SIGTERM only once continued (as systemd does)
    for ((i = 0; i < timeout * 2; i++)); do
        if ! pid_alive "$pid"; then
            if [ -n "$pidfile" ]; then rm -f "$pidfile"; fi
            return 0
        fi
        sleep 0.5
    done
    return 1
}
