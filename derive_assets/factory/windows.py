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
    if window is None:
        return None
    start = window.start.isoformat()
    if window.size == "1h":
        return HourlyPartitionsDefinition(start_date=f"{start}-00:00", timezone="UTC")
    if window.size == "1d":
        return DailyPartitionsDefinition(start_date=start, timezone="UTC")
    if window.size == "1w":
        return WeeklyPartitionsDefinition(start_date=start, timezone="UTC")
    return MonthlyPartitionsDefinition(start_date=start, timezone="UTC")
