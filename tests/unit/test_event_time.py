"""Event time: the `event_time` spec field, what a replication run records of its rows' event times (merged UTC
hour ranges, min, max), and which columns a windowed table's SQL filters on with the window parameters."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from support import shop_source

from derive_assets import metadata_keys as K
from derive_assets.replication.event_time import ColumnTimes, EventTimes, merged, summary, touched
from derive_assets.replication.retry import restarted
from derive_assets.specs.cache import Entry
from derive_assets.specs.errors import SpecValidationError
from derive_assets.specs.project import load_project
from derive_assets.specs.sql_analysis import analyse

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def batch(**columns: pa.Array) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(list(columns.values()), names=list(columns))


def recorded(times: EventTimes, column: str) -> dict[str, Any]:
    return times.as_metadata()[K.event_time(column)].value


# ------------------------------------------------------------------------------------------ recording


def test_timestamps_are_merged_into_ranges_of_utc_hours() -> None:
    times = EventTimes(("paid_at",))
    values = [
        "2026-03-01T10:05",
        "2026-03-01T10:59",
        "2026-03-01T11:00",
        "1995-06-30T23:30",
        "2026-03-01T13:00",
    ]
    zoned = pa.array([at(v) for v in values], pa.timestamp("us", tz="UTC"))
    list(times.observed([batch(paid_at=zoned[:2]), batch(paid_at=zoned[2:])]))
    assert recorded(times, "paid_at") == {
        "rows": 5,
        "min": "1995-06-30T23:30:00+00:00",
        "max": "2026-03-01T13:00:00+00:00",
        "granularity": "hour",
        "hours": [
            ["1995-06-30T23:00:00+00:00", "1995-07-01T00:00:00+00:00"],
            ["2026-03-01T10:00:00+00:00", "2026-03-01T12:00:00+00:00"],
            ["2026-03-01T13:00:00+00:00", "2026-03-01T14:00:00+00:00"],
        ],
    }


def test_a_zoned_timestamp_counts_by_its_utc_hour() -> None:
    times = EventTimes(("paid_at",))
    local = dt.datetime(2026, 3, 2, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # 2026-03-01T22:30Z
    times.observe(batch(paid_at=pa.array([local], pa.timestamp("ns", tz="Europe/Paris"))))
    assert recorded(times, "paid_at")["hours"] == [["2026-03-01T22:00:00+00:00", "2026-03-01T23:00:00+00:00"]]


def test_datetime_is_read_as_utc_and_date_touches_its_whole_day() -> None:
    times = EventTimes(("seen", "day"))
    times.observe(
        batch(
            seen=pa.array([dt.datetime(1969, 12, 31, 23, 59), None, None], pa.timestamp("us")),  # floored
            day=pa.array([dt.date(1995, 3, 1), dt.date(1995, 3, 2), dt.date(1995, 3, 4)], pa.date32()),
        )
    )
    assert recorded(times, "seen")["hours"] == [["1969-12-31T23:00:00+00:00", "1970-01-01T00:00:00+00:00"]]
    day = recorded(times, "day")
    assert (day["min"], day["max"], day["rows"]) == ("1995-03-01", "1995-03-04", 3)
    assert day["hours"] == [
        ["1995-03-01T00:00:00+00:00", "1995-03-03T00:00:00+00:00"],
        ["1995-03-04T00:00:00+00:00", "1995-03-05T00:00:00+00:00"],
    ]


def test_nulls_and_missing_columns_touch_nothing() -> None:
    times = EventTimes(("paid_at",))
    times.observe(batch(paid_at=pa.array([None, None], pa.timestamp("us", tz="UTC"))))
    times.observe(batch(other=pa.array([1])))  # a MongoDB batch whose documents all lack the field
    times.observe(batch(paid_at=pa.array([None, at("2026-01-01T00:00")], pa.timestamp("us", tz="UTC"))))
    assert recorded(times, "paid_at")["rows"] == 1
    assert EventTimes(("paid_at",)).as_metadata()[K.event_time("paid_at")].value == {
        "rows": 0,
        "min": None,
        "max": None,
        "granularity": "hour",
        "hours": [],
    }


def test_a_retry_counts_only_its_own_attempt() -> None:
    """`run.replicate` hands `restarted(times)` to every attempt, as it does its other counters."""
    times = EventTimes(("paid_at",))
    first = pa.array([at("1990-01-01T05:00")], pa.timestamp("us", tz="UTC"))
    second = pa.array([at("2026-01-01T05:00")], pa.timestamp("us", tz="UTC"))
    list(restarted(times).observed([batch(paid_at=first)]))  # an attempt whose connection then dropped
    list(restarted(times).observed([batch(paid_at=second)]))
    assert recorded(times, "paid_at")["hours"] == [["2026-01-01T05:00:00+00:00", "2026-01-01T06:00:00+00:00"]]
    assert times.columns == ("paid_at",)


def test_a_million_rows_are_reduced_to_their_distinct_hours() -> None:
    times = EventTimes(("paid_at",))
    start = int(at("2025-01-01T00:00").timestamp() * 1_000_000)
    values = pa.array(
        range(start, start + 1_000_000 * 10_000_000, 10_000_000), pa.int64()
    )  # every 10 s, 115 days
    times.observe(batch(paid_at=values.cast(pa.timestamp("us", tz="UTC"))))
    column = times.by_column["paid_at"]
    assert (column.rows, len(column.hours)) == (1_000_000, 2778)
    assert len(recorded(times, "paid_at")["hours"]) == 1


def test_too_many_ranges_are_widened_to_days_then_months_never_narrowed() -> None:
    hours = {day * 24 + 3 for day in range(9000, 9100, 2)} | {9000 * 24 + 7}  # 50 scattered days
    hours |= {9200 * 24 + 23, 9201 * 24, 9201 * 24 + 1}  # 23:00 to 02:00: one range over two days
    by_day = summary(ColumnTimes(hours=hours, rows=54), max_ranges=60)
    assert by_day["granularity"] == "hour" and len(by_day["hours"]) == 52
    widened = summary(ColumnTimes(hours=hours, rows=54), max_ranges=51)
    assert widened["granularity"] == "day"
    assert len(widened["hours"]) == 51
    assert widened["hours"][0] == ["1994-08-23T00:00:00+00:00", "1994-08-24T00:00:00+00:00"]
    assert widened["hours"][-1] == ["1995-03-11T00:00:00+00:00", "1995-03-13T00:00:00+00:00"]
    monthly = summary(ColumnTimes(hours=hours, rows=54), max_ranges=3)
    assert monthly["granularity"] == "month"
    assert monthly["hours"] == [
        ["1994-08-01T00:00:00+00:00", "1994-12-01T00:00:00+00:00"],
        ["1995-03-01T00:00:00+00:00", "1995-04-01T00:00:00+00:00"],
    ]
    for coarse in (widened, monthly):  # every hour touched is inside a recorded range
        ranges = touched(coarse)
        for hour in hours:
            moment = dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(hours=hour)
            assert any(start <= moment < end for start, end in ranges)


def test_merged_and_touched() -> None:
    assert merged([5, 3, 4, 9, 3]) == [(3, 6), (9, 10)]
    assert merged([]) == []
    assert touched(None) == []
    assert touched({"hours": [["2026-01-01T00:00:00+00:00", "2026-01-01T02:00:00+00:00"]]}) == [
        (at("2026-01-01T00:00"), at("2026-01-01T02:00"))
    ]


def test_text_times_are_read_and_a_column_that_is_not_temporal_is_named() -> None:
    times = EventTimes(("paid_at",))
    times.observe(batch(paid_at=pa.array(["2026-01-01 05:30:00", None])))
    assert recorded(times, "paid_at")["hours"] == [["2026-01-01T05:00:00+00:00", "2026-01-01T06:00:00+00:00"]]
    with pytest.raises(ValueError, match=r"event_time column 'paid_at' holds text that is not a timestamp"):
        times.observe(batch(paid_at=pa.array(["soon"])))
    with pytest.raises(ValueError, match=r"event_time column 'paid_at' arrived as int64, not as a date"):
        times.observe(batch(paid_at=pa.array([1])))
    # A retry's fresh attempt (`restarted`) empties the counts, not what names the rows.
    named = restarted(EventTimes(("paid_at",), where="source 'payments' table payments"))
    with pytest.raises(
        ValueError,
        match=r"^source 'payments' table payments: event_time column 'paid_at' holds text that is not a timestamp",
    ):
        named.observe(batch(paid_at=pa.array(["soon"])))


# ------------------------------------------------------------------------------------------ the spec field


def write_source(tmp_path: Path, **table: Any) -> Path:
    source = shop_source()
    source["tables"][0].update(table)
    root = tmp_path / "table_specs"
    (root / "sources").mkdir(parents=True)
    (root / "sources" / "shop.yaml").write_text(yaml.safe_dump(source, sort_keys=False))
    return root


@pytest.mark.parametrize(
    ("event_time", "message"),
    [
        (
            ["paid_at"],
            "table_specs/sources/shop.yaml: tables[0].event_time[0]: 'paid_at' is not declared in columns; "
            "allowed: the TIMESTAMP, DATETIME or DATE columns ['created_at', 'updated_at']",
        ),
        (
            ["created_at", "amount"],
            "table_specs/sources/shop.yaml: tables[0].event_time[1]: column 'amount' has type NUMERIC; an "
            "event-time column must be TIMESTAMP, DATETIME or DATE (allowed here: ['created_at', 'updated_at'])",
        ),
        (
            ["created_at", "created_at"],
            "table_specs/sources/shop.yaml: tables[0].event_time[1]: 'created_at' is listed twice",
        ),
    ],
)
def test_event_time_must_name_declared_time_columns(
    tmp_path: Path, event_time: list[str], message: str
) -> None:
    root = write_source(tmp_path, event_time=event_time)
    with pytest.raises(SpecValidationError, match=re.escape(message)):
        load_project(root)


def test_event_time_is_optional_and_kept(tmp_path: Path) -> None:
    assert load_project(write_source(tmp_path / "a")).replicated[0].table.event_time == []
    project = load_project(write_source(tmp_path / "b", event_time=["created_at"]))
    assert project.replicated[0].table.event_time == ["created_at"]


# ------------------------------------------------------------------------------------------ window columns


@pytest.mark.parametrize(
    ("sql", "columns"),
    [
        (
            "SELECT DATE(p.paid_at) AS day, COUNT(*) AS n FROM payments.payments AS p "
            "WHERE p.paid_at >= @window_start AND p.paid_at < @window_end GROUP BY day",
            ("payments.payments.paid_at",),
        ),
        (  # unqualified, one table read
            "SELECT * FROM orders.orders WHERE created_at >= @window_start AND created_at < @window_end",
            ("orders.orders.created_at",),
        ),
        (  # through a CTE's renamed column, and a function around the column
            "WITH p AS (SELECT paid_at AS t FROM payments.payments) "
            "SELECT * FROM p WHERE DATE(p.t) >= DATE(@window_start)",
            ("payments.payments.paid_at",),
        ),
        (  # a subquery, BETWEEN
            "SELECT * FROM (SELECT x.paid_at FROM payments.payments AS x) AS s "
            "WHERE s.paid_at BETWEEN @window_start AND @window_end",
            ("payments.payments.paid_at",),
        ),
        (  # a join's ON clause, and both branches of a UNION
            "SELECT u.ts FROM (SELECT ts FROM s.a UNION ALL SELECT ts FROM s.b) AS u "
            "JOIN s.c AS c ON c.ts >= @window_start WHERE u.ts < @window_end",
            ("s.a.ts", "s.b.ts", "s.c.ts"),
        ),
        ("SELECT CASE WHEN paid_at < @window_end THEN 1 END AS a FROM payments.payments", ()),  # not a filter
        ("SELECT * FROM payments.payments WHERE paid_at < CURRENT_TIMESTAMP()", ()),  # no window parameter
        (  # unqualified with two tables: cannot be told
            "SELECT * FROM s.a JOIN s.b USING (id) WHERE ts < @window_end",
            (),
        ),
    ],
)
def test_window_columns(sql: str, columns: tuple[str, ...]) -> None:
    assert analyse(sql).window_columns == columns


def test_window_columns_come_back_from_the_spec_cache() -> None:
    analysis = analyse("SELECT * FROM orders.orders WHERE created_at >= @window_start")
    entry = Entry("d", None)
    entry.set_analysis(analysis)
    cached = entry.analysis(analysis.sql)
    assert cached is not None and cached.window_columns == ("orders.orders.created_at",)


def test_the_shipped_windowed_tables_filter_on_the_declared_event_times() -> None:
    project = load_project(Path(__file__).resolve().parents[2] / "table_specs")
    event_times = {f"{rt.ref}.{c}" for rt in project.replicated for c in rt.table.event_time}
    assert event_times == {"payments.payments.paid_at", "orders.orders.created_at"}
    windowed = {t.spec.ref: t.analysis.window_columns for t in project.tables if t.spec.window}
    assert windowed["analytics.daily_payments_by_region"] == ("payments.payments.paid_at",)
    assert windowed["analytics.order_facts"] == ("orders.orders.created_at",)
