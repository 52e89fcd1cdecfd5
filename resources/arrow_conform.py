"""Cast each staged batch to the warehouse's column types in Arrow, before the warehouse sees it.

Drivers send other types than a table declares: PostgreSQL and MariaDB NUMERIC columns are read as exact text
(`derive_assets/replication/extract.py`: connectorx's own `decimal128(38, 10)` would round wider values), a
`DECIMAL` from a Python asset may be `decimal128(38, 10)`, MariaDB's `DATETIME` arrives as naive timestamps.
DuckDB's `CAST` inside the staging `INSERT ... SELECT` is the slow part of a load: rescaling a decimal costs
1.1-1.2 s per million rows where `pyarrow.compute.cast` takes 0.03-0.06 s (profile of issue 14), and parsing the
NUMERIC text took most of a 1M-row load's insert here (benchmark of 2026-12-02). So `conform` does the exact
casts in Arrow and leaves the staging SQL's `CAST` a no-op for them.

Only casts whose result is the same as the warehouse's own cast for every value are done here: between decimals,
between integers, integers to decimals, decimal text to decimals, float32 to float64, between timestamps (naive
values are UTC, as in every Derive warehouse session; an aware value becomes its UTC wall clock), between string
and binary widths, and from an all-NULL column. Each is a *safe* Arrow cast: a value it cannot keep exactly (a
decimal with more places than the target's scale, nanoseconds below a microsecond, an integer out of range, an
overflowing precision, text Arrow's decimal parser does not take such as ` 5` or `1_000`) makes Arrow raise
`ArrowInvalid`, and the column is then passed on as it came, so the warehouse's rounding cast (or its error)
applies exactly as before (tests/unit/test_arrow_conform.py checks the texts against DuckDB's CAST). Anything
else (text to integers or times, floats to decimals, JSON) is always left to the warehouse.

Example:
    ```python
    batch = conform(batch, target.columns, DUCKDB_ARROW_TYPES)  # decimal128(38, 10) -> decimal128(38, 9)
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from resources.schema import ColumnDef

ArrowTypes = Mapping[str, "pa.DataType | None"]
"""Spec type -> the Arrow type the warehouse stores it as; None: always left to the warehouse's cast."""

DUCKDB_ARROW_TYPES: ArrowTypes = {
    "STRING": pa.string(),
    "INT64": pa.int64(),
    "FLOAT64": pa.float64(),
    "NUMERIC": pa.decimal128(38, 9),
    "BOOL": pa.bool_(),
    "DATE": pa.date32(),
    "DATETIME": pa.timestamp("us"),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "JSON": None,  # DuckDB's JSON cast validates the text
    "BYTES": pa.binary(),
}
"""`resources.sql_text.DUCKDB_TYPES` in Arrow: DECIMAL(38, 9), TIMESTAMP (naive, UTC wall clock), TIMESTAMPTZ."""

BIGQUERY_ARROW_TYPES: ArrowTypes = DUCKDB_ARROW_TYPES
"""BigQuery stores the same in Arrow: NUMERIC is NUMERIC(38, 9), DATETIME a wall clock, TIMESTAMP an instant in µs
(one mapping, two names, so each engine's call site says which warehouse it means)."""


def _both(check: Callable[[pa.DataType], bool]) -> Callable[[pa.DataType, pa.DataType], bool]:
    return lambda have, want: check(have) and check(want)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_bytes(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


_EXACT_FAMILIES: tuple[Callable[[pa.DataType, pa.DataType], bool], ...] = (
    _both(pa.types.is_decimal),
    _both(pa.types.is_integer),
    lambda have, want: pa.types.is_integer(have) and pa.types.is_decimal(want),
    lambda have, want: _is_text(have) and pa.types.is_decimal(want),
    lambda have, want: pa.types.is_float32(have) and pa.types.is_float64(want),
    _both(pa.types.is_timestamp),
    _both(_is_text),
    _both(_is_bytes),
    lambda have, want: pa.types.is_null(have),
    lambda have, want: pa.types.is_dictionary(have) and _is_text(have.value_type) and _is_text(want),
)
"""(source type, warehouse type) pairs whose safe Arrow cast gives what the warehouse's cast gives, value for value."""


def castable(have: pa.DataType, want: pa.DataType | None) -> bool:
    """Whether `conform` tries `have` -> `want` in Arrow (else the warehouse casts it)."""
    return want is not None and any(same(have, want) for same in _EXACT_FAMILIES)


def conform_array(array: pa.Array | pa.ChunkedArray, want: pa.DataType | None) -> pa.Array | pa.ChunkedArray:
    """`array` as `want` when Arrow can cast it exactly, else `array` unchanged (the warehouse casts it)."""
    if want is None or array.type == want or not castable(array.type, want):
        return array
    try:
        return pc.cast(array, want, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # A value Arrow cannot keep exactly (or a pair this pyarrow cannot cast): the warehouse's own cast rounds
        # it, or fails on it, as it always did.
        return array


def conform(batch: pa.RecordBatch, columns: Sequence[ColumnDef], types: ArrowTypes) -> pa.RecordBatch:
    """The declared columns of `batch` (matched case-insensitively, in declared order, under their declared
    names), each cast in Arrow to the warehouse type of its spec type where that is exact.

    The caller has checked that every declared column is there (`warehouse_rules.declared_columns`)."""
    index = {name.lower(): i for i, name in enumerate(batch.schema.names)}
    arrays = [conform_array(batch.column(index[c.name.lower()]), types.get(c.type)) for c in columns]
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in columns])
