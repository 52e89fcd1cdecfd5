"""DuckDB's side of schema evolution: describe a table in the spec's types, alter it, and Derive's marker.

The marker is the table's `COMMENT` (a small JSON, `resources.schema_diff.TableLayout.to_marker`). DuckDB's
`COMMENT ON` takes no bound parameters, so the text goes in as a string literal quoted by sqlglot (it holds only
column names from validated specs and a version hash). `ALTER TABLE` and `COMMENT ON` are transactional in
DuckDB: a run that fails after evolving its table rolls them back with its rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, cast

import duckdb

from resources.lazy_import import lazy_module
from resources.schema import ColumnDef, ColumnType
from resources.schema_diff import ExistingTable, SchemaChange, TableLayout
from resources.sql_text import DUCKDB_TYPES, quote, table_name
from resources.warehouse import TargetTable

if TYPE_CHECKING:
    from sqlglot import exp
else:
    exp = lazy_module("sqlglot.expressions")


D = "duckdb"

SPEC_TYPES: dict[str, str] = {
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    **{duck.replace(" ", ""): spec for spec, duck in DUCKDB_TYPES.items() if spec != "TIMESTAMP"},
}
"""DuckDB type as `duckdb_columns()` reports it -> spec type: the reverse of `DUCKDB_TYPES` (DECIMAL(38,9) is
NUMERIC; another DECIMAL is no spec type)."""


def spec_type(duckdb_type: str) -> str:
    """The spec's name for a DuckDB column type, or DuckDB's own name when the spec has none (e.g. INTEGER)."""
    name = duckdb_type.upper()
    return SPEC_TYPES.get(name) or SPEC_TYPES.get(name.replace(" ", ""), name)


def describe(con: duckdb.DuckDBPyConnection, ref: str) -> ExistingTable | None:
    """The table `dataset.name` of the database file (never a temp table), or None."""
    dataset, name = ref.split(".")
    found = con.execute(
        "SELECT comment FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary "
        "AND lower(schema_name) = lower($s) AND lower(table_name) = lower($t)",
        {"s": dataset, "t": name},
    ).fetchone()
    if found is None:
        return None
    rows = con.execute(
        "SELECT column_name, data_type, is_nullable FROM duckdb_columns() WHERE database_name = current_database() "
        "AND lower(schema_name) = lower($s) AND lower(table_name) = lower($t) ORDER BY column_index",
        {"s": dataset, "t": name},
    ).fetchall()
    columns = tuple(ColumnDef(n, cast(ColumnType, spec_type(t)), not nullable) for n, t, nullable in rows)
    return ExistingTable(ref, columns, TableLayout.from_marker(found[0]))


def managed_tables(con: duckdb.DuckDBPyConnection, datasets: Iterable[str]) -> list[str]:
    """`dataset.name` of every table in `datasets` that carries Derive's marker, sorted."""
    wanted = sorted({d.lower() for d in datasets})
    if not wanted:
        return []
    rows = con.execute(
        "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE database_name = current_database() "
        "AND NOT temporary AND list_contains($d, lower(schema_name)) ORDER BY schema_name, table_name",
        {"d": wanted},
    ).fetchall()
    return [f"{s}.{t}" for s, t, comment in rows if TableLayout.from_marker(comment) is not None]


def mark_sql(target: TargetTable) -> str:
    """`COMMENT ON TABLE <target> IS '<marker>'`."""
    text = exp.Literal.string(TableLayout.of(target).to_marker()).sql(D)
    return f"COMMENT ON TABLE {table_name(target.ref, D)} IS {text}"


def evolve_sql(target: TargetTable, changes: Sequence[SchemaChange]) -> list[str]:
    """The `ALTER TABLE` statements of additive changes: ADD COLUMN, ALTER COLUMN TYPE, DROP NOT NULL."""
    ref = table_name(target.ref, D)
    statements = []
    for change in changes:
        assert not change.breaking and change.column is not None, change
        column = quote(change.column, D)
        if change.kind == "add_column":
            declared = DUCKDB_TYPES[target.column(change.column).type]
            statements.append(f"ALTER TABLE {ref} ADD COLUMN {column} {declared}")
        elif change.kind == "widen_type":
            assert change.after is not None
            statements.append(f"ALTER TABLE {ref} ALTER COLUMN {column} TYPE {DUCKDB_TYPES[change.after]}")
        elif change.kind == "not_null":
            statements.append(f"ALTER TABLE {ref} ALTER COLUMN {column} DROP NOT NULL")
        else:
            raise AssertionError(f"not an additive change: {change}")
    return statements
