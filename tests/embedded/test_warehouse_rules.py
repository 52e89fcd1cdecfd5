"""The rules of `resources.warehouse_rules` against a real DuckDB file: each refusal names the table and the fix,
and leaves the target exactly as it was. The same scenarios run on BigQuery in
`tests/integration/test_bigquery_rules.py`."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from resources.duckdb_warehouse import DuckDBWarehouse, lock_holder
from resources.schema import ColumnDef
from resources.warehouse import (
    DuplicateKeys,
    LoadRequest,
    MissingColumns,
    NullKeys,
    NullsInRequiredColumns,
    OutOfWindowRows,
    TargetTable,
    TimeWindow,
    WarehouseLocked,
    WarehouseUnavailable,
    WriteRequest,
)

DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
DAILY = TargetTable(
    "analytics",
    "daily",
    (
        ColumnDef("day", "DATE", not_null=True),
        ColumnDef("region", "STRING"),
        ColumnDef("amount", "NUMERIC"),
    ),
    partition_key="day",
)
IN_WINDOW = "SELECT DATE '2026-01-01' AS day, 'eu' AS region, 1 AS amount"
# The reproduction: the window is 2026-01-01, the query also returns a row of 2026-01-02.
LEAKING = IN_WINDOW + " UNION ALL SELECT DATE '2026-01-02', 'eu', 5"

ORDERS = TargetTable(
    "raw",
    "orders",
    (
        ColumnDef("order_id", "INT64"),
        ColumnDef("status", "STRING"),
        ColumnDef("updated_at", "TIMESTAMP"),
    ),
)
LOAD = LoadRequest(ORDERS, ("order_id",), "updated_at")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))


def table(wh: DuckDBWarehouse, ref: str) -> list[tuple[Any, ...]]:
    with wh.get_connection() as con:
        return con.execute(f"SELECT * FROM {ref} ORDER BY ALL").fetchall()


def orders(*rows: tuple[int | None, str, int]) -> pa.RecordBatch:
    """(order_id, status, updated minute) -> one source batch."""
    return pa.RecordBatch.from_pylist(
        [{"order_id": i, "status": s, "updated_at": T0 + dt.timedelta(minutes=m)} for i, s, m in rows],
        pa.schema(
            [("order_id", pa.int64()), ("status", pa.string()), ("updated_at", pa.timestamp("us", "UTC"))]
        ),
    )


# ----------------------------------------------------------------------------------------------- windows


@pytest.mark.parametrize("unique_key", [("day", "region"), ("region",)])
def test_merge_refuses_rows_outside_its_window_and_writes_nothing(warehouse, unique_key):
    """With `day` in the key the delete is window-scoped, so the 01-02 row would sit next to the old one."""
    warehouse.write(WriteRequest(DAILY, IN_WINDOW.replace("'2026-01-01'", "'2026-01-02'"), {}, "append"))
    warehouse.write(WriteRequest(DAILY, IN_WINDOW, {}, "merge", unique_key, DAY1))
    before = table(warehouse, "analytics.daily")
    with pytest.raises(OutOfWindowRows) as caught:
        warehouse.write(WriteRequest(DAILY, LEAKING, {}, "merge", unique_key, DAY1))
    why = (
        "a merge by a key that holds 'day' replaces old rows only inside the window, so those rows would be "
        "inserted next to the rows they should replace"
        if "day" in unique_key
        else "each run owns only its window's partition"
    )
    assert str(caught.value) == (
        "analytics.daily: the query returned 1 rows whose partition key 'day' is NULL or lies outside the window "
        f"[2026-01-01T00:00:00+00:00, 2026-01-02T00:00:00+00:00); a merge run may only write its own window ({why})"
        ". Filter the query with @window_start/@window_end on the column it outputs as 'day'. Nothing was written."
    )
    error = caught.value
    assert (error.ref, error.count, error.window, error.key, error.strategy) == (
        "analytics.daily",
        1,
        DAY1,
        "day",
        "merge",
    )
    assert table(warehouse, "analytics.daily") == before


def test_append_counts_a_null_partition_key_as_outside_the_window(warehouse):
    nullable = TargetTable("analytics", "daily", (ColumnDef("day", "DATE"),), partition_key="day")
    sql = "SELECT DATE '2026-01-01' AS day UNION ALL SELECT NULL UNION ALL SELECT NULL"
    with pytest.raises(
        OutOfWindowRows, match=r"2 rows whose partition key 'day' is NULL or lies outside"
    ) as caught:
        warehouse.write(WriteRequest(nullable, sql, {}, "append", (), DAY1))
    assert caught.value.strategy == "append"
    assert not warehouse.table_exists("analytics.daily")  # the CREATE TABLE was rolled back too


def test_unwindowed_merge_may_write_any_day(warehouse):
    result = warehouse.write(WriteRequest(DAILY, LEAKING, {}, "merge", ("day", "region")))
    assert result.rows_inserted == 2


def test_merge_duplicate_keys_show_samples(warehouse):
    sql = "SELECT DATE '2026-01-01' AS day, 'r' || (i % 7) AS region, 1 AS amount FROM range(20) t(i)"
    with pytest.raises(DuplicateKeys) as caught:
        warehouse.write(WriteRequest(DAILY, sql, {}, "merge", ("day", "region"), DAY1))
    error = caught.value
    assert (error.count, error.role, len(error.samples)) == (7, "unique_key", 5)
    assert error.samples[0] == (dt.date(2026, 1, 1), "r0")
    assert (
        "several rows for 7 values of unique_key ['day', 'region'] (e.g. (datetime.date(2026, 1, 1), 'r0')"
        in str(error)
    )


# ----------------------------------------------------------------------------------------------- loads


def test_first_load_refuses_a_duplicated_primary_key(warehouse):
    batches = [orders((1, "new", 1), (2, "new", 2)), orders((2, "paid", 3), (3, "new", 4))]
    with pytest.raises(DuplicateKeys) as caught:
        warehouse.load(LOAD, iter(batches))
    assert str(caught.value) == (
        "raw.orders: the source sent several rows for 1 values of primary key ['order_id'] (e.g. 2) in one "
        "extraction, so the key is not unique in the source and a load would keep only one of them (or all of "
        "them, on a first load). Declare a primary_key that is unique in the source. Nothing was written."
    )
    assert (caught.value.count, caught.value.samples, caught.value.role) == (1, ((2,),), "primary_key")
    assert not warehouse.table_exists("raw.orders")


def test_later_load_refuses_duplicates_and_keeps_the_table(warehouse):
    warehouse.load(LOAD, iter([orders((1, "new", 1), (2, "new", 2))]))
    before = table(warehouse, "raw.orders")
    keys = [(k, "paid", 10 + n) for n in range(2) for k in range(1, 9)]  # keys 1..8, twice each
    with pytest.raises(
        DuplicateKeys,
        match=r"several rows for 8 values of primary key \['order_id'\] \(e\.g\. 1, 2, 3, 4, 5\)",
    ):
        warehouse.load(LOAD, iter([orders(*keys)]))
    assert table(warehouse, "raw.orders") == before


def test_a_later_load_merges_and_its_watermark_is_the_newest_loaded_row(warehouse):
    warehouse.load(LOAD, iter([orders((1, "new", 1), (2, "new", 2))]))
    result = warehouse.load(LOAD, iter([orders((2, "paid", 7)), orders((3, "new", 5))]))
    assert (result.rows_read, result.rows_inserted, result.rows_updated) == (2, 1, 1)
    assert result.max_cursor == T0 + dt.timedelta(minutes=7)
    assert [r[:2] for r in table(warehouse, "raw.orders")] == [(1, "new"), (2, "paid"), (3, "new")]


@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("not_null", [False, True])
def test_load_refuses_a_null_primary_key(warehouse, first, not_null):
    """Declared `not_null` or not, a NULL key is a `NullKeys` error, never a bare constraint error."""
    columns = (
        ColumnDef("order_id", "INT64", not_null=not_null),
        *ORDERS.columns[1:],
    )
    load = LoadRequest(TargetTable("raw", "orders", columns), ("order_id",), "updated_at")
    if not first:
        warehouse.load(load, iter([orders((1, "new", 1))]))
    before = table(warehouse, "raw.orders") if not first else None
    with pytest.raises(
        NullKeys, match=r"raw.orders: the source sent 2 rows with a NULL in primary key \['order_id'\]"
    ):
        warehouse.load(load, iter([orders((5, "new", 2), (None, "x", 3), (None, "y", 4))]))
    if first:
        assert not warehouse.table_exists("raw.orders")
    else:
        assert table(warehouse, "raw.orders") == before


def test_load_refuses_nulls_in_not_null_columns(warehouse):
    columns = (
        *ORDERS.columns[:1],
        ColumnDef("status", "STRING", not_null=True),
        ORDERS.columns[2],
    )
    load = LoadRequest(TargetTable("raw", "orders", columns), ("order_id",), "updated_at")
    bad = pa.RecordBatch.from_pylist(
        [{"order_id": 1, "status": None, "updated_at": T0}], orders((1, "x", 1)).schema
    )
    with pytest.raises(
        NullsInRequiredColumns,
        match=r"the source sent NULL in not_null columns \(rows per column: \{'status': 1\}\)",
    ):
        warehouse.load(load, iter([bad]))
    assert not warehouse.table_exists("raw.orders")


# ----------------------------------------------------------------------------------------------- the lock

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes stdin
"""


def test_a_run_waiting_too_long_for_the_lock_names_the_holder(tmp_path: Path):
    path = str(tmp_path / "wh.duckdb")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        warehouse = DuckDBWarehouse(path=path, lock_timeout_seconds=0.5)
        started = time.monotonic()
        with pytest.raises(WarehouseLocked) as caught:
            warehouse.row_count("raw.orders")
        assert time.monotonic() - started < 30  # a bound, not a timing assertion
    finally:
        holder.communicate("")
    error = caught.value
    message = str(error)
    assert message.startswith(f"DuckDB warehouse {path} is locked by another process (PID {holder.pid}, ")
    assert re.search(r": waited \d+\.\d s \(lock_timeout_seconds=0\.5\)\. One process writes", message)
    assert (
        "wait for that run to finish (or stop that process), or raise the DuckDB warehouse's `lock_timeout_seconds`"
        in message
    )
    assert error.waited_seconds >= 0.5
    assert error.holder is not None and error.holder.startswith(f"PID {holder.pid}, ")
    assert not warehouse.table_exists("raw.orders")  # the holder is gone: the file opens again


def test_lock_holder_is_read_from_duckdbs_message():
    message = (
        'IO Error: Could not set lock on file "/w.duckdb": Conflicting lock is held in /usr/bin/python3.11 '
        "(PID 4242). See also https://duckdb.org/docs/stable/connect/concurrency"
    )
    assert lock_holder(message) == "PID 4242, /usr/bin/python3.11"
    assert lock_holder("IO Error: Could not set lock on file") is None


def test_a_file_that_is_not_a_duckdb_database_is_one_clear_error(tmp_path: Path):
    path = tmp_path / "warehouse.txt"
    path.write_text("not a database")
    warehouse = DuckDBWarehouse(path=str(path))
    with pytest.raises(
        WarehouseUnavailable,
        match=r"^the DuckDB warehouse .*warehouse\.txt cannot be opened: .*"
        r"Point DERIVE_DUCKDB_PATH \(or DERIVE_HOME\) at a DuckDB file",
    ) as caught:
        warehouse.write(WriteRequest(DAILY, "SELECT 1", {}, "replace"))
    assert not isinstance(caught.value, WarehouseLocked)
    assert path.read_text() == "not a database"


# ----------------------------------------------------------------------------------------------- settings


def test_bigquery_timeouts_come_from_the_settings(monkeypatch):
    from derive_assets.factory.build import build_warehouse
    from derive_assets.settings import DeriveSettings

    monkeypatch.setenv("DERIVE_WAREHOUSE", "bigquery")
    monkeypatch.setenv("DERIVE_BIGQUERY_PROJECT", "p")
    monkeypatch.setenv("DERIVE_BIGQUERY_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("DERIVE_BIGQUERY_RETRY_DEADLINE_SECONDS", "7.5")
    warehouse = build_warehouse(DeriveSettings.from_env())
    assert (warehouse.timeout_seconds, warehouse.retry_deadline_seconds) == (5.0, 7.5)
    monkeypatch.delenv("DERIVE_BIGQUERY_TIMEOUT_SECONDS")
    assert build_warehouse(DeriveSettings.from_env()).timeout_seconds == 60.0


@pytest.mark.parametrize("value", ["soon", "0", "-3", "inf", "nan"])
def test_a_bad_timeout_setting_names_the_variable(monkeypatch, value):
    from derive_assets.settings import DeriveSettings

    monkeypatch.setenv("DERIVE_BIGQUERY_RETRY_DEADLINE_SECONDS", value)
    with pytest.raises(
        ValueError,
        match=rf"^DERIVE_BIGQUERY_RETRY_DEADLINE_SECONDS='{value}' is not a number of seconds greater than 0 "
        r"\(default 120\)$",
    ):
        DeriveSettings.from_env()


# ----------------------------------------------------------------------------------------------- Arrow rows


def daily_rows(*rows: tuple[str, str | None, int]) -> pa.RecordBatch:
    """(day, region, amount) -> a Python asset's output batch; `amount` as int64, the table says NUMERIC."""
    return pa.RecordBatch.from_pylist(
        [{"Day": dt.date.fromisoformat(d), "region": r, "amount": a, "extra": 1} for d, r, a in rows]
    )


def test_arrow_rows_merge_by_key_with_the_declared_types(warehouse):
    merge = WriteRequest(DAILY, None, {}, "merge", ("day", "region"), DAY1)
    first = warehouse.write(merge, [daily_rows(("2026-01-01", "eu", 1)), daily_rows(("2026-01-01", "na", 2))])
    assert (first.rows_read, first.rows_inserted, first.rows_updated) == (2, 2, 0)
    again = warehouse.write(merge, iter([daily_rows(("2026-01-01", "eu", 5))]))
    assert (again.rows_read, again.rows_inserted, again.rows_updated) == (1, 0, 1)
    assert table(warehouse, "analytics.daily") == [
        (dt.date(2026, 1, 1), "eu", Decimal("5.000000000")),
        (dt.date(2026, 1, 1), "na", Decimal("2.000000000")),
    ]


def test_arrow_rows_follow_the_same_rules(warehouse):
    leaking = [daily_rows(("2026-01-01", "eu", 1), ("2026-01-02", "eu", 5))]
    with pytest.raises(
        OutOfWindowRows, match=r"returned 1 rows whose partition key 'day' is NULL or lies outside"
    ):
        warehouse.write(WriteRequest(DAILY, None, {}, "append", (), DAY1), leaking)
    no_region = pa.RecordBatch.from_pylist([{"day": dt.date(2026, 1, 1), "amount": 1}])
    with pytest.raises(
        MissingColumns, match=r"^analytics\.daily: the asset's rows have no column \['region'\] \(they have"
    ):
        warehouse.write(WriteRequest(DAILY, None, {}, "replace"), [no_region])
    assert not warehouse.table_exists("analytics.daily")
    empty = warehouse.write(WriteRequest(DAILY, None, {}, "replace"), [])
    assert (empty.rows_read, table(warehouse, "analytics.daily")) == (0, [])


def test_a_write_takes_a_query_or_batches(warehouse):
    with pytest.raises(ValueError, match="a write takes a query or Arrow batches, not both"):
        warehouse.write(WriteRequest(DAILY, IN_WINDOW, {}, "replace"), [daily_rows()])
    with pytest.raises(ValueError, match=r"a write without a query \(sql=None\) needs Arrow batches"):
        warehouse.write(WriteRequest(DAILY, None, {}, "replace"))


# ----------------------------------------------------------------------------------------------- capabilities


def test_a_multi_statement_strategy_needs_a_transactional_session():
    from resources.bigquery_warehouse import BigQueryWarehouse
    from resources.engine import Capabilities

    assert DuckDBWarehouse.CAPABILITIES.transactional_session
    assert BigQueryWarehouse.CAPABILITIES.upsert == "merge"
    with pytest.raises(TypeError, match=r"\['insert_overwrite'\] run several statements, which is only safe"):
        Capabilities(
            transactional_session=False,
            upsert="merge",
            insert_overwrite="delete_insert",
            replace="script",
            dml_row_counts=False,
            cluster_by_insert_order=False,
            direct_first_load=False,
        )
