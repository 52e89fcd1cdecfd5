"""The rebuild contract (`WriteRequest.rebuild`), once for every warehouse: the table is built from scratch into a
new table with the spec's columns and layout and swapped in; a refusal or a failure at any step leaves the old
table exactly as it was (rows, columns, layout) and no new table behind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from contract_engines import WarehouseEngine, record_batches

from resources import engine_sql, strategy
from resources.bigquery_calls import Calls
from resources.schema import ColumnDef
from resources.schema_diff import TableLayout
from resources.warehouse import (
    DuplicateKeys,
    NullsInRequiredColumns,
    OutOfWindowRows,
    TargetTable,
    TimeWindow,
    WriteRequest,
)

UTC = dt.UTC
DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 2, tzinfo=UTC))
DAY2 = TimeWindow(dt.datetime(2026, 1, 2, tzinfo=UTC), dt.datetime(2026, 1, 3, tzinfo=UTC))
DAY3 = TimeWindow(dt.datetime(2026, 1, 3, tzinfo=UTC), dt.datetime(2026, 1, 4, tzinfo=UTC))
RANGE = TimeWindow(DAY1.start, DAY3.end)

EVENTS = [
    {"ts": dt.datetime(2026, 1, 1, 10, tzinfo=UTC), "region": "eu", "amount": 10.5},
    {"ts": dt.datetime(2026, 1, 1, 12, tzinfo=UTC), "region": "na", "amount": 7.0},
    {"ts": dt.datetime(2026, 1, 2, 9, tzinfo=UTC), "region": "na", "amount": 1.25},
    {"ts": dt.datetime(2026, 1, 3, 8, tzinfo=UTC), "region": "eu", "amount": 4.0},
]
EVENT_COLUMNS = [("ts", "TIMESTAMP"), ("region", "STRING"), ("amount", "FLOAT64")]

OLD_COLUMNS = (
    ColumnDef("day", "DATE", not_null=True),
    ColumnDef("region", "STRING"),
    ColumnDef("amount", "NUMERIC"),
)
DAILY = (
    "SELECT CAST(ts AS DATE) AS day, region, SUM(amount) AS amount FROM {ds}.events "
    "WHERE ts >= {p}window_start AND ts < {p}window_end GROUP BY 1, 2"
)

# The rebuilt table: other columns (renamed, retyped, a new NOT NULL), another partition key and cluster key.
NEW_COLUMNS = (
    ColumnDef("region", "STRING", not_null=True),
    ColumnDef("first_ts", "TIMESTAMP", not_null=True),
    ColumnDef("total", "NUMERIC"),
)
PER_REGION = "SELECT region, MIN(ts) AS first_ts, SUM(amount) AS total FROM {ds}.events GROUP BY region"


@pytest.fixture
def engine(warehouse_engine: WarehouseEngine) -> WarehouseEngine:
    warehouse_engine.create_source("events", EVENT_COLUMNS, EVENTS)
    return warehouse_engine


def old_target(engine: WarehouseEngine) -> TargetTable:
    return TargetTable(engine.dataset, "daily", OLD_COLUMNS, cluster=("region",), partition_key="day")


def new_target(engine: WarehouseEngine) -> TargetTable:
    return TargetTable(engine.dataset, "daily", NEW_COLUMNS, cluster=("total",), partition_key="first_ts")


def ref(engine: WarehouseEngine) -> str:
    return f"{engine.dataset}.daily"


def daily(engine: WarehouseEngine, window: TimeWindow, **options: Any) -> WriteRequest:
    sql = engine.sql(DAILY)
    return WriteRequest(
        old_target(engine), sql, window.as_params(), "merge", ("day", "region"), window, **options
    )


def per_region(engine: WarehouseEngine, sql: str = PER_REGION) -> WriteRequest:
    return WriteRequest(new_target(engine), engine.sql(sql), {}, "replace", rebuild=True)


def seed(engine: WarehouseEngine) -> None:
    """The old table: days 1 and 2, merged by (day, region), partitioned by day, clustered by region."""
    engine.warehouse.write(daily(engine, DAY1))
    engine.warehouse.write(daily(engine, DAY2))


def state(engine: WarehouseEngine) -> tuple[Any, ...]:
    """Everything a failed rebuild must leave as it was: rows, columns, layout, the dataset's tables."""
    names = [c for c, _ in engine.column_defs(ref(engine))]
    return (
        engine.rows(ref(engine), names),
        engine.column_defs(ref(engine)),
        engine.partitioning(ref(engine)),
        engine.clustering(ref(engine)),
        engine.tables(),
    )


# ----------------------------------------------------------------------------------------------- swaps


def test_a_rebuild_swaps_in_the_new_columns_layout_and_rows(engine):
    seed(engine)
    result = engine.warehouse.write(per_region(engine))
    assert result.extra["rebuilt"] is True
    assert (result.rows_read, result.rows_inserted, result.rows_updated, result.rows_deleted) == (2, 2, 0, 3)
    assert engine.column_defs(ref(engine)) == [("region", False), ("first_ts", False), ("total", True)]
    fresh_output = engine.query(engine.sql(PER_REGION + " ORDER BY region"))
    assert engine.rows(ref(engine), ["region", "first_ts", "total"]) == [tuple(r) for r in fresh_output]
    assert engine.rows(ref(engine), ["region", "total"]) == [("eu", Decimal("14.5")), ("na", Decimal("8.25"))]
    if engine.name == "bigquery":
        assert engine.partitioning(ref(engine)) == "DAY:first_ts"
        assert engine.clustering(ref(engine)) == ["total"]
    if engine.cluster_order_observable:
        assert engine.physical(ref(engine), "total") == [Decimal("8.25"), Decimal("14.5")]
    assert engine.tables() == ["daily", "events"]  # no new table, backup or staging left behind


def test_after_a_rebuild_ordinary_runs_of_the_new_spec_go_on(engine):
    """The swapped-in table carries the new spec's layout (and Derive's marker): a normal run finds no change."""
    seed(engine)
    versioned = dataclasses.replace(new_target(engine), code_version="v2")
    engine.warehouse.write(dataclasses.replace(per_region(engine), target=versioned))
    marker = engine.warehouse.describe(ref(engine)).layout
    assert marker == TableLayout("first_ts", "day", ("total",), (), "v2")
    engine.execute(engine.sql("DELETE FROM {ds}.events WHERE region = 'na'"))
    result = engine.warehouse.write(WriteRequest(new_target(engine), engine.sql(PER_REGION), {}, "replace"))
    assert "rebuilt" not in result.extra
    assert (result.rows_read, result.rows_deleted, result.rows_inserted) == (1, 2, 1)
    assert engine.rows(ref(engine), ["region", "total"]) == [("eu", Decimal("14.5"))]


def test_a_rebuild_with_the_same_layout_replaces_every_row_over_the_whole_range(engine):
    """A full refresh of an unchanged spec: rows of windows no run touched since (a stale key) are gone too."""
    seed(engine)
    engine.execute(engine.sql("DELETE FROM {ds}.events WHERE region = 'na'"))
    before_layout = (engine.partitioning(ref(engine)), engine.clustering(ref(engine)))
    result = engine.warehouse.write(daily(engine, RANGE, rebuild=True))
    assert result.extra["rebuilt"] is True
    assert (result.rows_read, result.rows_inserted, result.rows_deleted) == (2, 2, 3)
    assert engine.rows(ref(engine), ["day", "region", "amount"]) == [
        (dt.date(2026, 1, 1), "eu", Decimal("10.5")),
        (dt.date(2026, 1, 3), "eu", Decimal("4")),
    ]
    assert (engine.partitioning(ref(engine)), engine.clustering(ref(engine))) == before_layout
    assert engine.tables() == ["daily", "events"]


def test_a_rebuild_from_a_python_assets_rows(engine):
    """`sql=None`: the rows come as Arrow batches, staged and checked like a query's."""
    seed(engine)
    schema = pa.schema(
        [("region", pa.string()), ("first_ts", pa.timestamp("us", "UTC")), ("total", pa.float64())]
    )
    rows = [
        {"region": "eu", "first_ts": dt.datetime(2026, 1, 5, tzinfo=UTC), "total": 1.5},
        {"region": "na", "first_ts": dt.datetime(2026, 1, 6, tzinfo=UTC), "total": 2.5},
        {"region": "ap", "first_ts": dt.datetime(2026, 1, 7, tzinfo=UTC), "total": 3.5},
    ]
    request = WriteRequest(new_target(engine), None, {}, "replace", rebuild=True)
    result = engine.warehouse.write(request, record_batches(rows, schema))
    assert (result.extra["rebuilt"], result.rows_read, result.rows_inserted, result.rows_deleted) == (
        True,
        3,
        3,
        3,
    )
    assert engine.rows(ref(engine), ["region", "total"]) == [
        ("ap", Decimal("3.5")),
        ("eu", Decimal("1.5")),
        ("na", Decimal("2.5")),
    ]
    assert engine.tables() == ["daily", "events"]


def test_a_rebuild_of_a_missing_table_is_a_first_write(engine):
    result = engine.warehouse.write(per_region(engine))
    assert result.extra["rebuilt"] is True
    assert (result.rows_read, result.rows_inserted, result.rows_deleted) == (2, 2, 0)
    assert engine.rows(ref(engine), ["region"]) == [("eu",), ("na",)]
    assert engine.tables() == ["daily", "events"]


def test_a_rebuild_reports_per_partition_counts_of_the_new_table(engine):
    seed(engine)
    result = engine.warehouse.write(daily(engine, RANGE, rebuild=True, partitions=(DAY1, DAY2, DAY3)))
    assert [(p.window, p.rows_read, p.row_count) for p in result.by_partition] == [
        (DAY1, 2, 2),
        (DAY2, 1, 1),
        (DAY3, 1, 1),
    ]


# ----------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        (
            "SELECT region, ts AS first_ts, amount AS total FROM {ds}.events",
            DuplicateKeys,
            r"several rows for 2 values of unique_key \['region'\]",
        ),
        (
            "SELECT region, CAST(NULL AS TIMESTAMP) AS first_ts, SUM(amount) AS total FROM {ds}.events GROUP BY 1",
            NullsInRequiredColumns,
            r"NULL in not_null columns \(rows per column: \{'first_ts': 2\}\)",
        ),
    ],
    ids=["duplicate-keys", "null-in-not-null"],
)
def test_a_rebuild_refused_by_a_rule_leaves_the_old_table(engine, sql, error, message):
    seed(engine)
    before = state(engine)
    request = WriteRequest(new_target(engine), engine.sql(sql), {}, "merge", ("region",), rebuild=True)
    with pytest.raises(error, match=rf"^{engine.dataset}\.daily: .*{message}"):
        engine.warehouse.write(request)
    assert state(engine) == before


def test_a_rebuild_refuses_rows_outside_its_range(engine):
    seed(engine)
    before = state(engine)
    everything = engine.sql(
        "SELECT CAST(ts AS DATE) AS day, region, SUM(amount) AS amount FROM {ds}.events GROUP BY 1, 2"
    )
    two_days = TimeWindow(DAY1.start, DAY2.end)
    request = WriteRequest(
        old_target(engine), everything, {}, "merge", ("day", "region"), two_days, rebuild=True
    )
    with pytest.raises(OutOfWindowRows, match=rf"^{engine.dataset}\.daily: the query returned 1 rows whose"):
        engine.warehouse.write(request)
    assert state(engine) == before


# ----------------------------------------------------------------------------------------------- failures


def test_a_rebuild_whose_query_fails_at_run_time_leaves_the_old_table(engine):
    seed(engine)
    before = state(engine)
    bad = "SELECT region, MIN(ts) AS first_ts, MAX(region) AS total FROM {ds}.events GROUP BY region"
    with pytest.raises(engine.query_error):
        engine.warehouse.write(per_region(engine, bad))
    assert state(engine) == before


def test_a_rebuild_failing_after_the_fill_leaves_the_old_table_and_drops_the_new_one(engine, monkeypatch):
    seed(engine)
    before = state(engine)
    filled: list[str] = []

    def fill_then_fail(s, caps, request, staged, exists, result):
        original(s, caps, request, staged, exists, result)
        filled.append(request.target.name)
        raise RuntimeError("injected after the fill")

    original = strategy.run_strategy
    monkeypatch.setattr(strategy, "run_strategy", fill_then_fail)
    with pytest.raises(RuntimeError, match="injected after the fill"):
        engine.warehouse.write(per_region(engine))
    assert filled and filled[0].startswith("daily__derive_rebuild_")
    assert state(engine) == before


def test_a_rebuild_failing_inside_the_swap_leaves_the_old_table(engine, monkeypatch):
    """The last step fails after the old table was dropped (DuckDB, inside the transaction) or moved to a backup
    (BigQuery, a layout change): the old table is back, the new one and the backup are gone."""
    seed(engine)
    before = state(engine)
    if engine.name == "duckdb":

        def rename_fails(ref: str, new_name: str) -> Any:
            raise RuntimeError("injected in the swap")

        monkeypatch.setattr(engine_sql, "rename_table", rename_fails)
    else:
        copy = Calls.copy_table

        def copy_new_fails(self: Calls, source: str, destination: str, write_disposition: str) -> None:
            if "__derive_rebuild_" in source:
                raise RuntimeError("injected in the swap")
            copy(self, source, destination, write_disposition)

        monkeypatch.setattr(Calls, "copy_table", copy_new_fails)
    with pytest.raises(RuntimeError, match="injected in the swap"):
        engine.warehouse.write(per_region(engine))
    assert state(engine) == before


# ----------------------------------------------------------------------------------------------- kills

CHILD = """
import os, signal, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import test_warehouse_rebuild_contract as t
from resources import strategy
from resources.duckdb_warehouse import DuckDBSession


class Engine:  # what `per_region` reads off a contract engine
    dataset = sys.argv[5]
    param = sys.argv[6]
    sql = t.WarehouseEngine.sql


def kill_after(owner, name):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        original(*args, **kwargs)
        sys.stderr.write("KILLED\\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(owner, name, wrapper)


kind, point = sys.argv[3], sys.argv[4]
if kind == "duckdb":
    from resources.duckdb_warehouse import DuckDBWarehouse
    warehouse = DuckDBWarehouse(path=sys.argv[7])
else:
    from resources.bigquery_warehouse import BigQueryWarehouse
    warehouse = BigQueryWarehouse(project=sys.argv[8], api_endpoint=sys.argv[7])
if point == "after-fill":
    kill_after(strategy, "run_strategy")
elif kind == "duckdb":  # the old table dropped and the new one renamed, the transaction not committed
    kill_after(DuckDBSession, "swap")
else:  # BigQuery's swap of a changed layout: the old table copied to its backup, not yet deleted
    from resources.bigquery_calls import Calls
    kill_after(Calls, "copy_table")
warehouse.write(t.per_region(Engine()))
"""


@pytest.mark.parametrize("point", ["after-fill", "in-swap"])
def test_a_rebuild_killed_mid_way_leaves_the_old_table(engine, point):
    """SIGKILL (no `finally`, no rollback, like a lost pod) after the new table is filled, or inside the swap
    (DuckDB: dropped and renamed, not committed; BigQuery: the old table copied to its backup): the old table is
    intact. A killed BigQuery rebuild leaves its new table behind (`<name>__derive_rebuild_<hex>`, with Derive's
    marker), its staging table (expires in a day) and, in the swap, the backup (`<name>__derive_old_<hex>`)."""
    seed(engine)
    before = state(engine)
    here = Path(__file__).resolve().parent
    if engine.name == "duckdb":
        where = [engine.path, ""]
    else:
        where = [engine.warehouse.api_endpoint, engine.warehouse.project]
    args = [str(here), str(here.parents[1]), engine.name, point, engine.dataset, engine.param, *where]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert "KILLED" in child.stderr
    after = state(engine)
    assert after[:4] == before[:4]
    left = sorted(set(after[4]) - set(before[4]))
    if engine.name == "duckdb":
        assert left == []  # the transaction never committed
    else:
        assert [t.split("__derive_rebuild_")[0] for t in left if "__derive_rebuild_" in t] == ["daily"]
        backups = [t for t in left if t.startswith("daily__derive_old_")]
        assert len(backups) == (1 if point == "in-swap" else 0)
        assert all(t.startswith(("daily__derive_", "_derive_stg_daily_")) for t in left)
