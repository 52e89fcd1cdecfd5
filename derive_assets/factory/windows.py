"""Spec windows become Dagster time-window partitions; a partition's time window is a run's window."""

from __future__ import annotations

from dagster import (
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    MonthlyPartitionsDefinition,
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
