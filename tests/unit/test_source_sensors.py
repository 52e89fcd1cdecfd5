"""The source sensor (`replicate_<source>_sensor`), evaluated tick by tick with Dagster's own test context on a real
ephemeral instance, against an embedded SQLite source replicated into DuckDB: it requests exactly the tables with
rows beyond their watermark, nothing once the replication has them, nothing while a run of a table is queued or in
progress, and says why in its skip reason. The probes themselves (timeouts, every source type) are also
exercised against the real servers in tests/integration/test_source_probes.py."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pytest
import support
import yaml
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
)

from derive_assets.factory.build import build_definitions
from derive_assets.replication.probe import ProbeError, ProbeTimeout, probe
from derive_assets.replication.urls import SourceConnectionError
from derive_assets.settings import DeriveSettings
from derive_assets.specs.models import SourceSpec

EVENTS, NOTES = AssetKey(["shop", "events"]), AssetKey(["shop", "notes"])
SENSOR = "replicate_shop_sensor"
COLUMNS = [{"name": "id", "type": "INT64"}, {"name": "updated_at", "type": "TIMESTAMP"}]


def shop_spec(**fields: Any) -> dict[str, Any]:
    """The SQLite source `shop` with two tables, `events` (cursor `updated_at`) and `notes` (cursor `id`)."""
    return {
        "kind": "source",
        "name": "shop",
        "type": "sqlite",
        "connection_env": "DERIVE_TEST_SENSOR_SHOP_URL",
        "owner": "team:shop",
        "tables": [
            {"name": "events", "primary_key": ["id"], "cursor": "updated_at", "columns": COLUMNS},
            {"name": "notes", "primary_key": ["id"], "cursor": "id", "columns": COLUMNS},
        ],
        **fields,
    }


class Shop:
    """The source database, the definitions built from its spec, and one instance the ticks and runs share."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **fields: Any) -> None:
        self.db = tmp_path / "shop.db"
        monkeypatch.setenv("DERIVE_TEST_SENSOR_SHOP_URL", f"sqlite:///{self.db}")
        with sqlite3.connect(self.db) as con:
            con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, updated_at TEXT)")
            con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, updated_at TEXT)")
        self.settings = DeriveSettings(specs_dir=tmp_path / "specs", home=tmp_path / "home")
        (self.settings.specs_dir / "sources").mkdir(parents=True)
        spec = shop_spec(**fields)
        (self.settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(spec))
        self.defs: Definitions = build_definitions(self.settings)
        self.instance = DagsterInstance.ephemeral()

    def insert(self, table: str, id_: int, updated_at: str) -> None:
        with sqlite3.connect(self.db) as con:
            con.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", (id_, updated_at))

    def tick(self) -> tuple[set[AssetKey] | None, str | None, str | None]:
        """One evaluation: (the keys requested or None, the skip reason, the run key)."""
        data = support.sensor_tick(self.defs, SENSOR, self.instance)
        if not data.run_requests:
            return None, data.skip_message, None
        [request] = data.run_requests
        return set(request.asset_selection or []), None, request.run_key

    def replicate(self, *keys: AssetKey) -> None:
        support.run_assets(self.defs, self.instance, list(keys))


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Shop:
    return Shop(tmp_path, monkeypatch)


def test_one_running_sensor_per_source_on_its_interval(tmp_path, monkeypatch):
    shop = Shop(tmp_path, monkeypatch, sensor={"interval_seconds": 5})
    sensor = shop.defs.resolve_sensor_def(SENSOR)
    assert sensor.minimum_interval_seconds == 5
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.asset_selection is not None
    assert set(sensor.asset_selection.resolve(shop.defs.resolve_asset_graph())) == {EVENTS, NOTES}


def test_a_disabled_sensor_is_left_out(tmp_path, monkeypatch):
    shop = Shop(tmp_path, monkeypatch, sensor={"enabled": False})
    assert SENSOR not in {s.name for s in shop.defs.sensors or []}


def test_a_first_run_is_always_requested_even_for_empty_tables(shop):
    requested, _, _ = shop.tick()
    assert requested == {EVENTS, NOTES}


def test_nothing_is_requested_once_the_replication_has_the_rows(shop):
    shop.insert("events", 1, "2026-03-05T10:00:00+00:00")
    shop.insert("notes", 1, "2026-03-05T10:00:00+00:00")
    shop.replicate(EVENTS, NOTES)
    requested, reason, _ = shop.tick()
    assert requested is None
    assert reason == (
        "shop/events: no row with updated_at > watermark 2026-03-05T10:00:00+00:00; "
        "shop/notes: no row with id > watermark 1"
    )


def test_only_the_tables_with_new_rows_are_requested_and_the_same_rows_get_the_same_run_key(shop):
    shop.insert("events", 1, "2026-03-05T10:00:00+00:00")
    shop.replicate(EVENTS, NOTES)
    shop.insert("events", 2, "2026-03-05T10:00:01.5+00:00")
    requested, _, run_key = shop.tick()
    assert requested == {EVENTS}
    again, _, same_key = shop.tick()  # no run was launched from the request (a test context): asked again ...
    assert again == {EVENTS} and same_key == run_key  # ... with the same key, which the daemon drops
    shop.insert("events", 3, "2026-03-05T10:00:02+00:00")
    assert shop.tick()[2] != run_key  # new rows: a new key
    shop.replicate(EVENTS)
    assert shop.tick()[0] is None


def test_a_row_at_the_watermark_or_within_its_millisecond_is_not_new_but_one_a_microsecond_later_is(shop):
    shop.insert("events", 1, "2026-03-05 10:00:00.000500")
    shop.replicate(EVENTS, NOTES)
    shop.insert(
        "events", 2, "2026-03-05 10:00:00.000400"
    )  # earlier than the watermark, within julianday's ms
    assert shop.tick()[0] is None
    shop.insert("events", 3, "2026-03-05T05:00:00.000501-05:00")  # an offset: one microsecond later in UTC
    assert shop.tick()[0] == {EVENTS}


def test_nothing_is_requested_while_a_run_of_the_table_is_in_progress(shop):
    shop.replicate(EVENTS, NOTES)
    shop.insert("events", 1, "2026-03-05T10:00:00+00:00")
    shop.insert("notes", 1, "2026-03-05T10:00:00+00:00")
    job = shop.defs.resolve_job_def("replicate_shop")
    run = shop.instance.create_run_for_job(job, asset_selection={EVENTS}, status=DagsterRunStatus.NOT_STARTED)
    requested, _, _ = shop.tick()
    assert requested == {NOTES}  # events' rows are left to the queued run
    shop.instance.report_run_canceled(run)
    assert shop.tick()[0] == {EVENTS, NOTES}


def test_a_run_of_the_whole_source_job_counts_for_every_table(shop):
    shop.replicate(EVENTS, NOTES)
    shop.insert("events", 1, "2026-03-05T10:00:00+00:00")
    shop.instance.create_run_for_job(
        shop.defs.resolve_job_def("replicate_shop"), status=DagsterRunStatus.STARTED
    )
    requested, reason, _ = shop.tick()
    assert requested is None
    assert reason == (
        "shop/events: a run of it is queued or in progress; shop/notes: a run of it is queued or in progress"
    )


def test_a_table_missing_from_the_warehouse_is_requested_again(shop):
    shop.replicate(EVENTS, NOTES)
    assert shop.tick()[0] is None
    with duckdb.connect(str(shop.settings.duckdb_path)) as con:
        con.execute("DROP TABLE shop.notes")
    assert shop.tick()[0] == {NOTES}


def test_a_missing_database_skips_with_the_fix(shop):
    shop.replicate(EVENTS, NOTES)
    shop.db.unlink()
    requested, reason, _ = shop.tick()
    assert requested is None
    assert reason is not None
    assert "shop/events: not probed: source 'shop' table 'events': sqlite database" in reason
    assert (
        "does not exist. Run `derive generate`, or point DERIVE_TEST_SENSOR_SHOP_URL at an existing file"
        in reason
    )


# ---------------------------------------------------------------------------------------------- the probes


def source(**fields: Any) -> SourceSpec:
    return SourceSpec.model_validate(shop_spec(**fields))


def test_a_slow_sqlite_probe_is_interrupted_at_its_timeout(tmp_path):
    db = tmp_path / "slow.db"
    with sqlite3.connect(db) as con:  # a view that never ends: the probe's MAX() would run forever
        con.execute(
            "CREATE VIEW events AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
            "SELECT i AS id, '2026-03-05' AS updated_at FROM n"
        )
    spec = source()
    with pytest.raises(
        ProbeTimeout, match=r"source 'shop' table 'events': the probe .* took longer than 0.2 s"
    ):
        probe(spec, spec.tables[0], f"sqlite:///{db}", None, 0.2)


def test_an_unreachable_server_names_source_table_and_fix_never_the_password():
    spec = source(type="postgres")
    url = "postgresql://derive:s3cret-pw@127.0.0.1:1/shop"
    with pytest.raises(
        ProbeError, match=r"source 'shop' table 'events': the probe failed: .*Check that the server"
    ) as e:
        probe(spec, spec.tables[0], url, None, 1)
    assert "s3cret-pw" not in str(e.value)
    assert isinstance(e.value, SourceConnectionError)


def test_an_unreachable_mysql_server_never_shows_the_password():
    spec = source(type="mysql")
    url = "mysql://derive:s3cret-pw@127.0.0.1:1/shop"
    with pytest.raises(ProbeError, match=r"source 'shop' table 'events': the probe could not connect") as e:
        probe(spec, spec.tables[0], url, None, 1)
    assert "s3cret-pw" not in str(e.value)


# ---------------------------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    ("sensor", "field", "says"),
    [
        ({"interval_seconds": 2}, "sensor.interval_seconds", r"greater than or equal to 5.*\(got 2\)"),
        ({"probe_timeout_seconds": 0}, "sensor.probe_timeout_seconds", r"greater than 0.*\(got 0\)"),
        (
            {"probe_timeout_seconds": 600},
            "sensor.probe_timeout_seconds",
            r"less than or equal to 60.*\(got 600\)",
        ),
        (
            {"every": 5},
            "sensor.every",
            r"unknown field; allowed: \['enabled', 'interval_seconds', 'probe_timeout_seconds'\] \(got 5\)",
        ),
    ],
)
def test_bad_sensor_settings_name_the_file_field_value_and_what_is_allowed(tmp_path, sensor, field, says):
    from derive_assets.specs.errors import SpecValidationError
    from derive_assets.specs.project import load_project

    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "shop.yaml").write_text(yaml.safe_dump(shop_spec(sensor=sensor)))
    with pytest.raises(SpecValidationError) as info:
        load_project(tmp_path)
    [error] = [e for e in info.value.errors if e.field == field]
    assert str(error.file).endswith("sources/shop.yaml")
    assert re.search(says, str(error)), str(error)


def test_a_sources_runs_carry_its_name_for_the_instances_run_limit_per_source(shop):
    """deployments/k8s/dagster.yaml limits runs per value of this tag (`tag_concurrency_limits`)."""
    shop.insert("events", 1, "2026-03-05T10:00:00+00:00")
    [request] = support.sensor_tick(shop.defs, SENSOR, shop.instance).run_requests
    assert request.tags["derive/source_database"] == "shop"
