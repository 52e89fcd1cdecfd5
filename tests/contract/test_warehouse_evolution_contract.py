"""The schema-evolution contract, once for every warehouse: a run compares its spec with the existing table, applies
additive changes (new nullable columns, widenings) keeping partitioning and clustering, refuses breaking ones
before writing anything, marks the tables Derive creates, and never drops a table it did not create."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from contract_engines import WarehouseEngine

from resources.schema import ColumnDef
from resources.schema_diff import BreakingSchemaChange, TableLayout
from resources.warehouse import (
    DuplicateKeys,
    LoadRequest,
    TargetTable,
    TimeWindow,
    WarehouseError,
    WriteRequest,
)

EVENT_COLUMNS = [("ts", "TIMESTAMP"), ("region", "STRING"), ("amount", "NUMERIC"), ("qty", "INT64")]
EVENTS = [  # amounts as text: the emulator takes NUMERIC rows as JSON strings
    {"ts": dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC), "region": "eu", "amount": "10.25", "qty": 2},
    {"ts": dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC), "region": "na", "amount": "7", "qty": 1},
    {"ts": dt.datetime(2026, 1, 2, 9, tzinfo=dt.UTC), "region": "eu", "amount": "1.5", "qty": 3},
]
COLUMNS = (
    ColumnDef("day", "DATE", not_null=True),
    ColumnDef("region", "STRING"),
    ColumnDef("amount", "NUMERIC"),
    ColumnDef("orders", "INT64"),
)
DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
DAY2 = TimeWindow(dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC))
SELECT = (
    "SELECT CAST(ts AS DATE) AS day, region, SUM(amount) AS amount, SUM(qty) AS orders{extra} "
    "FROM {ds}.events WHERE ts >= {p}window_start AND ts < {p}window_end GROUP BY 1, 2"
)


@pytest.fixture
def engine(warehouse_engine: WarehouseEngine) -> WarehouseEngine:
    warehouse_engine.create_source("events", EVENT_COLUMNS, EVENTS)
    return warehouse_engine


def spec(engine: WarehouseEngine, *columns: ColumnDef, **layout: Any) -> TargetTable:
    """The table's spec: partitioned by day, clustered by region, merged by (day, region), version v1."""
    base: dict[str, Any] = {
        "cluster": ("region",),
        "partition_key": "day",
        "unique_key": ("day", "region"),
        "code_version": "v1",
    }
    return TargetTable(engine.dataset, "daily", columns or COLUMNS, **(base | layout))


def write(engine: WarehouseEngine, target: TargetTable, window: TimeWindow, extra: str = "", sql: str = ""):
    text = engine.sql(sql or SELECT.replace("{extra}", extra))
    key = target.unique_key or ("day", "region")
    return engine.warehouse.write(WriteRequest(target, text, window.as_params(), "merge", key, window))


def ref(engine: WarehouseEngine) -> str:
    return f"{engine.dataset}.daily"


def state(engine: WarehouseEngine) -> tuple[Any, ...]:
    """Everything a refused run must leave as it was: rows, columns, layout, marker, the dataset's tables."""
    names = [n for n, _ in engine.column_types(ref(engine))]
    described = engine.warehouse.describe(ref(engine))
    return (
        engine.rows(ref(engine), names),
        engine.column_types(ref(engine)),
        engine.column_defs(ref(engine)),
        engine.partitioning(ref(engine)),
        engine.clustering(ref(engine)),
        described.layout if described else None,
        engine.tables(),
    )


# ----------------------------------------------------------------------------------------------- additive


def test_a_new_nullable_column_is_added_old_rows_hold_null_and_the_layout_stays(engine):
    first = write(engine, spec(engine), DAY1)
    assert "schema_changes" not in first.extra
    layout = (engine.partitioning(ref(engine)), engine.clustering(ref(engine)))
    v2 = spec(engine, *COLUMNS, ColumnDef("avg_amount", "NUMERIC"), code_version="v2")
    result = write(engine, v2, DAY2, extra=", AVG(amount) AS avg_amount")
    assert result.extra["schema_changes"] == ["add column avg_amount NUMERIC (old rows hold NULL)"]
    assert engine.column_types(ref(engine))[-1] == ("avg_amount", "NUMERIC")
    assert engine.rows(ref(engine), ["day", "region", "avg_amount"]) == [
        (dt.date(2026, 1, 1), "eu", None),
        (dt.date(2026, 1, 1), "na", None),
        (dt.date(2026, 1, 2), "eu", Decimal("1.5")),
    ]
    assert (engine.partitioning(ref(engine)), engine.clustering(ref(engine))) == layout
    if engine.name == "bigquery":
        assert layout == ("DAY:day", ["region"])
    described = engine.warehouse.describe(ref(engine))
    assert described is not None and described.layout == TableLayout.of(v2)
    again = write(engine, v2, DAY1, extra=", AVG(amount) AS avg_amount")  # re-running a window fills it
    assert "schema_changes" not in again.extra
    assert engine.rows(ref(engine), ["day", "region", "avg_amount"])[0] == (
        dt.date(2026, 1, 1),
        "eu",
        Decimal("10.25"),
    )


@pytest.mark.parametrize(("wider", "kept"), [("NUMERIC", Decimal("3")), ("FLOAT64", 3.0)])
def test_a_widened_type_keeps_the_values(engine, wider, kept):
    write(engine, spec(engine), DAY1)
    widened = spec(engine, *COLUMNS[:3], ColumnDef("orders", wider), code_version="v2")
    result = write(engine, widened, DAY2)
    assert result.extra["schema_changes"] == [f"widen column orders INT64 -> {wider} (values kept)"]
    assert dict(engine.column_types(ref(engine)))["orders"] == wider
    found = engine.rows(ref(engine), ["day", "region", "orders"])
    assert found == [
        (dt.date(2026, 1, 1), "eu", Decimal("2") if wider == "NUMERIC" else 2.0),
        (dt.date(2026, 1, 1), "na", Decimal("1") if wider == "NUMERIC" else 1.0),
        (dt.date(2026, 1, 2), "eu", kept),
    ]
    assert all(type(r[2]) is type(kept) for r in found)
    assert engine.clustering(ref(engine)) == (["region"] if engine.name == "bigquery" else None)


def test_dropping_not_null_is_applied(engine):
    write(engine, spec(engine), DAY1)
    relaxed = spec(engine, ColumnDef("day", "DATE"), *COLUMNS[1:])
    result = write(engine, relaxed, DAY2)
    assert result.extra["schema_changes"] == ["column day becomes nullable (drop NOT NULL)"]
    assert engine.column_defs(ref(engine))[0] == ("day", True)


def test_a_new_code_version_refreshes_the_marker_without_schema_changes(engine):
    write(engine, spec(engine), DAY1)
    result = write(engine, spec(engine, code_version="v2"), DAY2)
    assert "schema_changes" not in result.extra
    described = engine.warehouse.describe(ref(engine))
    assert described is not None and described.layout is not None
    assert described.layout.code_version == "v2"


def test_a_run_refused_by_its_rows_applies_no_schema_change(engine):
    write(engine, spec(engine), DAY1)
    before = state(engine)
    v2 = spec(engine, *COLUMNS, ColumnDef("note", "STRING"), code_version="v2")
    once = SELECT.replace("{extra}", ", 'x' AS note")
    with pytest.raises(DuplicateKeys):
        write(engine, v2, DAY1, sql=f"{once} UNION ALL {once}")  # every (day, region) twice
    assert state(engine) == before


# ----------------------------------------------------------------------------------------------- breaking

BREAKING = {
    "drop column": (
        {"columns": COLUMNS[:3]},
        "",
        "column orders INT64 is in the table but not in the spec (dropped or renamed)",
    ),
    "rename": (
        {"columns": (*COLUMNS[:3], ColumnDef("order_count", "INT64"))},
        "",
        "column orders INT64 is in the table but not in the spec (dropped or renamed)",
        "add column order_count INT64 (old rows hold NULL)",
    ),
    "narrow NUMERIC to INT64": (
        {"columns": (*COLUMNS[:2], ColumnDef("amount", "INT64"), COLUMNS[3])},
        "",
        "change column amount NUMERIC -> INT64 (a narrowing or incompatible type change)",
    ),
    "STRING to INT64": (
        {"columns": (COLUMNS[0], ColumnDef("region", "INT64"), *COLUMNS[2:])},
        "",
        "change column region STRING -> INT64 (a narrowing or incompatible type change)",
    ),
    "new NOT NULL column": (
        {"columns": (*COLUMNS, ColumnDef("n", "INT64", not_null=True))},
        ", 1 AS n",
        "add column n INT64 NOT NULL (the existing rows have no value for it)",
    ),
    "partition key": ({"partition_key": None}, "", "partitioning day on day -> none"),
    "granularity": ({"partition_granularity": "month"}, "", "partitioning day on day -> month on day"),
    "cluster keys": ({"cluster": ("day",)}, "", "cluster keys [region] -> [day]"),
    "unique_key": (
        {"unique_key": ("day", "region", "amount")},
        "",
        "unique_key [day, region] -> [day, region, amount]",
    ),
}


@pytest.mark.parametrize("case", list(BREAKING))
def test_a_breaking_change_is_refused_before_anything_is_written(engine, case):
    layout, extra, line, *additive = BREAKING[case]
    write(engine, spec(engine), DAY1)
    before = state(engine)
    changed = dataclasses.replace(spec(engine), code_version="v2", **layout)
    also = "".join(f"  - {a}\n" for a in additive)
    also = f"Also different (additive: a run applies these by itself):\n{also}" if also else ""
    message = (
        rf"^{re.escape(ref(engine))}: the spec no longer matches the existing table:\n  - {re.escape(line)}\n"
        + re.escape(also)
        + rf"Run `derive rebuild {re.escape(ref(engine))}` to rebuild it from the spec \(the old table stays until "
        r"the new one is complete\), or change the spec back\. Nothing was written\.$"
    )
    with pytest.raises(BreakingSchemaChange, match=message) as caught:
        write(engine, changed, DAY2, extra=extra)
    assert [c.describe() for c in caught.value.diff.breaking] == [line]
    assert state(engine) == before
    assert engine.warehouse.schema_diff(changed) == caught.value.diff


# ----------------------------------------------------------------------------------------------- loads

ORDERS = (
    ColumnDef("order_id", "INT64", not_null=True),
    ColumnDef("status", "STRING"),
    ColumnDef("updated_at", "TIMESTAMP"),
)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def orders_batch(rows: list[dict[str, Any]], with_amount: bool) -> pa.RecordBatch:
    fields = [("order_id", pa.int64()), ("status", pa.string()), ("updated_at", pa.timestamp("us", tz="UTC"))]
    if with_amount:
        fields.append(("amount", pa.decimal128(38, 9)))
    return pa.RecordBatch.from_pylist(rows, schema=pa.schema(fields))


def test_a_replicated_table_gets_a_new_column_on_the_next_load(engine):
    v1 = TargetTable(engine.dataset, "orders", ORDERS, cluster=("order_id",), code_version="s1")
    first = [
        {"order_id": 1, "status": "new", "updated_at": T0},
        {"order_id": 2, "status": "new", "updated_at": T0},
    ]
    engine.warehouse.load(LoadRequest(v1, ("order_id",), "updated_at"), [orders_batch(first, False)])
    v2 = dataclasses.replace(v1, columns=(*ORDERS, ColumnDef("amount", "NUMERIC")), code_version="s2")
    later = T0 + dt.timedelta(hours=1)
    second = [{"order_id": 2, "status": "paid", "updated_at": later, "amount": Decimal("9.5")}]
    result = engine.warehouse.load(LoadRequest(v2, ("order_id",), "updated_at"), [orders_batch(second, True)])
    assert result.extra["schema_changes"] == ["add column amount NUMERIC (old rows hold NULL)"]
    assert (result.rows_inserted, result.rows_updated) == (0, 1)
    assert engine.rows(f"{engine.dataset}.orders", ["order_id", "status", "amount"]) == [
        (1, "new", None),
        (2, "paid", Decimal("9.5")),
    ]
    described = engine.warehouse.describe(f"{engine.dataset}.orders")
    assert described is not None and described.layout == TableLayout(
        None, "day", ("order_id",), ("order_id",), "s2"
    )


def test_a_load_refuses_a_breaking_change_and_writes_nothing(engine):
    v1 = TargetTable(engine.dataset, "orders", ORDERS, cluster=("order_id",))
    first = [{"order_id": 1, "status": "new", "updated_at": T0}]
    engine.warehouse.load(LoadRequest(v1, ("order_id",), "updated_at"), [orders_batch(first, False)])
    before = engine.rows(f"{engine.dataset}.orders", ["order_id", "status"]), engine.tables()
    renamed = dataclasses.replace(v1, columns=(ORDERS[0], ColumnDef("state", "STRING"), ORDERS[2]))
    batch = pa.RecordBatch.from_pylist(
        [{"order_id": 1, "state": "paid", "updated_at": T0 + dt.timedelta(hours=1)}],
        schema=pa.schema(
            [("order_id", pa.int64()), ("state", pa.string()), ("updated_at", pa.timestamp("us", tz="UTC"))]
        ),
    )
    with pytest.raises(
        BreakingSchemaChange, match=r"column status STRING is in the table but not in the spec"
    ):
        engine.warehouse.load(LoadRequest(renamed, ("order_id",), "updated_at"), [batch])
    assert (engine.rows(f"{engine.dataset}.orders", ["order_id", "status"]), engine.tables()) == before


# ----------------------------------------------------------------------------------------------- ownership


def test_managed_tables_lists_only_tables_derive_created_and_drop_refuses_the_others(engine):
    write(engine, spec(engine), DAY1)
    hand = engine.create_source("by_hand", [("x", "INT64")], [{"x": 1}])
    assert engine.warehouse.managed_tables([engine.dataset, "no_such_dataset"]) == [ref(engine)]
    with pytest.raises(WarehouseError, match=rf"^{re.escape(hand)}: this table carries no Derive marker"):
        engine.warehouse.drop_table(hand)
    assert engine.query(f"SELECT x FROM {hand}") == [(1,)]
    engine.warehouse.drop_table(ref(engine))
    assert not engine.warehouse.table_exists(ref(engine))
    assert engine.warehouse.managed_tables([engine.dataset]) == []
    assert sorted(engine.tables()) == ["by_hand", "events"]
    engine.warehouse.drop_table(ref(engine))  # already gone: nothing to do


def test_a_table_from_before_markers_is_compared_by_columns_and_marked_on_the_next_write(engine):
    old = engine.create_source(
        "daily",
        [("day", "DATE"), ("region", "STRING"), ("amount", "NUMERIC"), ("orders", "INT64")],
        [{"day": dt.date(2025, 12, 31), "region": "eu", "amount": "1", "orders": 1}],
    )
    plain = spec(engine, ColumnDef("day", "DATE"), *COLUMNS[1:], partition_key=None, cluster=())
    described = engine.warehouse.describe(old)
    assert described is not None and described.layout is None
    assert [(c.name, c.type) for c in described.columns] == [
        ("day", "DATE"),
        ("region", "STRING"),
        ("amount", "NUMERIC"),
        ("orders", "INT64"),
    ]
    assert engine.warehouse.managed_tables([engine.dataset]) == []
    v2 = spec(
        engine,
        ColumnDef("day", "DATE"),
        *COLUMNS[1:],
        ColumnDef("note", "STRING"),
        partition_key=None,
        cluster=(),
    )
    result = write(engine, v2, DAY1, extra=", 'n' AS note")
    assert result.extra["schema_changes"] == ["add column note STRING (old rows hold NULL)"]
    assert engine.rows(old, ["day", "region", "note"]) == [
        (dt.date(2025, 12, 31), "eu", None),
        (dt.date(2026, 1, 1), "eu", "n"),
        (dt.date(2026, 1, 1), "na", "n"),
    ]
    adopted = engine.warehouse.describe(old)
    assert adopted is not None and adopted.layout == TableLayout.of(v2)
    assert engine.warehouse.managed_tables([engine.dataset]) == [old]
    with pytest.raises(BreakingSchemaChange, match="column orders INT64 is in the table but not in the spec"):
        write(engine, dataclasses.replace(plain, columns=COLUMNS[:3]), DAY1)


def test_an_empty_table_gets_its_new_column_before_a_first_load_streams_into_it(engine):
    v1 = TargetTable(engine.dataset, "orders", ORDERS, cluster=("order_id",))
    engine.warehouse.load(LoadRequest(v1, ("order_id",), "updated_at"), [])  # creates the empty table
    assert engine.warehouse.row_count(f"{engine.dataset}.orders") == 0
    v2 = dataclasses.replace(v1, columns=(*ORDERS, ColumnDef("amount", "NUMERIC")))
    rows = [{"order_id": 1, "status": "new", "updated_at": T0, "amount": Decimal("2.25")}]
    result = engine.warehouse.load(LoadRequest(v2, ("order_id",), "updated_at"), [orders_batch(rows, True)])
    assert result.extra["schema_changes"] == ["add column amount NUMERIC (old rows hold NULL)"]
    assert engine.rows(f"{engine.dataset}.orders", ["order_id", "amount"]) == [(1, Decimal("2.25"))]


def test_a_missing_table_has_no_description_and_no_diff(engine):
    assert engine.warehouse.describe(ref(engine)) is None
    assert engine.warehouse.schema_diff(spec(engine)) is None
    assert engine.warehouse.describe("no_such_dataset.daily") is None


def test_one_column_widened_and_made_nullable_in_one_run(engine):
    required = spec(engine, *COLUMNS[:3], ColumnDef("orders", "INT64", not_null=True))
    write(engine, required, DAY1)
    result = write(engine, spec(engine, *COLUMNS[:3], ColumnDef("orders", "FLOAT64")), DAY2)
    assert result.extra["schema_changes"] == [
        "widen column orders INT64 -> FLOAT64 (values kept)",
        "column orders becomes nullable (drop NOT NULL)",
    ]
    assert (engine.column_types(ref(engine))[3], engine.column_defs(ref(engine))[3]) == (
        ("orders", "FLOAT64"),
        ("orders", True),
    )
    assert [r[0] for r in engine.query(f"SELECT orders FROM {ref(engine)} ORDER BY day, region")] == [
        2.0,
        1.0,
        3.0,
    ]
