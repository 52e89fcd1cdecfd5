"""What every untyped source (SQLite cells, MongoDB documents) is converted to: the Arrow type of each declared
column, and the NUMERIC rule both apply, so a value is never rounded or cut to fit."""

from __future__ import annotations

from decimal import Context, Decimal

import pyarrow as pa

from resources.arrow_conform import DUCKDB_ARROW_TYPES

ARROW_TYPES: dict[str, pa.DataType] = {
    spec_type: arrow for spec_type, arrow in DUCKDB_ARROW_TYPES.items() if arrow is not None
} | {"JSON": pa.string()}
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
