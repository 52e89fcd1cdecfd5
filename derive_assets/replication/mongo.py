"""Read a MongoDB collection's changed documents as typed Arrow batches: declared flattening.

Each column names a dot path into the document (`settings.timezone`); its value is coerced to the column's
declared type (ObjectId -> STRING, numbers stored as strings -> INT64/NUMERIC, ISO strings -> TIMESTAMP, …).
Arrays and sub-documents are read whole into JSON columns: one row per document keeps the merge by key simple,
and the warehouse's JSON functions unnest them where a table needs it. (Child tables keyed by the parent id are
the alternative for arrays that are queried row by row; they are not built yet.)

Fields present in documents but not declared are counted and reported as drift. A value that cannot be
coerced fails the run with the collection, `_id`, path, value and declared type — or, if the table says
`on_invalid: quarantine`, sets the document aside for the quarantine table. Nothing is silently dropped.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from derive_assets.replication.mongo_client import open_mongo
from derive_assets.specs.models import Column, SourceSpec, SourceTable

ARROW_TYPES = {
    "STRING": pa.string(),
    "INT64": pa.int64(),
    "FLOAT64": pa.float64(),
    "NUMERIC": pa.decimal128(38, 9),
    "BOOL": pa.bool_(),
    "DATE": pa.date32(),
    "DATETIME": pa.timestamp("us"),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "JSON": pa.string(),
    "BYTES": pa.binary(),
}
NINE_PLACES = Decimal("0.000000001")


class CoercionError(ValueError):
    """A document's value does not fit its column's declared type."""


@dataclass
class ExtractStats:
    """What a MongoDB read saw besides the rows: drift and quarantined documents."""

    documents_read: int = 0
    undeclared: Counter[str] = field(default_factory=Counter)
    quarantined: list[dict[str, Any]] = field(default_factory=list)


def path_of(column: Column) -> str:
    return column.path or column.name


def mongo_filter(table: SourceTable, since: Any) -> dict[str, Any]:
    if since is None:
        return {}
    cursor = next(c for c in table.columns if c.name == table.cursor)
    value = since
    if path_of(cursor) == "_id" and cursor.type == "STRING":
        from bson import ObjectId

        value = ObjectId(str(since))
    elif isinstance(since, dt.date) and not isinstance(since, dt.datetime):
        value = dt.datetime.combine(since, dt.time())
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        # BSON dates are UTC; naive UTC compares on every backend (montydb cannot mix naive and aware).
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return {path_of(cursor): {"$gt": value}}


def describe(source: SourceSpec, table: SourceTable, since: Any) -> str:
    return f"db.{table.name}.find({json.dumps(mongo_filter(table, since), default=str)})  # {source.mongo_database}"


def read_mongo_batches(
    url: str, source: SourceSpec, table: SourceTable, since: Any, batch_rows: int, stats: ExtractStats
) -> Iterator[pa.RecordBatch]:
    schema = pa.schema([(c.name, ARROW_TYPES[c.type]) for c in table.columns])
    declared = [path_of(c) for c in table.columns]
    collection_name = f"{source.mongo_database}.{table.name}"
    with open_mongo(url) as client:
        documents = client[source.mongo_database][table.name].find(
            mongo_filter(table, since), batch_size=batch_rows
        )
        rows: list[list[Any]] = []
        for document in documents:
            stats.documents_read += 1
            for leaf in _undeclared(document, declared):
                stats.undeclared[leaf] += 1
            try:
                rows.append([_coerce(_get(document, path_of(c)), c) for c in table.columns])
            except CoercionError as exc:
                if table.on_invalid != "quarantine":
                    raise CoercionError(
                        f"collection {collection_name}: document _id={document.get('_id')!r}: {exc}. Fix the "
                        "document, change the column's type, or set `on_invalid: quarantine` on the table to set "
                        "such documents aside. Nothing was written."
                    ) from None
                stats.quarantined.append(_quarantine_row(document, str(exc)))
                continue
            if len(rows) >= batch_rows:
                yield _batch(rows, schema)
                rows = []
        if rows:
            yield _batch(rows, schema)


def _batch(rows: list[list[Any]], schema: pa.Schema) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    return pa.RecordBatch.from_arrays(
        [pa.array(list(values), type=f.type) for values, f in zip(columns, schema, strict=True)],
        schema=schema,
    )


def _get(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
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
        raise CoercionError(
            f"field '{path_of(column)}' has value {value!r}, which cannot be read as {column.type} ({reason})"
        ) from None


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("has a fractional part")
        return int(value)
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValueError("has a fractional part")
        return int(value)
    if isinstance(value, int | str):
        return int(value)
    raise TypeError(f"a {type(value).__name__} is not a number")


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise TypeError(f"a {type(value).__name__} is not a number")
    return float(value)


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool | dict | list):
        raise TypeError(f"a {type(value).__name__} is not a number")
    if hasattr(value, "to_decimal"):  # bson Decimal128
        value = value.to_decimal()
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError("not a finite number")
    return number.quantize(NINE_PLACES)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("not true/false")


def _to_string(value: Any) -> str:
    if isinstance(value, dict | list):
        raise TypeError("a sub-document or array; declare the column as JSON")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)  # ObjectId, numbers, …


def _to_timestamp(value: Any) -> dt.datetime:
    if hasattr(value, "generation_time"):  # ObjectId: its creation time
        value = value.generation_time
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"a {type(value).__name__} is not a date-time")
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _to_datetime(value: Any) -> dt.datetime:
    return _to_timestamp(value).replace(tzinfo=None)


def _to_date(value: Any) -> dt.date:
    if isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    if isinstance(value, dt.datetime):
        return _to_timestamp(value).date()
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"a {type(value).__name__} is not a date")


def _to_json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


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
