"""The reads-and-checks contract (`TableSlice`, `CheckQuery`; `resources/reads.py`), once for every warehouse:
slices by window (DATE and TIMESTAMP columns, half-open) and by cursor range (after < c <= upto, either bound
open), columns in the order asked, batches of bounded size, counts, maxima, and the column checks' violation
counts (`unique` over the whole table, the others over the slice)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from contract_engines import WarehouseEngine

from resources.reads import CheckQuery, CursorRange, TableSlice, WindowBound
from resources.warehouse import TimeWindow


def window(day: int, days: int = 1) -> TimeWindow:
    start = dt.datetime(2026, 1, day, tzinfo=dt.UTC)
    return TimeWindow(start, start + dt.timedelta(days=days))


T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
COLUMNS = [
    ("id", "INT64"),
    ("day", "DATE"),
    ("ts", "TIMESTAMP"),
    ("region", "STRING"),
    ("updated_at", "TIMESTAMP"),
]
# region: eu twice (in two windows), na three times, xx once, NULL twice.
DATA = [
    (1, "2026-01-01", dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC), "eu"),
    (2, "2026-01-01", dt.datetime(2026, 1, 1, 23, 59, 59, 999000, tzinfo=dt.UTC), "na"),
    (3, "2026-01-02", dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "eu"),  # the window's end is exclusive
    (4, "2026-01-02", dt.datetime(2026, 1, 2, 5, tzinfo=dt.UTC), None),
    (5, "2026-01-03", dt.datetime(2026, 1, 3, tzinfo=dt.UTC), "xx"),
    (6, "2026-01-03", dt.datetime(2026, 1, 3, 1, tzinfo=dt.UTC), "na"),
    (7, "2026-01-03", dt.datetime(2026, 1, 3, 2, tzinfo=dt.UTC), "na"),
    (8, "2026-01-03", dt.datetime(2026, 1, 3, 3, tzinfo=dt.UTC), None),
]
ROWS = [
    {
        "id": i,
        "day": dt.date.fromisoformat(d),
        "ts": ts,
        "region": r,
        "updated_at": T0 + dt.timedelta(minutes=i),
    }
    for i, d, ts, r in DATA
]


@pytest.fixture
def engine(warehouse_engine: WarehouseEngine) -> WarehouseEngine:
    warehouse_engine.create_source("facts", COLUMNS, ROWS)
    return warehouse_engine


def ref(engine: WarehouseEngine) -> str:
    return f"{engine.dataset}.facts"


def ids(table: Any) -> list[int]:
    return sorted(table.column("id").to_pylist())


def minutes(after: int | None = None, upto: int | None = None) -> CursorRange:
    at = lambda m: None if m is None else T0 + dt.timedelta(minutes=m)  # noqa: E731
    return CursorRange("updated_at", at(after), at(upto))


# ----------------------------------------------------------------------------------------------- slices


def test_a_slice_without_filters_is_the_whole_table_with_every_column(engine):
    table = engine.warehouse.read_slice(TableSlice(ref(engine)))
    assert table.column_names == [n for n, _ in COLUMNS]
    assert ids(table) == list(range(1, 9))
    assert engine.warehouse.count_slice(TableSlice(ref(engine))) == 8


def test_a_slice_reads_the_columns_asked_in_their_order(engine):
    table = engine.warehouse.read_slice(
        TableSlice(ref(engine), ("region", "id"), WindowBound("day", "DATE", window(1)))
    )
    assert table.column_names == ["region", "id"]
    assert sorted(table.to_pylist(), key=lambda r: r["id"]) == [
        {"region": "eu", "id": 1},
        {"region": "na", "id": 2},
    ]


@pytest.mark.parametrize(
    ("column", "type_", "day", "expected"),
    [
        ("day", "DATE", 1, [1, 2]),
        ("day", "DATE", 2, [3, 4]),
        ("ts", "TIMESTAMP", 1, [1, 2]),  # 23:59:59.999 in, 00:00 of the next day out
        ("ts", "TIMESTAMP", 2, [3, 4]),
        ("ts", "TIMESTAMP", 4, []),
    ],
)
def test_a_window_slice_holds_the_rows_in_the_half_open_window(engine, column, type_, day, expected):
    s = TableSlice(ref(engine), window=WindowBound(column, type_, window(day)))
    assert ids(engine.warehouse.read_slice(s)) == expected
    assert engine.warehouse.count_slice(s) == len(expected)


@pytest.mark.parametrize(
    ("cursor", "expected"),
    [
        (minutes(2, 5), [3, 4, 5]),  # after is exclusive, upto inclusive
        (minutes(None, 2), [1, 2]),
        (minutes(6, None), [7, 8]),
        (minutes(8, None), []),
        (minutes(None, None), list(range(1, 9))),
    ],
)
def test_a_cursor_slice_holds_the_rows_after_its_lower_bound_up_to_its_upper(engine, cursor, expected):
    s = TableSlice(ref(engine), cursor=cursor)
    assert ids(engine.warehouse.read_slice(s)) == expected
    assert engine.warehouse.count_slice(s) == len(expected)


def test_window_and_cursor_together_must_both_hold(engine):
    s = TableSlice(ref(engine), window=WindowBound("day", "DATE", window(2, days=2)), cursor=minutes(4, 6))
    assert ids(engine.warehouse.read_slice(s)) == [5, 6]
    assert engine.warehouse.count_slice(s) == 2


def test_iter_slice_streams_batches_of_bounded_size(engine):
    batches = list(engine.warehouse.iter_slice(TableSlice(ref(engine), ("id", "region")), 3))
    assert all(b.num_rows <= 3 for b in batches)
    assert sorted(i for b in batches for i in b.column("id").to_pylist()) == list(range(1, 9))
    assert all(b.schema.names == ["id", "region"] for b in batches)
    windowed = TableSlice(ref(engine), ("id",), WindowBound("day", "DATE", window(3)))
    assert sorted(
        i for b in engine.warehouse.iter_slice(windowed, 2) for i in b.column("id").to_pylist()
    ) == [5, 6, 7, 8]


def test_max_in_slice_is_the_largest_value_or_none(engine):
    wh = engine.warehouse
    assert wh.max_in_slice(TableSlice(ref(engine)), "updated_at") == T0 + dt.timedelta(minutes=8)
    assert wh.max_in_slice(
        TableSlice(ref(engine), cursor=minutes(None, 5)), "updated_at"
    ) == T0 + dt.timedelta(minutes=5)
    assert wh.max_in_slice(TableSlice(ref(engine), window=WindowBound("day", "DATE", window(2))), "id") == 4
    assert wh.max_in_slice(TableSlice(ref(engine), cursor=minutes(8, None)), "updated_at") is None


# ----------------------------------------------------------------------------------------------- checks


def test_unique_counts_every_value_held_twice_or_more_in_the_whole_table(engine):
    """eu (twice, in two windows) and na (three times); NULLs are not duplicates; the window does not narrow it."""
    for s in (TableSlice(ref(engine)), TableSlice(ref(engine), window=WindowBound("day", "DATE", window(1)))):
        assert engine.warehouse.count_violations(CheckQuery("unique", "region", s)) == 2
    assert engine.warehouse.count_violations(CheckQuery("unique", "id", TableSlice(ref(engine)))) == 0


@pytest.mark.parametrize(("day", "expected"), [(None, 2), (1, 0), (2, 1), (3, 1)])
def test_not_null_counts_the_slices_null_rows(engine, day, expected):
    bound = WindowBound("day", "DATE", window(day)) if day else None
    check = CheckQuery("not_null", "region", TableSlice(ref(engine), window=bound))
    assert engine.warehouse.count_violations(check) == expected


@pytest.mark.parametrize(("day", "expected"), [(None, 1), (1, 0), (3, 1)])
def test_accepted_values_counts_the_slices_other_values_but_not_nulls(engine, day, expected):
    bound = WindowBound("day", "DATE", window(day)) if day else None
    check = CheckQuery("accepted_values", "region", TableSlice(ref(engine), window=bound), ("eu", "na"))
    assert engine.warehouse.count_violations(check) == expected


def test_accepted_values_binds_numbers_as_numbers(engine):
    check = CheckQuery("accepted_values", "id", TableSlice(ref(engine)), (1, 2, 3))
    assert engine.warehouse.count_violations(check) == 5


def test_violation_samples_are_the_offending_values_in_order_at_most_the_limit(engine):
    """What a failed check shows: distinct values outside accepted_values in the slice, the duplicated values of
    the whole table for `unique`, none for `not_null` (its offending value is NULL)."""
    wh, whole = engine.warehouse, TableSlice(ref(engine))
    day3 = TableSlice(ref(engine), window=WindowBound("day", "DATE", window(3)))
    assert wh.violation_samples(CheckQuery("accepted_values", "region", whole, ("eu",))) == ["na", "xx"]
    assert wh.violation_samples(CheckQuery("accepted_values", "region", whole, ("eu",)), limit=1) == ["na"]
    assert wh.violation_samples(CheckQuery("accepted_values", "region", day3, ("na",))) == ["xx"]
    assert wh.violation_samples(CheckQuery("accepted_values", "id", whole, (1, 2, 3, 4, 5, 6, 7))) == [8]
    assert wh.violation_samples(CheckQuery("unique", "region", day3)) == ["eu", "na"]
    assert wh.violation_samples(CheckQuery("not_null", "region", whole)) == []
