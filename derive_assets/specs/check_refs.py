"""Cross-file rules of the quality checks, applied when the project loads: what a `relationships` constraint or a
custom `sql` check refers to must exist.

- `relationships: {table, column}`: the table is a table spec or a replicated source table of this project, the
  column is one of its declared columns, and its type can be compared with the constrained column's;
- `checks.sql[].query`: parses as BigQuery SQL (the same analysis as a table's query: no table functions or file
  access), reads only known `dataset.name` tables, and uses no parameter but `@window_start`/`@window_end`, and
  those only in a windowed table.

A reference to a table whose own spec failed is not reported again (that spec's errors say what is wrong).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from derive_assets.specs.errors import SpecError
from derive_assets.specs.loader import LoadedSource, LoadedTable
from derive_assets.specs.models import NUMERIC_TYPES, Column, TableChecks
from derive_assets.specs.sql_analysis import WINDOW_PARAMETERS, Schema, SqlProblem, analyse


def check_reference_errors(
    sources: list[LoadedSource], tables: list[LoadedTable], schema: Schema, failed: set[str]
) -> list[SpecError]:
    """Every problem with what the specs' `relationships` and custom `sql` checks refer to (see the module)."""
    errors: list[SpecError] = []
    for path, prefix, columns, checks, windowed in _checked_items(sources, tables):
        for i, column in enumerate(columns):
            errors += _relationship_errors(path, f"{prefix}columns[{i}]", column, schema, failed)
        for i, check in enumerate(checks.sql):
            errors += _sql_check_errors(path, f"{prefix}checks.sql[{i}].query", check.query, windowed, schema)
    return errors


def _checked_items(
    sources: list[LoadedSource], tables: list[LoadedTable]
) -> Iterator[tuple[Path, str, list[Column], TableChecks, bool]]:
    """(file, field prefix, columns, checks, windowed) of every table and source table."""
    for source in sources:
        for j, table in enumerate(source.spec.tables):
            yield source.path, f"tables[{j}].", table.columns, table.checks, False
    for loaded in tables:
        spec = loaded.spec
        yield loaded.path, "", spec.columns, spec.checks, spec.window is not None


def _relationship_errors(
    path: Path, field: str, column: Column, schema: Schema, failed: set[str]
) -> list[SpecError]:
    rel = column.constraints.relationships
    if rel is None:
        return []
    dataset, name = rel.table.split(".")
    declared: dict[str, str] | None = schema.get(dataset, {}).get(name)
    if declared is None:
        if rel.table in failed:
            return []
        known = sorted(f"{d}.{t}" for d, ts in schema.items() for t in ts)
        return [
            SpecError(
                path,
                f"{field}.constraints.relationships.table",
                f"no table spec or source defines it; known tables: {known}",
                rel.table,
            )
        ]
    if rel.column not in declared:
        return [
            SpecError(
                path,
                f"{field}.constraints.relationships.column",
                f"not a column of {rel.table}; allowed: {list(declared)}",
                rel.column,
            )
        ]
    theirs = declared[rel.column]
    if theirs != column.type and not (theirs in NUMERIC_TYPES and column.type in NUMERIC_TYPES):
        return [
            SpecError(
                path,
                f"{field}.constraints.relationships.column",
                f"{rel.table}.{rel.column} has type {theirs} but column '{column.name}' is {column.type}; a "
                "relationship compares values, so both columns must have the same type (or both be numbers)",
                rel.column,
            )
        ]
    return []


def _sql_check_errors(path: Path, field: str, query: str, windowed: bool, schema: Schema) -> list[SpecError]:
    try:
        analysis = analyse(query)
    except SqlProblem as exc:
        return [SpecError(path, field, line) for line in str(exc).splitlines()]
    errors = []
    known = {f"{d}.{t}" for d, ts in schema.items() for t in ts}
    for ref in analysis.reads:
        if "." not in ref:
            errors.append(SpecError(path, field, "refer to tables as `dataset.name`", ref))
        elif ref not in known:
            errors.append(
                SpecError(
                    path,
                    field,
                    f"reads table '{ref}', which no table spec or source defines; known tables: {sorted(known)}",
                )
            )
    unknown = [p for p in analysis.parameters if p not in WINDOW_PARAMETERS]
    if unknown:
        errors.append(
            SpecError(
                path,
                field,
                f"unknown query parameters {unknown}; allowed: {['@' + p for p in WINDOW_PARAMETERS]}",
            )
        )
    elif analysis.parameters and not windowed:
        errors.append(
            SpecError(
                path,
                field,
                "uses @window_start/@window_end but the table has no `window`; remove the parameters "
                "(the check then reads the whole table)",
            )
        )
    return errors
