"""The `online_matches_warehouse` check: did this export's rows reach the online store with the warehouse's values?

Two tests: the row count of the exported slice equals the rows written, and up to `SAMPLE_KEYS` rows of the slice,
looked up by key, equal the warehouse's rows column by column. Values are compared as the online store can hold
them, never looser:

- TIMESTAMP / DATETIME: both sides truncated (rounded down) to the store's `timestamp_precision` (Cassandra keeps
  milliseconds, the warehouses microseconds); TIMESTAMPs as UTC instants, DATETIMEs as wall times;
- FLOAT64: exactly (both sides are IEEE doubles), with NaN equal to NaN;
- NUMERIC: by value (`1.50` equals `1.5`); DATE, INT64, BOOL, STRING: exactly;
- JSON: parsed, so key order and spacing do not count (text that is not JSON is compared as text);
- BYTES: byte for byte; NULL equals only NULL.

A difference finer than the store's precision cannot be seen online and is not reported; any other is.

Deletes: up to `SAMPLE_KEYS` of the keys the run deleted online (they left the warehouse table) are looked up, and
none may be found (`verify_deleted`).

With a `ttl_seconds`, a key missing online is counted as expired, not missing, once the TTL has passed since the
write began (rows written then may have expired by right); before that, a missing key fails the check as always.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity

from resources.online_store import OnlineTable
from resources.reads import TableSlice
from resources.warehouse import Warehouse

CHECK_NAME = "online_matches_warehouse"
SAMPLE_KEYS = 100
SHOWN = 80  # characters of a value quoted in the check's description

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NAN = ("float", "NaN")  # NaN != NaN in Python; this stands for it on both sides


def verify(
    warehouse: Warehouse,
    store: Any,
    table: OnlineTable,
    exported: TableSlice,
    written: int,
    expected: int,
    write_started: float | None = None,
) -> AssetCheckResult:
    """Compare `written` with the warehouse row count `expected` of the slice `exported`, and a sample
    of it read back by key (the online table's columns, whatever `exported.columns` says).

    `write_started` is the `time.monotonic()` at which the write began (for the TTL rule in the module docstring);
    None means just now.
    """
    started = time.monotonic() if write_started is None else write_started
    sampled = dataclasses.replace(exported, columns=tuple(table.column_names))
    sample = next(iter(warehouse.iter_slice(sampled, SAMPLE_KEYS)), None)
    rows = sample.to_pylist() if sample is not None else []
    precision = store.timestamp_precision
    types = {c.name: c.type for c in table.columns}
    missing, expired, different, first = 0, 0, 0, None
    for row in rows:
        key = [row[k] for k in table.primary_key]
        found = store.lookup(table, key)
        if not found and table.ttl_seconds is not None and time.monotonic() - started >= table.ttl_seconds:
            expired += 1
            continue
        if not found:
            missing += 1
            first = first or f"key {key} is missing online"
            continue
        column = next(
            (
                name
                for name in table.column_names
                if comparable(row[name], types[name], precision)
                != comparable(found[0].get(name), types[name], precision)
            ),
            None,
        )
        if column is not None:
            different += 1
            first = first or (
                f"key {key}, column {column}: warehouse {_show(row[column])}, online {_show(found[0].get(column))}"
            )
    passed = written == expected and missing == 0 and different == 0
    return AssetCheckResult(
        check_name=CHECK_NAME,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "warehouse_rows": expected,
            "rows_written": written,
            "sampled_keys": len(rows),
            "missing_online": missing,
            "expired_online": expired,
            "different_online": different,
            "timestamp_precision_us": precision // dt.timedelta(microseconds=1),
        },
        description=None
        if passed
        else f"warehouse has {expected} rows, {written} written; of {len(rows)} sampled keys {missing} missing "
        f"and {different} different online" + (f" (first: {first})" if first else ""),
    )


def verify_deleted(
    warehouse: Warehouse, store: Any, table: OnlineTable, gone: TableSlice
) -> AssetCheckResult:
    """Look up to `SAMPLE_KEYS` of the keys this run deleted (they left the warehouse table): none may still be
    online. This catches rows online that the table no longer holds, wherever the export knows their keys."""
    sample = next(iter(warehouse.iter_slice(gone, SAMPLE_KEYS)), None)
    rows = sample.to_pylist() if sample is not None else []
    still = [key for key in ([row[k] for k in table.primary_key] for row in rows) if store.lookup(table, key)]
    return AssetCheckResult(
        check_name=CHECK_NAME,
        passed=not still,
        severity=AssetCheckSeverity.ERROR,
        metadata={"deleted_sampled_keys": len(rows), "deleted_still_online": len(still)},
        description=None
        if not still
        else f"of {len(rows)} sampled keys that left the warehouse table and were deleted online, {len(still)} "
        f"are still online (first: key {still[0]})",
    )


def merge_checks(check: AssetCheckResult, other: AssetCheckResult | None) -> AssetCheckResult:
    """One `online_matches_warehouse` result from the written rows' check and the deleted keys' check."""
    if other is None:
        return check
    descriptions = [d for d in (check.description, other.description) if d]
    return AssetCheckResult(
        check_name=CHECK_NAME,
        passed=check.passed and other.passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={**check.metadata, **other.metadata},
        description="; ".join(descriptions) or None,
    )


def comparable(value: Any, column_type: str, precision: dt.timedelta) -> Any:
    """`value` as the check compares it: see the module docstring for each type's rule."""
    if value is None:
        return None
    if column_type in ("TIMESTAMP", "DATETIME") and isinstance(value, dt.datetime):
        return _truncated(value, column_type, precision)
    if column_type == "FLOAT64" and isinstance(value, int | float):
        return _NAN if math.isnan(value) else float(value)
    if column_type == "NUMERIC":
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return value
        return _NAN if number.is_nan() else number
    if column_type == "JSON" and isinstance(value, str):
        try:
            return ("json", json.loads(value))
        except ValueError:
            return value
    if column_type == "JSON":
        return ("json", value)
    if column_type == "BYTES" and isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def _truncated(value: dt.datetime, column_type: str, precision: dt.timedelta) -> dt.datetime:
    """Round down to a whole multiple of `precision` since the epoch (floor, also before 1970).

    A naive TIMESTAMP is UTC; a DATETIME is a wall time, and an aware one (as a store may return it) is that wall
    time in UTC.
    """
    instant = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    step = precision // dt.timedelta(microseconds=1)
    micros = (instant - _EPOCH) // dt.timedelta(microseconds=1)
    floored = _EPOCH + dt.timedelta(microseconds=micros - micros % step)
    return floored if column_type == "TIMESTAMP" else floored.replace(tzinfo=None)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"
