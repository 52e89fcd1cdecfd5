"""The `Warehouse.write` contract, once for every warehouse: each strategy's result and row accounting,
idempotent reruns per window, window scoping, and refusals (duplicate or NULL keys, rows outside the window, NULLs
in not_null columns) that leave the target exactly as it was.

The query text is the same on every engine; only the parameter sigil (`{p}`) and the dataset (`{ds}`) are filled
in per engine (`WarehouseEngine.sql`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from contract_engines import WarehouseEngine
from dagster import asset, materialize

from resources.dialects import param_prefix
from resources.schema import COLUMN_TYPES, ColumnDef
from resources.warehouse import (
    DuplicateKeys,
    NullKeys,
    NullsInRequiredColumns,
    OutOfWindowRows,
    TargetTable,
    TimeWindow,
    WarehouseError,
    WriteRequest,
)

DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
DAY2 = TimeWindow(dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC))

COLUMNS = (
    ColumnDef("day", "DATE", not_null=True),
    ColumnDef("region", "STRING"),
    ColumnDef("amount", "NUMERIC"),
)
NAMES = [c.name for c in COLUMNS]

# The source: raw events the derived query aggregates per window.
EVENTS = [
    {"ts": dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC), "region": "eu", "amount": 10.5},
    {"ts": dt.datetime(2026, 1, 1, 11, tzinfo=dt.UTC), "region": "eu", "amount": 2.0},
    {"ts": dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC), "region": "na", "amount": 7.0},
    {"ts": dt.datetime(2026, 1, 2, 9, tzinfo=dt.UTC), "region": "na", "amount": 1.25},
]
EVENT_COLUMNS = [("ts", "TIMESTAMP"), ("region", "STRING"), ("amount", "FLOAT64")]

IN_WINDOW = "WHERE ts >= {p}window_start AND ts < {p}window_end"
AGGREGATE = (
    "SELECT CAST(ts AS DATE) AS day, region, SUM(amount) AS amount FROM {ds}.events {where} GROUP BY 1, 2"
)
PER_EVENT = "SELECT CAST(ts AS DATE) AS day, region, amount FROM {ds}.events {where}"


@pytest.fixture
def engine(warehouse_engine: WarehouseEngine) -> WarehouseEngine:
    warehouse_engine.create_source("events", EVENT_COLUMNS, EVENTS)
    return warehouse_engine


def target(engine: WarehouseEngine, **layout: Any) -> TargetTable:
    return TargetTable(
        engine.dataset, "daily", COLUMNS, **({"cluster": ("region",), "partition_key": "day"} | layout)
    )


def query(engine: WarehouseEngine, template: str = AGGREGATE, windowed: bool = True) -> str:
    return engine.sql(template.replace("{where}", IN_WINDOW if windowed else ""))


def request(
    engine: WarehouseEngine,
    strategy: str,
    window: TimeWindow | None,
    sql: str | None = None,
    unique_key: tuple[str, ...] = ("day", "region"),
) -> WriteRequest:
    sql = sql if sql is not None else query(engine)
    params = window.as_params() if window is not None and "window_start" in sql else {}
    key = unique_key if strategy == "merge" else ()
    return WriteRequest(target(engine), sql, params, strategy, key, window)  # type: ignore[arg-type]


def rows(engine: WarehouseEngine) -> list[tuple[Any, ...]]:
    return engine.rows(f"{engine.dataset}.daily", NAMES)


def literal_rows(*values: tuple[str, str, str]) -> str:
    """A query returning (day, region, amount) rows given as SQL literals, in the given order."""
    return " UNION ALL ".join(f"SELECT DATE {d} AS day, {r} AS region, {a} AS amount" for d, r, a in values)


# ----------------------------------------------------------------------------------------------- strategies


@pytest.mark.parametrize("strategy", ["merge", "append"])
def test_windowed_strategies_are_idempotent_per_window(engine, strategy):
    first = engine.warehouse.write(request(engine, strategy, DAY1))
    assert (first.rows_read, first.rows_inserted, first.rows_updated, first.rows_deleted) == (2, 2, 0, 0)
    engine.warehouse.write(request(engine, strategy, DAY2))
    once = rows(engine)
    again = engine.warehouse.write(request(engine, strategy, DAY1))
    assert rows(engine) == once
    assert once == [
        (dt.date(2026, 1, 1), "eu", Decimal("12.5")),
        (dt.date(2026, 1, 1), "na", Decimal("7")),
        (dt.date(2026, 1, 2), "na", Decimal("1.25")),
    ]
    if strategy == "merge":
        assert (again.rows_read, again.rows_inserted, again.rows_updated, again.rows_deleted) == (2, 0, 2, 0)
    else:
        assert (again.rows_read, again.rows_inserted, again.rows_updated, again.rows_deleted) == (2, 2, 0, 2)


def test_merge_updates_changed_rows_and_keeps_other_windows(engine):
    engine.warehouse.write(request(engine, "merge", DAY1))
    engine.warehouse.write(request(engine, "merge", DAY2))
    engine.execute(
        engine.sql("INSERT INTO {ds}.events VALUES (TIMESTAMP '2026-01-01 13:00:00+00', 'eu', 100)")
    )
    result = engine.warehouse.write(request(engine, "merge", DAY1))
    assert (result.rows_updated, result.rows_inserted, result.rows_deleted) == (2, 0, 0)
    assert [r[2] for r in rows(engine)] == [Decimal("112.5"), Decimal("7"), Decimal("1.25")]


def test_merge_inserts_new_keys_and_keeps_keys_the_run_did_not_return(engine):
    """A merge replaces rows by the *whole* key: the run's (day1, eu) leaves (day1, na) of the same day alone."""
    engine.warehouse.write(request(engine, "merge", DAY1))
    engine.warehouse.write(request(engine, "merge", DAY2))
    sql = literal_rows(("'2026-01-01'", "'eu'", "1.0"), ("'2026-01-01'", "'apac'", "2.0"))
    result = engine.warehouse.write(request(engine, "merge", DAY1, sql))
    assert (result.rows_read, result.rows_inserted, result.rows_updated, result.rows_deleted) == (2, 1, 1, 0)
    assert rows(engine) == [
        (dt.date(2026, 1, 1), "apac", Decimal("2.0")),
        (dt.date(2026, 1, 1), "eu", Decimal("1.0")),
        (dt.date(2026, 1, 1), "na", Decimal("7")),
        (dt.date(2026, 1, 2), "na", Decimal("1.25")),
    ]


@pytest.mark.parametrize("unique_key", [("day", "region"), ("region", "day")])
def test_merge_matches_on_every_key_column(engine, unique_key):
    """Rows sharing one key column with the run's rows (same region, other day; same day, other region) stay."""
    seed = literal_rows(
        ("'2026-01-01'", "'eu'", "1.0"),
        ("'2026-01-01'", "'na'", "2.0"),
        ("'2026-01-02'", "'eu'", "3.0"),
    )
    engine.warehouse.write(request(engine, "merge", None, seed, unique_key))
    update = literal_rows(("'2026-01-01'", "'eu'", "10.0"))
    result = engine.warehouse.write(request(engine, "merge", DAY1, update, unique_key))
    assert (result.rows_inserted, result.rows_updated) == (0, 1)
    assert rows(engine) == [
        (dt.date(2026, 1, 1), "eu", Decimal("10.0")),
        (dt.date(2026, 1, 1), "na", Decimal("2.0")),
        (dt.date(2026, 1, 2), "eu", Decimal("3.0")),
    ]


def test_append_replaces_only_its_own_window(engine):
    engine.warehouse.write(request(engine, "append", DAY1))
    engine.warehouse.write(request(engine, "append", DAY2))
    engine.execute(engine.sql("DELETE FROM {ds}.events WHERE region = 'eu'"))
    result = engine.warehouse.write(request(engine, "append", DAY1))
    assert (result.rows_read, result.rows_inserted, result.rows_deleted) == (1, 1, 2)
    assert rows(engine) == [
        (dt.date(2026, 1, 1), "na", Decimal("7")),
        (dt.date(2026, 1, 2), "na", Decimal("1.25")),
    ]


def test_replace_makes_table_exactly_the_query_output(engine):
    sql = query(engine, windowed=False)
    first = engine.warehouse.write(WriteRequest(target(engine), sql, {}, "replace"))
    assert (first.rows_read, first.rows_inserted, first.rows_deleted) == (3, 3, 0)
    assert len(rows(engine)) == 3
    engine.execute(engine.sql("DELETE FROM {ds}.events WHERE region = 'na'"))
    result = engine.warehouse.write(WriteRequest(target(engine), sql, {}, "replace"))
    assert (result.rows_read, result.rows_deleted, result.rows_inserted) == (1, 3, 1)
    assert rows(engine) == [(dt.date(2026, 1, 1), "eu", Decimal("12.5"))]


def test_unwindowed_merge_may_write_any_day(engine):
    sql = literal_rows(("'2026-01-01'", "'eu'", "1.0"), ("'2026-01-05'", "'eu'", "5.0"))
    result = engine.warehouse.write(request(engine, "merge", None, sql))
    assert (result.rows_read, result.rows_inserted) == (2, 2)


def test_numeric_keeps_nine_decimal_places(engine):
    sql = "SELECT DATE '2026-01-01' AS day, 'eu' AS region, '12345678901234567890.123456789' AS amount"
    engine.warehouse.write(WriteRequest(target(engine), sql, {}, "replace"))
    assert rows(engine) == [(dt.date(2026, 1, 1), "eu", Decimal("12345678901234567890.123456789"))]


@pytest.mark.parametrize("strategy", ["append", "merge", "replace"])
def test_inserted_rows_follow_the_cluster_keys(engine, strategy):
    """DuckDB writes rows in cluster-key order (its zone maps then skip row groups); BigQuery declares them."""
    regions = [f"r{n:02d}" for n in range(30, 0, -1)]  # descending: the insert must sort them
    sql = literal_rows(*(("'2026-01-01'", f"'{r}'", "1.0") for r in regions))
    window = None if strategy == "replace" else DAY1
    engine.warehouse.write(request(engine, strategy, window, sql))
    ref = f"{engine.dataset}.daily"
    if engine.cluster_order_observable:
        assert engine.physical(ref, "region") == sorted(regions)
    else:
        assert engine.clustering(ref) == ["region"]


def test_table_exists_and_row_count(engine):
    ref = f"{engine.dataset}.daily"
    assert not engine.warehouse.table_exists(ref)
    engine.warehouse.write(request(engine, "append", DAY1))
    engine.warehouse.write(request(engine, "append", DAY2))
    assert engine.warehouse.table_exists(ref)
    assert not engine.warehouse.table_exists(f"{engine.dataset}.nope")
    assert engine.warehouse.row_count(ref) == 3


def test_the_warehouse_describes_itself(engine):
    """What the factory reads off a warehouse: its dialect (with a registered parameter style, the one its SQL
    binds), a Dagster kind, a type for every spec type, and the DDL it runs for a target."""
    wh = engine.warehouse
    assert param_prefix(wh.dialect) == engine.param
    assert wh.kind == engine.name
    assert set(wh.types) == set(COLUMN_TYPES)
    ddl = wh.ddl_for(target(engine))
    assert "CREATE TABLE" in ddl.upper()
    assert all(c.name in ddl for c in COLUMNS)


def test_assets_get_the_warehouse_itself(engine):
    """A Dagster resource hands assets the warehouse object (not a bare client): the factory needs its methods."""
    seen = []

    @asset(required_resource_keys={"warehouse"})
    def probe(context) -> None:  # no annotation: dagster cannot resolve postponed ones
        seen.append(context.resources.warehouse)

    assert materialize([probe], resources={"warehouse": engine.warehouse}).success
    assert type(seen[0]) is type(engine.warehouse)


@pytest.mark.parametrize("strategy", ["merge", "append", "replace"])
def test_a_run_leaves_no_table_but_its_target(engine, strategy):
    window = None if strategy == "replace" else DAY1
    engine.warehouse.write(request(engine, strategy, window, query(engine, windowed=window is not None)))
    engine.warehouse.write(request(engine, strategy, window, query(engine, windowed=window is not None)))
    assert engine.tables() == ["daily", "events"]  # staging tables are dropped (or were temporary)


# ----------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("strategy", ["replace", "append", "merge"])
def test_failing_statement_leaves_target_unchanged(engine, strategy):
    engine.warehouse.write(request(engine, "merge", DAY1))
    before, tables = rows(engine), engine.tables()
    bad = engine.sql(  # right keys and window; only the cast of `amount` to NUMERIC fails
        "SELECT CAST(ts AS DATE) AS day, region, MAX(region) AS amount FROM {ds}.events "
        "WHERE ts >= {p}window_start AND ts < {p}window_end GROUP BY 1, 2"
    )
    with pytest.raises(engine.query_error):
        engine.warehouse.write(request(engine, strategy, DAY1, bad))
    assert rows(engine) == before
    assert engine.tables() == tables  # no staging table left behind


@pytest.mark.parametrize("strategy", ["replace", "append", "merge"])
def test_nulls_in_not_null_columns_are_refused_and_nothing_is_written(engine, strategy):
    required = dataclasses.replace(
        target(engine), columns=(*COLUMNS[:2], ColumnDef("amount", "NUMERIC", True))
    )
    # created with the NOT NULL column (adding NOT NULL to an existing column is a breaking schema change)
    engine.warehouse.write(dataclasses.replace(request(engine, "merge", DAY1), target=required))
    before, tables = rows(engine), engine.tables()
    bad = (
        "SELECT DATE '2026-01-01' AS day, 'eu' AS region, 2.0 AS amount UNION ALL "
        "SELECT DATE '2026-01-01', 'na', NULL"
    )
    key = ("day", "region") if strategy == "merge" else ()
    window = None if strategy == "replace" else DAY1
    with pytest.raises(
        NullsInRequiredColumns, match=r"NULL in not_null columns \(rows per column: \{'amount': 1\}\)"
    ) as caught:
        engine.warehouse.write(WriteRequest(required, bad, {}, strategy, key, window))  # type: ignore[arg-type]
    assert (caught.value.ref, caught.value.origin) == (f"{engine.dataset}.daily", "query")
    assert rows(engine) == before
    assert engine.tables() == tables


def test_a_null_in_a_not_null_partition_key_is_refused_by_replace(engine):
    engine.warehouse.write(request(engine, "merge", DAY1))
    before = rows(engine)
    bad = "SELECT CAST(NULL AS DATE) AS day, 'eu' AS region, 1.0 AS amount"
    with pytest.raises(
        NullsInRequiredColumns, match=r"NULL in not_null columns \(rows per column: \{'day': 1\}\)"
    ):
        engine.warehouse.write(WriteRequest(target(engine), bad, {}, "replace"))
    assert rows(engine) == before


def test_merge_rejects_duplicate_keys_and_writes_nothing(engine):
    engine.warehouse.write(request(engine, "merge", DAY1))
    before, tables = rows(engine), engine.tables()
    dupes = query(engine, PER_EVENT)
    with pytest.raises(
        DuplicateKeys, match=r"several rows for 1 values of unique_key \['day', 'region'\]"
    ) as caught:
        engine.warehouse.write(request(engine, "merge", DAY1, dupes))
    assert (caught.value.count, caught.value.samples, caught.value.role) == (
        1,
        ((dt.date(2026, 1, 1), "eu"),),
        "unique_key",
    )
    assert rows(engine) == before
    assert engine.tables() == tables


def test_duplicate_keys_count_every_duplicated_key_and_show_five(engine):
    sql = " UNION ALL ".join(
        f"SELECT DATE '2026-01-01' AS day, 'r{i % 7}' AS region, 1.0 AS amount" for i in range(20)
    )
    with pytest.raises(DuplicateKeys) as caught:
        engine.warehouse.write(request(engine, "merge", DAY1, sql))
    error = caught.value
    assert (error.count, error.role, len(error.samples)) == (7, "unique_key", 5)
    assert error.samples[0] == (dt.date(2026, 1, 1), "r0")


def test_merge_rejects_null_keys(engine):
    nulls = "SELECT DATE '2026-01-01' AS day, CAST(NULL AS STRING) AS region, 1 AS amount"
    with pytest.raises(NullKeys, match=r"1 rows with a NULL in unique_key \['day', 'region'\]"):
        engine.warehouse.write(request(engine, "merge", DAY1, nulls))
    assert not engine.warehouse.table_exists(f"{engine.dataset}.daily")


@pytest.mark.parametrize("strategy", ["append", "merge"])
def test_rows_outside_the_window_are_refused_and_nothing_is_written(engine, strategy):
    engine.warehouse.write(request(engine, "append", DAY2))
    before, tables = rows(engine), engine.tables()
    everything = query(engine, windowed=False)
    with pytest.raises(
        OutOfWindowRows, match="1 rows whose partition key 'day' is NULL or lies outside the window"
    ) as caught:
        engine.warehouse.write(request(engine, strategy, DAY1, everything))
    assert (caught.value.count, caught.value.strategy, caught.value.window) == (1, strategy, DAY1)
    assert rows(engine) == before
    assert engine.tables() == tables


def test_rows_outside_the_window_on_a_first_run_create_no_table(engine):
    everything = query(engine, PER_EVENT, windowed=False)
    with pytest.raises(
        OutOfWindowRows, match="1 rows whose partition key 'day' is NULL or lies outside the window"
    ):
        engine.warehouse.write(request(engine, "append", DAY1, everything))
    assert not engine.warehouse.table_exists(f"{engine.dataset}.daily")


def test_a_null_partition_key_counts_as_outside_the_window(engine):
    nullable = TargetTable(engine.dataset, "daily", (ColumnDef("day", "DATE"),), partition_key="day")
    sql = "SELECT DATE '2026-01-01' AS day UNION ALL SELECT CAST(NULL AS DATE) UNION ALL SELECT CAST(NULL AS DATE)"
    with pytest.raises(OutOfWindowRows, match=r"2 rows whose partition key 'day' is NULL or lies outside"):
        engine.warehouse.write(WriteRequest(nullable, sql, {}, "append", (), DAY1))
    assert not engine.warehouse.table_exists(f"{engine.dataset}.daily")


def test_a_refusal_is_a_warehouse_error(engine):
    """Callers catch `WarehouseError` for every broken rule."""
    with pytest.raises(WarehouseError):
        engine.warehouse.write(request(engine, "merge", DAY1, query(engine, PER_EVENT)))


# ----------------------------------------------------------------------------------------------- per partition

DAY3 = TimeWindow(dt.datetime(2026, 1, 3, tzinfo=dt.UTC), dt.datetime(2026, 1, 4, tzinfo=dt.UTC))
THREE_DAYS = TimeWindow(DAY1.start, DAY3.end)


def count_in(engine: WarehouseEngine, sql: str, column: str, window: TimeWindow) -> int:
    """Rows of a relation whose `column` lies in one window, counted on their own (one query per window)."""
    start, end = (b.strftime("%Y-%m-%d %H:%M:%S") for b in (window.start, window.end))
    found = engine.query(
        f"SELECT COUNT(*) FROM ({sql}) AS r WHERE {column} >= TIMESTAMP '{start}+00' "
        f"AND {column} < TIMESTAMP '{end}+00'"
    )
    return int(found[0][0])


@pytest.mark.parametrize("strategy", ["merge", "append"])
def test_per_partition_counts_of_a_three_window_run_match_each_window_counted_alone(engine, strategy):
    """rows_read: the query's rows per window; row_count: the target's rows per window after the write, old rows
    of the window (kept by a merge) included."""
    engine.execute(
        engine.sql(
            "INSERT INTO {ds}.events VALUES (TIMESTAMP '2026-01-03 05:00:00+00', 'eu', 2), "
            "(TIMESTAMP '2026-01-03 06:00:00+00', 'na', 3), (TIMESTAMP '2026-01-03 23:59:59+00', 'apac', 4)"
        )
    )
    kept = literal_rows(("'2026-01-02'", "'kept'", "1.0"))  # a key the 3-day run does not output
    engine.warehouse.write(request(engine, "merge", DAY2, kept))
    windows = (DAY1, DAY2, DAY3)
    run = dataclasses.replace(request(engine, strategy, THREE_DAYS), partitions=windows)
    result = engine.warehouse.write(run)
    assert [p.window for p in result.by_partition] == list(windows)
    staged = engine.sql(
        AGGREGATE.replace("{where}", "WHERE ts >= TIMESTAMP '2026-01-01' AND ts < TIMESTAMP '2026-01-04'")
    )
    day_as_ts = "CAST(day AS TIMESTAMP)"
    expected_read = [count_in(engine, staged, day_as_ts, w) for w in windows]
    stored = engine.sql("SELECT day FROM {ds}.daily")
    expected_rows = [count_in(engine, stored, day_as_ts, w) for w in windows]
    assert [p.rows_read for p in result.by_partition] == expected_read == [2, 1, 3]
    assert [p.row_count for p in result.by_partition] == expected_rows
    assert expected_rows == ([2, 2, 3] if strategy == "merge" else [2, 1, 3])
    assert sum(p.rows_read for p in result.by_partition) == result.rows_read


@pytest.mark.parametrize("key_type", ["TIMESTAMP", "DATETIME"])
def test_per_partition_counts_of_hourly_windows_bucket_by_the_hour(engine, key_type):
    hourly = TargetTable(
        engine.dataset,
        "hourly",
        (ColumnDef("hour", key_type, not_null=True), ColumnDef("region", "STRING")),
        partition_key="hour",
        partition_granularity="hour",
    )
    hours = [
        TimeWindow(dt.datetime(2026, 1, 1, h, tzinfo=dt.UTC), dt.datetime(2026, 1, 1, h + 1, tzinfo=dt.UTC))
        for h in (10, 11, 12)
    ]
    whole = TimeWindow(hours[0].start, hours[-1].end)
    sql = engine.sql(
        f"SELECT CAST(ts AS {key_type}) AS hour, region FROM {{ds}}.events "
        f"WHERE ts >= {{p}}window_start AND ts < {{p}}window_end"
    )
    result = engine.warehouse.write(
        WriteRequest(hourly, sql, whole.as_params(), "append", (), whole, partitions=tuple(hours))
    )
    assert [(p.rows_read, p.row_count) for p in result.by_partition] == [(1, 1), (1, 1), (1, 1)]


def test_no_per_partition_counts_without_partitions_or_a_partition_key(engine):
    assert engine.warehouse.write(request(engine, "append", DAY1)).by_partition == []
    unpartitioned = dataclasses.replace(
        request(engine, "replace", None, query(engine, windowed=False)),
        target=dataclasses.replace(target(engine), name="flat", partition_key=None),
        partitions=(DAY1, DAY2),
    )
    assert engine.warehouse.write(unpartitioned).by_partition == []


def test_per_partition_counts_take_one_grouped_query_per_side_whatever_the_partition_count(
    engine, monkeypatch
):
    """30 daily windows: two grouped queries (staged rows, target rows), not one per partition."""
    from resources import engine_sql

    built: list[object] = []
    original = engine_sql.bucket_counts

    def counted(*args, **kwargs):
        built.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(engine_sql, "bucket_counts", counted)
    days = tuple(
        TimeWindow(DAY1.start + dt.timedelta(days=n), DAY1.start + dt.timedelta(days=n + 1))
        for n in range(30)
    )
    whole = TimeWindow(days[0].start, days[-1].end)
    run = dataclasses.replace(request(engine, "append", whole), partitions=days)
    result = engine.warehouse.write(run)
    assert len(built) == 2
    assert [p.rows_read for p in result.by_partition[:3]] == [2, 1, 0]
    assert sum(p.row_count for p in result.by_partition) == 3


@pytest.mark.parametrize("key_type", ["TIMESTAMP", "DATETIME"])
def test_per_partition_counts_of_daily_windows_on_a_time_key_bucket_by_the_utc_day(engine, key_type):
    engine.execute(engine.sql("INSERT INTO {ds}.events VALUES (TIMESTAMP '2026-01-02 23:59:59+00', 'eu', 1)"))
    timed = TargetTable(
        engine.dataset,
        "timed",
        (ColumnDef("at", key_type, not_null=True), ColumnDef("region", "STRING")),
        partition_key="at",
    )
    sql = engine.sql(
        f"SELECT CAST(ts AS {key_type}) AS at, region FROM {{ds}}.events "
        f"WHERE ts >= {{p}}window_start AND ts < {{p}}window_end"
    )
    windows = (DAY1, DAY2, DAY3)
    run = WriteRequest(timed, sql, THREE_DAYS.as_params(), "append", (), THREE_DAYS, partitions=windows)
    result = engine.warehouse.write(run)
    assert [(p.rows_read, p.row_count) for p in result.by_partition] == [(3, 3), (2, 2), (0, 0)]
