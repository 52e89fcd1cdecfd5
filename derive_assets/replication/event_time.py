"""Which event times a replication run's rows carry: for each declared `event_time` column, its range and the UTC
hours it touches, recorded as `derive/event_time/<column>` (see `metadata_keys.event_time`).

The rows are observed batch by batch as they stream into the warehouse: each batch's values are floored to the
hour and reduced to their distinct hours with `pyarrow.compute` (no Python object per row), so a run's memory is
the set of distinct hours, not its rows. The metadata holds merged ranges (`[[start, end), ...]`): a run over a
year of contiguous rows is one range; a wave of late rows scattered over 300 days is at most 300. Beyond
`MAX_RANGES` the ranges are widened to whole days, then whole months: a superset, so at worst a few more windows
re-run, never fewer.

DATETIME values (no time zone) are read as UTC, like the windows; a DATE touches its whole day.

Example:
    ```python
    times = EventTimes.of(table, source.name)
    load(times.observed(batches))
    metadata = times.as_metadata()  # {"derive/event_time/paid_at": MetadataValue.json({...})}
    ```
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as _compute

from derive_assets import metadata_keys as K
from derive_assets.replication.retry import KEEP
from derive_assets.specs.models import SourceTable

pc: Any = _compute  # the compute functions are generated at import time; type checkers cannot see them
HOUR = dt.timedelta(hours=1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_RANGES = 1000
"""Merged ranges kept per column in one run's metadata (~60 bytes each); more are widened (module docstring)."""
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


@dataclass
class ColumnTimes:
    """What the rows of one attempt carried in one event-time column."""

    hours: set[int] = field(default_factory=set)
    """Hours since 1970-01-01T00:00Z that a non-null value falls in."""
    low: dt.datetime | dt.date | None = None
    high: dt.datetime | dt.date | None = None
    rows: int = 0
    """Rows with a non-null value."""


@dataclass
class EventTimes:
    """The event times of one replication attempt; `retry.restarted` empties `by_column` for a new attempt."""

    columns: tuple[str, ...]
    by_column: dict[str, ColumnTimes] = field(default_factory=dict)
    where: str = field(default="", metadata={KEEP: True})
    """What the rows are (`source 'payments' table payments`), first in an error about them."""

    @classmethod
    def of(cls, table: SourceTable, source: str | None = None) -> EventTimes:
        where = f"source '{source}' table {table.name}" if source else f"table {table.name}"
        return cls(tuple(table.event_time), where=where)

    def observed(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """`batches`, unchanged, each observed on its way through."""
        for batch in batches:
            self.observe(batch)
            yield batch

    def observe(self, batch: pa.RecordBatch) -> None:
        for name in self.columns:
            index = batch.schema.get_field_index(name)
            if index < 0:
                continue  # a batch without the column (a MongoDB batch whose documents all lack it): all null
            try:
                _observe(self.by_column.setdefault(name, ColumnTimes()), name, batch.column(index))
            except ValueError as exc:  # the run's error: name the source and table first
                raise ValueError(f"{self.where}: {exc}" if self.where else str(exc)) from None

    def as_metadata(self) -> dict[str, Any]:
        """`derive/event_time/<column>` for each declared column (a column no row had: zero rows, no hours)."""
        from dagster import MetadataValue

        return {
            K.event_time(name): MetadataValue.json(summary(self.by_column.get(name, ColumnTimes())))
            for name in self.columns
        }


def _observe(times: ColumnTimes, name: str, values: pa.Array) -> None:
    valid = pc.drop_null(values)
    if len(valid) == 0:
        return
    if pa.types.is_string(valid.type) or pa.types.is_large_string(valid.type):
        valid = _parsed(name, valid)  # a driver that sends text (the warehouse casts it to the declared type)
    times.rows += len(valid)
    if pa.types.is_date(valid.type):
        days = pc.unique(valid.cast(pa.date32()).cast(pa.int32())).to_pylist()
        times.hours.update(hour for day in days for hour in range(day * 24, day * 24 + 24))
    elif pa.types.is_timestamp(valid.type):
        unit = valid.type.unit
        naive = valid.cast(pa.timestamp(unit))  # a zoned timestamp's values are UTC instants: keep them
        floored = pc.unique(pc.floor_temporal(naive, unit="hour")).cast(pa.int64()).to_pylist()
        per_hour = _PER_SECOND[unit] * 3600
        times.hours.update(value // per_hour for value in floored)  # exact: floored to the hour
        valid = naive
    else:
        raise ValueError(
            f"event_time column '{name}' arrived as {valid.type}, not as a date or timestamp; declare it "
            "TIMESTAMP, DATETIME or DATE with the type its values have"
        )
    bounds = pc.min_max(valid)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    times.low = low if times.low is None or low < times.low else times.low
    times.high = high if times.high is None or high > times.high else times.high


def _parsed(name: str, values: pa.Array) -> pa.Array:
    """Text values as timestamps (ISO 8601, as the warehouse's cast reads them), or a clear error."""
    try:
        return values.cast(pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        sample = values[0].as_py()
        raise ValueError(
            f"event_time column '{name}' holds text that is not a timestamp (e.g. {str(sample)[:40]!r}); list "
            "only TIMESTAMP, DATETIME or DATE columns whose values are times in event_time"
        ) from None


def merged(hours: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted distinct hours as half-open `[start, end)` ranges of consecutive hours."""
    ranges: list[tuple[int, int]] = []
    for hour in sorted(set(hours)):
        if ranges and ranges[-1][1] == hour:
            ranges[-1] = (ranges[-1][0], hour + 1)
        else:
            ranges.append((hour, hour + 1))
    return ranges


def summary(times: ColumnTimes, max_ranges: int = MAX_RANGES) -> dict[str, Any]:
    """The JSON of one column: rows, min, max, the merged hour ranges (ISO, UTC) and their granularity."""
    granularity, ranges = "hour", merged(times.hours)
    if len(ranges) > max_ranges:
        granularity, ranges = "day", _widened(ranges, _day_start, dt.timedelta(days=1))
    if len(ranges) > max_ranges:
        granularity, ranges = "month", _widened(ranges, _month_start, None)
    return {
        "rows": times.rows,
        "min": _iso(times.low),
        "max": _iso(times.high),
        "granularity": granularity,
        "hours": [[_hour_iso(start), _hour_iso(end)] for start, end in ranges],
    }


def touched(value: Mapping[str, Any] | None) -> list[tuple[dt.datetime, dt.datetime]]:
    """The `[start, end)` UTC ranges a recorded `derive/event_time/<column>` value says the rows touched."""
    if not value:
        return []
    return [
        (
            dt.datetime.fromisoformat(start).astimezone(dt.UTC),
            dt.datetime.fromisoformat(end).astimezone(dt.UTC),
        )
        for start, end in value.get("hours", [])
    ]


def _widened(
    ranges: Sequence[tuple[int, int]], floor: Any, step: dt.timedelta | None
) -> list[tuple[int, int]]:
    """`ranges` widened to whole days or months (`floor` of a start, its end rounded up), merged again."""
    hours: list[tuple[int, int]] = []
    for start, end in ranges:
        first = floor(_at(start))
        last = floor(_at(end - 1))
        after = last + step if step is not None else _next_month(last)
        hours.append((_hour_of(first), _hour_of(after)))
    out: list[tuple[int, int]] = []
    for start, end in sorted(hours):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _at(hour: int) -> dt.datetime:
    return EPOCH + hour * HOUR


def _hour_of(moment: dt.datetime) -> int:
    return (moment - EPOCH) // HOUR


def _day_start(moment: dt.datetime) -> dt.datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_start(moment: dt.datetime) -> dt.datetime:
    return _day_start(moment).replace(day=1)


def _next_month(moment: dt.datetime) -> dt.datetime:
    return (
        moment.replace(year=moment.year + 1, month=1)
        if moment.month == 12
        else moment.replace(month=moment.month + 1)
    )


def _hour_iso(hour: int) -> str:
    return _at(hour).isoformat()


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value.isoformat()
