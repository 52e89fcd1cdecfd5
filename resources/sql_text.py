"""Identifier quoting and type names per warehouse dialect.

Only identifiers from validated specs are ever written into SQL text, and always through `quote`; values (window
bounds, watermarks, accepted values) are bound parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from resources import dialects
from resources.engine_sql import window_between
from resources.schema import ColumnDef

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


def param(name: str, dialect: str) -> str:
    """A named query parameter: `$name` in DuckDB, `@name` in BigQuery."""
    return dialects.param(name, dialect)


def window_filter(
    column: str, column_type: str, types: dict[str, str], dialect: str, prefix: str = ""
) -> str:
    """`column` within [window_start, window_end) as text, the bounds cast to the column's type; `prefix` is a
    table alias with its dot (e.g. `T.`). The text of `engine_sql.window_between`, the one window rule."""
    alias = prefix.rstrip(".") or None
    return window_between(column, types[column_type], dialect, alias).sql(dialect)


def select_sql(ref: str, columns: Sequence[str] | None, where_sql: str | None, dialect: str) -> str:
    """`SELECT cols FROM dataset.table [WHERE …]`; `columns=None` selects every column."""
    cols = column_list(columns, dialect) if columns else "*"
    return f"SELECT {cols} FROM {table_name(ref, dialect)}" + (f" WHERE {where_sql}" if where_sql else "")
