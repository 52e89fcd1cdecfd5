"""Per-partition numbers of a multi-partition run (`WriteRequest.partitions` -> `WriteResult.by_partition`).

A single-run backfill of many windows writes them with one statement; Dagster then wants each partition's own
numbers. Two grouped queries give them whatever the partition count: the staged rows and the target rows (after
the write, inside the run's whole window) grouped by the partition key truncated to the hour (when a window
starts or ends off midnight, i.e. hourly windows) or to the day, then summed into the windows here. One query per
partition would cost a round trip each (thousands for a long backfill).

Buckets and window bounds are compared as naive UTC datetimes: a DATE is its midnight, a TIMESTAMP is converted
to UTC (both engines truncate and cast TIMESTAMPs in UTC), a DATETIME is taken as it is.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from resources import engine_sql as q
from resources.engine import Session, Staged
from resources.warehouse import PartitionCounts, TargetTable, TimeWindow, WriteRequest


def partition_counts(
    s: Session, request: WriteRequest, staged: Staged, written: TargetTable
) -> list[PartitionCounts]:
    """Each partition's staged rows and `written`'s rows in it (`written`: the table the run wrote, the target
    or a rebuild's new table); empty without `partitions` or without a partition key."""
    windows, key = request.partitions, request.target.partition_key
    if not windows or key is None:
        return []
    spec_type = request.target.column(key).type
    bucket = _bucket(key, spec_type, windows, s.dialect)
    read = s.rows(q.bucket_counts(staged.source, bucket))
    union = TimeWindow(min(w.start for w in windows), max(w.end for w in windows))
    inside = q.window_between(key, s.cast_types[spec_type], s.dialect)
    stored = s.rows(q.bucket_counts(q.table(written.ref), bucket, inside, q.TARGET), union.as_params())
    per_read, per_stored = sum_into(windows, read), sum_into(windows, stored)
    return [
        PartitionCounts(window=w, rows_read=r, row_count=c)
        for w, r, c in zip(windows, per_read, per_stored, strict=True)
    ]


def hourly(windows: Iterable[TimeWindow]) -> bool:
    """Whether some window starts or ends off midnight (hourly windows): then buckets are hours, else days."""
    return any(_naive_utc(b).time() != dt.time() for w in windows for b in (w.start, w.end))


def _bucket(key: str, spec_type: str, windows: Sequence[TimeWindow], dialect: str) -> Any:
    column = q.col(key)
    if spec_type != "DATE" and hourly(windows):
        return q.hour_bucket(column, spec_type)
    return q.day_bucket(column, spec_type, dialect)


def sum_into(windows: Sequence[TimeWindow], buckets: Iterable[Sequence[Any]]) -> list[int]:
    """Counts per bucket (`(bucket value, count)` rows) summed into the windows they fall in, in window order;
    buckets outside every window (a NULL key, a row outside the run) are left out."""
    order = sorted(range(len(windows)), key=lambda i: _naive_utc(windows[i].start))
    starts = [_naive_utc(windows[i].start) for i in order]
    totals = [0] * len(windows)
    for value, count in buckets:
        if value is None:
            continue
        at = _naive_utc(value)
        position = bisect.bisect_right(starts, at) - 1
        if position < 0:
            continue
        index = order[position]
        if at < _naive_utc(windows[index].end):
            totals[index] += int(count or 0)
    return totals


def _naive_utc(value: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    return dt.datetime(value.year, value.month, value.day)
