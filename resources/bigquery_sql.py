"""The SQL text of BigQuery writes: staging names, casts, and the MERGE / insert-overwrite / replace statements.

Pure functions of a target table and a request, so tests can check the generated SQL where the emulator cannot
run it (e.g. partition pruning). Identifiers are quoted by the dialect; values are query parameters.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from resources.bigquery_ddl import CAST_TYPES
from resources.sql_text import column_list, key_join, quote, table_name
from resources.warehouse import LoadRequest, TargetTable, WriteRequest

B = "bigquery"
STAGING_PREFIX = "_derive_stg_"
ROW_COLUMN = "_derive_row"
"""Position of a replicated row in the stream: among rows with the same key and cursor, the last read wins."""


def staging_name(target: TargetTable) -> str:
    """Unique per run, so two runs of different windows of one table never share a staging table."""
    return f"{STAGING_PREFIX}{target.name}_{uuid.uuid4().hex[:12]}"


def cast_expr(column: str, spec_type: str, staged_type: str) -> str:
    """`column` (SQL text) as the declared type; JSON is parsed from text, other types are `CAST`."""
    if spec_type == "JSON":
        return f"PARSE_JSON({column})" if staged_type == "STRING" else column
    return f"CAST({column} AS {CAST_TYPES[spec_type]})"


def source_select(
    target: TargetTable,
    stg: str,
    staged_types: Mapping[str, str],
    newest_per_key: tuple[Sequence[str], str] | None = None,
) -> str:
    """`SELECT <declared columns, cast> FROM <staging>`; optionally only the newest row per key."""
    casts = ", ".join(
        f"{cast_expr(quote(c.name, B), c.type, staged_types[c.name])} AS {quote(c.name, B)}"
        for c in target.columns
    )
    sql = f"SELECT {casts} FROM {stg}"
    if newest_per_key is None:
        return sql
    keys, cursor = newest_per_key
    cursor_type = target.column(cursor).type
    order = (
        f"{cast_expr(quote(cursor, B), cursor_type, staged_types[cursor])} DESC, {quote(ROW_COLUMN, B)} DESC"
    )
    # BigQuery allows QUALIFY only next to WHERE, GROUP BY or HAVING.
    newest = f"ROW_NUMBER() OVER (PARTITION BY {column_list(tuple(keys), B)} ORDER BY {order}) = 1"
    return f"{sql} WHERE TRUE QUALIFY {newest}"


def window_scoped(request: WriteRequest) -> bool:
    """Whether the run's statements may restrict the target to the window (same rule as DuckDB).

    For append the window's slice is exactly what a run owns. For merge it is only safe when the partition key
    is part of the unique key (a key can then only live in its own window's partition).
    """
    key = request.target.partition_key
    if key is None or request.window is None:
        return False
    return not (request.strategy == "merge" and key not in request.unique_key)


def window_condition(target: TargetTable, prefix: str) -> str:
    """`<prefix>key` within [@window_start, @window_end), the bounds cast to the key's type."""
    assert target.partition_key is not None
    col = prefix + quote(target.partition_key, B)
    t = CAST_TYPES[target.column(target.partition_key).type]
    return f"{col} >= CAST(@window_start AS {t}) AND {col} < CAST(@window_end AS {t})"


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
