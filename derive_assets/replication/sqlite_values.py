"""SQLite cells read as their declared column types, by value.

SQLite stores whatever it is given (a column declared INTEGER may hold 'abc', a boolean may be 'no', a timestamp
may be text with an offset), so each cell is converted by what it holds, and a cell that is not a value of its
column's type raises `CellError` naming the column and the value: the row is then invalid (failed or quarantined
per `on_invalid`), never guessed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from derive_assets.replication.values import exact_numeric
from derive_assets.specs.models import Column

# ASCII digits only, no spaces or underscores: int(), float() and Decimal() also accept '١٢٣', ' 1' and '1_000',
# which would change a value without a word.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_FLOAT_WORDS = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})


class CellError(ValueError):
    """A cell that is not a value of its column's declared type."""

    def __init__(self, column: Column, value: Any, reason: str) -> None:
        self.column, self.value, self.reason = column.name, value, reason
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        super().__init__(
            f"column '{column.name}' holds {shown}, which is not a valid {column.type} ({reason})"
        )


@dataclass(frozen=True)
class Undecodable:
    """A TEXT cell whose bytes are not UTF-8 (SQLite does not check what it stores)."""

    raw: bytes

    def __repr__(self) -> str:
        return f"bytes {self.raw[:40]!r}"


def decode_text(raw: bytes) -> str | Undecodable:
    """The connection's `text_factory`: UTF-8 text, or a marker that `convert` refuses with the column's name."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return Undecodable(raw)


def convert(value: Any, column: Column) -> Any:
    """The cell as a Python value of the column's Arrow type, or `CellError`."""
    if value is None:
        return None
    if isinstance(value, Undecodable):
        raise CellError(column, value, "not UTF-8 text")
    try:
        return _CONVERT[column.type](value)
    except (ValueError, TypeError, InvalidOperation, OverflowError) as exc:
        raise CellError(column, value, str(exc) or type(exc).__name__) from None


def _string(value: Any) -> str:
    if isinstance(value, bytes):
        raise TypeError("a BLOB; declare the column as BYTES")
    return str(value)  # text, or a number SQLite stored in a text column


def _int(value: Any) -> int:
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("has a fractional part")
        value = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        value = int(value)
    if not isinstance(value, int):
        raise ValueError("not an integer")
    if not -(2**63) <= value < 2**63:
        raise ValueError("outside the INT64 range")
    return value


def _float(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (_DECIMAL.fullmatch(value) or value.lower() in _FLOAT_WORDS):
        return float(value)
    raise ValueError("not a number written with ASCII digits")


def _numeric(value: Any) -> Decimal:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError("not a finite number")
    text = repr(value) if isinstance(value, float) else str(value)
    if not (isinstance(value, int | float) or (isinstance(value, str) and _DECIMAL.fullmatch(value))):
        raise ValueError("not a number written with ASCII digits")
    return exact_numeric(Decimal(text))


def _bool(value: Any) -> bool:
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError("allowed: 1/0, true/false, t/f, yes/no, y/n, on/off")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a date or time must be stored as ISO 8601 text")
    return value.strip()


def _timestamp(value: Any) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(_text(value))
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _datetime(value: Any) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(_text(value))
    return parsed if parsed.tzinfo is None else parsed.astimezone(dt.UTC).replace(tzinfo=None)


def _date(value: Any) -> dt.date:
    text = _text(value)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        parsed = dt.datetime.fromisoformat(text)
        if parsed.time() != dt.time(0) or parsed.tzinfo is not None:
            raise ValueError("a date-time, not a date") from None
        return parsed.date()


def _json(value: Any) -> str:
    if isinstance(value, bytes):
        raise TypeError("a BLOB, not JSON text")
    if isinstance(value, str):
        json.loads(value)
        return value
    return json.dumps(value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    raise TypeError("not a BLOB")


_CONVERT = {
    "STRING": _string,
    "INT64": _int,
    "FLOAT64": _float,
    "NUMERIC": _numeric,
    "BOOL": _bool,
    "DATE": _date,
    "DATETIME": _datetime,
    "TIMESTAMP": _timestamp,
    "JSON": _json,
    "BYTES": _bytes,
}
