"""The service scripts' shared shell helpers (`deployments/local/lib.sh`), run by bash on real processes.

No server is started: the processes are `sleep`s, and the scripts' `env` and usage paths need none.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from derive_assets.settings import PROJECT_ROOT

LIB = PROJECT_ROOT / "deployments" / "local" / "lib.sh"
SCRIPTS = [
    PROJECT_ROOT / "deployments" / "local" / "services.sh",
    PROJECT_ROOT / "deployments" / "ferretdb" / "ferretdb.sh",
    PROJECT_ROOT / "deployments" / "cassandra" / "cassandra.sh",
]


def _bash(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in bash with lib.sh sourced (LOG_TAG=test, `set -euo pipefail` as the scripts do)."""
    prelude = f"set -euo pipefail\nLOG_TAG=test\nsource '{LIB}'\n"
    return subprocess.run(
        ["bash", "-c", prelude + script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


_RESET_AND_EXEC = (
    "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
    "[signal.signal(n, signal.SIG_DFL) for n in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)]; "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def _orphan(*command: str) -> int:
    """Start `command` as the servers run: not a child of this process (an exited child of ours would linger as a
    zombie, which `kill -0` still finds). Returns its pid."""
    # Through a launcher that resets SIGTERM/SIGINT/SIGHUP to their defaults and unblocks every signal before it
    # execs the command: a disposition ignored (or a mask blocked) by whatever runs the tests is inherited across
    # exec, and a `sleep` that ignores SIGTERM would make every stop test fail for a reason that is not lib.sh's.
    quoted = " ".join(f"'{part}'" for part in (sys.executable, "-c", _RESET_AND_EXEC, *command))
    result = subprocess.run(
        ["bash", "-c", f"{quoted} </dev/null >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(result.stdout)
    name = Path(command[0]).name[:15]  # the kernel's comm is at most 15 characters
    _poll(lambda: _comm(pid) == name, f"process {pid} runs {name}")  # the launcher has exec'd the command
    return pid


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return None


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited already
        os.kill(pid, signal.SIGKILL)


def _gone(pid: int) -> bool:
    """The process has exited: no /proc entry, or a zombie nobody reaped yet (where PID 1 reaps no orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _poll(done: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A live `sleep` process and a pid file naming it; killed afterwards if the test did not stop it."""
    pid = _orphan("sleep", "300")
    pid_file = tmp_path / "sleep.pid"
    pid_file.write_text(f"{pid}\n")
    try:
        yield pid, pid_file
    finally:
        _kill(pid)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_env_prints_every_service_variable() -> None:
    """`services.sh env` (what `make test` evals) prints the same exports as before lib.sh, for all five services."""
    result = subprocess.run(
        ["bash", str(SCRIPTS[0]), "env"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    names = [line.split("=", 1)[0] for line in result.stdout.splitlines()]
    assert names == [
        "export DERIVE_TEST_POSTGRES_URL",
        "export DERIVE_TEST_MYSQL_URL",
        "export DERIVE_TEST_BIGQUERY_ENDPOINT",
        "export DERIVE_TEST_BIGQUERY_PROJECT",
        "export DERIVE_TEST_MONGODB_URL",
        "export DERIVE_TEST_CASSANDRA_HOSTS",
        "export DERIVE_TEST_CASSANDRA_PORT",
    ]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_unknown_command_prints_usage_and_exits_2(script: Path) -> None:
    result = subprocess.run(["bash", str(script), "bogus"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_log_and_die_carry_the_tag() -> None:
    result = _bash('log "hello"; die "broken"; echo unreachable')
    assert result.returncode == 1
    assert result.stdout == "[test] hello\n"
    assert result.stderr == "[test] ERROR: broken\n"


def test_live_pid_prints_a_live_process_that_passes_the_check(sleeper: tuple[int, Path]) -> None:
    pid, pid_file = sleeper
    for check in ("pid_comm_is sleep", "pid_cmdline_has 'sleep 300'"):
        result = _bash(f"live_pid '{pid_file}' {check}")
        assert (result.returncode, result.stdout) == (0, f"{pid}\n"), check


def test_live_pid_refuses_a_reused_pid(sleeper: tuple[int, Path]) -> None:
    """A stale pid file naming someone else's live process (here: a `sleep` that is not mariadbd)."""
    _, pid_file = sleeper
    for check in ("pid_comm_is mariadbd", "pid_cmdline_has 'bqemulator start'", "pid_exe_is /nonexistent"):
        result = _bash(f"live_pid '{pid_file}' {check}")
        assert (result.returncode, result.stdout) == (1, ""), check


def test_live_pid_refuses_a_dead_pid_or_a_missing_file(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "0"])
    proc.wait()
    dead = tmp_path / "dead.pid"
    dead.write_text(f"{proc.pid}\n")
    for pid_file in (dead, tmp_path / "missing.pid"):
        result = _bash(f"live_pid '{pid_file}' pid_comm_is sleep")
        assert (result.returncode, result.stdout) == (1, ""), pid_file


def test_wait_until_returns_once_the_probe_succeeds(tmp_path: Path) -> None:
    counter = tmp_path / "tries"
    result = _bash(
        f"probe() {{ echo x >>'{counter}'; [ \"$(wc -l <'{counter}')\" -ge 3 ]; }}\nwait_until 30 probe"
    )
    assert result.returncode == 0, result.stderr
    assert counter.read_text().count("x") == 3


def test_wait_until_gives_up_when_the_server_died(tmp_path: Path) -> None:
    """With ALIVE failing, the probe runs once in the loop and once more at the end, not for 30 s."""
    counter = tmp_path / "tries"
    result = _bash(
        f"probe() {{ echo x >>'{counter}'; return 1; }}\ndead() {{ return 1; }}\nwait_until 30 probe dead"
    )
    assert result.returncode == 1
    assert counter.read_text().count("x") == 2


def test_wait_until_fails_after_the_timeout(tmp_path: Path) -> None:
    counter = tmp_path / "tries"
    result = _bash(f"probe() {{ echo x >>'{counter}'; return 1; }}\nwait_until 1 probe")
    assert result.returncode == 1
    assert counter.read_text().count("x") == 3  # two tries 0.5 s apart, then the last one


def test_stop_pid_stops_the_process_and_removes_the_pid_file(sleeper: tuple[int, Path]) -> None:
    pid, pid_file = sleeper
    result = _bash(f"stop_pid Sleeper {pid} 30 '{pid_file}'")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"[test] stopping Sleeper (pid {pid})\n"
    assert not pid_file.exists()
    assert _gone(pid)


def test_stop_pid_reports_a_process_that_does_not_stop(tmp_path: Path) -> None:
    """A process that ignores SIGTERM: stop_pid returns 1 and keeps the pid file (the caller dies or SIGKILLs)."""
    pid = _orphan(
        "python3", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    )
    pid_file = tmp_path / "stubborn.pid"
    pid_file.write_text(f"{pid}\n")
    try:
        _poll(
            lambda: _ignores_sigterm(pid), f"process {pid} ignores SIGTERM"
        )  # else the test races its start
        result = _bash(f"stop_pid Stubborn {pid} 1 '{pid_file}'")
        assert result.returncode == 1
        assert pid_file.exists()
        assert Path(f"/proc/{pid}").exists()
    finally:
        _kill(pid)


def _ignores_sigterm(pid: int) -> bool:
    """The SigIgn mask in /proc/PID/status has SIGTERM's bit."""
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(int(ignored.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def test_detach_starts_a_process_in_its_own_session_and_sets_pid(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    result = _bash(f"detach '{log}' sh -c 'echo started; exec sleep 300'\necho $!")
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.strip())
    try:
        _poll(lambda: log.exists() and log.read_text() == "started\n", f"{log} holds the command's output")
        # Read after the output: by then setsid has run (before, the child may still be in the script's session).
        sid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
        assert sid == pid  # setsid: its own session, so it outlives the script and its make recipe
    finally:
        _kill(pid)
