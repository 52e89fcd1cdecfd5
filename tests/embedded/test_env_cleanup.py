"""`derive env list` / `derive env drop` on a DuckDB file: only an environment's own Derive tables and emptied
datasets go, with its event-log history; production, other environments and tables Derive did not create stay."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

from derive_assets.cli import main
from derive_assets.env_cleanup import EnvCleanupError, environments, idle, parse_age
from resources.duckdb_warehouse import DuckDBWarehouse
from resources.schema import ColumnDef
from resources.warehouse import LoadRequest, TargetTable

NOW = dt.datetime.now(dt.UTC)
COLUMNS = (ColumnDef("id", "INT64", not_null=True), ColumnDef("note", "STRING"))
MARKED = {  # table -> rows, each written through the warehouse's own load (so it carries Derive's marker)
    "analytics.t": 3,
    "alice__analytics.t": 2,
    "alice__analytics.u": 4,
    "alice__sales.t": 1,
    "bob__analytics.t": 5,
}
HANDMADE = "alice__analytics.handmade"
"""A table someone created by hand in alice's dataset: no marker, so Derive never drops it."""


@dataclass
class World:
    warehouse: DuckDBWarehouse
    path: Path
    instance: DagsterInstance

    def tables(self) -> set[str]:
        with duckdb.connect(str(self.path), read_only=True) as con:
            rows = con.execute(
                "SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE NOT temporary"
            ).fetchall()
        return {r[0] for r in rows}

    def schemas(self) -> set[str]:
        return set(self.warehouse.datasets())

    def asset_keys(self) -> set[str]:
        return {key.to_user_string() for key in self.instance.get_asset_keys()}


def materialized(instance: DagsterInstance, key: str, when: dt.datetime) -> None:
    """A materialization of `key` recorded at `when` (a run's own would carry the time it happened)."""
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        event_specific_data=StepMaterializationData(AssetMaterialization(AssetKey(key.split("/")))),
        job_name=RUNLESS_JOB_NAME,
    )
    instance.report_dagster_event(run_id=RUNLESS_RUN_ID, dagster_event=event, timestamp=when.timestamp())


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    path = tmp_path / "wh.duckdb"
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for name in ("DERIVE_ENV", "DERIVE_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DERIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DERIVE_DUCKDB_PATH", str(path))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))

    warehouse = DuckDBWarehouse(path=str(path))
    for ref, count in MARKED.items():
        dataset, name = ref.split(".")
        batch = pa.record_batch(
            {"id": pa.array(range(count), pa.int64()), "note": pa.array([ref] * count, pa.string())}
        )
        warehouse.load(LoadRequest(TargetTable(dataset, name, COLUMNS), ("id",), "id"), [batch])
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE {HANDMADE} AS SELECT 42 AS answer")
    with DagsterInstance.get() as instance:
        materialized(instance, "analytics/t", NOW - dt.timedelta(days=90))
        materialized(instance, "alice__analytics/t", NOW - dt.timedelta(days=40))
        materialized(instance, "alice__analytics/u", NOW - dt.timedelta(days=30))
        materialized(instance, "alice__sales/t", NOW - dt.timedelta(days=20))
        materialized(instance, "bob__analytics/t", NOW - dt.timedelta(days=3))
        yield World(warehouse, path, instance)


def run(capsys: pytest.CaptureFixture[str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_each_environment_with_its_tables_rows_and_last_activity(world, capsys):
    code, out, _ = run(capsys, "env", "list")
    assert code == 0
    lines = out.splitlines()
    alice = next(line for line in lines if line.startswith("alice:"))
    bob = next(line for line in lines if line.startswith("bob:"))
    assert "3 Derive table(s), 7 rows" in alice  # the handmade table is not Derive's
    assert "(20d ago)" in alice  # the newest of alice's three materializations
    assert "1 Derive table(s), 5 rows" in bob and "(3d ago)" in bob
    assert "  alice__analytics" in lines and "  alice__sales" in lines and "  bob__analytics" in lines
    assert not any(line.startswith("analytics") for line in lines)  # production is no environment


def test_drop_removes_only_the_environments_own_derive_tables(world, capsys):
    before = world.tables()
    code, out, err = run(capsys, "env", "drop", "alice", "--yes")
    assert code == 0, err

    gone = {"alice__analytics.t", "alice__analytics.u", "alice__sales.t"}
    assert world.tables() == before - gone
    assert HANDMADE in world.tables()
    with duckdb.connect(str(world.path), read_only=True) as con:
        assert con.execute(f"SELECT answer FROM {HANDMADE}").fetchall() == [(42,)]
    assert world.schemas() >= {"analytics", "bob__analytics", "alice__analytics"}
    assert "alice__sales" not in world.schemas()  # emptied, so dropped
    assert f"kept dataset alice__analytics: it still holds tables Derive did not create: {HANDMADE}" in out
    for ref in ("analytics.t", "bob__analytics.t"):
        assert world.warehouse.row_count(ref) == MARKED[ref]


def test_a_dataset_derive_never_wrote_into_is_left_alone(world, capsys):
    with duckdb.connect(str(world.path)) as con:
        con.execute("CREATE SCHEMA carol__scratch")  # someone's, by hand: empty, no Derive table, no history
    code, out, _ = run(capsys, "env", "drop", "carol", "--yes")
    assert code == 0 and "kept dataset carol__scratch: Derive never wrote into it" in out
    assert "carol__scratch" in world.schemas()


def test_drop_wipes_the_environments_history_so_it_starts_fresh(world, capsys):
    assert run(capsys, "env", "drop", "alice", "--yes")[0] == 0
    assert world.asset_keys() == {"analytics/t", "bob__analytics/t"}
    assert world.instance.get_latest_materialization_event(AssetKey(["alice__analytics", "t"])) is None


def test_drop_asks_first_and_a_no_drops_nothing(world, capsys):
    before = world.tables()
    code, out, err = run(capsys, "env", "drop", "alice", stdin="n\n")
    assert code == 1 and "nothing dropped (answer y, or pass --yes to go on without the question)" in err
    assert "drop 1 environment(s)? [y/N]" in out and "  alice__analytics.u" in out
    assert world.tables() == before and "alice__analytics/t" in world.asset_keys()

    assert run(capsys, "env", "drop", "alice", stdin="y\n")[0] == 0
    assert "alice__analytics.t" not in world.tables()


def test_older_than_drops_only_environments_idle_for_longer(world, capsys):
    code, _, err = run(capsys, "env", "drop", "--older-than", "14d", "--yes")
    assert code == 0, err
    assert not {"alice__analytics.t", "alice__analytics.u", "alice__sales.t"} & world.tables()
    assert {"bob__analytics.t", "analytics.t"} <= world.tables()
    assert "bob__analytics/t" in world.asset_keys()

    code, _, _ = run(capsys, "env", "drop", "--older-than", "2d", "--yes")
    assert code == 0 and "bob__analytics.t" not in world.tables()
    assert world.warehouse.row_count("analytics.t") == MARKED["analytics.t"]


def test_older_than_never_drops_an_environment_of_unknown_activity(world, capsys):
    world.instance.wipe_assets([AssetKey(["bob__analytics", "t"])])  # bob's tables, but no history of them
    code, out, _ = run(capsys, "env", "drop", "--older-than", "1h", "--yes")
    assert code == 0
    assert "not dropping bob: its last activity is unknown" in out
    assert "bob__analytics.t" in world.tables()
    assert "alice__analytics.t" not in world.tables()


def test_without_an_instance_activity_is_unknown(world, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no_instance"))
    code, out, err = run(capsys, "env", "list")
    assert code == 0 and "last activity unknown" in out and "no Dagster instance yet" in err
    code, out, _ = run(capsys, "env", "drop", "--older-than", "1d", "--yes")
    assert "not dropping alice" in out and "not dropping bob" in out
    assert "alice__analytics.t" in world.tables()
    assert not (tmp_path / "no_instance").exists()  # asking never creates an instance


@pytest.mark.parametrize("name", ["Alice", "alice__analytics", "../etc", "1st", "a" * 41])
def test_invalid_environment_names_are_refused(world, capsys, name):
    before = world.tables()
    code, _, err = run(capsys, "env", "drop", name, "--yes")
    assert code == 2
    assert f"environment name {name!r}" in err and "allowed: lower case letters" in err
    assert world.tables() == before


def test_a_production_dataset_is_never_an_environment(world, capsys):
    code, out, _ = run(capsys, "env", "drop", "analytics", "--yes")
    assert code == 0 and "no environment analytics" in out
    assert world.warehouse.row_count("analytics.t") == MARKED["analytics.t"]
    assert "analytics/t" in world.asset_keys()


def test_name_and_older_than_exclude_each_other(world, capsys):
    assert run(capsys, "env", "drop", "alice", "--older-than", "1d")[0] == 2
    assert run(capsys, "env", "drop")[0] == 2
    code, _, err = run(capsys, "env", "drop", "--older-than", "2w")
    assert code == 2 and "'2w' is not an age" in err


def test_idle_compares_with_the_cutoff(world):
    envs = {e.name: e for e in environments(world.warehouse, world.instance, count_rows=False)}
    old, unknown = idle(envs.values(), dt.timedelta(days=20, hours=1), NOW)
    assert [e.name for e in old] == [] and unknown == []
    old, _ = idle(envs.values(), dt.timedelta(days=19), NOW)
    assert [e.name for e in old] == ["alice"]


@pytest.mark.parametrize(
    ("text", "age"),
    [("14d", dt.timedelta(days=14)), ("36h", dt.timedelta(hours=36)), (" 2D ", dt.timedelta(2))],
)
def test_parse_age(text, age):
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["14", "2w", "0d", "-1d", "1.5d", ""])
def test_parse_age_refuses(text):
    with pytest.raises(EnvCleanupError, match="positive whole number of days or hours"):
        parse_age(text)
