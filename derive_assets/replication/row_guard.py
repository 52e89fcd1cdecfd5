"""Rows that must not be loaded as they are: found, counted and named, never dropped in silence.

A source row is invalid when its primary key has a NULL (it could never be merged or replaced), its cursor is NULL
(no watermark can tell when it changed), its time cursor lies beyond `max_future_seconds` after the run started
(a poisoned value such as `9999-12-31` would move the watermark past every real row), or a cell is not a value of
its declared type (SQLite). Invalid rows never reach the warehouse, so they never move the watermark. With
`on_invalid: fail` the run fails after the read, naming how many rows and sample keys (the warehouse transaction
rolls back: nothing is written); with `quarantine` they go to `<dataset>.<table>__quarantine` and the rest loads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as _compute

from derive_assets.specs.models import SourceSpec, SourceTable

SAMPLES = 5
pc: Any = _compute  # the compute functions are generated at import time; type checkers cannot see them


class InvalidRowsError(ValueError):
    """A read found invalid rows and the table's `on_invalid` is `fail`; nothing was written."""

    def __init__(
        self, source: str, table: str, quarantine_ref: str, counts: Counter[str], samples: dict
    ) -> None:
        self.source, self.table, self.counts, self.samples = source, table, counts, samples
        total = sum(counts.values())
        parts = [
            f"{n} with {reason} (e.g. {', '.join(samples[reason])})" for reason, n in counts.most_common()
        ]
        super().__init__(
            f"source '{source}' table '{table}': {total} invalid rows, so nothing was written and the watermark "
            f"did not move: {'; '.join(parts)}. Fix these rows in the source, or set `on_invalid: quarantine` "
            f"on the table to load the other rows and set these aside in {quarantine_ref}."
        )


@dataclass
class RowGuard:
    """Checks each batch of one read; `finish()` raises when invalid rows were found and `on_invalid` is fail."""

    source: SourceSpec
    table: SourceTable
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    """Rows for the quarantine table (`_id`, `error`, `document`, `quarantined_at`) when `on_invalid` is quarantine."""
    counts: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def quarantine_ref(self) -> str:
        return f"{self.source.target_dataset}.{self.table.name}__quarantine"

    def reject(self, row: dict[str, Any], reason: str) -> None:
        """Set aside one row (values as the source gave them) for `reason`."""
        document = json.dumps(row, default=_text, sort_keys=True, ensure_ascii=False)
        key = self._key(row, document)
        self.counts[reason] += 1
        shown = self.samples.setdefault(reason, [])
        if len(shown) < SAMPLES:
            shown.append(key)
        if self.table.on_invalid == "quarantine":
            self.quarantined.append(
                {"_id": key, "error": reason, "document": document, "quarantined_at": self.started_at}
            )

    def check(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch without its invalid rows (which are rejected)."""
        if batch.num_rows == 0:
            return batch
        reasons = self._reasons(batch)
        if not reasons:
            return batch
        bad = pa.array([False] * batch.num_rows)
        for reason, mask in reasons:
            new = pc.and_not(mask, bad)  # each row counted once, for its first reason
            for row in _rows(batch.filter(new)):
                self.reject(row, reason)
            bad = pc.or_(bad, mask)
        return batch.filter(pc.invert(bad))

    def finish(self) -> None:
        if self.counts and self.table.on_invalid == "fail":
            raise InvalidRowsError(
                self.source.name, self.table.name, self.quarantine_ref, self.counts, self.samples
            )

    def guarded(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """`batches` without invalid rows; raises at the end (inside the warehouse transaction) on fail."""
        for batch in batches:
            checked = self.check(batch)
            if checked.num_rows:
                yield checked
        self.finish()

    # ------------------------------------------------------------------------------------------ rules

    def _reasons(self, batch: pa.RecordBatch) -> list[tuple[str, pa.Array]]:
        reasons: list[tuple[str, pa.Array]] = []
        names = batch.schema.names
        for key in self.table.primary_key:
            if key in names and batch.column(key).null_count:
                reasons.append((f"a NULL primary key column '{key}'", pc.is_null(batch.column(key))))
        cursor = self.table.cursor
        if cursor in names:
            values = batch.column(cursor)
            if values.null_count:
                reasons.append((f"a NULL cursor '{cursor}'", pc.is_null(values)))
            limit = self._limit(values.type)
            if limit is not None:
                beyond = pc.fill_null(pc.greater(values, limit), False)
                if pc.any(beyond).as_py():
                    reasons.append((f"cursor '{cursor}' beyond {self._limit_text()}", beyond))
        return reasons + self._value_reasons(batch)

    def _value_reasons(self, batch: pa.RecordBatch) -> list[tuple[str, pa.Array]]:
        """Values the warehouse would change or refuse: NUMERIC beyond NUMERIC(38, 9) (text from the source),
        times outside the years 1-9999 (PostgreSQL infinities arrive as year 262142), unsigned beyond INT64."""
        reasons: list[tuple[str, pa.Array]] = []
        for column in self.table.columns:
            if column.name not in batch.schema.names:
                continue
            values = batch.column(column.name)
            bad, what = None, ""
            if column.type == "NUMERIC" and pa.types.is_string(values.type):
                bad = pc.invert(pc.match_substring_regex(values, _NUMERIC_TEXT))
                what = "not a number NUMERIC holds exactly (29 digits before the point, 9 after; no NaN)"
            elif (pa.types.is_timestamp(values.type) or pa.types.is_date(values.type)) and (
                bounds := _time_range(values.type)
            ):
                bad = pc.or_(pc.less(values, bounds[0]), pc.greater(values, bounds[1]))
                what = "a time outside the years 1-9999 that BigQuery holds (infinity, a BC date, year 10000 or later)"
            elif column.type == "INT64" and pa.types.is_unsigned_integer(values.type):
                bad = pc.greater(values, pa.scalar(2**63 - 1, type=values.type))
                what = "beyond the INT64 range"
            if bad is not None:
                bad = pc.fill_null(bad, False)
                if pc.any(bad).as_py():
                    reasons.append((f"a value of column '{column.name}' that is {what}", bad))
        return reasons

    def _limit_text(self) -> str:
        limit = self.started_at + dt.timedelta(seconds=self.table.max_future_seconds)
        return f"{limit.isoformat(timespec='seconds')} (max_future_seconds after the run started)"

    def _limit(self, arrow_type: pa.DataType) -> pa.Scalar | None:
        if self.table.cursor_column.type not in ("TIMESTAMP", "DATETIME", "DATE"):
            return None
        limit = self.started_at + dt.timedelta(seconds=self.table.max_future_seconds)
        if pa.types.is_timestamp(arrow_type):
            assert isinstance(arrow_type, pa.TimestampType)
            value = limit if arrow_type.tz else limit.replace(tzinfo=None)
            return pa.scalar(value, type=pa.timestamp("us", tz=arrow_type.tz)).cast(arrow_type)
        if pa.types.is_date(arrow_type):
            return pa.scalar(limit.date(), type=pa.date32()).cast(arrow_type)
        return None  # text cursors are converted before the guard sees them

    def _key(self, row: dict[str, Any], document: str) -> str:
        key = {k: row.get(k) for k in self.table.primary_key}
        if any(v is None for v in key.values()):
            return "row:" + hashlib.sha256(document.encode()).hexdigest()[:16]
        return json.dumps(key, default=_text, sort_keys=True, ensure_ascii=False)


_NUMERIC_TEXT = r"^[+-]?[0-9]{1,29}(\.[0-9]{0,9}0*)?$"


def _time_range(arrow_type: pa.DataType) -> tuple[pa.Scalar, pa.Scalar] | None:
    """The years 1-9999 in `arrow_type` (None for nanoseconds, which cover only 1677-2262: always inside)."""
    if pa.types.is_date(arrow_type):
        return pa.scalar(dt.date(1, 1, 1)).cast(arrow_type), pa.scalar(dt.date(9999, 12, 31)).cast(arrow_type)
    assert isinstance(arrow_type, pa.TimestampType)
    if arrow_type.unit == "ns":
        return None
    first, last = dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    if arrow_type.tz:
        first, last = first.replace(tzinfo=dt.UTC), last.replace(tzinfo=dt.UTC)
    micro = pa.timestamp("us", tz=arrow_type.tz)
    # Whole seconds or milliseconds: the bounds round towards the inside, so a value at them stays valid.
    return pa.scalar(first, type=micro).cast(arrow_type), pa.scalar(last, type=micro).cast(
        arrow_type, safe=False
    )


def _rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """Rows as plain values, time values as ISO text. Python's datetime stops at year 9999 (and Arrow's own text
    cast wraps around beyond it), while PostgreSQL's `infinity` arrives as year 262142: such values are shown as
    their count of units since 1970."""
    if not any(pa.types.is_temporal(f.type) for f in batch.schema):
        return batch.to_pylist()
    columns: dict[str, list[Any]] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        columns[name] = _temporal_text(column) if pa.types.is_temporal(column.type) else column.to_pylist()
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


_EPOCH = dt.datetime(1970, 1, 1)
_UNITS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "microseconds"}


def _temporal_text(column: pa.Array) -> list[str | None]:
    if pa.types.is_date(column.type):
        days = pc.cast(pc.cast(column, pa.date32()), pa.int32()).to_pylist()
        return [None if d is None else _shift(d, "days") for d in days]
    if pa.types.is_timestamp(column.type):
        assert isinstance(column.type, pa.TimestampType)
        unit = column.type.unit
        values = pc.cast(column, pa.int64()).to_pylist()
        if unit == "ns":
            values = [None if v is None else v // 1000 for v in values]
        suffix = "+00:00" if column.type.tz else ""
        return [None if v is None else _shift(v, _UNITS[unit]) + suffix for v in values]
    return [None if v is None else str(v) for v in column.to_pylist()]


def _shift(amount: int, unit: str) -> str:
    try:
        moment = _EPOCH + dt.timedelta(**{unit: amount})
    except OverflowError:
        return f"{amount} {unit} after 1970-01-01 (beyond year 9999)"
    return moment.date().isoformat() if unit == "days" else moment.isoformat(sep=" ")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
