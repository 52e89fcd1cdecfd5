"""One asset per export spec: a warehouse table's changed rows, streamed to the online store and verified.

The verification (`export_verify.py`) is a blocking ERROR check: when it fails, the step fails, assets downstream
of the export in the same run do not materialize, and a cursor export records its *old* watermark, so the next run
exports (and verifies) the same rows again. An online store that gives up mid-export fails the run with how many
rows were written; nothing is recorded, so the watermark does not move either.
"""
# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

import time
import warnings
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from derive_assets.factory.export_verify import CHECK_NAME, verify
from derive_assets.factory.metadata import column_schema
from derive_assets.factory.targets import column_defs
from derive_assets.factory.windows import partitions_for
from derive_assets.replication import watermark
from derive_assets.specs.project import Export
from resources.online_store import OnlineStoreError, OnlineTable, OnlineWriteError
from resources.sql_text import quote, table_name, window_filter
from resources.warehouse import TimeWindow

BATCH_ROWS = 10_000


def export_key(export: Export) -> AssetKey:
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


def build_export_asset(export: Export, store_kind: str) -> AssetsDefinition:
    spec = export.spec
    key = export_key(export)
    table = online_table(export)
    partitions_def = partitions_for(export.window)
    cursor_type = next((c.type for c in export.columns if c.name == spec.cursor), None)
    warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")

    @asset(
        key=key,
        deps=[AssetKey(spec.table.split("."))],
        group_name="online",
        description=spec.description or f"{spec.table} for reads by key, in {table.ref}",
        owners=[spec.owner],
        kinds={store_kind},
        tags={"derive/layer": "online"},
        metadata={
            "dagster/column_schema": column_schema(list(export.columns)),
            "derive/spec_file": str(export.path),
            "derive/online_table": table.ref,
            "derive/primary_key": list(table.primary_key),
        },
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run() if partitions_def else None,
        check_specs=[
            AssetCheckSpec(
                CHECK_NAME,
                asset=key,
                blocking=True,
                description="The rows this run exported are all in the online store, with the warehouse's values "
                "(row count of the exported slice, and a sample of rows looked up by key, compared at the "
                "store's timestamp precision).",
            )
        ],
        required_resource_keys={"warehouse", "online_store"},
    )
    def _export(context: AssetExecutionContext) -> MaterializeResult:
        warehouse, store = context.resources.warehouse, context.resources.online_store
        try:
            store.ensure_table(table)
        except OnlineStoreError as exc:
            raise _failure(export, store, exc, 0, None) from None
        where: str | None = None
        params: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        if partitions_def is not None and export.partition_key:
            tw = context.partition_time_window
            window = TimeWindow(tw.start, tw.end)
            key_type = next(c.type for c in export.columns if c.name == export.partition_key)
            where = window_filter(export.partition_key, key_type, warehouse.types, warehouse.dialect)
            params = window.as_params()
            meta = {
                "derive/window_start": window.start.isoformat(),
                "derive/window_end": window.end.isoformat(),
            }
        elif spec.cursor and cursor_type:
            where, params, meta = _cursor_slice(context, key, warehouse, spec.table, spec.cursor, cursor_type)
            if where is None:
                return _nothing_changed(meta)

        started, write_started = time.perf_counter(), time.monotonic()
        batches = warehouse.iter_batches(spec.table, table.column_names, where, params, BATCH_ROWS)
        try:
            result = store.write(table, batches)
        except OnlineWriteError as exc:
            total = _count(warehouse, spec.table, where, params)
            raise _failure(export, store, exc, exc.rows_written, total) from None
        duration = time.perf_counter() - started
        expected = _count(warehouse, spec.table, where, params)
        try:
            check = verify(
                warehouse,
                store,
                table,
                spec.table,
                where,
                params,
                result.rows_written,
                expected,
                write_started,
            )
        except OnlineStoreError as exc:
            raise Failure(
                description=f"export {spec.name} wrote {result.rows_written:,} rows to {store.kind} but could not "
                f"read them back to verify them: {exc}. No materialization was recorded, so the next run exports "
                "and verifies the same rows again (upserts: harmless).",
                metadata={"derive/rows_written": result.rows_written},
            ) from None
        if not check.passed and watermark.WATERMARK_KEY in meta:
            # Keep the old watermark: the next run re-exports this slice and verifies it again.
            meta[watermark.WATERMARK_KEY] = meta["derive/watermark_before"]
            meta["derive/watermark_held"] = True
        return MaterializeResult(
            metadata={
                **meta,
                "derive/rows_written": result.rows_written,
                "derive/batches": result.batches,
                "derive/write_retries": result.retries,
                "derive/duration_seconds": round(duration, 3),
                "derive/rows_per_second": round(result.rows_written / duration) if duration > 0 else None,
                "derive/online_table": f"{store.kind}: {table.ref}",
            },
            check_results=[check],
        )

    return _export


def _cursor_slice(
    context: AssetExecutionContext, key: AssetKey, warehouse: Any, ref: str, cursor: str, cursor_type: Any
) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """Rows with `before < cursor <= after`: `after` is fixed first, so rows landing during the export wait."""
    event = context.instance.get_latest_materialization_event(key)
    stored = None
    if event and event.asset_materialization:
        value = event.asset_materialization.metadata.get(watermark.WATERMARK_KEY)
        stored = value.value if isinstance(value, MetadataValue) else value
    before = watermark.from_text(stored if isinstance(stored, str) else None, cursor_type)
    p = "$" if warehouse.dialect == "duckdb" else "@"
    col = quote(cursor, warehouse.dialect)
    lower = f"{col} > {p}after_watermark_before" if before is not None else "TRUE"
    params: dict[str, Any] = {"after_watermark_before": before} if before is not None else {}
    after = _max_value(warehouse, ref, cursor, lower, params)
    meta = {
        watermark.WATERMARK_KEY: watermark.to_text(after if after is not None else before),
        "derive/watermark_before": watermark.to_text(before),
    }
    if after is None:
        return None, {}, meta
    params["after_watermark_after"] = after
    return f"{lower} AND {col} <= {p}after_watermark_after", params, meta


def _max_value(warehouse: Any, ref: str, column: str, where: str, params: dict[str, Any]) -> Any:
    col = quote(column, warehouse.dialect)
    return warehouse.scalar(
        f"SELECT max({col}) FROM {table_name(ref, warehouse.dialect)} WHERE {where}", params
    )


def _nothing_changed(meta: dict[str, Any]) -> MaterializeResult:
    return MaterializeResult(
        metadata={**meta, "derive/rows_written": 0},
        check_results=[
            AssetCheckResult(
                check_name=CHECK_NAME,
                passed=True,
                metadata={"rows_exported": 0},
                description="nothing changed",
            )
        ],
    )


def _count(warehouse: Any, ref: str, where: str | None, params: dict[str, Any]) -> int:
    sql = f"SELECT count(*) FROM {table_name(ref, warehouse.dialect)}" + (f" WHERE {where}" if where else "")
    return warehouse.count_violations(sql, params)


def _failure(export: Export, store: Any, exc: OnlineStoreError, written: int, total: int | None) -> Failure:
    """The run fails with what happened, what is online, and why a rerun is safe."""
    of = f" of {total:,}" if total is not None else ""
    kept = (
        "the export's watermark did not move"
        if export.spec.cursor and not export.window
        else "nothing was recorded for this window"
    )
    rerun = (
        "rerun the export once the store is back: it writes the same rows again, which is harmless (upserts)"
        if getattr(exc, "transient", True)
        else "fix the cause above, then rerun: rows already written are simply overwritten (upserts)"
    )
    return Failure(
        description=f"export {export.spec.name} to {store.kind} stopped after {written:,}{of} rows were written "
        f"online: {exc}. No materialization was recorded, so {kept}; {rerun}.",
        metadata={"derive/rows_written": written, "derive/rows_in_slice": total},
    )
