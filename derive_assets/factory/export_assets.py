"""One asset per export spec: a warehouse table's changed rows, streamed to the online store and verified."""
# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

import datetime as dt
import time
import warnings
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    MaterializeResult,
    MetadataValue,
    asset,
)

from derive_assets.factory.metadata import column_schema
from derive_assets.factory.windows import partitions_for
from derive_assets.replication import watermark
from derive_assets.specs.project import Export
from resources.online_store import OnlineTable
from resources.sql_text import quote, table_name, window_filter
from resources.warehouse import TimeWindow

BATCH_ROWS = 10_000
SAMPLE_KEYS = 100
CHECK_NAME = "online_matches_warehouse"


def export_key(export: Export) -> AssetKey:
    return AssetKey(["online", export.spec.name])


def online_table(export: Export) -> OnlineTable:
    spec = export.spec
    return OnlineTable(
        keyspace=spec.keyspace,
        name=spec.target_table,
        partition_key=tuple(spec.partition_key),
        clustering=tuple(spec.clustering),
        columns=tuple(export.columns),
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
                description="The rows this run exported are all in the online store, with the warehouse's values "
                "(row count of the exported slice, and a sample of rows looked up by key).",
            )
        ],
        required_resource_keys={"warehouse", "online_store"},
    )
    def _export(context: AssetExecutionContext) -> MaterializeResult:
        warehouse, store = context.resources.warehouse, context.resources.online_store
        store.ensure_table(table)
        where, params, meta = None, {}, {}
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

        started = time.perf_counter()
        batches = warehouse.iter_batches(spec.table, table.column_names, where, params, BATCH_ROWS)
        result = store.write(table, batches)
        duration = time.perf_counter() - started
        check = _verify(warehouse, store, table, spec.table, where, params, result.rows_written)
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


def _verify(
    warehouse: Any,
    store: Any,
    table: OnlineTable,
    ref: str,
    where: str | None,
    params: dict[str, Any],
    written: int,
) -> AssetCheckResult:
    """Row count of the exported slice equals rows written, and sampled rows read back equal the warehouse."""
    sql = f"SELECT count(*) FROM {table_name(ref, warehouse.dialect)}" + (f" WHERE {where}" if where else "")
    expected = warehouse.count_violations(sql, params)
    sample = next(iter(warehouse.iter_batches(ref, table.column_names, where, params, SAMPLE_KEYS)), None)
    rows = sample.to_pylist() if sample is not None else []
    missing, different = 0, 0
    for row in rows:
        found = store.lookup(table, [row[k] for k in table.primary_key])
        if not found:
            missing += 1
        elif _normalized(found[0]) != _normalized(row):
            different += 1
    passed = written == expected and missing == 0 and different == 0
    return AssetCheckResult(
        check_name=CHECK_NAME,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "warehouse_rows": expected,
            "rows_written": written,
            "sampled_keys": len(rows),
            "missing_online": missing,
            "different_online": different,
        },
        description=None
        if passed
        else f"warehouse has {expected} rows, {written} written; of {len(rows)} sampled keys {missing} missing "
        f"and {different} different online",
    )


def _normalized(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in row.items():
        if isinstance(value, dt.datetime):
            value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        out[name] = value
    return out
