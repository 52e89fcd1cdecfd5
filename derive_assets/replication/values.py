"""What every untyped source (SQLite cells, MongoDB documents) is converted to: the Arrow type of each declared
column, and the NUMERIC rule both apply, so a value is never rounded or cut to fit."""

from __future__ import annotations

from decimal import Context, Decimal

import pyarrow as pa

ARROW_TYPES: dict[str, pa.DataType] = {
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
NUMERIC_LIMIT = Decimal(10) ** 29
"""NUMERIC is BigQuery's NUMERIC (DECIMAL(38, 9)): at most 29 digits before the point."""
_WIDE = Context(prec=80)  # wider than the default 28 digits, which would round the check itself


def exact_numeric(number: Decimal) -> Decimal:
    """`number` as NUMERIC(38, 9) holds it, or ValueError when that would change it."""
    if not number.is_finite():
        raise ValueError("not a finite number")
    if number.copy_abs() >= NUMERIC_LIMIT:
        raise ValueError("more than 29 digits before the point, which NUMERIC (38, 9) cannot hold")
    exact = number.quantize(NINE_PLACES, context=_WIDE)
    if exact != number:
        raise ValueError("more than 9 digits after the point, which NUMERIC (38, 9) would round")
    return exact
