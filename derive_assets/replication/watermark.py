"""Watermarks: how far a source table has been replicated, and where the next run starts reading.

They live in Dagster's event log as materialization metadata, written only after the data is committed; there is
no other state store. Values are kept as text and typed by the cursor column's declared type.

Two values matter:

- `derive/watermark`: the largest cursor value replicated so far (never moves backwards).
- `derive/read_floor`: where the next run reads from (before `cursor_overlap`). Without a fence it equals the
  watermark. With a fence (PostgreSQL, MySQL: `wait_for_open_transactions`), a run's watermark becomes the floor
  only once every transaction that was open after that run's read has ended and a later run has read again from
  the old floor, so a row those transactions commit later, with an earlier cursor, is still read. Until then the
  watermark waits as `derive/pending_floor` beside the source's fence token (`derive/fence`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from derive_assets import metadata_keys as K
from derive_assets.specs.models import ColumnType

WATERMARK_KEY, FLOOR_KEY, PENDING_KEY, FENCE_KEY = K.WATERMARK, K.READ_FLOOR, K.PENDING_FLOOR, K.FENCE


class WatermarkError(ValueError):
    """A watermark stored in the event log cannot be read as its cursor's type."""

    def __init__(self, text: str, column_type: str, key: str) -> None:
        self.text, self.column_type, self.key = text, column_type, key
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(
            f"the stored {key} {shown!r} is not a valid {column_type} cursor value (was the cursor's type "
            "changed?). Rebuild the table: drop it from the warehouse and the next run copies every row again."
        )


def to_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def from_text(text: str | None, column_type: ColumnType, key: str = WATERMARK_KEY) -> Any:
    """The value `to_text` wrote, typed as the cursor column: int, date, datetime (TIMESTAMP: UTC-aware), or the
    text itself (STRING cursors: MongoDB ObjectIds)."""
    if text is None:
        return None
    try:
        if column_type == "INT64":
            return int(text)
        if column_type == "DATE":
            return dt.date.fromisoformat(text)
        if column_type not in ("DATETIME", "TIMESTAMP"):
            return text
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise WatermarkError(text, column_type, key) from None
    if column_type == "TIMESTAMP" and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    if column_type == "DATETIME" and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def with_overlap(value: Any, overlap: int) -> Any:
    """Step back `overlap` ids or seconds, to re-read rows that committed late with an earlier cursor.

    STRING cursors (ObjectIds) are returned as they are: their overlap is applied by the document reader.
    """
    if value is None or overlap == 0 or isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        try:
            return value - dt.timedelta(seconds=overlap)
        except OverflowError:
            return dt.datetime.min.replace(tzinfo=value.tzinfo)
    if isinstance(value, dt.date):
        try:
            return value - dt.timedelta(days=max(1, -(-overlap // 86400)))
        except OverflowError:
            return dt.date.min
    return value - overlap


def latest(before: Any, read: Any) -> Any:
    """The watermark after a run: never moves backwards."""
    if read is None:
        return before
    if before is None:
        return read
    return max(before, read)


@dataclass(frozen=True)
class CursorState:
    """What a table's last materialization says about its cursor (all None before the first run)."""

    watermark: Any = None
    floor: Any = None
    """Where the next run reads from, before the overlap."""
    pending_floor: Any = None
    """The floor to use once `fence` has cleared (every transaction open at that read has ended)."""
    fence: str | None = None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], column_type: ColumnType) -> CursorState:
        def value(key: str) -> Any:
            raw = metadata.get(key)
            raw = getattr(raw, "value", raw)  # MetadataValue or plain text
            return from_text(raw, column_type, key) if isinstance(raw, str) else None

        stored = value(WATERMARK_KEY)
        # Materializations written before the read floor existed: the floor was the watermark.
        floor = value(FLOOR_KEY) if FLOOR_KEY in metadata else stored
        fence = getattr(metadata.get(FENCE_KEY), "value", metadata.get(FENCE_KEY))
        return cls(stored, floor, value(PENDING_KEY), fence if isinstance(fence, str) else None)

    def after_run(self, max_read: Any, fence: str | None, fenced: bool, cleared: bool) -> CursorState:
        """The state a successful run records; it read from `self.floor`.

        Unfenced, the new watermark is the next floor at once. Fenced, the floor moves up to the previous run's
        watermark only when the transactions open after that run's read had all ended before this run's read
        (`cleared`): this run, reading from the old floor, then saw every row they committed.
        """
        new_watermark = latest(self.watermark, max_read)
        if not fenced:
            return CursorState(new_watermark, new_watermark, None, None)
        floor = latest(self.floor, self.pending_floor) if cleared else self.floor
        return CursorState(new_watermark, floor, new_watermark, fence)

    def as_metadata(self) -> dict[str, str | None]:
        return {
            WATERMARK_KEY: to_text(self.watermark),
            FLOOR_KEY: to_text(self.floor),
            PENDING_KEY: to_text(self.pending_floor),
            FENCE_KEY: self.fence,
        }
