"""The `Warehouse.query` contract, once for every warehouse: a read-only query in the engine's dialect, with bound
parameters, returns its rows as tuples of Python values; `IS DISTINCT FROM` (what `derive diff` compares values
with) is NULL-safe on both engines, as sqlglot renders it for each."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from contract_engines import WarehouseEngine, fresh_name
from sqlglot import exp

from resources.dialects import placeholder
from resources.warehouse import Warehouse

COLUMNS = [("id", "INT64"), ("amount", "NUMERIC"), ("note", "STRING"), ("day", "DATE")]
ROWS = [  # NUMERIC as text: both engines' inserts parse it exactly
    {"id": 1, "amount": "1.50", "note": "a", "day": dt.date(2026, 1, 1)},
    {"id": 2, "amount": "2.25", "note": None, "day": dt.date(2026, 1, 2)},
    {"id": 3, "amount": None, "note": "c", "day": dt.date(2026, 1, 3)},
]


def test_query_returns_rows_as_tuples_with_bound_parameters(warehouse_engine: WarehouseEngine) -> None:
    engine = warehouse_engine
    ref = engine.create_source(fresh_name("q"), COLUMNS, ROWS)
    warehouse: Warehouse = engine.warehouse
    sql = engine.sql(
        f"SELECT id, amount, note FROM {ref} WHERE day >= CAST({{p}}since AS DATE) AND id <> {{p}}skip "
        "ORDER BY id"
    )

    rows = warehouse.query(sql, {"since": dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "skip": 3})

    assert rows == [(2, Decimal("2.25"), None)]
    assert all(isinstance(r, tuple) for r in rows)


def test_query_counts_and_sums_in_the_warehouse(warehouse_engine: WarehouseEngine) -> None:
    engine = warehouse_engine
    ref = engine.create_source(fresh_name("q"), COLUMNS, ROWS)
    warehouse: Warehouse = engine.warehouse

    [(count, total)] = warehouse.query(f"SELECT count(*), SUM(amount) FROM {ref}", {})

    assert (count, total) == (3, Decimal("3.75"))


def test_is_distinct_from_as_sqlglot_renders_it_is_null_safe(warehouse_engine: WarehouseEngine) -> None:
    """NULL vs NULL is not distinct, NULL vs a value is, equal values are not: for every pair of values."""
    warehouse: Warehouse = warehouse_engine.warehouse
    d = warehouse.dialect
    pairs = [(None, None), (None, "x"), ("x", None), ("x", "x"), ("x", "y")]
    items = []
    params = {}
    for i, (left, right) in enumerate(pairs):
        params[f"l{i}"], params[f"r{i}"] = left, right
        lhs = exp.Cast(this=placeholder(f"l{i}", d), to=exp.DataType.build("TEXT"))
        rhs = exp.Cast(this=placeholder(f"r{i}", d), to=exp.DataType.build("TEXT"))
        items.append(exp.Not(this=exp.NullSafeEQ(this=lhs, expression=rhs)))
    sql = exp.select(*items).sql(d)
    assert "IS NOT DISTINCT FROM" in sql

    [row] = warehouse.query(sql, params)

    assert list(row) == [False, True, True, False, True]
