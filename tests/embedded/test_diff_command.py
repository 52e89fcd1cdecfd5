"""`derive diff` end to end on DuckDB: a spec project, a warehouse file seeded with `table_diff_scenario`, and a
Dagster instance holding the environment's materialized partitions (the default windows). Exit codes: 0
identical, 1 different, 2 error."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance
from embedded.table_diff_scenario import ENV, EVENTS, PROD, seed
from embedded.test_table_diff import duckdb_creator

from derive_assets.cli import main
from derive_assets.settings import PROJECT_ROOT

EVENTS_SPEC = """\
name: order_events
dataset: analytics
owner: team:shop
strategy: append
window: {size: 1d, start: "2026-11-01"}
partition: {key: day}
columns:
  - {name: day, type: DATE}
  - {name: kind, type: STRING}
  - {name: amount, type: NUMERIC}
sql: |
  SELECT DATE(@window_start) AS day, 'a' AS kind, CAST(1 AS NUMERIC) AS amount
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    specs = tmp_path / "specs" / "analytics"
    specs.mkdir(parents=True)
    (specs / "order_events.yaml").write_text(EVENTS_SPEC)
    warehouse = tmp_path / "wh.duckdb"
    seed(duckdb_creator(warehouse))
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(tmp_path / "specs"))
    monkeypatch.setenv("DERIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DERIVE_DUCKDB_PATH", str(warehouse))
    monkeypatch.setenv("DERIVE_WAREHOUSE", "duckdb")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.delenv("DERIVE_ENV", raising=False)
    return tmp_path


def built(project: Path, env_dataset: str, *partitions: str) -> None:
    """Record that the environment materialized these partitions of its `order_events`."""
    with DagsterInstance.from_config(str(project / "dagster_home")) as instance:
        for key in partitions:
            instance.report_runless_asset_event(
                AssetMaterialization(asset_key=AssetKey([env_dataset, EVENTS]), partition=key)
            )


def test_default_windows_are_the_ones_the_environment_built(project: Path, capsys) -> None:
    built(project, ENV, "2026-11-01", "2026-11-02")

    code = main(["diff", "analytics/order_events", "--env", "alice"])

    out = capsys.readouterr().out
    assert code == 1
    assert "  compared: day in [2026-11-01, 2026-11-03) (start inclusive, end exclusive)" in out
    assert "rows only in production: 2" in out and "rows only in alice: 2" in out
    assert "(2026-11-03, 'd', 4)" not in out  # outside the built windows
    assert out.rstrip().endswith("result: different")


def test_partitions_given_by_key(project: Path, capsys) -> None:
    code = main(["diff", "analytics.order_events", "--env", "alice", "--partition", "2026-11-03"])

    out = capsys.readouterr().out
    assert code == 1
    assert "rows: production 1, alice 1 (+0)" in out
    assert "  (2026-11-03, 'd', 4)" in out and "  (2026-11-03, 'd', 9)" in out


def test_identical_tables_exit_0(project: Path, capsys) -> None:
    with duckdb.connect(str(project / "wh.duckdb")) as con:
        con.execute(f"CREATE SCHEMA bob__{PROD}")
        con.execute(f"CREATE TABLE bob__{PROD}.{EVENTS} AS SELECT * FROM {PROD}.{EVENTS}")

    code = main(["diff", "analytics.order_events", "--env", "bob", "--windows", "60"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "rows: production 5, bob 5 (+0)" in out and out.rstrip().endswith("result: identical")


def test_the_default_environment_comes_from_derive_env(
    project: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DERIVE_ENV", "alice")

    code = main(["diff", "analytics.order_events", "--env", "--windows", "60"])

    assert code == 1
    assert "(environment alice)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["analytics.order_events", "--env", "carol", "--windows", "3"],
            "carol__analytics.order_events does not exist: build it first with "
            "`derive build --env carol analytics/order_events`",
        ),
        (
            ["analytics.order_events", "--env", "alice"],
            "environment 'alice' has built no window of analytics.order_events (asset "
            "alice__analytics/order_events has no materialized partition",
        ),
        (["analytics.order_event", "--env", "alice"], "did you mean analytics.order_events?"),
        (
            ["analytics.order_events", "--env", "alice", "--partition", "2026-10-01"],
            "['2026-10-01'] are not complete windows of the table",
        ),
        (["analytics.order_events", "--env", "Bad__Name"], "environment name 'Bad__Name'"),
        (["--env", "analytics/order_events"], "looks like a table, not an environment"),
        (["--env", "alice"], "name the table to compare"),
    ],
)
def test_errors_exit_2_with_one_message(project: Path, capsys, argv: list[str], message: str) -> None:
    code = main(["diff", *argv])

    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
