"""Exports that delete, end to end on the embedded engines (DuckDB -> SQLite): rows that leave an exported table
leave the online store at the next export (`derive_assets/factory/export_deletes.py`).

A plain `DELETE` on a warehouse table stands in for a reconciled hard delete (rows simply vanish); a `replace`
table loses rows when its input does; a windowed merge with `delete_missing` drops a key its query no longer
outputs. The same scenarios against the real Cassandra server are in tests/integration/test_export_deletes.py.
"""

import datetime as dt
import sqlite3

import duckdb
from dagster import AssetKey, DagsterInstance, Definitions
from support import QUIET, materializations, run_job

from derive_assets.factory.build import build_definitions, build_online_store
from derive_assets.factory.export_assets import online_table
from derive_assets.factory.export_deletes import KEYS_DATASET
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import load_project

USER_DETAIL = AssetKey(["core", "user_detail"])
DAILY = AssetKey(["analytics", "daily_payments_by_region"])
REGION_EXPORT = AssetKey(["online", "region_payments_online"])
PROFILE_EXPORT = AssetKey(["online", "user_profile_online"])


def materialize(defs: Definitions, instance: DagsterInstance, key: AssetKey, partition: str | None = None):
    return materialize_keys(defs, [key], instance=instance, partition_key=partition, run_config=QUIET)


def metadata(result, key: str) -> dict:
    return materializations(result)[key]


def day(days_ago: int = 2) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).strftime("%Y-%m-%d")


def build_upstream(defs: Definitions, instance: DagsterInstance, partition: str | None = None) -> None:
    for job in ("replicate_accounts", "replicate_profiles", "replicate_payments"):
        run_job(defs, instance, job)
    assert materialize(defs, instance, USER_DETAIL).success
    if partition:
        assert materialize(defs, instance, DAILY, partition).success


def sql(settings: DeriveSettings, statement: str) -> list[tuple]:
    with duckdb.connect(str(settings.duckdb_path)) as con:
        return con.execute(statement).fetchall()


def online(settings: DeriveSettings, export: str):
    return build_online_store(settings), online_table(load_project(settings.specs_dir).export(export))


def test_cursor_export_deletes_rows_a_replace_table_lost_though_no_row_changed(
    settings: DeriveSettings, instance
):
    defs = build_definitions(settings)
    build_upstream(defs, instance)
    assert materialize(defs, instance, PROFILE_EXPORT).success
    store, table = online(settings, "user_profile_online")
    assert store.count(table) == 500
    # Three accounts vanish from the replicated table (a reconciled hard delete); core.user_detail (replace)
    # loses them on its next run. No row changed, so the cursor export writes nothing, yet deletes three.
    sql(settings, "DELETE FROM accounts.auth WHERE user_id IN (3, 4, 5)")
    assert materialize(defs, instance, USER_DETAIL).success
    result = materialize(defs, instance, PROFILE_EXPORT)
    meta = metadata(result, "online/user_profile_online")
    assert meta["derive/rows_written"] == 0
    assert meta["derive/rows_deleted"] == 3
    assert [store.lookup(table, [k]) for k in (3, 4, 5)] == [[], [], []]
    assert store.lookup(table, [6]) != []
    assert store.count(table) == 497
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["deleted_still_online"].value == 0
    again = metadata(materialize(defs, instance, PROFILE_EXPORT), "online/user_profile_online")
    assert again["derive/rows_deleted"] == 0  # marked deleted: not deleted twice


def test_unwindowed_full_export_deletes_rows_gone_from_the_table(
    settings: DeriveSettings, specs_dir, instance
):
    spec = specs_dir / "exports" / "user_profile_online.yaml"
    spec.write_text(spec.read_text().replace("cursor: updated_at\n", ""))
    defs = build_definitions(settings)
    build_upstream(defs, instance)
    assert materialize(defs, instance, PROFILE_EXPORT).success
    sql(settings, "DELETE FROM core.user_detail WHERE user_id <= 10")  # rows simply vanish
    meta = metadata(materialize(defs, instance, PROFILE_EXPORT), "online/user_profile_online")
    store, table = online(settings, "user_profile_online")
    assert (meta["derive/rows_written"], meta["derive/rows_deleted"]) == (490, 10)
    assert store.count(table) == 490
    assert sql(
        settings, f'SELECT count(*) FROM {KEYS_DATASET}."user_profile_online__keys" WHERE _online'
    ) == [(490,)]


def test_windowed_export_deletes_in_its_window_only(settings: DeriveSettings, specs_dir, instance):
    spec = specs_dir / "analytics" / "daily_payments_by_region.yaml"
    spec.write_text(
        spec.read_text().replace(
            "  unique_key: [day, region]\n", "  unique_key: [day, region]\n  delete_missing: true\n"
        )
    )
    defs = build_definitions(settings)
    build_upstream(defs, instance, day())
    assert materialize(defs, instance, DAILY, day(3)).success
    for d in (day(), day(3)):
        assert materialize(defs, instance, REGION_EXPORT, d).success
    store, table = online(settings, "region_payments_online")
    regions = [
        r
        for (r,) in sql(
            settings,
            f"SELECT region FROM analytics.daily_payments_by_region WHERE day = '{day()}' ORDER BY region",
        )
    ]
    other = sql(settings, f"SELECT region FROM analytics.daily_payments_by_region WHERE day = '{day(3)}'")
    assert len(regions) >= 2 and other
    before = store.count(table)
    # merge with delete_missing: the day's payments of one region vanish, the window's run deletes its row
    gone = regions[0]
    sql(
        settings,
        f"DELETE FROM payments.payments WHERE CAST(paid_at AS DATE) = DATE '{day()}' AND user_id IN "
        f"(SELECT user_id FROM core.user_detail WHERE COALESCE(region, 'unknown') = '{gone}')",
    )
    assert (
        metadata(materialize(defs, instance, DAILY, day()), "analytics/daily_payments_by_region")[
            "derive/rows_deleted"
        ]
        == 1
    )
    meta = metadata(materialize(defs, instance, REGION_EXPORT, day()), "online/region_payments_online")
    assert meta["derive/rows_deleted"] == 1
    assert store.lookup(table, [gone, dt.date.fromisoformat(day())]) == []
    assert store.lookup(table, [regions[1], dt.date.fromisoformat(day())]) != []
    assert store.count(table) == before - 1
    # a plain DELETE of the other window's rows is that window's business: this window's run leaves them
    sql(settings, f"DELETE FROM analytics.daily_payments_by_region WHERE day = '{day(3)}'")
    assert (
        metadata(materialize(defs, instance, REGION_EXPORT, day()), "online/region_payments_online")[
            "derive/rows_deleted"
        ]
        == 0
    )
    assert store.count(table) == before - 1
    assert metadata(materialize(defs, instance, REGION_EXPORT, day(3)), "online/region_payments_online")[
        "derive/rows_deleted"
    ] == len(other)
    assert store.count(table) == before - 1 - len(other)


def test_a_failed_delete_fails_the_export_and_the_next_export_deletes_the_keys(
    settings: DeriveSettings, instance
):
    defs = build_definitions(settings)
    build_upstream(defs, instance)
    assert materialize(defs, instance, PROFILE_EXPORT).success
    store, table = online(settings, "user_profile_online")
    name = f"{table.keyspace}__{table.name}"
    with sqlite3.connect(settings.sqlite_online_path) as con:  # the store refuses every delete
        con.execute(
            f"CREATE TRIGGER no_deletes BEFORE DELETE ON \"{name}\" BEGIN SELECT RAISE(ABORT, 'read-only'); END"
        )
    sql(settings, "DELETE FROM core.user_detail WHERE user_id IN (7, 8)")
    result = materialize_keys(
        defs, [PROFILE_EXPORT], instance=instance, run_config=QUIET, raise_on_error=False
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data.user_failure_data
    assert data is not None and data.description is not None
    assert "stopped deleting the rows that left core.user_detail after 0 of 2 keys" in data.description
    assert "the next run of the export deletes them again" in data.description
    assert store.lookup(table, [7]) != []
    with sqlite3.connect(settings.sqlite_online_path) as con:
        con.execute("DROP TRIGGER no_deletes")
    meta = metadata(materialize(defs, instance, PROFILE_EXPORT), "online/user_profile_online")
    assert meta["derive/rows_deleted"] == 2
    assert store.lookup(table, [7]) == [] and store.lookup(table, [8]) == []


def test_verification_fails_when_a_deleted_key_is_still_online(settings: DeriveSettings, instance):
    """A store whose delete reports success but leaves the row: the check sees it (and the key stays to delete)."""
    defs = build_definitions(settings)
    build_upstream(defs, instance)
    assert materialize(defs, instance, PROFILE_EXPORT).success
    store, table = online(settings, "user_profile_online")
    name = f"{table.keyspace}__{table.name}"
    with sqlite3.connect(settings.sqlite_online_path) as con:  # deletes silently do nothing
        con.execute(f'CREATE TRIGGER keep_rows BEFORE DELETE ON "{name}" BEGIN SELECT RAISE(IGNORE); END')
    sql(settings, "DELETE FROM core.user_detail WHERE user_id = 9")
    result = materialize_keys(
        defs, [PROFILE_EXPORT], instance=instance, run_config=QUIET, raise_on_error=False
    )
    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.metadata["deleted_still_online"].value == 1
    assert "are still online (first: key [9])" in (check.description or "")
    assert store.lookup(table, [9]) != []
