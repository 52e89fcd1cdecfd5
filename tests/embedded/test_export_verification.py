"""The `online_matches_warehouse` check on the embedded engines (DuckDB -> SQLite): it passes on faithful exports of
every column type, fails when any one value differs online, blocks what depends on it, and `derive demo` reports it.
"""

import dataclasses
import datetime as dt
import math
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, Definitions, asset, define_asset_job
from support import QUIET, run_assets, run_job

from derive_assets import cli
from derive_assets.demo.run import run_demo
from derive_assets.factory.build import build_definitions, build_online_store
from derive_assets.factory.export_assets import online_table
from derive_assets.factory.export_verify import comparable, verify
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import load_project
from resources.duckdb_warehouse import DuckDBWarehouse
from resources.online_store import OnlineTable
from resources.reads import TableSlice
from resources.schema import ColumnDef
from resources.sqlite_online_store import SQLiteOnlineStore

UTC = dt.UTC
TYPED = TableSlice("core.typed")
COLUMNS = {
    "id": ("INT64", "BIGINT"),
    "ts": ("TIMESTAMP", "TIMESTAMPTZ"),
    "wall": ("DATETIME", "TIMESTAMP"),
    "day": ("DATE", "DATE"),
    "amount": ("NUMERIC", "DECIMAL(38, 9)"),
    "ratio": ("FLOAT64", "DOUBLE"),
    "flag": ("BOOL", "BOOLEAN"),
    "doc": ("JSON", "JSON"),
    "blob": ("BYTES", "BLOB"),
    "name": ("STRING", "VARCHAR"),
}
ROWS: list[tuple[Any, ...]] = [
    (
        1,
        dt.datetime(2026, 11, 30, 9, 0, 0, 123456, tzinfo=UTC),  # sub-millisecond
        dt.datetime(2026, 11, 30, 9, 0, 0, 999999),
        dt.date(2026, 11, 30),
        Decimal("12.340000000"),
        0.1,
        True,
        '{"b": [1, 2.5], "a": "é"}',
        b"\x00\xffbytes",
        "Zoë 🚀",
    ),
    (
        2,
        dt.datetime(1969, 12, 31, 23, 59, 59, 999501, tzinfo=UTC),  # before the epoch, sub-millisecond
        dt.datetime(1900, 1, 1, 0, 0, 0, 1),
        dt.date(1900, 1, 1),
        Decimal("-99999999999999999999999999999.000000001"),
        math.nan,
        False,
        "[]",
        b"",
        "",
    ),
    (3, None, None, None, None, math.inf, None, None, None, None),
]


def typed_export(tmp_path: Path) -> tuple[DuckDBWarehouse, OnlineTable]:
    """A warehouse table holding every column type (NULLs, NaN, pre-1970, unicode) and its online table."""
    warehouse = DuckDBWarehouse(path=str(tmp_path / "typed.duckdb"))
    with warehouse.get_connection() as con:
        con.execute("CREATE SCHEMA core")
        con.execute(f"CREATE TABLE core.typed ({', '.join(f'{n} {t}' for n, (_, t) in COLUMNS.items())})")
        con.executemany(f"INSERT INTO core.typed VALUES ({', '.join('?' for _ in COLUMNS)})", ROWS)
    table = OnlineTable(
        keyspace="verify",
        name="typed",
        partition_key=("id",),
        clustering=(),
        columns=tuple(ColumnDef(n, t) for n, (t, _) in COLUMNS.items()),
    )
    return warehouse, table


def exported(table: OnlineTable) -> TableSlice:
    """The rows an export of `table` reads: its columns of core.typed."""
    return TableSlice("core.typed", tuple(table.column_names))


def export_and_verify(warehouse: DuckDBWarehouse, store: Any, table: OnlineTable, tamper=None):
    store.ensure_table(table)
    result = store.write(table, warehouse.iter_slice(exported(table), 2))
    if tamper:
        tamper()
    return verify(warehouse, store, table, TYPED, result.rows_written, len(ROWS))


def test_faithful_sqlite_export_of_every_type_passes(tmp_path: Path):
    warehouse, table = typed_export(tmp_path)
    store = SQLiteOnlineStore(path=str(tmp_path / "online.sqlite"))
    check = export_and_verify(warehouse, store, table)
    assert check.passed, check.description
    assert check.metadata["sampled_keys"].value == 3
    assert check.metadata["timestamp_precision_us"].value == 1
    [nan_row] = store.lookup(table, [2])
    assert math.isnan(nan_row["ratio"])  # kept as NaN, not turned into NULL
    assert nan_row["ts"] == ROWS[1][1]  # microseconds kept


@pytest.mark.parametrize(
    ("column", "key", "online"),
    [
        ("ts", 1, "2026-11-30T09:00:00.123457+00:00"),  # one microsecond: SQLite keeps microseconds
        ("wall", 2, "1900-01-01T00:00:00.000002"),
        ("amount", 1, "12.341"),
        ("ratio", 2, 0.0),  # NaN -> a number
        ("ratio", 1, 0.1000000001),
        ("doc", 1, '{"a": "e", "b": [1, 2.5]}'),
        ("blob", 2, b"\x00"),
        ("name", 2, None),  # '' -> NULL
        ("flag", 3, 0),  # NULL -> false
        ("day", 1, "2026-11-29"),
    ],
)
def test_one_value_changed_in_sqlite_fails_the_check(tmp_path: Path, column: str, key: int, online: Any):
    warehouse, table = typed_export(tmp_path)
    store = SQLiteOnlineStore(path=str(tmp_path / "online.sqlite"))

    def tamper() -> None:
        with sqlite3.connect(store.path) as con:
            con.execute(f'UPDATE "verify__typed" SET "{column}" = ? WHERE id = ?', (online, key))

    check = export_and_verify(warehouse, store, table, tamper)
    assert not check.passed
    assert check.metadata["different_online"].value == 1
    assert f"key [{key}], column {column}:" in (check.description or "")


def test_a_key_reordered_json_or_an_equal_decimal_is_not_a_difference(tmp_path: Path):
    warehouse, table = typed_export(tmp_path)
    store = SQLiteOnlineStore(path=str(tmp_path / "online.sqlite"))

    def rewrite() -> None:
        with sqlite3.connect(store.path) as con:
            con.execute(
                'UPDATE "verify__typed" SET doc = ?, amount = ? WHERE id = 1',
                ('{"a":"é","b":[1,2.5]}', "12.34"),
            )

    assert export_and_verify(warehouse, store, table, rewrite).passed


def test_comparison_truncates_both_sides_to_the_store_precision():
    ms = dt.timedelta(milliseconds=1)
    warehouse = dt.datetime(2026, 11, 30, 9, 0, 0, 123456, tzinfo=UTC)
    assert comparable(warehouse, "TIMESTAMP", ms) == comparable(
        warehouse.replace(microsecond=123000), "TIMESTAMP", ms
    )
    assert comparable(warehouse, "TIMESTAMP", ms) != comparable(
        warehouse.replace(microsecond=124000), "TIMESTAMP", ms
    )
    assert comparable(warehouse, "TIMESTAMP", ms) != comparable(
        warehouse.replace(microsecond=122000), "TIMESTAMP", ms
    )
    # Before 1970 the floor is still the earlier millisecond (truncating toward zero would round up).
    early = dt.datetime(1969, 12, 31, 23, 59, 59, 999501, tzinfo=UTC)
    assert comparable(early, "TIMESTAMP", ms) == early.replace(microsecond=999000)
    # A naive value read back for a TIMESTAMP column is UTC; a DATETIME stays a wall time.
    assert comparable(warehouse.replace(tzinfo=None), "TIMESTAMP", ms) == comparable(
        warehouse, "TIMESTAMP", ms
    )
    wall = dt.datetime(2026, 1, 1, 0, 0, 0, 500)
    assert comparable(wall, "DATETIME", ms) == dt.datetime(2026, 1, 1)
    us = dt.timedelta(microseconds=1)
    assert comparable(warehouse, "TIMESTAMP", us) != comparable(
        warehouse.replace(microsecond=123000), "TIMESTAMP", us
    )


def tampering_trigger(settings: DeriveSettings) -> OnlineTable:
    """An online store that corrupts one column of every row it receives (a SQLite trigger)."""
    table = online_table(load_project(settings.specs_dir).export("user_profile_online"))
    store = build_online_store(settings)
    store.ensure_table(table)
    name = f"{table.keyspace}__{table.name}"
    with sqlite3.connect(store.path) as con:
        con.execute(
            f'CREATE TRIGGER tamper AFTER INSERT ON "{name}" '
            f"BEGIN UPDATE \"{name}\" SET region = 'tampered' WHERE rowid = NEW.rowid; END"
        )
    return table


def upstream(defs: Definitions, instance: DagsterInstance) -> None:
    for job in ("replicate_accounts", "replicate_profiles", "replicate_payments"):
        run_job(defs, instance, job)
    run_assets(defs, instance, "core/user_detail")


def test_failed_verification_blocks_the_downstream_asset_and_holds_the_watermark(
    settings: DeriveSettings, instance
):
    key = AssetKey(["online", "user_profile_online"])

    @asset(key=AssetKey(["apps", "profile_cache"]), deps=[key])
    def profile_cache() -> None:
        """Something that trusts the online table."""

    base = build_definitions(settings)
    defs = Definitions.merge(
        base,
        Definitions(
            assets=[profile_cache], jobs=[define_asset_job("export_then_cache", [key, profile_cache.key])]
        ),
    )
    upstream(defs, instance)
    tampering_trigger(settings)

    result = defs.resolve_job_def("export_then_cache").execute_in_process(
        instance=instance, run_config=QUIET, raise_on_error=False
    )
    assert not result.success
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "online_matches_warehouse" and not check.passed
    assert "column region: warehouse" in (check.description or "") and "online 'tampered'" in (
        check.description or ""
    )
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {key}
    assert instance.get_latest_materialization_event(profile_cache.key) is None  # blocked
    meta = result.get_asset_materialization_events()[0].step_materialization_data.materialization.metadata
    assert meta["derive/watermark"].value == meta["derive/watermark_before"].value is None  # not moved
    assert meta["derive/watermark_held"].value is True

    with sqlite3.connect(build_online_store(settings).path) as con:
        con.execute("DROP TRIGGER tamper")
    again = run_job(defs, instance, "export_then_cache")  # re-exports the same rows, verifies, unblocks
    assert again["online/user_profile_online"]["derive/rows_written"] == 500
    assert again["online/user_profile_online"]["derive/watermark"] is not None
    assert "apps/profile_cache" in again


def test_demo_prints_the_failed_check_and_skips_what_depends_on_it(settings: DeriveSettings, instance):
    lines: list[str] = []
    tampering_trigger(settings)
    summary = run_demo(settings, instance, users=300, days=1, say=lines.append)
    text = "\n".join(lines)
    assert [(c.name, c.asset) for c in summary.errors] == [
        ("online_matches_warehouse", "online/user_profile_online")
    ]
    assert (
        "FAILED check online_matches_warehouse on online/user_profile_online (ERROR): warehouse has" in text
    )
    assert "==> 1 check(s) failed:" in text and "online 'tampered'" in text


def test_derive_demo_exits_nonzero_when_a_table_check_fails(
    settings: DeriveSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    spec = settings.specs_dir / "analytics" / "daily_payments_by_region.yaml"
    spec.write_text(
        spec.read_text().replace("COALESCE(u.region, 'unknown')", "CONCAT('x-', COALESCE(u.region, ''))")
    )
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(settings.specs_dir))
    monkeypatch.setenv("DERIVE_HOME", str(settings.home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    code = cli.main(["demo", "--users", "300", "--days", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED check region_accepted_values on analytics/daily_payments_by_region (ERROR): " in out
    assert "rows break `accepted_values` on region" in out
    blocked = "skipped, upstream analytics/daily_payments_by_region failed a blocking check"
    assert f"==> online/region_payments_online: {blocked}" in out
    assert f"==> features/region_scores: {blocked}" in out
    assert "==> online/user_profile_online: " in out and "online/user_profile_online: skipped" not in out


def test_fewer_rows_written_than_the_slice_holds_fails_the_check(tmp_path: Path):
    warehouse, table = typed_export(tmp_path)
    store = SQLiteOnlineStore(path=str(tmp_path / "online.sqlite"))
    store.ensure_table(table)
    store.write(table, warehouse.iter_slice(exported(table), 10))
    check = verify(warehouse, store, table, TYPED, len(ROWS) - 1, len(ROWS))
    assert not check.passed
    assert (check.description or "").startswith(f"warehouse has {len(ROWS)} rows, {len(ROWS) - 1} written")


def test_with_a_ttl_a_missing_key_counts_as_expired_only_once_the_ttl_has_passed(tmp_path: Path):
    warehouse, table = typed_export(tmp_path)
    table = dataclasses.replace(table, ttl_seconds=30)
    store = SQLiteOnlineStore(path=str(tmp_path / "online.sqlite"))
    store.ensure_table(table)
    store.write(table, warehouse.iter_slice(exported(table), 10))
    with sqlite3.connect(tmp_path / "online.sqlite") as con:
        con.execute(f'DELETE FROM "{table.keyspace}__{table.name}" WHERE id = 1')
    fresh = verify(warehouse, store, table, TYPED, len(ROWS), len(ROWS), time.monotonic())
    assert not fresh.passed and fresh.metadata["missing_online"].value == 1
    old = verify(warehouse, store, table, TYPED, len(ROWS), len(ROWS), time.monotonic() - 31)
    assert old.passed, old.description
    assert old.metadata["expired_online"].value == 1 and old.metadata["missing_online"].value == 0
