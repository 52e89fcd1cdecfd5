"""The export asset end to end on embedded engines (DuckDB -> SQLite): window and cursor slices, idempotent
re-exports, the TTL, verification, a blocked export, and a refused row failing the run with the watermark kept.

These are the Dagster-level export tests, once; what an online store itself must do (types, upserts, TTL, NULL
keys) is the store contract in `tests/contract/test_online_store_contract.py`, run on SQLite and Cassandra.
"""

import datetime as dt
import sqlite3
import time
from typing import Any

import duckdb
import pytest
from dagster import AssetKey, DagsterInstance, Definitions

from derive_assets.demo.generate import apply_activity, embedded_urls
from derive_assets.factory.build import build_definitions, build_online_store, build_warehouse
from derive_assets.factory.export_assets import online_table
from derive_assets.factory.export_verify import verify
from derive_assets.factory.runs import materialize_keys
from derive_assets.online import OnlineReader, _coerce
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import load_project
from resources.reads import CursorRange, TableSlice

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
USER_DETAIL = AssetKey(["core", "user_detail"])
DAILY = AssetKey(["analytics", "daily_payments_by_region"])
REGION_EXPORT = AssetKey(["online", "region_payments_online"])
PROFILE_EXPORT = AssetKey(["online", "user_profile_online"])


def run(
    defs: Definitions, instance: DagsterInstance, job: str, partition: str | None = None, ok: bool = True
):
    """Run a `replicate_<source>` job."""
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=partition, run_config=QUIET, raise_on_error=False
    )
    assert result.success is ok
    return result


def materialize(
    defs: Definitions, instance: DagsterInstance, key: AssetKey, partition: str | None = None, ok: bool = True
):
    """Run one asset by key."""
    result = materialize_keys(defs, [key], instance=instance, partition_key=partition, run_config=QUIET)
    assert result.success is ok
    return result


def metadata(result, key: str) -> dict:
    for event in result.get_asset_materialization_events():
        m = event.step_materialization_data.materialization
        if m.asset_key.to_user_string() == key:
            return {k: v.value for k, v in m.metadata.items()}
    raise AssertionError(f"no materialization of {key}")


def day(days_ago: int = 2) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).strftime("%Y-%m-%d")


def build_upstream(defs: Definitions, instance: DagsterInstance, partition: str | None = None) -> None:
    for job in ("replicate_accounts", "replicate_profiles", "replicate_payments"):
        run(defs, instance, job)
    materialize(defs, instance, USER_DETAIL)
    if partition:
        materialize(defs, instance, DAILY, partition)


def warehouse_rows(settings: DeriveSettings, s: TableSlice) -> list[dict[str, Any]]:
    return build_warehouse(settings).read_slice(s).to_pylist()


def test_window_export_writes_its_window_only_readable_by_key_and_idempotent(
    settings: DeriveSettings, instance
):
    defs = build_definitions(settings)
    build_upstream(defs, instance, day())
    materialize(defs, instance, DAILY, day(3))  # another window, not exported
    first = metadata(materialize(defs, instance, REGION_EXPORT, day()), "online/region_payments_online")
    columns = ("region", "day", "payments", "payers", "revenue")
    table_rows = warehouse_rows(settings, TableSlice("analytics.daily_payments_by_region", columns))
    expected = [r for r in table_rows if r["day"].isoformat() == day()]
    assert len(table_rows) > len(expected) > 0
    assert first["derive/rows_written"] == len(expected)

    reader = OnlineReader(load_project(settings.specs_dir), build_online_store(settings))
    row = expected[0]
    assert reader.lookup("region_payments_online", row["region"], row["day"].isoformat()) == [row]  # strings
    for region in {r["region"] for r in table_rows}:
        online = reader.lookup("region_payments_online", region)  # partition key alone: the whole partition
        assert {r["day"].isoformat() for r in online} <= {day()}, "a row of another window was exported"

    store, table = (
        build_online_store(settings),
        online_table(load_project(settings.specs_dir).export("region_payments_online")),
    )
    assert store.count(table) == len(expected)
    materialize(defs, instance, REGION_EXPORT, day())
    assert store.count(table) == len(expected)  # upserts: a re-export changes nothing


def test_cursor_export_writes_only_changed_rows_and_a_full_reexport_changes_nothing(
    settings: DeriveSettings, instance
):
    defs = build_definitions(settings)
    build_upstream(defs, instance)
    store = build_online_store(settings)
    table = online_table(load_project(settings.specs_dir).export("user_profile_online"))
    first = metadata(materialize(defs, instance, PROFILE_EXPORT), "online/user_profile_online")
    assert first["derive/rows_written"] == 500 == store.count(table)
    assert first["derive/watermark_before"] is None

    changes = apply_activity(embedded_urls(settings.embedded_sources_dir), fraction=0.04)
    run(defs, instance, "replicate_accounts")
    run(defs, instance, "replicate_profiles")
    materialize(defs, instance, USER_DETAIL)
    mark = dt.datetime.fromisoformat(first["derive/watermark"])
    changed = build_warehouse(settings).count_slice(
        TableSlice("core.user_detail", cursor=CursorRange("updated_at", after=mark))
    )
    second = metadata(materialize(defs, instance, PROFILE_EXPORT), "online/user_profile_online")
    assert 0 < second["derive/rows_written"] == changed
    assert changed >= changes["accounts.auth.inserted"]
    assert second["derive/watermark_before"] == first["derive/watermark"]
    newest = max(
        warehouse_rows(settings, TableSlice("core.user_detail", ("user_id", "region", "updated_at"))),
        key=lambda r: (r["updated_at"], -r["user_id"]),
    )
    assert store.lookup(table, [newest["user_id"]])[0]["region"] == newest["region"]

    third = metadata(materialize(defs, instance, PROFILE_EXPORT), "online/user_profile_online")
    assert third["derive/rows_written"] == 0

    count = store.count(table)
    instance.wipe()  # forget the watermark: a full re-export must change nothing online
    again = metadata(materialize(defs, instance, PROFILE_EXPORT), "online/user_profile_online")
    assert again["derive/rows_written"] > second["derive/rows_written"]
    assert store.count(table) == count  # (rows deleted in the warehouse stay online: exports only upsert)


def test_ttl_expires_online_rows(settings: DeriveSettings, specs_dir, instance):
    spec = specs_dir / "exports" / "user_profile_online.yaml"
    # Long enough for the export's own verification to read the rows back (a blocking check) on a busy machine.
    spec.write_text(spec.read_text() + "ttl_seconds: 4\n")
    defs = build_definitions(settings)
    build_upstream(defs, instance)
    written = time.monotonic()
    materialize(defs, instance, PROFILE_EXPORT)
    table = online_table(load_project(specs_dir).export("user_profile_online"))
    store = build_online_store(settings)
    assert store.count(table) == 500
    while store.count(table):
        assert time.monotonic() - written < 30, "rows written with ttl_seconds: 4 did not expire within 30 s"
        time.sleep(0.25)
    assert store.lookup(table, [1]) == []


def test_verification_fails_when_rows_are_missing_online(settings: DeriveSettings, instance):
    defs = build_definitions(settings)
    build_upstream(defs, instance)
    materialize(defs, instance, PROFILE_EXPORT)
    table = online_table(load_project(settings.specs_dir).export("user_profile_online"))
    with sqlite3.connect(settings.sqlite_online_path) as con:
        con.execute(f'DELETE FROM "{table.keyspace}__{table.name}" WHERE user_id % 2 = 0')
    check = verify(
        build_warehouse(settings),
        build_online_store(settings),
        table,
        TableSlice("core.user_detail"),
        500,
        500,
    )
    assert not check.passed
    assert check.metadata["missing_online"].value > 0


def test_failed_blocking_check_on_the_table_stops_the_export(settings: DeriveSettings, specs_dir, instance):
    spec = specs_dir / "analytics" / "daily_payments_by_region.yaml"
    spec.write_text(
        spec.read_text().replace("COALESCE(u.region, 'unknown')", "CONCAT('x-', COALESCE(u.region, ''))")
    )
    defs = build_definitions(settings)
    build_upstream(defs, instance)
    keys = [
        AssetKey(["analytics", "daily_payments_by_region"]),
        AssetKey(["online", "region_payments_online"]),
    ]
    result = defs.get_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=day(), asset_selection=keys, run_config=QUIET, raise_on_error=False
    )
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["region_accepted_values"] is False
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert keys[1] not in materialized  # the export never ran
    assert instance.get_latest_materialization_event(keys[1]) is None


def test_lookup_keys_from_the_command_line_are_coerced_strictly():
    assert [_coerce(v, "BOOL") for v in ("true", "No", "0", " yes ")] == [True, False, False, True]
    with pytest.raises(
        ValueError, match=r"key value 'maybe' is not a valid BOOL: allowed: \['0', '1', 'false'"
    ):
        _coerce("maybe", "BOOL")
    with pytest.raises(ValueError, match=r"key value 'x' is not a valid INT64"):
        _coerce("x", "INT64")


def test_a_row_the_store_refuses_fails_at_once_naming_its_key_and_keeps_the_watermark(
    settings: DeriveSettings, instance
):
    defs = build_definitions(settings)
    build_upstream(defs, instance)
    materialize(defs, instance, PROFILE_EXPORT)
    export = AssetKey(["online", "user_profile_online"])
    mark = instance.get_latest_materialization_event(export)

    apply_activity(embedded_urls(settings.embedded_sources_dir), fraction=0.05)
    run(defs, instance, "replicate_accounts")
    run(defs, instance, "replicate_profiles")
    materialize(defs, instance, USER_DETAIL)
    # core.user_detail declares user_id NOT NULL; drop that to plant a row the online store must refuse.
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("ALTER TABLE core.user_detail ALTER COLUMN user_id DROP NOT NULL")
        con.execute(
            "INSERT INTO core.user_detail (user_id, email, updated_at) VALUES (NULL, 'x@example.com', now())"
        )
    result = materialize(defs, instance, PROFILE_EXPORT, ok=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data.user_failure_data
    assert data is not None and data.description is not None
    assert "refused 1 row(s) of a batch, first the row with key {'user_id': None}" in data.description
    assert "such an error is not retried" in data.description
    assert "the export's watermark did not move" in data.description
    after = instance.get_latest_materialization_event(export)
    assert after is not None and mark is not None and after.run_id == mark.run_id
