"""Each strategy against a real DuckDB file: results, idempotency per window, and all-or-nothing failures."""

import datetime as dt

import duckdb
import pytest

from resources.duckdb_warehouse import DuckDBWarehouse
from resources.schema import ColumnDef
from resources.warehouse import (
    NullsInRequiredColumns,
    TargetTable,
    TimeWindow,
    WarehouseError,
    WriteRequest,
)

DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
DAY2 = TimeWindow(dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC))

TARGET = TargetTable(
    "analytics",
    "daily",
    (
        ColumnDef("day", "DATE", not_null=True),
        ColumnDef("region", "STRING"),
        ColumnDef("amount", "NUMERIC"),
    ),
    cluster=("region",),
    partition_key="day",
)

# The source: raw events the "derived" query aggregates per window.
EVENTS = [
    ("2026-01-01 10:00:00+00", "eu", 10.5),
    ("2026-01-01 11:00:00+00", "eu", 2.0),
    ("2026-01-01 12:00:00+00", "na", 7.0),
    ("2026-01-02 09:00:00+00", "na", 1.25),
]
QUERY = """
SELECT CAST(ts AS DATE) AS day, region, SUM(amount) AS amount
FROM raw.events WHERE ts >= $window_start AND ts < $window_end
GROUP BY ALL
"""


@pytest.fixture
def warehouse(tmp_path) -> DuckDBWarehouse:
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    with wh.get_connection() as con:
        con.execute(
            "CREATE SCHEMA raw; CREATE TABLE raw.events (ts TIMESTAMPTZ, region VARCHAR, amount DOUBLE)"
        )
        con.executemany("INSERT INTO raw.events VALUES (?, ?, ?)", EVENTS)
    return wh


def rows(wh: DuckDBWarehouse) -> list[tuple]:
    with wh.get_connection() as con:
        return con.execute("SELECT * FROM analytics.daily ORDER BY ALL").fetchall()


def request(strategy: str, window: TimeWindow, sql: str = QUERY) -> WriteRequest:
    key = ("day", "region") if strategy == "merge" else ()
    params = window.as_params() if "$window" in sql else {}
    return WriteRequest(TARGET, sql, params, strategy, key, window)  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", ["merge", "append"])
def test_windowed_strategies_are_idempotent_per_window(warehouse, strategy):
    first = warehouse.write(request(strategy, DAY1))
    assert first.rows_inserted == 2
    warehouse.write(request(strategy, DAY2))
    once = rows(warehouse)
    again = warehouse.write(request(strategy, DAY1))
    assert rows(warehouse) == once
    assert len(once) == 3
    if strategy == "merge":
        assert (again.rows_inserted, again.rows_updated) == (0, 2)
    else:
        assert (again.rows_inserted, again.rows_deleted) == (2, 2)


def test_merge_updates_changed_rows_and_keeps_other_windows(warehouse):
    warehouse.write(request("merge", DAY1))
    warehouse.write(request("merge", DAY2))
    with warehouse.get_connection() as con:
        con.execute("INSERT INTO raw.events VALUES ('2026-01-01 13:00:00+00', 'eu', 100)")
    result = warehouse.write(request("merge", DAY1))
    assert (result.rows_updated, result.rows_inserted) == (2, 0)
    assert [float(r[2]) for r in rows(warehouse)] == [112.5, 7.0, 1.25]


def test_replace_makes_table_exactly_the_query_output(warehouse):
    sql = "SELECT CAST(ts AS DATE) AS day, region, SUM(amount) AS amount FROM raw.events GROUP BY ALL"
    warehouse.write(WriteRequest(TARGET, sql, {}, "replace"))
    assert len(rows(warehouse)) == 3
    with warehouse.get_connection() as con:
        con.execute("DELETE FROM raw.events WHERE region = 'na'")
    result = warehouse.write(WriteRequest(TARGET, sql, {}, "replace"))
    assert (result.rows_deleted, result.rows_inserted) == (3, 1)
    assert [r[1] for r in rows(warehouse)] == ["eu"]


def test_cluster_keys_order_the_rows(warehouse):
    warehouse.write(request("append", DAY1))
    with warehouse.get_connection() as con:
        physical = [r[0] for r in con.execute("SELECT region FROM analytics.daily").fetchall()]
    assert physical == sorted(physical)


def test_failing_statement_leaves_target_unchanged(warehouse):
    warehouse.write(request("merge", DAY1))
    before = rows(warehouse)
    bad = "SELECT CAST(ts AS DATE) AS day, region, CAST(region AS DOUBLE) AS amount FROM raw.events"
    with pytest.raises(duckdb.ConversionException):
        warehouse.write(WriteRequest(TARGET, bad, {}, "replace"))
    assert rows(warehouse) == before


def test_not_null_violation_rolls_back(warehouse):
    warehouse.write(request("merge", DAY1))
    before = rows(warehouse)
    bad = "SELECT NULL AS day, 'eu' AS region, 1.0 AS amount"
    with pytest.raises(
        NullsInRequiredColumns, match=r"NULL in not_null columns \(rows per column: \{'day': 1\}\)"
    ):
        warehouse.write(WriteRequest(TARGET, bad, {}, "replace"))
    assert rows(warehouse) == before


def test_merge_rejects_duplicate_keys_and_writes_nothing(warehouse):
    warehouse.write(request("merge", DAY1))
    before = rows(warehouse)
    dupes = "SELECT CAST(ts AS DATE) AS day, region, amount FROM raw.events WHERE ts >= $window_start AND ts < $window_end"
    with pytest.raises(WarehouseError, match=r"several rows for 1 values of unique_key \['day', 'region'\]"):
        warehouse.write(request("merge", DAY1, dupes))
    assert rows(warehouse) == before


def test_append_rejects_rows_outside_the_window(warehouse):
    everything = "SELECT CAST(ts AS DATE) AS day, region, amount FROM raw.events"
    with pytest.raises(
        WarehouseError, match="1 rows whose partition key 'day' is NULL or lies outside the window"
    ):
        warehouse.write(request("append", DAY1, everything))
    assert not warehouse.table_exists("analytics.daily")  # even the CREATE TABLE was rolled back
