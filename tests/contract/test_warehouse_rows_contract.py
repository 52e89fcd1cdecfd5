"""The `Warehouse.write(request, batches)` contract for a Python asset's output (`WriteRequest.sql=None`), once for
every warehouse: the rows are staged, cast to the declared types, and written with the same strategies, row
accounting, rules and errors as a query's output."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from contract_engines import WarehouseEngine

from resources.schema import ColumnDef
from resources.warehouse import (
    DuplicateKeys,
    MissingColumns,
    NullKeys,
    NullsInRequiredColumns,
    OutOfWindowRows,
    TargetTable,
    TimeWindow,
    WriteRequest,
)

DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
DAY2 = TimeWindow(dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC))
COLUMNS = (
    ColumnDef("day", "DATE", not_null=True),
    ColumnDef("region", "STRING"),
    ColumnDef("amount", "NUMERIC"),
    ColumnDef("scored_at", "TIMESTAMP"),
)
NAMES = [c.name for c in COLUMNS]
T = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)


@pytest.fixture
def engine(warehouse_engine: WarehouseEngine) -> WarehouseEngine:
    return warehouse_engine


def target(engine: WarehouseEngine, **changes: Any) -> TargetTable:
    layout: dict[str, Any] = {"cluster": ("region",), "partition_key": "day"} | changes
    return TargetTable(engine.dataset, "scores", layout.pop("columns", COLUMNS), **layout)


def request(
    engine: WarehouseEngine, strategy: str, window: TimeWindow | None = DAY1, **changes: Any
) -> WriteRequest:
    key = ("day", "region") if strategy == "merge" else ()
    return WriteRequest(target(engine, **changes), None, {}, strategy, key, window)  # type: ignore[arg-type]


def scores(*rows: tuple[str, str | None, float]) -> pa.RecordBatch:
    """(day, region, amount) -> a batch as a pandas/Arrow asset returns it: `amount` a float, names in any case,
    an undeclared extra column."""
    return pa.RecordBatch.from_pylist(
        [
            {"Day": dt.date.fromisoformat(d), "region": r, "AMOUNT": a, "scored_at": T, "extra": 1}
            for d, r, a in rows
        ]
    )


def rows(engine: WarehouseEngine) -> list[tuple[Any, ...]]:
    return engine.rows(f"{engine.dataset}.scores", NAMES)


@pytest.mark.parametrize("strategy", ["merge", "append"])
def test_rows_are_written_with_the_declared_types_and_reruns_are_idempotent(engine, strategy):
    day1 = [scores(("2026-01-01", "eu", 1.5)), scores(("2026-01-01", "na", 2.25))]
    first = engine.warehouse.write(request(engine, strategy), day1)
    assert (first.rows_read, first.rows_inserted, first.rows_updated, first.rows_deleted) == (2, 2, 0, 0)
    engine.warehouse.write(request(engine, strategy, DAY2), [scores(("2026-01-02", "eu", 3.0))])
    once = rows(engine)
    assert once == [
        (dt.date(2026, 1, 1), "eu", Decimal("1.5"), T),
        (dt.date(2026, 1, 1), "na", Decimal("2.25"), T),
        (dt.date(2026, 1, 2), "eu", Decimal("3"), T),
    ]
    again = engine.warehouse.write(request(engine, strategy), iter(day1))
    assert rows(engine) == once
    expected = (2, 0, 2, 0) if strategy == "merge" else (2, 2, 0, 2)
    assert (again.rows_read, again.rows_inserted, again.rows_updated, again.rows_deleted) == expected


def test_merge_updates_and_inserts_by_key(engine):
    engine.warehouse.write(
        request(engine, "merge"), [scores(("2026-01-01", "eu", 1), ("2026-01-01", "na", 2))]
    )
    result = engine.warehouse.write(
        request(engine, "merge"), [scores(("2026-01-01", "eu", 5), ("2026-01-01", "apac", 7))]
    )
    assert (result.rows_read, result.rows_inserted, result.rows_updated) == (2, 1, 1)
    assert [r[1:3] for r in rows(engine)] == [
        ("apac", Decimal("7")),
        ("eu", Decimal("5")),
        ("na", Decimal("2")),
    ]


def test_replace_makes_the_table_exactly_the_rows(engine):
    engine.warehouse.write(
        request(engine, "replace", None), [scores(("2026-01-01", "eu", 1), ("2026-01-03", "na", 2))]
    )
    result = engine.warehouse.write(request(engine, "replace", None), [scores(("2026-01-09", "eu", 9))])
    assert (result.rows_read, result.rows_inserted, result.rows_deleted) == (1, 1, 2)
    assert rows(engine) == [(dt.date(2026, 1, 9), "eu", Decimal("9"), T)]
    empty = engine.warehouse.write(request(engine, "replace", None), [])
    assert (empty.rows_read, empty.rows_inserted, empty.rows_deleted, rows(engine)) == (0, 0, 1, [])


def test_rows_follow_the_cluster_keys(engine):
    regions = [f"r{n:02d}" for n in range(25, 0, -1)]
    batches = [scores(*(("2026-01-01", r, 1.0) for r in regions[i : i + 6])) for i in range(0, 25, 6)]
    engine.warehouse.write(request(engine, "append"), batches)
    ref = f"{engine.dataset}.scores"
    if engine.cluster_order_observable:
        assert engine.physical(ref, "region") == sorted(regions)
    else:
        assert engine.clustering(ref) == ["region"]


# ----------------------------------------------------------------------------------------------- refusals


def test_rows_outside_the_window_are_refused(engine):
    engine.warehouse.write(request(engine, "append", DAY2), [scores(("2026-01-02", "eu", 3))])
    before, tables = rows(engine), engine.tables()
    leaking = [scores(("2026-01-01", "eu", 1)), scores(("2026-01-02", "eu", 5))]
    with pytest.raises(
        OutOfWindowRows, match=r"returned 1 rows whose partition key 'day' is NULL or lies outside"
    ):
        engine.warehouse.write(request(engine, "append"), leaking)
    assert rows(engine) == before
    assert engine.tables() == tables


def test_duplicate_and_null_keys_are_refused(engine):
    with pytest.raises(DuplicateKeys, match=r"several rows for 1 values of unique_key \['day', 'region'\]"):
        engine.warehouse.write(
            request(engine, "merge"), [scores(("2026-01-01", "eu", 1)), scores(("2026-01-01", "eu", 2))]
        )
    with pytest.raises(NullKeys, match=r"1 rows with a NULL in unique_key \['day', 'region'\]"):
        engine.warehouse.write(request(engine, "merge"), [scores(("2026-01-01", None, 1))])
    assert not engine.warehouse.table_exists(f"{engine.dataset}.scores")


def test_nulls_in_not_null_columns_are_refused(engine):
    required = (*COLUMNS[:3], ColumnDef("scored_at", "TIMESTAMP", not_null=True))
    batch = pa.RecordBatch.from_pylist(
        [{"day": dt.date(2026, 1, 1), "region": "eu", "amount": 1.0, "scored_at": None}]
    )
    with pytest.raises(
        NullsInRequiredColumns, match=r"NULL in not_null columns \(rows per column: \{'scored_at': 1\}\)"
    ):
        engine.warehouse.write(request(engine, "replace", None, columns=required), [batch])
    assert not engine.warehouse.table_exists(f"{engine.dataset}.scores")


@pytest.mark.parametrize("strategy", ["merge", "append", "replace"])
def test_a_value_that_cannot_be_cast_fails_the_write_and_changes_nothing(engine, strategy):
    window = None if strategy == "replace" else DAY1
    engine.warehouse.write(request(engine, strategy, window), [scores(("2026-01-01", "eu", 1))])
    before, tables = rows(engine), engine.tables()
    good = {"day": "2026-01-01", "region": "na", "amount": "2", "scored_at": T.isoformat()}
    bad = pa.RecordBatch.from_pylist([good, {**good, "region": "xx", "amount": "not a number"}])
    with pytest.raises(engine.query_error, match="not a number"):
        engine.warehouse.write(request(engine, strategy, window), [bad])
    assert rows(engine) == before
    assert engine.tables() == tables


def test_a_declared_column_missing_from_the_rows_is_refused_by_name(engine):
    no_region = pa.RecordBatch.from_pylist([{"day": dt.date(2026, 1, 1), "amount": 1.0, "scored_at": T}])
    with pytest.raises(
        MissingColumns,
        match=rf"^{engine.dataset}\.scores: the asset's rows have no column \['region'\] \(they have",
    ):
        engine.warehouse.write(request(engine, "replace", None), [no_region])
    assert not engine.warehouse.table_exists(f"{engine.dataset}.scores")


def test_a_write_takes_a_query_or_batches(engine):
    with_sql = WriteRequest(target(engine), "SELECT 1", {}, "replace")
    with pytest.raises(ValueError, match="a write takes a query or Arrow batches, not both"):
        engine.warehouse.write(with_sql, [scores(("2026-01-01", "eu", 1))])
    with pytest.raises(ValueError, match=r"a write without a query \(sql=None\) needs Arrow batches"):
        engine.warehouse.write(request(engine, "replace", None))
