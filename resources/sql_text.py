"""Identifier quoting and type names per warehouse dialect.

Only identifiers from validated specs are ever written into SQL text, and always through `quote`; values (window
bounds, watermarks, accepted values) are bound parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from resources.lazy_import import lazy_module
from resources.schema import ColumnDef

if TYPE_CHECKING:
    from sqlglot import exp
else:
    exp = lazy_module("sqlglot.expressions")


DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "NUMERIC": "DECIMAL(38, 9)",
    "BOOL": "BOOLEAN",
    "DATE": "DATE",
    "DATETIME": "TIMESTAMP",
    "TIMESTAMP": "TIMESTAMPTZ",
    "JSON": "JSON",
    "BYTES": "BLOB",
}
"""Spec (BigQuery) type -> DuckDB type. NUMERIC keeps BigQuery's precision and scale (38, 9)."""


def quote(name: str, dialect: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect)  # type: ignore[union-attr]


def table_name(ref: str, dialect: str) -> str:
    dataset, name = ref.split(".")
    return f"{quote(dataset, dialect)}.{quote(name, dialect)}"


def column_list(columns: Sequence[str], dialect: str, prefix: str = "") -> str:
    return ", ".join(prefix + quote(c, dialect) for c in columns)


def cast_select(columns: tuple[ColumnDef, ...], types: dict[str, str], dialect: str) -> str:
    """`CAST("a" AS BIGINT) AS "a", ...`: declared types win over whatever the query or driver produced."""
    return ", ".join(
        f"CAST({quote(c.name, dialect)} AS {types[c.type]}) AS {quote(c.name, dialect)}" for c in columns
    )
