"""`SliceReads` (`resources/reads.py`) on a real DuckDB file: windows are half-open on every time type, cursor ranges are (after, upto],
column checks count what they say (and `unique` looks past the window), values are bound parameters."""

import datetime as dt

import pyarrow as pa
import pytest

from resources.duckdb_warehouse import DuckDBWarehouse
from resources.reads import CheckQuery, CursorRange, TableSlice, WindowBound
from resources.warehouse import TimeWindow

UTC = dt.UTC
DAY2 = TimeWindow(dt.datetime(2024, 3, 2, tzinfo=UTC), dt.datetime(2024, 3, 3, tzinfo=UTC))


@pytest.fixture
def wh(tmp_path) -> DuckDBWarehouse:
    """A DuckDB file with core.t: ids 1-4 around the window DAY2 on a DATE, a DATETIME and a TIMESTAMP column."""
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    with warehouse.get_connection() as con:
        con.execute("CREATE SCHEMA core")
        con.execute(
            'CREATE TABLE core.t (id BIGINT, day DATE, wall TIMESTAMP, ts TIMESTAMPTZ, region VARCHAR, "odd col" '
            "BIGINT, flag BOOLEAN)"
        )
        con.executemany(
            "INSERT INTO core.t VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                # id 1: the instant before the window; 2: its first instant; 3: inside; 4: its end (outside)
                (1, dt.date(2024, 3, 1), dt.datetime(2024, 3, 1, 23, 59, 59, 999999),
                 dt.datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC), "eu", 10, True),
                (2, dt.date(2024, 3, 2), dt.datetime(2024, 3, 2), dt.datetime(2024, 3, 2, tzinfo=UTC), None, 10,
                 None),
                (3, dt.date(2024, 3, 2), dt.datetime(2024, 3, 2, 12), dt.datetime(2024, 3, 2, 12, tzinfo=UTC),
                 "o'brien", 20, False),
                (4, dt.date(2024, 3, 3), dt.datetime(2024, 3, 3), dt.datetime(2024, 3, 3, tzinfo=UTC), "mars", 30,
                 True),
            ],
        )  # fmt: skip
    return warehouse


def ids(table: pa.Table) -> list[int]:
    return sorted(table.column("id").to_pylist())


@pytest.mark.parametrize("column,column_type", [("day", "DATE"), ("wall", "DATETIME"), ("ts", "TIMESTAMP")])
def test_a_window_holds_its_start_but_not_its_end(wh, column, column_type):
    s = TableSlice("core.t", window=WindowBound(column, column_type, DAY2))
    assert ids(wh.read_slice(s)) == [2, 3]
    assert wh.count_slice(s) == 2


def test_columns_come_in_the_order_asked_and_none_means_all(wh):
    table = wh.read_slice(TableSlice("core.t", ("odd col", "id")))
    assert table.column_names == ["odd col", "id"]
    assert wh.read_slice(TableSlice("core.t")).column_names == [
        "id",
        "day",
        "wall",
        "ts",
        "region",
        "odd col",
        "flag",
    ]


def test_cursor_range_excludes_after_and_includes_upto(wh):
    assert ids(wh.read_slice(TableSlice("core.t", cursor=CursorRange("id", after=1, upto=3)))) == [2, 3]
    assert ids(wh.read_slice(TableSlice("core.t", cursor=CursorRange("id", after=3)))) == [4]
    assert ids(wh.read_slice(TableSlice("core.t", cursor=CursorRange("id", upto=1)))) == [1]
    assert wh.count_slice(TableSlice("core.t", cursor=CursorRange("id"))) == 4
    after = dt.datetime(2024, 3, 2, tzinfo=UTC)
    assert ids(wh.read_slice(TableSlice("core.t", cursor=CursorRange("ts", after=after)))) == [3, 4]


def test_max_in_slice(wh):
    assert wh.max_in_slice(TableSlice("core.t"), "id") == 4
    assert wh.max_in_slice(TableSlice("core.t", window=WindowBound("day", "DATE", DAY2)), "id") == 3
    assert wh.max_in_slice(TableSlice("core.t", cursor=CursorRange("id", after=4)), "id") is None
    assert wh.max_in_slice(TableSlice("core.t", cursor=CursorRange("id", after=1)), "ts") == dt.datetime(
        2024, 3, 3, tzinfo=UTC
    )


def test_iter_slice_streams_batches_of_at_most_batch_rows(wh):
    batches = list(wh.iter_slice(TableSlice("core.t", ("id",)), 3))
    assert [b.num_rows for b in batches] == [3, 1]
    assert batches[0].schema.names == ["id"]
    windowed = list(
        wh.iter_slice(TableSlice("core.t", ("id",), window=WindowBound("ts", "TIMESTAMP", DAY2)), 10)
    )
    assert sorted(v for b in windowed for v in b.column("id").to_pylist()) == [2, 3]


def test_not_null_counts_nulls_of_the_window_only(wh):
    whole = TableSlice("core.t")
    assert wh.count_violations(CheckQuery("not_null", "region", whole)) == 1
    assert wh.count_violations(CheckQuery("not_null", "flag", whole)) == 1
    day1 = TimeWindow(dt.datetime(2024, 3, 1, tzinfo=UTC), DAY2.start)
    assert (
        wh.count_violations(
            CheckQuery("not_null", "region", TableSlice("core.t", window=WindowBound("day", "DATE", day1)))
        )
        == 0
    )


def test_accepted_values_ignore_nulls_bind_values_and_respect_the_window(wh):
    whole = TableSlice("core.t")
    assert wh.count_violations(CheckQuery("accepted_values", "region", whole, ("eu", "o'brien"))) == 1  # mars
    windowed = TableSlice("core.t", window=WindowBound("day", "DATE", DAY2))
    assert wh.count_violations(CheckQuery("accepted_values", "region", windowed, ("eu", "o'brien"))) == 0
    assert wh.count_violations(CheckQuery("accepted_values", "region", windowed, ("eu",))) == 1  # o'brien
    assert wh.count_violations(CheckQuery("accepted_values", "flag", whole, (True,))) == 1
    assert wh.count_violations(CheckQuery("accepted_values", "odd col", whole, (10, 20))) == 1


def test_unique_counts_duplicated_values_across_windows(wh):
    windowed = TableSlice("core.t", window=WindowBound("day", "DATE", DAY2))
    # "odd col" holds 10 twice: once in the window (id 2) and once before it (id 1)
    assert wh.count_violations(CheckQuery("unique", "odd col", windowed)) == 1
    assert wh.count_violations(CheckQuery("unique", "id", windowed)) == 0
    assert wh.count_violations(CheckQuery("unique", "day", TableSlice("core.t"))) == 1  # 2024-03-02, twice
    assert wh.count_violations(CheckQuery("unique", "region", TableSlice("core.t"))) == 0  # NULL is no value
    with wh.get_connection() as con:  # a value seen three times is still one duplicated value
        con.execute('INSERT INTO core.t (id, "odd col") VALUES (5, 10)')
    assert wh.count_violations(CheckQuery("unique", "odd col", TableSlice("core.t"))) == 1
