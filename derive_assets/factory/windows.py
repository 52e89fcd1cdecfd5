"""Spec windows become Dagster time-window partitions; a partition's time window is a run's window."""

from __future__ import annotations

from dagster import (
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    PartitionMapping,
    TimeWindowPartitionMapping,
    TimeWindowPartitionsDefinition,
    WeeklyPartitionsDefinition,
)

from derive_assets.specs.models import Window


def partitions_for(window: Window | None) -> TimeWindowPartitionsDefinition | None:
    """The partitions of a spec window: from `start`, up to now or, with `end`, up to that day (exclusive).

    Dagster's `end_date` is exclusive too and takes the same format as `start_date`; a window that would
    reach past it is not a partition (a monthly window's `end: 2026-03-15` stops after February).
    """
    if window is None:
        return None
    start = window.start.isoformat()
    end = window.end.isoformat() if window.end is not None else None
    if window.size == "1h":
        end_hour = f"{end}-00:00" if end is not None else None
        return HourlyPartitionsDefinition(start_date=f"{start}-00:00", end_date=end_hour, timezone="UTC")
    if window.size == "1d":
        return DailyPartitionsDefinition(start_date=start, end_date=end, timezone="UTC")
    if window.size == "1w":
        return WeeklyPartitionsDefinition(start_date=start, end_date=end, timezone="UTC")
    return MonthlyPartitionsDefinition(start_date=start, end_date=end, timezone="UTC")


def partition_mapping(window: Window | None, input_window: Window | None) -> PartitionMapping | None:
    """How a table's windows map to the windows of a table it reads; None where Dagster's default is right.

    Dagster's default between two time-window partitionings is `TimeWindowPartitionMapping()`: each window reads
    every input window it overlaps (24 hours for a day, the 4-6 weeks a month overlaps), of any granularity.
    An unwindowed input needs none (every window reads the whole table), nor does an unwindowed table (it reads
    every window of a windowed input: Dagster's `AllPartitionMapping`).

    When the input's windows start later (or end earlier) than the table's, the table's windows outside them
    read input windows that will never exist: `allow_nonexistent_upstream_partitions=True` makes them read
    nothing, as their SQL does, instead of a backfill of them failing with Dagster's "depends on non-existent
    partitions". An input window that does not exist *yet* (the week straddling a month's end) is waited for by
    the automation condition (`factory/automation.py`), not here.
    """
    if window is None or input_window is None:
        return None
    own, other = partitions_for(window), partitions_for(input_window)
    assert own is not None and other is not None
    starts_later = other.start > own.start
    ends_earlier = other.end is not None and (own.end is None or other.end < own.end)
    if starts_later or ends_earlier:
        return TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)
    return None
