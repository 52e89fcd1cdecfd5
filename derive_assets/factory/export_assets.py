"""One asset per export spec: a warehouse table's changed rows, streamed to the online store and verified.

The verification (`export_verify.py`) is a blocking ERROR check: when it fails, the step fails, assets downstream
of the export in the same run do not materialize, and a cursor export records its *old* watermark, so the next run
exports (and verifies) the same rows again. An online store that gives up mid-export fails the run with how many
rows were written; nothing is recorded, so the watermark does not move either.
"""
# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from derive_assets import metadata_keys as K
from derive_assets.factory.export_deletes import (
    KEYS_DATASET,
    KeyRecorder,
    KeySet,
    drop_scratch,
    find_gone,
    mark_deleted,
    record_written,
)
from derive_assets.factory.export_verify import CHECK_NAME, merge_checks, verify, verify_deleted
from derive_assets.factory.failures import run_failure
from derive_assets.factory.kubernetes_tags import k8s_op_tags
from derive_assets.factory.policies import backfill_policy, step_retry_policy
from derive_assets.factory.pools import table_pool
from derive_assets.factory.targets import column_defs
from derive_assets.progress import Progress
from derive_assets.replication import watermark
from derive_assets.specs.models import TableSpec
from derive_assets.specs.project import Export
from resources.online_store import OnlineStoreError, OnlineTable, OnlineWriteError
from resources.reads import CursorRange, TableSlice, WindowBound
from resources.schema import ColumnType
from resources.warehouse import TimeWindow, Warehouse

BATCH_ROWS = 10_000


def export_key(export: Export) -> AssetKey:
    """The default translator's key of an export (`derive_assets/translator.py` decides keys)."""
    return AssetKey(["online", export.spec.name])


def online_table(export: Export) -> OnlineTable:
    spec = export.spec
    return OnlineTable(
        keyspace=spec.keyspace,
        name=spec.target_table,
        partition_key=tuple(spec.partition_key),
        clustering=tuple(spec.clustering),
        columns=column_defs(export.columns),
        ttl_seconds=spec.ttl_seconds,
        consistency=spec.consistency,
    )


def verification_check_spec(key: AssetKey) -> AssetCheckSpec:
    """The export's blocking check on `key`: what it wrote is online, with the warehouse's values."""
    return AssetCheckSpec(
        CHECK_NAME,
        asset=key,
        blocking=True,
        description="The rows this run exported are all in the online store, with the warehouse's values "
        "(row count of the exported slice, and a sample of rows looked up by key, compared at the "
        "store's timestamp precision).",
    )


def build_export_asset(
    export: Export,
    asset_spec: AssetSpec,
    check_specs: Sequence[AssetCheckSpec],
    table_spec: TableSpec | None = None,
) -> AssetsDefinition:
    """The asset `asset_spec` (from the translator), whose body exports and verifies `export` in one step.
    `table_spec`: the exported table's spec, whose `backfill` the export's windows follow (None: one run)."""
    spec = export.spec
    table = online_table(export)
    partitions_def = asset_spec.partitions_def
    cursor_type = next((c.type for c in export.columns if c.name == spec.cursor), None)
    verified = any(c.name == CHECK_NAME for c in check_specs)  # a translator may leave the check out

    @multi_asset(
        name=asset_spec.key.to_python_identifier(),
        specs=[asset_spec],
        check_specs=check_specs,
        backfill_policy=backfill_policy(table_spec, partitions_def),
        pool=table_pool(f"online.{spec.name}"),  # its limit follows the exported table's (`factory/pools.py`)
        retry_policy=step_retry_policy(),
        op_tags=k8s_op_tags(spec.kubernetes),  # the step's pod under k8s_job_executor (defaults merged in)
        required_resource_keys={"warehouse", "online_store"},
    )
    def _export(context: AssetExecutionContext) -> MaterializeResult:
        warehouse, store = context.resources.warehouse, context.resources.online_store
        try:
            store.ensure_table(table)
        except OnlineStoreError as exc:
            raise _failure(export, store, exc, 0, None) from None
        columns = tuple(table.column_names)
        rows = TableSlice(spec.table, columns)  # the whole table, unless a window or cursor narrows it
        meta: dict[str, Any] = {}
        keys = key_set(export, table)
        if partitions_def is not None and export.partition_key:
            tw = context.partition_time_window
            window = TimeWindow(tw.start, tw.end)
            key_type: ColumnType = next(c.type for c in export.columns if c.name == export.partition_key)
            rows = TableSlice(spec.table, columns, window=WindowBound(export.partition_key, key_type, window))
            meta = {K.WINDOW_START: window.start.isoformat(), K.WINDOW_END: window.end.isoformat()}
            keys = key_set(export, table, window)
        elif spec.cursor and cursor_type:
            keys = dataclasses.replace(keys, cursor=True)
            changed, meta = _cursor_slice(
                context, context.asset_key, warehouse, rows, spec.cursor, cursor_type
            )
            if changed is None:
                # nothing to write, but rows may have left the table: their keys still leave the store
                record_written(warehouse, keys, None)
                deleted, check = _delete_gone(export, warehouse, store, table, keys, None)
                return _nothing_changed({**meta, K.ROWS_DELETED: deleted}, verified, check)
            rows = changed

        started, write_started = time.perf_counter(), time.monotonic()
        progress = Progress(context.log.info, f"export {spec.name}", total=warehouse.count_slice(rows))
        recorder = KeyRecorder(keys.names)
        try:
            batches = progress.batches(recorder.tee(warehouse.iter_slice(rows, BATCH_ROWS)))
            try:
                result = store.write(table, batches)
            except OnlineWriteError as exc:
                record_written(warehouse, keys, recorder)  # what reached the store may be online: remember it
                total = warehouse.count_slice(rows)
                raise _failure(export, store, exc, exc.rows_written, total) from None
            progress.done()
            record_written(warehouse, keys, recorder)
        finally:
            recorder.close()
        duration = time.perf_counter() - started
        expected = warehouse.count_slice(rows)
        try:
            deleted, deleted_check = _delete_gone(export, warehouse, store, table, keys, result.rows_written)
            check = verify(warehouse, store, table, rows, result.rows_written, expected, write_started)
            check = merge_checks(check, deleted_check)
        except OnlineStoreError as exc:
            raise run_failure(
                export.path,
                f"export {spec.name} wrote {result.rows_written:,} rows to {store.kind} but could not read them "
                f"back to verify them: {exc}. No materialization was recorded, so the next run exports and "
                "verifies the same rows again (upserts: harmless).",
                {K.ROWS_WRITTEN: result.rows_written},
            ) from None
        if not check.passed and K.WATERMARK in meta:
            # Keep the old watermark: the next run re-exports this slice and verifies it again.
            meta[K.WATERMARK] = meta[K.WATERMARK_BEFORE]
            meta[K.WATERMARK_HELD] = True
        return MaterializeResult(
            metadata={
                **meta,
                K.ROWS_WRITTEN: result.rows_written,
                K.ROWS_DELETED: deleted,
                K.BATCHES: result.batches,
                K.WRITE_RETRIES: result.retries,
                K.DURATION_SECONDS: round(duration, 3),
                K.ROWS_PER_SECOND: round(result.rows_written / duration) if duration > 0 else None,
                K.ONLINE_TABLE: f"{store.kind}: {table.ref}",
            },
            check_results=[check] if verified else [],
        )

    return _export


def _cursor_slice(
    context: AssetExecutionContext,
    key: AssetKey,
    warehouse: Warehouse,
    rows: TableSlice,
    cursor: str,
    cursor_type: Any,
) -> tuple[TableSlice | None, dict[str, Any]]:
    """`rows` narrowed to `before < cursor <= after`, and the watermark metadata; None when nothing changed.

    `after` (the largest cursor value past the stored watermark `before`) is fixed first, so rows landing during
    the export wait for the next run.
    """
    event = context.instance.get_latest_materialization_event(key)
    stored = None
    if event and event.asset_materialization:
        value = event.asset_materialization.metadata.get(K.WATERMARK)
        stored = value.value if isinstance(value, MetadataValue) else value
    before = watermark.from_text(stored if isinstance(stored, str) else None, cursor_type)
    after = warehouse.max_in_slice(
        dataclasses.replace(rows, cursor=CursorRange(cursor, after=before)), cursor
    )
    meta = {
        K.WATERMARK: watermark.to_text(after if after is not None else before),
        K.WATERMARK_BEFORE: watermark.to_text(before),
    }
    if after is None:
        return None, meta
    return dataclasses.replace(rows, cursor=CursorRange(cursor, after=before, upto=after)), meta


def _nothing_changed(
    meta: dict[str, Any], verified: bool, deleted: AssetCheckResult | None
) -> MaterializeResult:
    passed = AssetCheckResult(
        check_name=CHECK_NAME, passed=True, metadata={"rows_exported": 0}, description="nothing changed"
    )
    check = merge_checks(passed, deleted)
    return MaterializeResult(metadata={**meta, K.ROWS_WRITTEN: 0}, check_results=[check] if verified else [])


def key_set(export: Export, table: OnlineTable, window: TimeWindow | None = None) -> KeySet:
    """Where `export` keeps the keys it put online (`export_deletes.py`), for a run over `window` (None: the
    whole table)."""
    window_column = next((c for c in table.columns if c.name == export.partition_key), None)
    return KeySet(
        export=export.spec.name,
        table_ref=export.spec.table,
        key_columns=tuple(c for k in table.primary_key for c in table.columns if c.name == k),
        window_column=window_column if window is not None else None,
        window=window,
    )


def _delete_gone(
    export: Export, warehouse: Warehouse, store: Any, table: OnlineTable, keys: KeySet, written: int | None
) -> tuple[int, AssetCheckResult | None]:
    """Delete online the keys that left the table (`export_deletes.py`); how many, and the check that they are
    gone (None when none left). Marks them deleted only once they all were and the check found none online."""
    gone = find_gone(warehouse, keys)
    if gone is None:
        return 0, None
    try:
        deleted = store.delete(table, warehouse.iter_slice(gone, BATCH_ROWS))
        check = verify_deleted(warehouse, store, table, gone)
    except OnlineStoreError as exc:  # a delete given up part-way, or the store unreachable for the lookups
        total = warehouse.count_slice(gone)
        drop_scratch(warehouse, gone.ref)
        done = getattr(exc, "rows_written", 0)
        wrote = f"wrote {written:,} rows to {store.kind}, then " if written is not None else ""
        raise run_failure(
            export.path,
            f"export {export.spec.name} {wrote}stopped deleting the rows that left {export.spec.table} after "
            f"{done:,} of {total:,} keys: {exc}. The keys not yet removed stay "
            f"recorded in the warehouse ({KEYS_DATASET}), so the next run of the export deletes them again; no "
            "materialization was recorded.",
            {K.ROWS_WRITTEN: written or 0, K.ROWS_DELETED: done},
            allow_retries=None if getattr(exc, "transient", True) else False,
        ) from None
    if check.passed:
        mark_deleted(warehouse, keys, gone)
    else:  # not marked: the next run finds the same keys and deletes them again
        drop_scratch(warehouse, gone.ref)
    return deleted, check


def _failure(export: Export, store: Any, exc: OnlineStoreError, written: int, total: int | None) -> Failure:
    """The run fails with the spec file, what happened, what is online, and why a rerun is safe."""
    of = f" of {total:,}" if total is not None else ""
    kept = (
        "the export's watermark did not move"
        if export.spec.cursor and not export.window
        else "nothing was recorded for this window"
    )
    transient = getattr(exc, "transient", True)
    rerun = (
        "rerun the export once the store is back: it writes the same rows again, which is harmless (upserts)"
        if transient
        else "fix the cause above, then rerun: rows already written are simply overwritten (upserts)"
    )
    return run_failure(
        export.path,
        f"export {export.spec.name} to {store.kind} stopped after {written:,}{of} rows were written online: "
        f"{exc}. No materialization was recorded, so {kept}; {rerun}.",
        {K.ROWS_WRITTEN: written, K.ROWS_IN_SLICE: total},
        allow_retries=None if transient else False,  # a refused row is refused again: no step retry
    )
