"""`resources.partition_counts`: grouped bucket counts summed into a run's windows (no warehouse needed; the
contract suite checks the queries on both engines)."""

from __future__ import annotations

import datetime as dt

from resources.partition_counts import hourly, sum_into
from resources.warehouse import TimeWindow

UTC = dt.UTC


def day(n: int) -> TimeWindow:
    return TimeWindow(dt.datetime(2026, 1, n, tzinfo=UTC), dt.datetime(2026, 1, n + 1, tzinfo=UTC))


def test_buckets_are_summed_into_their_windows_in_the_requests_order():
    windows = [day(3), day(1), day(2)]  # not sorted: the result follows this order
    buckets = [(dt.date(2026, 1, 1), 4), (dt.date(2026, 1, 3), 2), (dt.date(2026, 1, 2), 1)]
    assert sum_into(windows, buckets) == [2, 4, 1]


def test_a_bucket_on_a_windows_first_instant_belongs_to_that_window_and_its_end_to_the_next():
    windows = [day(1), day(2)]
    buckets = [(dt.datetime(2026, 1, 2, tzinfo=UTC), 5), (dt.datetime(2026, 1, 1, 23, tzinfo=UTC), 1)]
    assert sum_into(windows, buckets) == [1, 5]


def test_buckets_outside_every_window_or_null_are_left_out():
    windows = [day(1), day(3)]  # a gap on day 2
    buckets = [(None, 9), (dt.date(2025, 12, 31), 9), (dt.date(2026, 1, 2), 9), (dt.date(2026, 1, 4), 9)]
    assert sum_into(windows, buckets) == [0, 0]


def test_aware_and_naive_values_compare_in_utc():
    windows = [TimeWindow(dt.datetime(2026, 1, 1, 10, tzinfo=UTC), dt.datetime(2026, 1, 1, 11, tzinfo=UTC))]
    plus_two = dt.timezone(dt.timedelta(hours=2))
    buckets = [
        (dt.datetime(2026, 1, 1, 12, tzinfo=plus_two), 1),  # 10:00 UTC
        (dt.datetime(2026, 1, 1, 10), 2),  # a DATETIME: taken as UTC
        (dt.datetime(2026, 1, 1, 11, tzinfo=UTC), 4),  # the window's end: outside
    ]
    assert sum_into(windows, buckets) == [3]


def test_hour_buckets_only_when_a_window_bound_is_off_midnight():
    assert not hourly([day(1), day(2)])
    weekly = TimeWindow(dt.datetime(2026, 1, 5, tzinfo=UTC), dt.datetime(2026, 1, 12, tzinfo=UTC))
    assert not hourly([weekly])
    assert hourly(
        [TimeWindow(dt.datetime(2026, 1, 1, 0, tzinfo=UTC), dt.datetime(2026, 1, 1, 1, tzinfo=UTC))]
    )
    tokyo = dt.timezone(dt.timedelta(hours=9))  # local midnight is 15:00 UTC
    assert hourly([TimeWindow(dt.datetime(2026, 1, 2, tzinfo=tokyo), dt.datetime(2026, 1, 3, tzinfo=tokyo))])
