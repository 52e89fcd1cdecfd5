"""No user-facing `derive` command prints a traceback for a user's mistake or an unreachable service: each ends in
one clear message that names what was wrong (the file and field, the table, the key, the setting) and the fix.

Each case runs the real command (`.venv/bin/derive ...` as a subprocess) with a fresh DERIVE_HOME and its own copy
of the specs; the cases run a few at a time, so the module takes about as long as its slowest commands.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from derive_assets.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent
DAILY_SPEC = Path("analytics") / "daily_payments_by_region.yaml"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released): connections to it are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = closed_port()
BIGQUERY_DOWN = {
    "DERIVE_WAREHOUSE": "bigquery",
    "DERIVE_BIGQUERY_PROJECT": "derive-test",
    "DERIVE_BIGQUERY_ENDPOINT": f"http://127.0.0.1:{PORT}",
    "DERIVE_BIGQUERY_TIMEOUT_SECONDS": "1",
    "DERIVE_BIGQUERY_RETRY_DEADLINE_SECONDS": "2",
}


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]
    """Fragments the message must hold (what was wrong, and the fix)."""
    env: dict[str, str] = field(default_factory=dict)
    spec_edit: tuple[str, str] | None = None
    """(old, new) in the daily table's spec: a broken spec."""
    not_a_database: bool = False
    """DERIVE_DUCKDB_PATH names a text file."""


CASES = {
    "lookup-wrong-key-type": Case(
        ("lookup", "user_profile_online", "abc"),
        2,
        (
            "derive lookup: export user_profile_online: key value 'abc' is not a valid INT64",
            "give user_id as an integer",
        ),
    ),
    "lookup-unknown-export": Case(
        ("lookup", "user_profiles_online", "1"),
        2,
        (
            "no export named 'user_profiles_online'; exports: ['region_payments_online', 'user_profile_online']",
        ),
    ),
    "lookup-online-store-down": Case(
        ("lookup", "user_profile_online", "1"),
        2,
        (f"derive lookup: cannot connect to Cassandra at 127.0.0.1:{PORT}", "DERIVE_CASSANDRA_HOSTS"),
        env={
            "DERIVE_ONLINE_STORE": "cassandra",
            "DERIVE_CASSANDRA_HOSTS": "127.0.0.1",
            "DERIVE_CASSANDRA_PORT": str(PORT),
            "DERIVE_CASSANDRA_CONNECT_TIMEOUT": "1",
        },
    ),
    "plan-unknown-selection": Case(
        ("plan", "analytics/daily_payment_by_region"),
        2,
        (
            "derive plan: 'analytics/daily_payment_by_region' selects no asset; did you mean "
            "analytics/daily_payments_by_region",
        ),
    ),
    "plan-bad-selection-syntax": Case(
        ("plan", "key:(analytics"),
        2,
        ("derive plan: 'key:(analytics' is not an asset selection", "use a key such as"),
    ),
    "plan-broken-spec": Case(
        ("plan",),
        1,
        ("daily_payments_by_region.yaml: window.start", "2026-13-01", "YYYY-MM-DD"),
        spec_edit=("start: 2026-01-01", "start: 2026-13-01"),
    ),
    "rebuild-broken-spec": Case(
        ("rebuild", "analytics.daily_payments_by_region", "--yes"),
        1,
        ("daily_payments_by_region.yaml: window.start", "2026-13-01"),
        spec_edit=("start: 2026-01-01", "start: 2026-13-01"),
    ),
    "rebuild-unknown-table": Case(
        ("rebuild", "analytics.daily_payment_by_region", "--yes"),
        2,
        (
            "derive rebuild: no table spec under",
            "defines 'analytics.daily_payment_by_region'; did you mean analytics.daily_payments_by_region",
        ),
    ),
    "plan-warehouse-unreachable": Case(
        ("plan",),
        2,
        (
            f"derive plan: The BigQuery endpoint http://127.0.0.1:{PORT} could not be reached",
            "DERIVE_BIGQUERY_ENDPOINT",
        ),
        env=BIGQUERY_DOWN,
    ),
    "prune-warehouse-unreachable": Case(
        ("prune", "--yes"),
        2,
        (f"derive prune: The BigQuery endpoint http://127.0.0.1:{PORT} could not be reached",),
        env=BIGQUERY_DOWN,
    ),
    "rebuild-warehouse-unreachable": Case(
        ("rebuild", "analytics.top_spenders", "--yes"),
        2,
        (
            "derive rebuild: analytics.top_spenders: the rebuild run",
            "could not be reached",
            "DERIVE_BIGQUERY_ENDPOINT",
        ),
        env=BIGQUERY_DOWN,
    ),
    "plan-warehouse-not-a-database": Case(
        ("plan",),
        2,
        (
            "derive plan: the DuckDB warehouse",
            "cannot be opened",
            "not a valid DuckDB database file",
            "DERIVE_DUCKDB_PATH",
        ),
        not_a_database=True,
    ),
}


def run_case(name: str, case: Case, root: Path) -> subprocess.CompletedProcess[str]:
    home, specs = root / name / "home", root / name / "table_specs"
    shutil.copytree(PROJECT_ROOT / "table_specs", specs)
    if case.spec_edit:
        path = specs / DAILY_SPEC
        old, new = case.spec_edit
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DERIVE_", "DAGSTER_HOME"))}
    env |= {"DERIVE_HOME": str(home), "DERIVE_SPECS_DIR": str(specs), "DAGSTER_HOME": str(root / name / "dh")}
    if case.not_a_database:
        home.mkdir(parents=True)
        (home / "warehouse.txt").write_text("not a database")
        env["DERIVE_DUCKDB_PATH"] = str(home / "warehouse.txt")
    return subprocess.run(
        [str(BIN / "derive"), *case.args],
        cwd=PROJECT_ROOT,
        env={**env, **case.env},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("no_tracebacks")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_case, name, case, root) for name, case in CASES.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_mistake_is_one_clear_message_and_no_traceback(name: str, outcomes):
    case, result = CASES[name], outcomes[name]
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Stack Trace" not in output, output[-3000:]
    assert result.returncode == case.code, output[-3000:]
    for fragment in case.says:
        assert fragment in result.stderr, f"{fragment!r} not in {result.stderr!r}"
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr  # one message, not a log


def test_the_scanner_sees_a_traceback():
    """The assertion above can fail: a command that raises does print one."""
    result = subprocess.run(
        [sys.executable, "-c", "raise SystemError('boom')"], capture_output=True, text=True, timeout=60
    )
    assert "Traceback" in result.stderr
