"""BigQuery's end of a rebuild: put the freshly built table in the place of the old one.

BigQuery has no transaction around DDL, and it refuses to replace a table by one with another partitioning or
clustering spec in a single step (`CREATE OR REPLACE`, a copy or query job with WRITE_TRUNCATE: "Cannot replace
a table with a different partitioning spec"). So the swap takes one of two paths:

- same columns (names, types, modes) and same layout: one copy job with WRITE_TRUNCATE, atomic (readers see the
  old table or the new one, never a mix) and free (a copy scans no bytes);
- anything else (the usual reason for a rebuild: a renamed or retyped column, a new partition key or cluster
  keys): copy the old table to a backup (`<name>__derive_old_<8 hex>`), delete it, copy the new table to its
  name (the copy keeps the new table's schema, partitioning and clustering), then delete the backup. Between the
  delete and the copy, readers get "not found" for a moment (seconds); the old rows are never lost: if the
  copy fails the backup is copied back, and if even that fails the error names the backup.

The new table is deleted by the rebuild afterwards (`BigQuerySession.discard` on failure). The emulator's copy
with WRITE_TRUNCATE keeps the destination's old schema and layout (it copies rows positionally), which is one
more reason the first path is taken only when nothing but the rows changed.
"""

from __future__ import annotations

import uuid

from google.api_core.exceptions import GoogleAPICallError
from google.cloud import bigquery
from sqlglot import exp

from resources import engine_sql as q
from resources.bigquery_calls import UNREACHABLE_ERRORS, Calls
from resources.bigquery_ddl import standard_type
from resources.warehouse import TargetTable, WarehouseError

B = "bigquery"
BACKUP_MARK = "__derive_old_"
"""Part of the name of the backup a layout-changing swap keeps until the new table is in place."""


def swap(calls: Calls, fresh: TargetTable, target: TargetTable) -> int:
    """Put `fresh` in the place of `target` (both exist); return how many rows the old table held."""
    old_ref, new_ref = f"{calls.project}.{target.ref}", f"{calls.project}.{fresh.ref}"
    old, new = calls.get_table(old_ref), calls.get_table(new_ref)
    old_rows = _count(calls, target.ref, old)
    if same_shape(old, new):
        calls.copy_table(new_ref, old_ref, "WRITE_TRUNCATE")
    else:
        _replace_through_backup(calls, target, old_ref, new_ref)
    _keep_metadata(calls, old_ref, new)
    return old_rows


def same_shape(old: bigquery.Table, new: bigquery.Table) -> bool:
    """Whether two tables have the same columns (name, type, mode), partitioning and clustering: then a copy
    with WRITE_TRUNCATE replaces one by the other in one step on BigQuery and on the emulator."""
    return (
        _columns(old) == _columns(new)
        and _partitioning(old.time_partitioning) == _partitioning(new.time_partitioning)
        and old.range_partitioning is None
        and list(old.clustering_fields or []) == list(new.clustering_fields or [])
    )


def _columns(table: bigquery.Table) -> list[tuple[str, str, str]]:
    return [
        (f.name.lower(), standard_type(f.field_type), (f.mode or "NULLABLE").upper()) for f in table.schema
    ]


def _partitioning(p: bigquery.TimePartitioning | None) -> tuple[str, str | None, int | None] | None:
    return None if p is None else (str(p.type_).upper(), p.field, p.expiration_ms or None)


def _replace_through_backup(calls: Calls, target: TargetTable, old_ref: str, new_ref: str) -> None:
    backup_ref = f"{calls.project}.{target.dataset}.{target.name}{BACKUP_MARK}{uuid.uuid4().hex[:8]}"
    calls.copy_table(old_ref, backup_ref, "WRITE_EMPTY")
    calls.delete_table(old_ref)
    try:
        calls.copy_table(new_ref, old_ref, "WRITE_EMPTY")
    except BaseException as failure:  # any failure (an API error, an interrupt): put the old table back first
        _restore(calls, target, backup_ref, old_ref, failure)
        raise
    calls.delete_table(backup_ref)


def _restore(
    calls: Calls, target: TargetTable, backup_ref: str, old_ref: str, failure: BaseException
) -> None:
    try:
        calls.delete_table(old_ref)  # a copy that failed half-way may have left a table behind
        calls.copy_table(backup_ref, old_ref, "WRITE_EMPTY")
    except (GoogleAPICallError, *UNREACHABLE_ERRORS) as second:
        backup = backup_ref.split(".", 1)[1]
        raise WarehouseError(
            f"{target.ref}: the rebuild could not copy the new table into place ({failure}), nor the old table "
            f"back ({second}). The old rows are in {backup}: copy it to {target.ref} "
            f"(`bq cp {backup} {target.ref}`), then run the rebuild again."
        ) from failure
    calls.delete_table(backup_ref)


def _keep_metadata(calls: Calls, old_ref: str, new: bigquery.Table) -> None:
    """A copy job does not carry the description and labels (Derive's marker) everywhere: set them again."""
    if not new.description and not new.labels:
        return
    placed = calls.get_table(old_ref)
    placed.description = new.description
    placed.labels = dict(new.labels or {})
    calls.update_table(placed, ["description", "labels"])


def _count(calls: Calls, ref: str, table: bigquery.Table) -> int:
    """The old table's rows, by a query (the emulator's `num_rows` ignores DML), with a filter on its own
    partition key that holds for every row, for tables that require one."""
    query = exp.select(q.count_all()).from_(q.table(ref))
    field = table.time_partitioning.field if table.time_partitioning else None
    if field:
        key = q.col(field)
        query = query.where(exp.or_(q.is_null(key), exp.Not(this=q.is_null(key.copy()))))
    rows = list(calls.rows(query.sql(B), bigquery.QueryJobConfig()))
    return int(rows[0][0] or 0) if rows else 0
