"""BigQuery's side of schema evolution: describe a table in the spec's types, evolve it, and Derive's marker.

The marker is the table's description (the JSON of `resources.schema_diff.TableLayout.to_marker`) plus the label
`derive-managed: "true"` (labels let people filter Derive's tables in the console; the emulator keeps them on the
table but `list_tables` returns none, so Derive reads the description).

Additive changes, the way real BigQuery makes them while keeping partitioning and clustering:
- new NULLABLE columns and dropped NOT NULL (REQUIRED -> NULLABLE): `update_table(schema=...)` through the API;
- widenings (INT64 -> NUMERIC/FLOAT64, NUMERIC -> FLOAT64): `ALTER TABLE ... ALTER COLUMN ... SET DATA TYPE`
  (the API cannot change a column's type). NUMERIC is spelled `NUMERIC(38, 9)`, the full NUMERIC range, because
  the emulator makes a bare NUMERIC a DECIMAL(18, 3).

Emulator gaps (bqemulator 1.4.0), bridged with statements that are no-ops on BigQuery:
- an API schema change reaches the table's metadata but not its query engine (a column added by `update_table`
  is "not found" by the next query): each added column is also added with `ALTER TABLE ... ADD COLUMN IF NOT
  EXISTS`, which finds it already there on BigQuery;
- `ALTER COLUMN SET DATA TYPE` changes the stored values but not the metadata (`get_table` still says INT64): the
  schema sent through the API carries the widened type too; on BigQuery it already matches after the DDL, and no
  update is sent for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from resources.bigquery_calls import Calls
from resources.bigquery_ddl import CAST_TYPES, set_marker, standard_type
from resources.bigquery_sql import STAGING_PREFIX, B
from resources.schema import ColumnDef, ColumnType
from resources.schema_diff import ExistingTable, SchemaChange, TableLayout
from resources.sql_text import quote, table_name
from resources.warehouse import TargetTable

RunSql = Callable[[str], None]
"""Runs one statement (no parameters) with the session's client."""


def spec_type(field: bigquery.SchemaField) -> str:
    """The spec's name of a field's type (`INTEGER` is INT64); a REPEATED field is `ARRAY<...>`, no spec type."""
    name = standard_type(field.field_type or "")
    return f"ARRAY<{name}>" if field.mode == "REPEATED" else name


def existing_table(ref: str, table: bigquery.Table) -> ExistingTable:
    columns = tuple(
        ColumnDef(f.name, cast(ColumnType, spec_type(f)), f.mode == "REQUIRED") for f in table.schema
    )
    return ExistingTable(ref, columns, TableLayout.from_marker(table.description))


def describe(calls: Calls, ref: str) -> ExistingTable | None:
    try:
        table = calls.get_table(f"{calls.project}.{ref}")
    except NotFound:
        return None
    return existing_table(ref, table)


def mark(calls: Calls, target: TargetTable) -> None:
    table = calls.get_table(f"{calls.project}.{target.ref}")
    set_marker(table, target)
    calls.update_table(table, ["description", "labels"])


def evolve(calls: Calls, target: TargetTable, changes: Sequence[SchemaChange], run: RunSql) -> None:
    """Apply additive changes (module docstring): widenings by DDL, then one API schema update, then the
    emulator's column adds."""
    ref = table_name(target.ref, B)
    for change in changes:
        if change.kind == "widen_type" and change.column and change.after:
            column = quote(change.column, B)
            run(f"ALTER TABLE {ref} ALTER COLUMN {column} SET DATA TYPE {CAST_TYPES[change.after]}")
    table = calls.get_table(f"{calls.project}.{target.ref}")
    schema, changed = evolved_schema(list(table.schema), target, changes)
    if changed:
        table.schema = schema
        calls.update_table(table, ["schema"])
    for change in changes:
        if change.kind == "add_column" and change.column:
            column = target.column(change.column)
            declared = CAST_TYPES[column.type]
            run(f"ALTER TABLE {ref} ADD COLUMN IF NOT EXISTS {quote(column.name, B)} {declared}")


def evolved_schema(
    fields: list[bigquery.SchemaField], target: TargetTable, changes: Sequence[SchemaChange]
) -> tuple[list[bigquery.SchemaField], bool]:
    """The table's schema with the changes made (new fields last); False when it already has them."""
    widen = {c.column.lower(): c.after for c in changes if c.kind == "widen_type" and c.column}
    relax = {c.column.lower() for c in changes if c.kind == "not_null" and c.column}
    result, changed = [], False
    for field in fields:
        api = field.to_api_repr()
        wider = widen.get(field.name.lower())
        if wider is not None and standard_type(field.field_type or "") != wider:
            api["type"] = wider
            changed = True
        if field.name.lower() in relax and field.mode == "REQUIRED":
            api["mode"] = "NULLABLE"
            changed = True
        result.append(bigquery.SchemaField.from_api_repr(api))
    present = {f.name.lower() for f in fields}
    for change in changes:
        if change.kind == "add_column" and change.column and change.column.lower() not in present:
            column = target.column(change.column)
            result.append(bigquery.SchemaField(column.name, column.type, description=column.description))
            changed = True
    return result, changed


def managed_tables(calls: Calls, datasets: Sequence[str]) -> list[str]:
    """`dataset.name` of every table in `datasets` with Derive's marker (staging tables skipped), sorted."""
    found = []
    for dataset in datasets:
        try:
            listed = list(calls.client.list_tables(dataset, **calls.policy.kwargs))
        except NotFound:
            continue
        for item in listed:
            if item.table_id.startswith(STAGING_PREFIX) or item.table_type != "TABLE":
                continue
            existing = describe(calls, f"{dataset}.{item.table_id}")
            if existing is not None and existing.layout is not None:
                found.append(existing.ref)
    return sorted(found)
