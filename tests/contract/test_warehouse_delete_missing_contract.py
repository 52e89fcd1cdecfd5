"""The `delete_missing` contract (a merge option), once for every warehouse: a windowed merge also deletes the
window's target rows whose key the run no longer outputs, counts them in `rows_deleted`, and never touches a row
outside its window; without a window it means the whole table; where it cannot be scoped it is refused before
anything is written.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from contract_engines import WarehouseEngine

from resources.schema import ColumnDef
from resources.warehouse import DuplicateKeys, TargetTable, TimeWindow, WarehouseError, WriteRequest

UTC = dt.UTC
DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 2, tzinfo=UTC))
DAY2 = TimeWindow(dt.datetime(2026, 1, 2, tzinfo=UTC), dt.datetime(2026, 1, 3, tzinfo=UTC))

COLUMNS = (
    ColumnDef("day", "DATE", not_null=True),
    ColumnDef("region", "STRING"),
    ColumnDef("amount", "NUMERIC"),
)
NAMES = [c.name for c in COLUMNS]
EVENTS = [
    {"ts": dt.datetime(2026, 1, 1, 10, tzinfo=UTC), "region": "eu", "amount": 10.5},
    {"ts": dt.datetime(2026, 1, 1, 12, tzinfo=UTC), "region": "na", "amount": 7.0},
    {"ts": dt.datetime(2026, 1, 2, 9, tzinfo=UTC), "region": "na", "amount": 1.25},
    {"ts": dt.datetime(2026, 1, 2, 11, tzinfo=UTC), "region": "eu", "amount": 3.0},
]
EVENT_COLUMNS = [("ts", "TIMESTAMP"), ("region", "STRING"), ("amount", "FLOAT64")]
DAILY = (
    "SELECT CAST(ts AS DATE) AS day, region, SUM(amount) AS amount FROM {ds}.events "
    "WHERE ts >= {p}window_start AND ts < {p}window_end GROUP BY 1, 2"
)
BOTH_DAYS = [
    (dt.date(2026, 1, 1), "eu", Decimal("10.5")),
    (dt.date(2026, 1, 1), "na", Decimal("7")),
    (dt.date(2026, 1, 2), "eu", Decimal("3")),
    (dt.date(2026, 1, 2), "na", Decimal("1.25")),
]


@pytest.fixture
def engine(warehouse_engine: WarehouseEngine) -> WarehouseEngine:
    warehouse_engine.create_source("events", EVENT_COLUMNS, EVENTS)
    return warehouse_engine


def target(engine: WarehouseEngine) -> TargetTable:
    return TargetTable(engine.dataset, "daily", COLUMNS, cluster=("region",), partition_key="day")


def merge(
    engine: WarehouseEngine,
    window: TimeWindow | None,
    sql: str = DAILY,
    unique_key: tuple[str, ...] = ("day", "region"),
    **options: Any,
) -> WriteRequest:
    text = engine.sql(sql)
    params = window.as_params() if window is not None and "window_start" in text else {}
    return WriteRequest(target(engine), text, params, "merge", unique_key, window, **options)


def rows(engine: WarehouseEngine) -> list[tuple[Any, ...]]:
    return engine.rows(f"{engine.dataset}.daily", NAMES)


def seed(engine: WarehouseEngine) -> None:
    engine.warehouse.write(merge(engine, DAY1))
    engine.warehouse.write(merge(engine, DAY2))
    assert rows(engine) == BOTH_DAYS


def test_delete_missing_removes_stale_keys_only_inside_the_window(engine):
    """Day 1's 'eu' events are gone: its aggregate row goes; day 2's 'eu' row (same region) stays."""
    seed(engine)
    engine.execute(engine.sql("DELETE FROM {ds}.events WHERE region = 'eu' AND ts < TIMESTAMP '2026-01-02'"))
    result = engine.warehouse.write(merge(engine, DAY1, delete_missing=True))
    assert (result.rows_read, result.rows_inserted, result.rows_updated, result.rows_deleted) == (1, 0, 1, 1)
    assert rows(engine) == [BOTH_DAYS[1], BOTH_DAYS[2], BOTH_DAYS[3]]
    assert engine.tables() == ["daily", "events"]


def test_without_delete_missing_a_stale_key_stays(engine):
    """The default merge (what `delete_missing` changes): a key the run no longer outputs keeps its old row."""
    seed(engine)
    engine.execute(engine.sql("DELETE FROM {ds}.events WHERE region = 'eu' AND ts < TIMESTAMP '2026-01-02'"))
    result = engine.warehouse.write(merge(engine, DAY1))
    assert (result.rows_read, result.rows_updated, result.rows_deleted) == (1, 1, 0)
    assert rows(engine) == BOTH_DAYS


def test_delete_missing_empties_a_window_the_run_returns_nothing_for(engine):
    seed(engine)
    engine.execute(engine.sql("DELETE FROM {ds}.events WHERE ts >= TIMESTAMP '2026-01-02'"))
    result = engine.warehouse.write(merge(engine, DAY2, delete_missing=True))
    assert (result.rows_read, result.rows_inserted, result.rows_updated, result.rows_deleted) == (0, 0, 0, 2)
    assert rows(engine) == BOTH_DAYS[:2]


def test_delete_missing_with_nothing_stale_deletes_nothing(engine):
    seed(engine)
    result = engine.warehouse.write(merge(engine, DAY2, delete_missing=True))
    assert (result.rows_read, result.rows_updated, result.rows_deleted) == (2, 2, 0)
    assert rows(engine) == BOTH_DAYS


def test_delete_missing_on_a_first_run_writes_the_rows(engine):
    result = engine.warehouse.write(merge(engine, DAY1, delete_missing=True))
    assert (result.rows_read, result.rows_inserted, result.rows_deleted) == (2, 2, 0)
    assert rows(engine) == BOTH_DAYS[:2]


def test_delete_missing_without_a_window_makes_the_table_the_query_output(engine):
    """A run without a window returns every row the table should hold: a missing key goes, wherever it lies."""
    seed(engine)
    everything = (
        "SELECT CAST(ts AS DATE) AS day, region, SUM(amount) AS amount FROM {ds}.events "
        "WHERE region = 'na' GROUP BY 1, 2"
    )
    result = engine.warehouse.write(merge(engine, None, everything, delete_missing=True))
    assert (result.rows_read, result.rows_updated, result.rows_deleted) == (2, 2, 2)
    assert rows(engine) == [BOTH_DAYS[1], BOTH_DAYS[3]]


def test_a_refused_delete_missing_run_deletes_nothing(engine):
    seed(engine)
    per_event = "SELECT CAST(ts AS DATE) AS day, region, amount FROM {ds}.events WHERE region = 'na'"
    with pytest.raises(DuplicateKeys):
        engine.warehouse.write(
            merge(engine, None, per_event + " UNION ALL " + per_event, delete_missing=True)
        )
    assert rows(engine) == BOTH_DAYS


@pytest.mark.parametrize(
    ("strategy", "unique_key", "message"),
    [
        ("append", (), r"delete_missing is an option of the merge strategy, not of append"),
        (
            "merge",
            ("region",),
            r"delete_missing on a windowed merge needs a partitioned table whose partition key is part of "
            r"unique_key \['region'\] \(partition key: day\)",
        ),
    ],
    ids=["append", "merge-key-without-partition-key"],
)
def test_delete_missing_that_cannot_be_scoped_is_refused_before_anything_is_written(
    engine, strategy, unique_key, message
):
    seed(engine)
    one_region = "SELECT DATE '2026-01-01' AS day, 'eu' AS region, 1.0 AS amount"
    request = WriteRequest(target(engine), one_region, {}, strategy, unique_key, DAY1, delete_missing=True)  # type: ignore[arg-type]
    with pytest.raises(WarehouseError, match=rf"^{engine.dataset}\.daily: {message}.*Nothing was written\.$"):
        engine.warehouse.write(request)
    assert rows(engine) == BOTH_DAYS
