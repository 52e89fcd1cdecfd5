"""Spec versions: a short hash of what changes an asset's data, used as the Dagster asset `code_version`.

Dagster marks an asset (and everything downstream) stale when its code version changes, and `derive plan` lists
the tables whose version differs from the one that last wrote them. So the hash covers only what changes the
rows or the table's layout: the SQL (normalized by sqlglot, so whitespace, comments and keyword case do not
count), the columns with their types and `not_null`, the strategy with its fields, the window, the partition and
the cluster keys. Descriptions, owners, schedules, data-quality checks (`unique`, `accepted_values`) and the
`kubernetes` block (the pod a step runs in) are left out: editing them changes no row.

Fields are hashed without their defaults (`model_dump(exclude_defaults=True)`): writing a default out
(`granularity: day`) is the same spec as leaving it out, and a new optional field added to the models later does
not change the version of every existing spec.

    >>> code_version(spec)          # doctest: +SKIP
    '3f9c2a71d04e'
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from derive_assets.specs.models import Column, ExportSpec, SourceSpec, SourceTable, TableSpec
from derive_assets.specs.sql_analysis import SPEC_DIALECT, SqlProblem, parse

if TYPE_CHECKING:
    from sqlglot import exp

VERSION_CHARS = 12
"""Hex characters kept of the SHA-256: 48 bits, no collision among a project's few thousand specs."""


def code_version(spec: TableSpec, parsed: exp.Expr | None = None, *, normalized: str | None = None) -> str:
    """The version of a core or derived table: its normalized SQL and everything that shapes its rows.

    `parsed`: the spec's SQL as `sql_analysis.parse` returned it, when the caller has it: regenerating it skips a
    second parse, half the cost of a version (~4 ms a spec). `normalized`: the SQL already normalized
    (`SqlAnalysis.normalized_sql`, which the spec cache keeps), so nothing is parsed or regenerated; the factory
    uses `Table.code_version`, which passes it."""
    if normalized is None:
        normalized = (
            parsed.sql(SPEC_DIALECT, comments=False) if parsed is not None else normalized_sql(spec.sql)
        )
    return _digest(
        {
            "kind": "table",
            "sql": normalized,
            "columns": [_column(c) for c in spec.columns],
            "strategy": spec.strategy.model_dump(exclude_defaults=True),
            "window": spec.window.model_dump(exclude_defaults=True) if spec.window else None,
            "partition": spec.partition.model_dump(exclude_defaults=True) if spec.partition else None,
            "cluster": list(spec.cluster),
        }
    )


def source_code_version(source: SourceSpec, table: SourceTable) -> str:
    """The version of one replicated table: what is read (engine, database, table, columns and their types and
    paths, key, cursor) and which rows land (`soft_delete`, `on_invalid`, `max_future_seconds`).

    Left out besides descriptions, owners and schedules: the connection variable (where, not what), and
    `cursor_overlap`, `wait_for_open_transactions` and `snapshot`, which change how much is re-read or how a first
    load is split into chunks, never the result (a snapshot's checkpoint records its own `chunk_rows`), and
    `kubernetes` (the pod it runs in).
    """
    fields = table.model_dump(
        exclude_defaults=True,
        exclude={
            "description",
            "columns",
            "cursor_overlap",
            "wait_for_open_transactions",
            "snapshot",
            "kubernetes",
        },
    )
    return _digest(
        {
            "kind": "source",
            "type": source.type,
            "database": source.mongo_database if source.type == "mongodb" else None,
            "dataset": source.target_dataset,
            "table": fields,
            "columns": [_column(c) for c in table.columns],
        }
    )


def export_code_version(spec: ExportSpec) -> str:
    """The version of an export: the table, the CQL table and key, the columns, the TTL and the cursor.

    The write consistency level is left out (it changes how a write is acknowledged, not what is stored), and so
    is `kubernetes` (the pod it runs in).
    """
    return _digest(
        {
            "kind": "export",
            **spec.model_dump(
                exclude_defaults=True,
                exclude={"description", "owner", "schedule", "consistency", "kubernetes"},
            ),
            "cql_table": spec.target_table,
        }
    )


def normalized_sql(sql: str) -> str:
    """The query as sqlglot regenerates it in BigQuery SQL: one canonical spelling, without comments.

    A query that does not parse (never the case for a loaded spec) is normalized to its whitespace-collapsed
    text, so this never raises.
    """
    try:
        return parse(sql).sql(SPEC_DIALECT, comments=False)
    except (SqlProblem, RecursionError):
        return re.sub(r"\s+", " ", sql).strip()


def _column(column: Column) -> dict[str, Any]:
    out: dict[str, Any] = {"name": column.name, "type": column.type}
    if column.constraints.not_null:
        out["not_null"] = True
    if column.path is not None:
        out["path"] = column.path
    return out


def _digest(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:VERSION_CHARS]
