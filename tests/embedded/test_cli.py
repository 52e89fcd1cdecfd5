"""The commands a user types: `derive validate`, `derive demo`, `dagster asset materialize`."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from derive_assets.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_validate_accepts_the_shipped_specs():
    result = cli("derive", "validate", str(PROJECT_ROOT / "table_specs"))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_validate_reports_every_error_and_exits_nonzero(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "name: a\ndataset: x\nowner: me@example.com\ncolumns: []\nstrategy: merge\nsql: SELECT 1\n"
    )
    (tmp_path / "b.yaml").write_text("kind: tabel\n")
    result = cli("derive", "validate", str(tmp_path))
    assert result.returncode == 1
    assert "a.yaml: columns" in result.stderr
    assert "b.yaml: kind: unknown kind; allowed: ['export', 'source', 'table']" in result.stderr


@pytest.mark.slow
def test_demo_then_dagster_asset_materialize_of_one_window(tmp_path):
    env = {
        "DERIVE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DERIVE_SPECS_DIR": str(PROJECT_ROOT / "table_specs"),
    }
    for name in ("DERIVE_ACCOUNTS_URL", "DERIVE_ORDERS_URL", "DERIVE_PAYMENTS_URL", "DERIVE_DUCKDB_PATH"):
        os.environ.pop(name, None)
    demo = cli("derive", "demo", "--users", "300", "--days", "2", env=env)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "analytics.daily_payments_by_region" in demo.stdout

    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=5)).strftime("%Y-%m-%d")  # a window the demo skipped
    result = cli(
        "dagster",
        "asset",
        "materialize",
        "-m",
        "derive_assets.definitions",
        "--select",
        "analytics/daily_payments_by_region",
        "--partition",
        day,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb"), read_only=True) as con:
        days = {
            r[0].isoformat()
            for r in con.execute("SELECT DISTINCT day FROM analytics.daily_payments_by_region").fetchall()
        }
    assert day in days

    # The read path the README shows, and the plan command.
    found = cli("derive", "lookup", "user_profile_online", "1", env=env)
    assert found.returncode == 0, found.stderr[-2000:]
    assert json.loads(found.stdout.splitlines()[0])["user_id"] == 1
    missing = cli("derive", "lookup", "user_profile_online", "999999", env=env)
    assert missing.returncode == 1 and "no rows for ['999999']" in missing.stderr
    planned = cli("derive", "plan", env=env)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "== analytics.daily_payments_by_region (merge) — next window:" in planned.stdout
    assert "$window_start" in planned.stdout


def test_generate_into_an_unwritable_source_is_one_clear_line(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    missing = tmp_path / "a-file" / "accounts.db"
    result = cli(
        "derive",
        "generate",
        "--users",
        "5",
        "--accounts-url",
        f"sqlite:///{missing}",
        env={"DERIVE_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("derive generate: could not write the sample data: ")
    assert "Check the --*-url options" in result.stderr
    assert "Traceback" not in result.stderr
