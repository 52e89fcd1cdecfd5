"""Read a MongoDB collection's changed documents as typed Arrow batches: declared flattening.

Each column names a dot path into the document (`settings.timezone`); its value is coerced to the column's
declared type (ObjectId -> STRING, numbers stored as strings -> INT64/NUMERIC, ISO strings -> TIMESTAMP, …).
Arrays and sub-documents are read whole into JSON columns: one row per document keeps the merge by key simple,
and the warehouse's JSON functions unnest them where a table needs it. (Child tables keyed by the parent id are
the alternative for arrays that are queried row by row; they are not built yet.)

Coercion never changes a value silently: a number that NUMERIC (38 digits, 9 after the point) or INT64 cannot
hold exactly, a float that is not finite where JSON needs one, an integer too large for FLOAT64 to hold exactly,
a date outside the years 1-9999, binary data in a STRING column, a dot path that runs into an array or a plain
value: each is refused, not rounded, truncated or read as NULL.

A document is invalid when a value cannot be coerced, its primary key or cursor is missing or null, its cursor
lies more than `max_future_seconds` after the run started (it would move the watermark past every real
document), or, for an `_id` cursor, its `_id` is not an ObjectId. Invalid documents fail the run, counted and
with sample `_id`s — or, if the table says `on_invalid: quarantine`, are set aside for the quarantine table;
they never move the watermark. Fields present in documents but not declared are counted and reported as drift.

An `_id` cursor (a STRING column with `path: _id`) reads in ObjectId order. ObjectIds are made by the client, so
a document inserted late can carry an earlier ObjectId than one already read; the table's overlap (seconds)
steps the filter back by that much of the ObjectId's embedded creation time.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa
from bson import DatetimeMS, Decimal128, ObjectId
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.errors import InvalidId

from derive_assets.replication.mongo_client import open_mongo
from derive_assets.replication.values import ARROW_TYPES, exact_numeric
from derive_assets.specs.models import Column, SourceSpec, SourceTable

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT_EXACT = 2**53
"""Integers beyond this are not all representable as FLOAT64."""
BATCH_BYTES = 64 * 1024 * 1024
"""A batch is also cut once its strings and binaries reach this size (Arrow string arrays hold at most 2 GiB)."""
READ_OPTIONS = CodecOptions(tz_aware=False, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
"""Dates decode as naive UTC (what `mongo_filter` compares with; montydb cannot mix naive and aware), and dates
outside Python's years 1-9999 as `DatetimeMS`, refused by name, instead of failing the whole read in the driver."""
SAMPLES = 5
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUMBER_TEXT = re.compile(
    r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf|infinity)", re.ASCII | re.IGNORECASE
)
"""Numbers stored as text: ASCII digits only. Python's int() and Decimal() also take '1_000', ' 12 ' and
non-ASCII digits ('١٢٣'), which a document should not turn into numbers behind anyone's back."""


class CoercionError(ValueError):
    """A document's value does not fit its column's declared type."""


class InvalidDocumentsError(CoercionError):
    """Documents the table cannot load (with `on_invalid: fail`): how many, and the first few."""


class CursorValueError(ValueError):
    """The stored watermark of an `_id` cursor is not an ObjectId."""


@dataclass
class ExtractStats:
    """What a MongoDB read saw besides the rows: drift and quarantined documents."""

    documents_read: int = 0
    undeclared: Counter[str] = field(default_factory=Counter)
    quarantined: list[dict[str, Any]] = field(default_factory=list)


def path_of(column: Column) -> str:
    return column.path or column.name


def is_object_id_cursor(column: Column) -> bool:
    return column.type == "STRING" and path_of(column) == "_id"


def overlap_seconds(table: SourceTable) -> int:
    """The table's overlap in seconds: its `cursor_overlap`, or the default the spec model resolves for the
    cursor's type (`effective_overlap`) when the spec leaves it out."""
    return table.effective_overlap


def mongo_filter(table: SourceTable, since: Any) -> dict[str, Any]:
    """The `find()` filter for documents beyond `since`.

    For an `_id` cursor, `since` is the stored watermark (an ObjectId or its hex text) and the table's overlap
    is applied here, on the ObjectId's creation time; a datetime `since` is taken as a bound already stepped
    back. For other cursors `since` is already stepped back by the caller.
    """
    if since is None:
        return {}
    cursor = table.cursor_column
    if is_object_id_cursor(cursor):
        return {"_id": _object_id_bound(table, since)}
    value = since
    if isinstance(value, str):  # a watermark handed over as text: type it like the column
        value = int(value) if cursor.type == "INT64" else dt.datetime.fromisoformat(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        # BSON dates are UTC; naive UTC compares on every backend (montydb cannot mix naive and aware).
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return {path_of(cursor): {"$gt": value}}


def _object_id_bound(table: SourceTable, since: Any) -> dict[str, ObjectId]:
    if isinstance(since, dt.datetime):
        return {"$gte": _object_id_at(since)}
    try:
        last = ObjectId(str(since))
    except InvalidId:
        raise CursorValueError(
            f"collection {table.name}: the stored watermark {str(since)[:80]!r} of the `_id` cursor "
            f"'{table.cursor}' is not an ObjectId (24 hex digits). Rebuild the table: drop it from the warehouse "
            "and the next run copies every document again."
        ) from None
    overlap = overlap_seconds(table)
    if overlap == 0:
        return {"$gt": last}
    # ObjectIds of one second sort by their other bytes, not by insertion: re-read from the first id of the
    # second `overlap` seconds before; re-read documents are merged by key.
    return {"$gte": _object_id_at(last.generation_time - dt.timedelta(seconds=overlap))}


def _object_id_at(moment: dt.datetime) -> ObjectId:
    """The smallest ObjectId created at `moment` (clamped to ObjectIds' range, 1970 to 2106)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    seconds = min(max(int(aware.timestamp()), 0), 2**32 - 1)
    return ObjectId(seconds.to_bytes(4, "big") + bytes(8))


def describe(source: SourceSpec, table: SourceTable, since: Any) -> str:
    return f"db.{table.name}.find({json.dumps(mongo_filter(table, since), default=str)})  # {source.mongo_database}"


def read_mongo_batches(
    url: str, source: SourceSpec, table: SourceTable, since: Any, batch_rows: int, stats: ExtractStats
) -> Iterator[pa.RecordBatch]:
    schema = pa.schema([(c.name, ARROW_TYPES[c.type]) for c in table.columns])
    declared = [path_of(c) for c in table.columns]
    collection_name = f"{source.mongo_database}.{table.name}"
    checker = _RowChecker(table, dt.datetime.now(dt.UTC))
    invalid: list[str] = []
    invalid_count = 0
    with open_mongo(url) as client:
        collection = client[source.mongo_database][table.name].with_options(codec_options=READ_OPTIONS)
        documents = collection.find(mongo_filter(table, since), batch_size=batch_rows)
        rows: list[list[Any]] = []
        size = 0
        for document in documents:
            stats.documents_read += 1
            for leaf in _undeclared(document, declared):
                stats.undeclared[leaf] += 1
            try:
                row = [_coerce(_get(document, path_of(c)), c) for c in table.columns]
                checker.check(document, row)
            except CoercionError as exc:
                if table.on_invalid == "quarantine":
                    stats.quarantined.append(_quarantine_row(document, str(exc)))
                    continue
                invalid_count += 1
                if len(invalid) < SAMPLES:
                    invalid.append(f"document _id={_shown_id(document)}: {exc}")
                continue
            if invalid_count:
                continue  # the run fails anyway: only count what else is wrong
            rows.append(row)
            size += sum(len(v) for v in row if isinstance(v, str | bytes))
            if len(rows) >= batch_rows or size >= BATCH_BYTES:
                yield _batch(rows, schema)
                rows, size = [], 0
        if invalid_count:
            raise InvalidDocumentsError(_invalid_message(collection_name, invalid_count, invalid))
        if rows:
            yield _batch(rows, schema)


def _invalid_message(collection_name: str, count: int, samples: list[str]) -> str:
    if count == 1:
        head = f"collection {collection_name}: {samples[0]}"
    else:
        head = (
            f"collection {collection_name}: {count} documents cannot be loaded (first {len(samples)}: "
            + "; ".join(samples)
            + ")"
        )
    return (
        f"{head}. Fix the documents, change the column's type, or set `on_invalid: quarantine` on the table to "
        "set such documents aside. Nothing was written."
    )


def _shown_id(document: dict[str, Any]) -> str:
    shown = repr(document.get("_id"))
    return shown if len(shown) <= 80 else shown[:77] + "..."


class _RowChecker:
    """Key and cursor rules for a coerced row: present, and (cursors) not in the far future."""

    def __init__(self, table: SourceTable, started: dt.datetime) -> None:
        names = [c.name for c in table.columns]
        self.table = table
        self.keys = [(names.index(k), table.columns[names.index(k)]) for k in table.primary_key]
        self.cursor_index = names.index(table.cursor)
        self.cursor = table.cursor_column
        self.object_id = is_object_id_cursor(self.cursor)
        self.limit = started + dt.timedelta(seconds=table.max_future_seconds)

    def check(self, document: dict[str, Any], row: list[Any]) -> None:
        for index, column in self.keys:
            if row[index] is None:
                raise CoercionError(
                    f"primary key field '{path_of(column)}' is missing or null, so the document cannot be "
                    "merged by key"
                )
        value = row[self.cursor_index]
        where = f"cursor field '{path_of(self.cursor)}'"
        if value is None:
            raise CoercionError(f"{where} is missing or null, so later runs could never read the document")
        moment = value
        if self.object_id:
            raw = document.get("_id")
            if not isinstance(raw, ObjectId):
                raise CoercionError(
                    f"{where} has value {raw!r}, which is not an ObjectId; an `_id` cursor reads documents in "
                    "ObjectId order, so this document would be skipped or would stop later reads"
                )
            moment = raw.generation_time
        if self._beyond_limit(moment):
            raise CoercionError(
                f"{where} has value {value!r}, more than max_future_seconds ({self.table.max_future_seconds} s) "
                "after the run started; it would move the watermark past every real document"
            )

    def _beyond_limit(self, moment: Any) -> bool:
        if isinstance(moment, dt.datetime):
            aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
            return aware > self.limit
        if isinstance(moment, dt.date):
            return moment > self.limit.date()
        return False  # INT64 cursors have no time bound


def _batch(rows: list[list[Any]], schema: pa.Schema) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    return pa.RecordBatch.from_arrays(
        [pa.array(list(values), type=f.type) for values, f in zip(columns, schema, strict=True)],
        schema=schema,
    )


def _get(document: dict[str, Any], path: str) -> Any:
    """The value at a dot path; None where the path is missing or null. A path that runs into an array or a
    plain value before its end is refused (it would otherwise read as NULL and hide the data)."""
    value: Any = document
    walked: list[str] = []
    for part in path.split("."):
        if value is None:
            return None
        if not isinstance(value, dict):
            where = ".".join(walked)
            kind = "an array" if isinstance(value, list) else f"a {type(value).__name__}"
            raise CoercionError(
                f"field '{path}' cannot be read: '{where}' is {kind}, not a sub-document; declare '{where}' as a "
                "JSON column to keep it whole"
            )
        value = value.get(part)
        walked.append(part)
    return value


def _undeclared(document: dict[str, Any], declared: list[str], prefix: str = "") -> Iterator[str]:
    for key, value in document.items():
        path = f"{prefix}{key}"
        if path == "_id" or path in declared:
            continue
        if isinstance(value, dict) and any(d.startswith(path + ".") for d in declared):
            yield from _undeclared(value, declared, path + ".")
        else:
            yield path


def _coerce(value: Any, column: Column) -> Any:
    """The value as the column's declared type, or a `CoercionError` naming path, value and type."""
    if value is None:
        return None
    try:
        return _COERCE[column.type](value)
    except (ValueError, TypeError, InvalidOperation, ArithmeticError) as exc:
        reason = str(exc) or type(exc).__name__
        shown = repr(value)
        if len(shown) > 200:
            shown = shown[:197] + "..."
        raise CoercionError(
            f"field '{path_of(column)}' has value {shown}, which cannot be read as {column.type} ({reason})"
        ) from None


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        if not value.is_integer():
            raise ValueError("has a fractional part")
        number = int(value)
    elif isinstance(value, Decimal | Decimal128):
        decimal = value.to_decimal() if isinstance(value, Decimal128) else value
        if not decimal.is_finite():
            raise ValueError("not a finite number")
        if decimal != decimal.to_integral_value():
            raise ValueError("has a fractional part")
        number = int(decimal)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str):
        number = int(_number_text(value, _INTEGER_TEXT))
    else:
        raise TypeError(f"a {type(value).__name__} is not a number")
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError("outside the INT64 range -2^63 .. 2^63-1; declare the column NUMERIC or STRING")
    return number


def _to_float(value: Any) -> float:
    if hasattr(value, "to_decimal"):  # bson Decimal128
        value = value.to_decimal()
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise TypeError(f"a {type(value).__name__} is not a number")
    if isinstance(value, int) and abs(value) > FLOAT_EXACT:
        raise ValueError(
            "an integer beyond 2^53, which FLOAT64 cannot hold exactly; declare the column INT64"
        )
    number = float(_number_text(value, _NUMBER_TEXT) if isinstance(value, str) else value)
    return number


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool | dict | list):
        raise TypeError(f"a {type(value).__name__} is not a number")
    if hasattr(value, "to_decimal"):  # bson Decimal128
        value = value.to_decimal()
    return exact_numeric(Decimal(_number_text(value, _NUMBER_TEXT) if isinstance(value, str) else str(value)))


def _number_text(text: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(text):
        raise ValueError("not a number written with ASCII digits")
    return text


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("not true/false")


def _to_string(value: Any) -> str:
    if isinstance(value, dict | list):
        raise TypeError("a sub-document or array; declare the column as JSON")
    if isinstance(value, bytes | bytearray):
        raise TypeError("binary data; declare the column as BYTES")
    if isinstance(value, DatetimeMS):
        raise ValueError("a date outside the years 1-9999")
    if isinstance(value, dt.datetime):
        return _to_timestamp(value).isoformat()  # BSON dates are UTC: say so
    return str(value)  # ObjectId, numbers, …


def _to_timestamp(value: Any) -> dt.datetime:
    if isinstance(value, ObjectId):  # its creation time
        value = value.generation_time
    if isinstance(value, DatetimeMS):
        raise ValueError("a date outside the years 1-9999, which Derive cannot read")
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"a {type(value).__name__} is not a date-time")
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _to_datetime(value: Any) -> dt.datetime:
    return _to_timestamp(value).replace(tzinfo=None)


def _to_date(value: Any) -> dt.date:
    if isinstance(value, str):
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime | DatetimeMS):
        moment = _to_timestamp(value)
        if moment.time() != dt.time():
            raise ValueError("has a time of day; declare the column TIMESTAMP")
        return moment.date()
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"a {type(value).__name__} is not a date")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        raise TypeError("binary data inside a JSON value; declare its path as a BYTES column")
    if isinstance(value, DatetimeMS):
        raise ValueError("a date outside the years 1-9999")
    if isinstance(value, dt.datetime):
        return _to_timestamp(value).isoformat()
    if hasattr(value, "to_decimal"):  # bson Decimal128
        value = value.to_decimal()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("a number that is not finite, which JSON cannot hold")
        return str(value)
    return str(value)  # ObjectId, …


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value, default=_json_default, sort_keys=True, allow_nan=False)
    except ValueError as exc:
        if "JSON compliant" in str(exc):
            raise ValueError("holds NaN or infinity, which JSON cannot hold") from None
        raise


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise TypeError(f"a {type(value).__name__} is not binary")


_COERCE = {
    "STRING": _to_string,
    "INT64": _to_int,
    "FLOAT64": _to_float,
    "NUMERIC": _to_decimal,
    "BOOL": _to_bool,
    "DATE": _to_date,
    "DATETIME": _to_datetime,
    "TIMESTAMP": _to_timestamp,
    "JSON": _to_json,
    "BYTES": _to_bytes,
}


def _quarantine_row(document: dict[str, Any], error: str) -> dict[str, Any]:
    return {
        "_id": str(document.get("_id")),
        "error": error,
        "document": json.dumps(document, default=str, sort_keys=True),
        "quarantined_at": dt.datetime.now(dt.UTC),
    }
