"""merge, append, replace and replication load, written once over the primitives of `resources.engine`.

A write (a derived table's query over one window, or a Python asset's Arrow batches):
0. compare the spec with the existing table (`resources.evolution`): a breaking difference raises
   `BreakingSchemaChange` before anything happens; additive ones are applied with `ALTER TABLE` (a transactional
   engine now, inside the run's transaction; otherwise after step 3, right before step 5) and reported as
   `extra["schema_changes"]`; after step 5 Derive's marker on the table is refreshed (`code_version`). A load does
   the same;
1. `prepare` the target (a transactional engine creates it here, inside the run's transaction);
2. stage the rows (`stage_query` / `stage_batches`), cast to the declared types;
3. profile the staged rows in one scan and refuse what breaks a rule (`warehouse_rules`): NULL or duplicate
   merge keys, rows outside a windowed run's window, NULL in a `not_null` column;
4. create a missing target (engines without a transactional session create it only now);
5. change the target with the strategy, the way the engine's `Capabilities` say:
   - merge: delete the target rows whose `unique_key` a staged row has (only inside the window when the
     partition key is part of the key) and insert the staged rows, or one `MERGE`; with `delete_missing`, also
     the window's rows (every row, without a window) whose key no staged row has (`check_delete_missing`);
   - append: delete the window's rows (every row without a window) and insert, or one `MERGE ... ON FALSE`;
   - replace: delete every row and insert, or a transaction script.

A load (one extraction of a replicated table): stage the batches (a transactional engine streams a first load
straight into the empty target, screening each batch), refuse NULL and duplicate primary keys and NULLs in
`not_null` columns, then merge by primary key; rows the source marked deleted delete their target row.

Row accounting is the same on every engine: `rows_read` = rows staged; `rows_updated` = target rows whose key a
staged (not soft-deleted) row had; `rows_deleted` = target rows removed by the window/replace delete or by a soft
delete; `rows_inserted` = staged rows kept minus `rows_updated`. Counts come from the engine's DML counts where it
reports them, otherwise from a count query just before the statement. A merge with `delete_missing` counts the rows
it deleted in `rows_deleted`. With `WriteRequest.partitions`, `WriteResult.by_partition` holds each partition's
rows (`resources.partition_counts`). A rebuild (`WriteRequest.rebuild`) is `resources.rebuild`.

A reconciliation (`reconcile`, a replicated table's hard deletes without a flag column): stage every primary key
of the source, then delete the target rows whose key was not staged, guarded by `max_delete_percent`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from resources import engine_sql as q
from resources import evolution
from resources.engine import BatchScreen, Capabilities, Engine, Session, Staged
from resources.lazy_import import lazy_module
from resources.partition_counts import partition_counts
from resources.warehouse import (
    DEFAULT_MAX_DELETE_PERCENT,
    LoadRequest,
    ReconcileRefused,
    TargetTable,
    WarehouseError,
    WriteRequest,
    WriteResult,
)
from resources.warehouse_rules import (
    check_row_source,
    load_counts,
    named,
    refuse_duplicates,
    refuse_load,
    refuse_write,
    window_scoped,
    write_counts,
    write_params,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp
else:
    exp = lazy_module("sqlglot.expressions")


# ----------------------------------------------------------------------------------------------- writes


def write(
    engine: Engine, request: WriteRequest, batches: Iterable[pa.RecordBatch] | None = None
) -> WriteResult:
    """One run of a core/derived table with its strategy; a refusal or failure leaves the target unchanged."""
    if request.rebuild:
        # resources.rebuild builds on this module's strategies: a module-level import would be a cycle
        from resources import rebuild

        return rebuild.rebuild(engine, request, batches)
    check_row_source(request, batches)
    check_delete_missing(request)
    caps = engine.CAPABILITIES
    target = evolution.spec_target(request.target, request.unique_key)
    with engine.session() as s:
        evolving = evolution.compare(s, target, rebuild=request.rebuild)
        exists = s.prepare(target)
        evolving.apply(s, caps, before_rows=True)
        if request.sql is None:
            staged = s.stage_batches(target, batches or (), "rows")
        else:
            staged = s.stage_query(target, request.sql, request.params)
        result = _check_write(s, request, staged)
        if staged.name:
            result.extra["staging_table"] = staged.name
        if not exists:
            s.create(target)
        evolving.apply(s, caps, before_rows=False)
        run_strategy(s, caps, request, staged, exists, result)
        result.by_partition = partition_counts(s, request, staged, target)
        evolving.finish(s, result)
    return result


def run_strategy(
    s: Session, caps: Capabilities, request: WriteRequest, staged: Staged, exists: bool, result: WriteResult
) -> None:
    """Change `request.target` with the strategy, from checked staged rows (a write, or a rebuild's new table)."""
    if request.strategy == "merge":
        _merge(s, caps, request, staged, exists, result)
    elif request.strategy == "append":
        _append(s, caps, request, staged, exists, result)
    else:
        _replace(s, caps, request, staged, exists, result)
    result.rows_inserted = result.rows_read - result.rows_updated


def _check_write(s: Session, request: WriteRequest, staged: Staged) -> WriteResult:
    """Profile the staged rows in one scan and refuse what breaks a rule; then duplicate merge keys."""
    counts = write_counts(request, s.cast_types, s.dialect)
    row = s.rows(q.profile(staged.source, [q.count_all()], counts), write_params(request))
    refuse_write(request, named(counts, row[0][1:]))
    if request.strategy == "merge":
        found = s.rows(q.duplicates(staged.source, request.unique_key))
        refuse_duplicates(request.target.ref, request.unique_key, found, "unique_key")
    return WriteResult(rows_read=int(row[0][0] or 0))


def _window(s: Session, request: WriteRequest) -> tuple[exp.Expr | None, dict[str, Any]]:
    """The window on the target (`T.`-qualified) when the run may restrict its change to it, and its params."""
    if not window_scoped(request) or request.window is None:
        return None, {}
    return q.window_predicate(request.target, s.cast_types, s.dialect, q.TARGET), request.window.as_params()


def _merge(
    s: Session, caps: Capabilities, request: WriteRequest, staged: Staged, exists: bool, result: WriteResult
) -> None:
    target, source = request.target, staged.source
    window, params = _window(s, request)
    on = q.and_(q.key_match(request.unique_key), window)
    missing = _missing_scope(request, window)
    if missing is not None:
        result.rows_deleted = _delete_missing(s, caps, request, staged, exists, missing, params)
    if caps.upsert == "merge":
        result.rows_updated = _count(s, exists, q.count_matches(target, source, on, [q.count_all()]), params)
        s.execute(q.merge_upsert(target, source, on, missing), params)
    else:
        result.rows_updated = _delete(
            s,
            caps,
            exists,
            q.delete_matching(target, source, on),
            q.count_matches(target, source, on, [q.count_all()]),
            params,
        )
        _insert(s, caps, request.target, source)


def check_delete_missing(request: WriteRequest) -> None:
    """`delete_missing` is a merge's, and needs a scope it can trust: the run's window when the partition key is
    part of `unique_key` (a key then lives only in its window), or, for a run without a window, the whole table
    (the query then returns every row the table should hold). A windowed run that cannot be scoped to its window
    is refused: deleting every key it did not output would delete the other windows' rows."""
    if not request.delete_missing:
        return
    ref = request.target.ref
    if request.strategy != "merge":
        raise WarehouseError(
            f"{ref}: delete_missing is an option of the merge strategy, not of {request.strategy} (append already "
            "replaces its window, replace the whole table); drop delete_missing. Nothing was written."
        )
    if request.window is not None and not window_scoped(request):
        key = request.target.partition_key
        raise WarehouseError(
            f"{ref}: delete_missing on a windowed merge needs a partitioned table whose partition key is part of "
            f"unique_key {list(request.unique_key)} (partition key: {key or 'none'}), so that only the window's "
            "keys can be deleted; add the partition key to unique_key, or drop delete_missing. Nothing was "
            "written."
        )


def _missing_scope(request: WriteRequest, window: exp.Expr | None) -> exp.Expr | None:
    """Where a merge deletes the target rows whose key the run no longer outputs: the window (on `T`), every row
    (TRUE) for a run without a window, or nowhere (None) without `delete_missing`."""
    if not request.delete_missing:
        return None
    return window if window is not None else exp.true()


def _delete_missing(
    s: Session,
    caps: Capabilities,
    request: WriteRequest,
    staged: Staged,
    exists: bool,
    scope: exp.Expr,
    params: Mapping[str, Any],
) -> int:
    """The target rows in `scope` whose key no staged row has: counted, and deleted here on engines without MERGE
    (in the run's transaction; a MERGE deletes them itself, `WHEN NOT MATCHED BY SOURCE`)."""
    target, keys, source = request.target, request.unique_key, staged.source
    counting = q.count_unmatched(target, source, keys, scope)
    if caps.upsert == "merge":
        return _count(s, exists, counting, params)
    return _delete(s, caps, exists, q.delete_unmatched(target, source, keys, scope), counting, params)


def _append(
    s: Session, caps: Capabilities, request: WriteRequest, staged: Staged, exists: bool, result: WriteResult
) -> None:
    target, source = request.target, staged.source
    window, params = _window(s, request)
    unqualified = q.window_predicate(target, s.cast_types, s.dialect) if window is not None else exp.true()
    if caps.insert_overwrite == "merge_on_false":
        result.rows_deleted = _count(s, exists, q.count_where(target, unqualified), params)
        s.execute(q.merge_overwrite(target, source, window), params)
    else:
        result.rows_deleted = _delete(
            s, caps, exists, q.delete_where(target, unqualified), q.count_where(target, unqualified), params
        )
        _insert(s, caps, target, source)


def _replace(
    s: Session, caps: Capabilities, request: WriteRequest, staged: Staged, exists: bool, result: WriteResult
) -> None:
    target, source = request.target, staged.source
    everything = q.all_rows(target)
    if caps.replace == "script":
        result.rows_deleted = _count(s, exists, q.count_where(target, everything), {})
        s.script([q.delete_where(target, everything), q.insert_select(target, source)])
    else:
        result.rows_deleted = _delete(
            s, caps, exists, q.delete_where(target, everything), q.count_where(target, everything), {}
        )
        _insert(s, caps, target, source)


# ----------------------------------------------------------------------------------------------- loads


def load(engine: Engine, request: LoadRequest, batches: Iterable[pa.RecordBatch]) -> WriteResult:
    """Stage one extraction, refuse NULL/duplicate primary keys and NULLs in `not_null` columns, then merge by
    primary key with soft deletes; a refused load leaves the target as it was (and creates none)."""
    caps = engine.CAPABILITIES
    target = evolution.spec_target(request.target, request.primary_key)
    with engine.session() as s:
        evolving = evolution.compare(s, target)
        exists = s.prepare(target)
        evolving.apply(s, caps, before_rows=True)
        direct = caps.direct_first_load and exists and not s.rows(q.is_empty(target))[0][0]
        staged = s.stage_batches(target, batches, "source", into_target=direct, screen=_screen(s, request))
        result = WriteResult(rows_read=staged.rows or 0)
        if staged.name:
            result.extra["staging_table"] = staged.name
        if not result.rows_read:
            if not exists:
                s.create(target)
            evolving.apply(s, caps, before_rows=False)
            evolving.finish(s, result)
            result.row_count = _target_rows(s, target)
            return result
        profile = _check_load(s, request, staged)
        if not exists:
            s.create(target)
        evolving.apply(s, caps, before_rows=False)
        _merge_load(s, caps, request, staged, profile, result)
        evolving.finish(s, result)
        result.row_count = _target_rows(s, target)
    return result


def _target_rows(s: Session, target: TargetTable) -> int:
    """The target's rows as the load leaves them (`WriteResult.row_count`), in the load's own session."""
    return int(s.rows(q.count_where(target, q.all_rows(target)))[0][0] or 0)


def _screen(s: Session, request: LoadRequest) -> BatchScreen:
    """The per-batch check of engines that insert batch by batch: the NULL rules of `_check_load`, run on each raw
    batch before it is cast and inserted (a direct first load's NOT NULL columns would otherwise stop the insert
    with a bare constraint error, a bad value in another column with a cast error), so a refusal counts the rows
    of the first batch that had them. Engines that stage all batches at once (one load job) rely on
    `_check_load`, which counts every staged row."""
    counts = load_counts(request.target, request.primary_key, s.dialect)

    def screen(batch: exp.Expr) -> None:
        row = s.rows(q.profile(batch, [], counts))
        refuse_load(request.target, request.primary_key, named(counts, row[0]))

    return screen


def _check_load(s: Session, request: LoadRequest, staged: Staged) -> tuple[Any, int, int]:
    """One profile scan of the staged rows (refusing NULL primary keys and NULLs in `not_null` columns), then
    duplicate primary keys. Returns the largest cursor and the rows flagged and not flagged as soft-deleted."""
    target, keys = request.target, request.primary_key
    flag = q.soft_delete_predicate(request) or exp.false()
    first = [
        exp.Max(this=q.col(request.cursor)),
        exp.CountIf(this=flag),
        exp.CountIf(this=exp.Not(this=exp.Paren(this=flag.copy()))),
    ]
    counts = load_counts(target, keys, s.dialect)
    row = s.rows(q.profile(staged.source, first, counts))[0]
    refuse_load(target, keys, named(counts, row[len(first) :]))
    found = s.rows(q.duplicates(staged.source, keys))
    refuse_duplicates(target.ref, keys, found, "primary_key")
    return row[0], int(row[1] or 0), int(row[2] or 0)


def _merge_load(
    s: Session,
    caps: Capabilities,
    request: LoadRequest,
    staged: Staged,
    profile: tuple[Any, int, int],
    result: WriteResult,
) -> None:
    """Apply a checked extraction: soft deletes, updates and inserts by primary key (one staged row per key)."""
    target, keys, source = request.target, request.primary_key, staged.source
    result.max_cursor, flagged, kept = profile
    flag = q.soft_delete_predicate(request, q.STAGED)
    if flag is not None:
        result.extra["soft_deleted_rows_read"] = flagged
    if staged.in_target:  # a direct first load: the rows are the table; drop the ones marked deleted
        marked = q.soft_delete_predicate(request)
        if marked is not None:
            s.execute(q.delete_where(target, marked))
        result.rows_inserted = result.rows_read - flagged
        return
    matches = q.count_matches(
        target, source, q.key_match(keys), [q.count_all(), exp.CountIf(this=flag or exp.false())]
    )
    existing, deleted = (int(v or 0) for v in s.rows(matches)[0])
    if caps.upsert == "merge":
        s.execute(q.merge_load(target, source, keys, flag))
    else:
        s.execute(q.delete_matching(target, source, q.key_match(keys)))
        kept_rows = exp.Not(this=exp.Paren(this=flag)) if flag is not None else None
        _insert(s, caps, target, source, kept_rows)
    result.rows_deleted = deleted
    result.rows_updated = existing - deleted
    result.rows_inserted = kept - result.rows_updated


# ----------------------------------------------------------------------------------------------- reconcile


def reconcile(
    engine: Engine,
    request: LoadRequest,
    key_batches: Iterable[pa.RecordBatch],
    max_delete_percent: float = DEFAULT_MAX_DELETE_PERCENT,
) -> WriteResult:
    """Hard deletes by key: stage every primary key the source has, then delete the target rows whose key was
    not staged, in one transaction (one DELETE on engines without a transactional session).

    The keys are staged batch by batch like a load's rows (`Session.stage_batches`: bounded memory), so nothing is
    deleted before the last key arrived: a key stream that raises leaves the target as it was. The delete is
    counted first (an anti-join, `NOT EXISTS`) and refused with `ReconcileRefused` when it would remove more
    than `max_delete_percent` % of the target's rows (a source answering with no keys must not empty the table).
    `rows_read` = keys staged, `rows_deleted` = target rows deleted; the other counts stay 0."""
    caps = engine.CAPABILITIES
    target, keys = request.target, request.primary_key
    key_table = TargetTable(
        target.dataset, target.name, tuple(target.column(k) for k in keys), unique_key=keys
    )
    with engine.session() as s:
        if not s.exists(target):
            raise WarehouseError(
                f"{target.ref}: there is no table to reconcile; load the table first (a reconciliation runs after "
                "a replication run's load). Nothing was deleted."
            )
        staged = s.stage_batches(key_table, key_batches, "source")
        result = WriteResult(rows_read=staged.rows or 0)
        everything = q.all_rows(target)
        total = _count(s, True, q.count_where(target, everything), {})
        counting = q.count_unmatched(target, staged.source, keys, everything)
        gone = _count(s, True, counting, {})
        if gone * 100 > max_delete_percent * total:
            raise ReconcileRefused(target.ref, gone, total, result.rows_read, max_delete_percent)
        if gone:
            removed = s.execute(q.delete_unmatched(target, staged.source, keys, everything))
            result.rows_deleted = int(removed) if caps.dml_row_counts and removed is not None else gone
    return result


# ----------------------------------------------------------------------------------------------- statements


def _insert(
    s: Session, caps: Capabilities, target: TargetTable, source: exp.Expr, where: exp.Expr | None = None
) -> None:
    """Insert the staged rows (those `where` holds for), in cluster-key order where the engine wants it."""
    order = target.cluster if caps.cluster_by_insert_order else ()
    s.execute(q.insert_select(target, source, where, order))


def _delete(
    s: Session,
    caps: Capabilities,
    exists: bool,
    statement: exp.Delete,
    counting: exp.Select,
    params: Mapping[str, Any],
) -> int:
    """Run a DELETE; the rows it removed (from the engine, or counted just before)."""
    before = None if caps.dml_row_counts else _count(s, exists, counting, params)
    removed = s.execute(statement, params)
    return before if before is not None else int(removed or 0)


def _count(s: Session, exists: bool, query: exp.Select, params: Mapping[str, Any]) -> int:
    """The first value of a count query; 0 without running it when the target did not exist before the run."""
    if not exists:
        return 0
    rows = s.rows(query, params)
    return int(rows[0][0] or 0) if rows else 0
