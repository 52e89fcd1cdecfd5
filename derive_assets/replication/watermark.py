"""Watermarks: the cursor value up to which a source table has been replicated.

They live in Dagster's event log as materialization metadata (`derive/watermark`), written only after the data is
committed; there is no other state store. Values are kept as text and typed by the cursor column's declared type.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from derive_assets.specs.models import ColumnType

WATERMARK_KEY = "derive/watermark"


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


def from_text(text: str | None, column_type: ColumnType) -> Any:
    if text is None:
        return None
    if column_type == "INT64":
        return int(text)
    if column_type == "DATE":
        return dt.date.fromisoformat(text)
    value = dt.datetime.fromisoformat(text)
    if column_type == "TIMESTAMP" and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def with_overlap(value: Any, overlap: int) -> Any:
    """Step back `overlap` ids or seconds, to re-read rows that committed late with an earlier cursor."""
    if value is None or overlap == 0:
        return value
    if isinstance(value, dt.datetime):
        return value - dt.timedelta(seconds=overlap)
    if isinstance(value, dt.date):
        return value - dt.timedelta(days=max(1, overlap // 86400))
    return value - overlap


def latest(before: Any, read: Any) -> Any:
    """The watermark after a run: never moves backwards."""
    if read is None:
        return before
    if before is None:
        return read
    return max(before, read)
