"""The SQL text of BigQuery writes: staging names, casts, and the MERGE / insert-overwrite / replace statements.

Pure functions of a target table and a request, so tests can check the generated SQL where the emulator cannot
run it (e.g. partition pruning). Identifiers are quoted by the dialect; values are query parameters.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from resources import warehouse_rules
from resources.bigquery_ddl import CAST_TYPES
from resources.sql_text import column_list, key_join, quote, table_name
from resources.warehouse import LoadRequest, TargetTable
from resources.warehouse_rules import window_scoped

__all__ = ["window_scoped"]  # re-exported: the rule lives in `warehouse_rules`, shared with DuckDB

B = "bigquery"
STAGING_PREFIX = "_derive_stg_"


def staging_name(target: TargetTable) -> str:
    """Unique per run, so two runs of different windows of one table never share a staging table."""
    return f"{STAGING_PREFIX}{target.name}_{uuid.uuid4().hex[:12]}"


def cast_expr(column: str, spec_type: str, staged_type: str) -> str:
    """`column` (SQL text) as the declared type; JSON is parsed from text, other types are `CAST`."""
    if spec_type == "JSON":
        return f"PARSE_JSON({column})" if staged_type == "STRING" else column
    return f"CAST({column} AS {CAST_TYPES[spec_type]})"


def source_select(target: TargetTable, stg: str, staged_types: Mapping[str, str]) -> str:
    """`SELECT <declared columns, cast> FROM <staging>`."""
    casts = ", ".join(
        f"{cast_expr(quote(c.name, B), c.type, staged_types[c.name])} AS {quote(c.name, B)}"
        for c in target.columns
    )
    return f"SELECT {casts} FROM {stg}"


def window_condition(target: TargetTable, prefix: str) -> str:
    """`<prefix>key` within [@window_start, @window_end), the bounds cast to the key's type."""
    return warehouse_rules.window_condition(target, CAST_TYPES, B, prefix)


def _insert_clause(target: TargetTable) -> str:
    names = [c.name for c in target.columns]
    return f"INSERT ({column_list(names, B)}) VALUES ({column_list(names, B, prefix='S.')})"


def _update_clause(target: TargetTable) -> str:
    return "UPDATE SET " + ", ".join(f"{quote(c.name, B)} = S.{quote(c.name, B)}" for c in target.columns)


def merge_sql(target: TargetTable, keys: Sequence[str], source: str, window: bool) -> str:
    """Upsert by `keys`; with `window`, the `ON` clause limits the target to the window's partitions."""
    on = key_join(tuple(keys), "T", "S", B) + (f"\n  AND {window_condition(target, 'T.')}" if window else "")
    return (
        f"MERGE INTO {table_name(target.ref, B)} AS T\nUSING ({source}) AS S\nON {on}\n"
        f"WHEN MATCHED THEN {_update_clause(target)}\n"
        f"WHEN NOT MATCHED THEN {_insert_clause(target)}"
    )


def append_sql(target: TargetTable, source: str, window: bool) -> str:
    """Replace the window's rows (the whole table without a window) with the run's rows, in one statement."""
    scope = f" AND {window_condition(target, 'T.')}" if window else ""
    return (
        f"MERGE INTO {table_name(target.ref, B)} AS T\nUSING ({source}) AS S\nON FALSE\n"
        f"WHEN NOT MATCHED BY SOURCE{scope} THEN DELETE\n"
        f"WHEN NOT MATCHED THEN {_insert_clause(target)}"
    )


def replace_sql(target: TargetTable, source: str) -> str:
    """Empty the table and fill it with the run's rows, in one transaction (keeps the API-created layout)."""
    names = column_list([c.name for c in target.columns], B)
    tbl = table_name(target.ref, B)
    return (
        f"BEGIN TRANSACTION;\nDELETE FROM {tbl} WHERE {_all_rows(target)};\n"
        f"INSERT INTO {tbl} ({names})\n{source};\nCOMMIT TRANSACTION;"
    )


def _all_rows(target: TargetTable) -> str:
    """A predicate true for every row. With `require_partition_filter`, BigQuery wants one on the partition
    key (not checkable on the emulator, which ignores the option)."""
    if target.partition_key is None or not target.require_partition_filter:
        return "TRUE"
    col = quote(target.partition_key, B)
    return f"{col} IS NULL OR {col} IS NOT NULL"


def soft_delete_condition(request: LoadRequest, prefix: str) -> str | None:
    """SQL that is true for staged rows the source marked deleted (flag true, or a deletion time set)."""
    if not request.soft_delete_column:
        return None
    col = prefix + quote(request.soft_delete_column, B)
    if request.target.column(request.soft_delete_column).type == "BOOL":
        return f"{col} IS TRUE"
    return f"{col} IS NOT NULL"


def load_merge_sql(target: TargetTable, keys: Sequence[str], source: str, flag: str | None) -> str:
    """Merge replicated rows by primary key: flagged rows delete their target row and are not inserted."""
    lines = [
        f"MERGE INTO {table_name(target.ref, B)} AS T",
        f"USING ({source}) AS S",
        f"ON {key_join(tuple(keys), 'T', 'S', B)}",
    ]
    if flag:
        lines.append(f"WHEN MATCHED AND {flag} THEN DELETE")
    lines.append(f"WHEN MATCHED THEN {_update_clause(target)}")
    lines.append(f"WHEN NOT MATCHED{f' AND NOT ({flag})' if flag else ''} THEN {_insert_clause(target)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- parameters
