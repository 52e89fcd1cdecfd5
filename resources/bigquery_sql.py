"""BigQuery's side of the statements: staging names, and the casts that turn a staging table into the declared
columns (`source_query`, the `Staged.source` of a BigQuery run).

The statements themselves (MERGE, insert-overwrite, replace) are built once in `resources.engine_sql`;
`merge_sql` and `replace_sql` render them as BigQuery text, so tests can check the generated SQL where the
emulator cannot run it (e.g. partition pruning). Identifiers are quoted by the dialect; values are query
parameters.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import sqlglot
from sqlglot import exp

from resources import engine_sql as q
from resources.bigquery_ddl import CAST_TYPES
from resources.warehouse import TargetTable
from resources.warehouse_rules import window_scoped

__all__ = ["window_scoped"]  # re-exported: the rule lives in `warehouse_rules`, shared with DuckDB

B = "bigquery"
STAGING_PREFIX = "_derive_stg_"


def staging_name(target: TargetTable) -> str:
    """Unique per run, so two runs of different windows of one table never share a staging table."""
    return f"{STAGING_PREFIX}{target.name}_{uuid.uuid4().hex[:12]}"


def cast_expr(column: str, spec_type: str, staged_type: str) -> exp.Expr:
    """A staged column as the declared type; JSON is parsed from text, other types are `CAST`."""
    if spec_type == "JSON":
        return exp.ParseJSON(this=q.col(column)) if staged_type == "STRING" else q.col(column)
    return q.cast(q.col(column), CAST_TYPES[spec_type], B)


def source_query(target: TargetTable, stg: exp.Table, staged_types: Mapping[str, str]) -> exp.Select:
    """`SELECT <declared columns, cast> FROM <staging>`."""
    casts = [
        exp.alias_(cast_expr(c.name, c.type, staged_types[c.name]), q.ident(c.name)) for c in target.columns
    ]
    return exp.select(*casts).from_(stg)


def source_select(target: TargetTable, stg: str, staged_types: Mapping[str, str]) -> str:
    """`source_query` as BigQuery text, for a staging table given as text (e.g. "`a`.`stg`")."""
    table = sqlglot.parse_one(stg, read=B, into=exp.Table)
    return source_query(target, table, staged_types).sql(B)


def _source(source: str | exp.Expr) -> exp.Expr:
    """A source given as BigQuery text is parsed (tests pass text; the warehouse passes `source_query`'s
    expression, never re-rendered: a parsed `NUMERIC(38, 9)` cast would come back as a bare NUMERIC)."""
    return sqlglot.parse_one(source, read=B) if isinstance(source, str) else source


def merge_sql(target: TargetTable, keys: Sequence[str], source: str | exp.Expr, window: bool) -> str:
    """Upsert by `keys`; with `window`, the `ON` clause limits the target to the window's partitions."""
    scope = q.window_predicate(target, CAST_TYPES, B, q.TARGET) if window else None
    return q.merge_upsert(target, _source(source), q.and_(q.key_match(keys), scope)).sql(B)


def replace_sql(target: TargetTable, source: str | exp.Expr) -> str:
    """Empty the table and fill it with the run's rows, in one transaction (keeps the API-created layout)."""
    statements = [q.delete_where(target, q.all_rows(target)), q.insert_select(target, _source(source))]
    return script(statements)


def script(statements: Sequence[exp.Expr]) -> str:
    """Statements as one BigQuery transaction script."""
    body = "".join(f"{s.sql(B)};\n" for s in statements)
    return f"BEGIN TRANSACTION;\n{body}COMMIT TRANSACTION;"
