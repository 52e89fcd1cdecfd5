"""The rules a warehouse enforces before it changes a table, written once for DuckDB and BigQuery.

Each rule is a predicate over the run's staged rows (a sqlglot expression from `resources.engine_sql`, counted
set-based in one profile scan, so the warehouse does the work whatever the row count), plus a function that turns
the counts into the error class of `resources.warehouse`. `resources.strategy` runs them on every engine; each
engine renders them in its dialect (window bounds as its named parameters, `$window_start` / `@window_start`).

Rules for a write (a derived table's query over one window):
- merge: no NULL in `unique_key`, one row per key;
- merge and append on a partitioned table with a window: every row's partition key lies inside the window (a NULL
  key lies outside). Append would otherwise leave the row for every rerun to add again; a merge whose key holds
  the partition key deletes only inside the window, so the row would land next to the one it replaces;
- every strategy: no NULL in a `not_null` column.

Rules for a load (one extraction of a replicated table): no NULL in the primary key, one row per primary key (one
extraction is one consistent read, so a key seen twice means the declared key is not unique in the source), and
no NULL in a `not_null` column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from resources.engine_sql import Count, any_null, col, is_null, outside_window
from resources.warehouse import (
    DuplicateKeys,
    MissingColumns,
    NullKeys,
    NullsInRequiredColumns,
    OutOfWindowRows,
    TargetTable,
    WriteRequest,
)

if TYPE_CHECKING:
    import pyarrow as pa


# ----------------------------------------------------------------------------------------------- row sources


def check_row_source(request: WriteRequest, batches: Iterable[pa.RecordBatch] | None) -> None:
    """A write has its rows from a query or from batches, never both (a caller bug, not bad data)."""
    if request.sql is not None and batches is not None:
        raise ValueError(f"{request.target.ref}: a write takes a query or Arrow batches, not both")
    if request.sql is None and batches is None:
        raise ValueError(f"{request.target.ref}: a write without a query (sql=None) needs Arrow batches")


def declared_columns(
    batch: pa.RecordBatch, target: TargetTable, origin: Literal["source", "rows"]
) -> list[pa.Array]:
    """The batch's arrays for the declared columns, in declared order (names matched case-insensitively);
    `MissingColumns` when one is absent."""
    names = {name.lower(): i for i, name in enumerate(batch.schema.names)}
    missing = [c.name for c in target.columns if c.name.lower() not in names]
    if missing:
        raise MissingColumns(target.ref, missing, batch.schema.names, origin)
    return [batch.column(names[c.name.lower()]) for c in target.columns]


# ----------------------------------------------------------------------------------------------- windows


def must_stay_in_window(request: WriteRequest) -> bool:
    """Whether every row the run writes must lie in its window: merge or append, a partition and a window."""
    return (
        request.strategy in ("merge", "append")
        and request.target.partition_key is not None
        and request.window is not None
    )


def window_scoped(request: WriteRequest) -> bool:
    """Whether the run's statements may restrict the target to the window.

    For append the window's slice is exactly what a run owns. For merge it is only safe when the partition key is
    part of the unique key (a key can then only live in its own window's partition).
    """
    if not must_stay_in_window(request):
        return False
    return not (request.strategy == "merge" and request.target.partition_key not in request.unique_key)


# ----------------------------------------------------------------------------------------------- profiles


def not_null_columns(target: TargetTable) -> list[str]:
    return [c.name for c in target.columns if c.not_null]


def write_counts(request: WriteRequest, types: Mapping[str, str], dialect: str) -> list[Count]:
    """What a write's profile counts, in the order `refuse_write` reports them."""
    counts = []
    if request.strategy == "merge":
        counts.append(Count("null_keys", any_null(request.unique_key)))
    if must_stay_in_window(request):
        counts.append(Count("outside_window", outside_window(request.target, types, dialect)))
    counts += [Count(f"null:{c}", is_null(col(c))) for c in not_null_columns(request.target)]
    return counts


def write_params(request: WriteRequest) -> dict[str, Any]:
    """The bound parameters a write's profile needs (the window bounds, when it checks the window)."""
    return request.window.as_params() if must_stay_in_window(request) and request.window else {}


def refuse_write(request: WriteRequest, counts: Mapping[str, int]) -> None:
    """Raise the first broken rule among a write's profile counts (keyed by `Count.name`)."""
    target = request.target
    if counts.get("null_keys"):
        raise NullKeys(target.ref, request.unique_key, counts["null_keys"], "unique_key")
    if counts.get("outside_window") and request.window and target.partition_key:
        raise OutOfWindowRows(
            target.ref,
            counts["outside_window"],
            request.window,
            target.partition_key,
            request.strategy,
            request.unique_key,
        )
    _refuse_required_nulls(target, counts, "query")


def load_counts(target: TargetTable, primary_key: Sequence[str], dialect: str) -> list[Count]:
    """What a load's profile counts: NULL primary keys, then NULLs per `not_null` column."""
    del dialect  # the predicates are dialect-free expressions; kept so callers say which one they speak
    counts = [Count("null_keys", any_null(primary_key))]
    return counts + [Count(f"null:{c}", is_null(col(c))) for c in not_null_columns(target)]


def refuse_load(target: TargetTable, primary_key: Sequence[str], counts: Mapping[str, int]) -> None:
    """Raise the first broken rule among a load's profile counts."""
    if counts.get("null_keys"):
        raise NullKeys(target.ref, primary_key, counts["null_keys"], "primary_key")
    _refuse_required_nulls(target, counts, "source")


def _refuse_required_nulls(
    target: TargetTable, counts: Mapping[str, int], origin: Literal["query", "source"]
) -> None:
    nulls = {c: counts.get(f"null:{c}", 0) for c in not_null_columns(target)}
    found = {c: n for c, n in nulls.items() if n}
    if found:
        raise NullsInRequiredColumns(target.ref, found, origin)


def named(counts: Sequence[Count], values: Sequence[Any]) -> dict[str, int]:
    """Profile values (after the `first` items) by count name."""
    return {c.name: int(v or 0) for c, v in zip(counts, values, strict=True)}


# ----------------------------------------------------------------------------------------------- duplicates


def refuse_duplicates(
    ref: str, keys: Sequence[str], rows: Sequence[Sequence[Any]], role: Literal["unique_key", "primary_key"]
) -> None:
    """Raise `DuplicateKeys` when `engine_sql.duplicates` returned rows."""
    if not rows:
        return
    width = len(keys)
    samples = [tuple(row[:width]) for row in rows]
    raise DuplicateKeys(ref, keys, int(rows[0][width]), samples, role)
