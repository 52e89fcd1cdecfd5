"""The `Warehouse.load` contract (replication), once for every warehouse: first loads vs later loads, merges by
primary key, soft deletes, row accounting, the watermark (`max_cursor`), cluster order, and refusals of NULL or
duplicated keys and NULLs in not_null columns that leave the target exactly as it was."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from contract_engines import WarehouseEngine, record_batches

from resources.schema import ColumnDef
from resources.warehouse import (
    DuplicateKeys,
    LoadRequest,
    NullKeys,
    NullsInRequiredColumns,
    TargetTable,
    WriteResult,
)

ORDERS = TargetTable(
    "",
    "orders",
    (
        ColumnDef("order_id", "INT64", not_null=True),
        ColumnDef("status", "STRING"),
        ColumnDef("amount", "NUMERIC"),
        ColumnDef("placed_local", "DATETIME"),
        ColumnDef("attrs", "JSON"),
        ColumnDef("updated_at", "TIMESTAMP"),
        ColumnDef("deleted_at", "TIMESTAMP"),
    ),
    cluster=("order_id",),
)
ARROW = pa.schema(
    [
        ("order_id", pa.int64()),
        ("status", pa.string()),
        ("amount", pa.decimal128(38, 10)),  # as connectorx sends numeric(12,2)
        ("placed_local", pa.timestamp("us")),
        ("attrs", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("deleted_at", pa.timestamp("us", tz="UTC")),
    ]
)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
COUNTERS = ("rows_read", "rows_inserted", "rows_updated", "rows_deleted")


def batch(*records: tuple[int | None, str, str, int, int | None]) -> pa.RecordBatch:
    """(order_id, status, amount, updated minute, deleted minute) -> one source batch."""
    columns: dict[str, list[Any]] = {name: [] for name in ARROW.names}
    for order_id, status, amount, updated, deleted in records:
        columns["order_id"].append(order_id)
        columns["status"].append(status)
        columns["amount"].append(Decimal(amount))
        columns["placed_local"].append(dt.datetime(2026, 1, 1, 8) + dt.timedelta(minutes=order_id or 0))
        columns["attrs"].append(f'{{"n": {order_id}}}')
        columns["updated_at"].append(T0 + dt.timedelta(minutes=updated))
        columns["deleted_at"].append(None if deleted is None else T0 + dt.timedelta(minutes=deleted))
    return pa.RecordBatch.from_pydict(columns, schema=ARROW)


# The newest row is neither first nor last in either stream, so a watermark taken any other way shows.
FIRST = [
    batch((1, "new", "10.50", 1, None), (2, "new", "20.0000000001", 9, None)),
    batch((3, "new", "3", 3, None)),
]
SECOND = [
    batch((1, "paid", "10.50", 10, None), (2, "new", "20", 11, 11)),  # 1 updated, 2 soft-deleted
    batch((5, "new", "5", 15, 14)),  # created and deleted between runs: never inserted
    batch((4, "new", "4", 12, None)),  # 4 is new
]


@pytest.fixture
def engine(warehouse_engine: WarehouseEngine) -> WarehouseEngine:
    return warehouse_engine


def orders(engine: WarehouseEngine, **changes: Any) -> TargetTable:
    return dataclasses.replace(ORDERS, dataset=engine.dataset, **changes)


def load_request(
    engine: WarehouseEngine, soft_delete: str | None = "deleted_at", **changes: Any
) -> LoadRequest:
    return LoadRequest(orders(engine, **changes), ("order_id",), "updated_at", soft_delete)


def counts(result: WriteResult) -> list[int]:
    return [getattr(result, c) for c in COUNTERS]


def table(engine: WarehouseEngine) -> list[tuple[Any, ...]]:
    """(order_id, status, amount, placed_local, attrs) as plain values, comparable across warehouses."""
    found = engine.rows(f"{engine.dataset}.orders", ["order_id", "status", "amount", "placed_local", "attrs"])
    return [(*r[:4], json.loads(r[4]) if isinstance(r[4], str) else r[4]) for r in found]


# ----------------------------------------------------------------------------------------------- loads


def test_load_merges_newest_rows_and_drops_soft_deleted_ones(engine):
    load = load_request(engine)
    first = engine.warehouse.load(load, iter(FIRST))
    assert counts(first) == [3, 3, 0, 0]
    assert first.max_cursor == T0 + dt.timedelta(minutes=9)
    second = engine.warehouse.load(load, iter(SECOND))
    assert counts(second) == [4, 1, 1, 1]
    assert second.max_cursor == T0 + dt.timedelta(minutes=15)
    assert second.extra["soft_deleted_rows_read"] == 2
    assert table(engine) == [
        (1, "paid", Decimal("10.5"), dt.datetime(2026, 1, 1, 8, 1), {"n": 1}),
        (3, "new", Decimal("3"), dt.datetime(2026, 1, 1, 8, 3), {"n": 3}),
        (4, "new", Decimal("4"), dt.datetime(2026, 1, 1, 8, 4), {"n": 4}),
    ]


def test_a_rerun_of_the_same_extraction_changes_nothing(engine):
    load = load_request(engine)
    engine.warehouse.load(load, iter(FIRST))
    engine.warehouse.load(load, iter(SECOND))
    before = table(engine)
    again = engine.warehouse.load(load, iter(SECOND))
    assert table(engine) == before
    # 1 and 4 are matched and rewritten; 2 was deleted already, 5 never existed: nothing left to delete.
    assert counts(again) == [4, 0, 2, 0]
    assert again.max_cursor == T0 + dt.timedelta(minutes=15)


def test_a_first_load_counts_soft_deleted_rows_as_not_inserted(engine):
    load = load_request(engine)
    stream = [batch((1, "new", "1", 1, None), (2, "gone", "2", 2, 2)), batch((3, "new", "3", 3, None))]
    result = engine.warehouse.load(load, iter(stream))
    assert counts(result) == [3, 2, 0, 0]
    assert result.extra["soft_deleted_rows_read"] == 1
    assert result.max_cursor == T0 + dt.timedelta(minutes=3)
    assert [r[0] for r in table(engine)] == [1, 3]


def test_a_bool_soft_delete_column_drops_rows_flagged_true(engine):
    columns = (*ORDERS.columns[:-1], ColumnDef("deleted", "BOOL"))
    schema = pa.schema([*list(ARROW)[:-1], ("deleted", pa.bool_())])

    def flagged(rows: list[tuple[int, bool | None]], minute: int) -> pa.RecordBatch:
        base = batch(*((k, "s", "1", minute, None) for k, _ in rows)).to_pylist()
        return pa.RecordBatch.from_pylist(
            [
                {**{k: v for k, v in b.items() if k != "deleted_at"}, "deleted": d}
                for b, (_, d) in zip(base, rows, strict=True)
            ],
            schema,
        )

    load = load_request(engine, soft_delete="deleted", columns=columns)
    first = engine.warehouse.load(load, iter([flagged([(1, False), (2, None), (3, True)], 1)]))
    assert counts(first) == [3, 2, 0, 0]
    second = engine.warehouse.load(load, iter([flagged([(1, True), (2, False)], 2)]))
    assert counts(second) == [2, 0, 1, 1]
    assert [r[0] for r in table(engine)] == [2]


def test_load_parses_text_columns(engine):
    """Sources such as SQLite send timestamps (without a zone), numbers and keys as text."""
    text = pa.RecordBatch.from_pylist(
        [
            {
                "order_id": str(n),
                "status": "new",
                "amount": f"{n}.125",
                "placed_local": f"2026-01-01 08:0{n}:00",
                "attrs": "[1, 2]",
                "updated_at": f"2026-01-01 00:0{n}:00.5",
                "deleted_at": "2026-01-01 00:09:00" if n == 2 else None,
            }
            for n in (1, 2)
        ],
        pa.schema([(name, pa.string()) for name in ARROW.names]),
    )
    result = engine.warehouse.load(load_request(engine), iter([text]))
    assert (result.rows_read, result.rows_inserted, result.max_cursor) == (
        2,
        1,
        dt.datetime(2026, 1, 1, 0, 2, 0, 500000, tzinfo=dt.UTC),
    )
    assert table(engine) == [(1, "new", Decimal("1.125"), dt.datetime(2026, 1, 1, 8, 1), [1, 2])]


def test_an_empty_first_load_creates_the_table(engine):
    empty = engine.warehouse.load(load_request(engine, soft_delete=None), iter([]))
    assert (*counts(empty), empty.max_cursor) == (0, 0, 0, 0, None)
    ref = f"{engine.dataset}.orders"
    assert engine.warehouse.table_exists(ref)
    assert engine.warehouse.row_count(ref) == 0
    assert engine.clustering(ref) in (None, ["order_id"])
    later = engine.warehouse.load(load_request(engine, soft_delete=None), iter([]))
    assert (*counts(later), later.max_cursor) == (0, 0, 0, 0, None)


def test_load_rounds_numeric_to_nine_places(engine):
    engine.warehouse.load(load_request(engine, soft_delete=None), iter(FIRST))
    amounts = engine.query(engine.sql("SELECT amount FROM {ds}.orders ORDER BY order_id"))
    assert amounts == [(Decimal("10.5"),), (Decimal("20.000000000"),), (Decimal("3"),)]


def test_rows_merged_by_a_later_load_follow_the_cluster_keys(engine):
    """A first load streams each batch straight into the table (no staging copy), in the order it arrives; a
    later load inserts its staged rows sorted by the cluster keys."""
    load = load_request(engine, soft_delete=None)
    engine.warehouse.load(load, iter([batch((100, "x", "1", 0, None))]))
    descending = [(k, "new", "1", k, None) for k in range(40, 0, -1)]
    engine.warehouse.load(load, record_batches(batch(*descending).to_pylist(), ARROW, size=7))
    ref = f"{engine.dataset}.orders"
    if engine.cluster_order_observable:
        physical = engine.physical(ref, "order_id")
        new = [k for k in physical if k != 100]
        assert new == sorted(new)
    else:
        assert engine.clustering(ref) == ["order_id"]


def test_a_load_leaves_no_table_but_its_target(engine):
    engine.warehouse.load(load_request(engine), iter(FIRST))
    engine.warehouse.load(load_request(engine), iter(SECOND))
    engine.warehouse.load(load_request(engine), iter([]))
    assert engine.tables() == ["orders"]  # staging tables are dropped (or were temporary)


# ----------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("first_load", [True, False])
def test_duplicated_primary_keys_in_one_extraction_are_refused(engine, first_load):
    load = load_request(engine)
    if not first_load:
        engine.warehouse.load(load, iter(FIRST))
    before = None if first_load else table(engine)
    tables = engine.tables()
    stream = [batch((2, "paid", "2", 20, None), (6, "new", "6", 21, None)), batch((2, "old", "2", 5, None))]
    with pytest.raises(DuplicateKeys) as caught:
        engine.warehouse.load(load, iter(stream))
    assert str(caught.value) == (
        f"{engine.dataset}.orders: the source sent several rows for 1 values of primary key ['order_id'] (e.g. 2) "
        "in one extraction, so the key is not unique in the source and a load would keep only one of them (or "
        "all of them, on a first load). Declare a primary_key that is unique in the source. Nothing was written."
    )
    assert (caught.value.count, caught.value.samples, caught.value.role) == (1, ((2,),), "primary_key")
    if first_load:
        assert not engine.warehouse.table_exists(f"{engine.dataset}.orders")
    else:
        assert table(engine) == before
        assert engine.tables() == tables


def test_duplicates_count_every_duplicated_key_and_show_five(engine):
    load = load_request(engine)
    engine.warehouse.load(load, iter(FIRST))
    keys = [(k, "paid", "1", 10 + n, None) for n in range(2) for k in range(1, 9)]  # keys 1..8, twice each
    with pytest.raises(
        DuplicateKeys,
        match=r"several rows for 8 values of primary key \['order_id'\] \(e\.g\. 1, 2, 3, 4, 5\)",
    ):
        engine.warehouse.load(load, iter([batch(*keys)]))


@pytest.mark.parametrize("first_load", [True, False])
@pytest.mark.parametrize("not_null", [False, True])
def test_a_null_primary_key_is_refused(engine, first_load, not_null):
    """Declared `not_null` or not, a NULL key is a `NullKeys` error, never a bare constraint error."""
    columns = (ColumnDef("order_id", "INT64", not_null=not_null), *ORDERS.columns[1:])
    load = load_request(engine, columns=columns)
    if not first_load:
        engine.warehouse.load(load, iter(FIRST))
    before = None if first_load else table(engine)
    tables = engine.tables()
    stream = [batch((5, "new", "1", 20, None)), batch((None, "x", "1", 21, None), (None, "y", "1", 22, None))]
    with pytest.raises(
        NullKeys,
        match=rf"{engine.dataset}.orders: the source sent 2 rows with a NULL in primary key \['order_id'\]",
    ):
        engine.warehouse.load(load, iter(stream))
    if first_load:
        assert not engine.warehouse.table_exists(f"{engine.dataset}.orders")
    else:
        assert table(engine) == before
        assert engine.tables() == tables


@pytest.mark.parametrize("first_load", [True, False])
def test_nulls_in_not_null_columns_are_refused(engine, first_load):
    columns = (ORDERS.columns[0], ColumnDef("status", "STRING", not_null=True), *ORDERS.columns[2:])
    load = load_request(engine, columns=columns)
    if not first_load:
        engine.warehouse.load(load, iter(FIRST))
    before = None if first_load else table(engine)
    bad = pa.RecordBatch.from_pylist(
        [{**batch((7, "x", "1", 30, None)).to_pylist()[0], "status": None}], ARROW
    )
    with pytest.raises(
        NullsInRequiredColumns,
        match=r"the source sent NULL in not_null columns \(rows per column: \{'status': 1\}\)",
    ):
        engine.warehouse.load(load, iter([bad]))
    if first_load:
        assert not engine.warehouse.table_exists(f"{engine.dataset}.orders")
    else:
        assert table(engine) == before


def test_a_value_that_cannot_be_cast_fails_the_load_and_changes_nothing(engine):
    load = load_request(engine)
    engine.warehouse.load(load, iter(FIRST))
    before, tables = table(engine), engine.tables()
    text = pa.schema([(name, pa.string()) for name in ARROW.names])
    good = {k: str(v) for k, v in batch((1, "late", "1", 40, None)).to_pylist()[0].items() if v is not None}
    bad = pa.RecordBatch.from_pylist([good, {**good, "order_id": "9", "amount": "not a number"}], text)
    with pytest.raises(engine.query_error, match="not a number"):
        engine.warehouse.load(load, iter([bad]))
    assert table(engine) == before
    assert engine.tables() == tables
