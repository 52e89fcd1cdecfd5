"""One asset per source table: incremental replication into the warehouse, merged by primary key."""
# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

from typing import Any

from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    asset,
    multi_asset_check,
)

from derive_assets.factory.checks import column_checks, run_checks
from derive_assets.factory.failures import warehouse_failure
from derive_assets.factory.metadata import column_schema
from derive_assets.factory.targets import source_target
from derive_assets.replication import fence, watermark
from derive_assets.replication.extract import ExtractPlan
from derive_assets.replication.run import replicate
from derive_assets.replication.watermark import CursorState
from derive_assets.specs.project import ReplicatedTable
from derive_assets.specs.version import source_code_version
from resources.reads import TableSlice
from resources.warehouse import LoadRequest, WarehouseError


def replication_key(rt: ReplicatedTable) -> AssetKey:
    return AssetKey([rt.source.target_dataset, rt.table.name])


def build_replication_asset(rt: ReplicatedTable, warehouse_kind: str) -> AssetsDefinition:
    source, table = rt.source, rt.table
    key = replication_key(rt)
    version = source_code_version(source, table)
    target = source_target(source.target_dataset, table, code_version=version)
    request = LoadRequest(
        target=target,
        primary_key=tuple(table.primary_key),
        cursor=table.cursor,
        soft_delete_column=table.soft_delete.column if table.soft_delete else None,
    )
    cursor_type = next(c.type for c in table.columns if c.name == table.cursor)

    @asset(
        key=key,
        group_name=source.target_dataset,
        description=table.description
        or f"{source.name}.{table.name}, replicated incrementally by {table.cursor}",
        owners=[source.owner],
        kinds={source.type, warehouse_kind},
        tags={"derive/layer": "source"},
        metadata={
            "dagster/column_schema": column_schema(table.columns),
            "derive/spec_file": str(rt.path),
            "derive/primary_key": table.primary_key,
            "derive/cursor": table.cursor,
        },
        code_version=version,
        # The load runs in the body below; the IO manager only loads this table into Python assets downstream.
        io_manager_key="warehouse_io_manager",
        required_resource_keys={"warehouse", "sources"},
    )
    def _replicate(context: AssetExecutionContext) -> MaterializeResult:
        warehouse = context.resources.warehouse
        state = CursorState()
        if warehouse.table_exists(target.ref):
            # A missing table means a first (or rebuilt) warehouse: copy everything, whatever the event log says.
            state = _stored_state(context, key, cursor_type)
        url = context.resources.sources.checked_url(source)  # fails fast: wrong password, dead server
        cleared = fence.cleared(url, source, table, state.fence)
        since = watermark.with_overlap(state.floor, table.effective_overlap)
        if state.pending_floor is not None and state.pending_floor != state.floor:
            context.log.info(
                f"{target.ref}: reading again from {watermark.to_text(state.floor)}: transactions open after an "
                f"earlier read {'have ended' if cleared else 'may still commit rows'} (see wait_for_open_transactions)"
            )
        context.log.info(
            f"{target.ref}: reading {'all rows' if since is None else f'rows with {table.cursor} > {since}'}"
        )
        plan = ExtractPlan(source, table, since, state, cleared)
        try:
            return MaterializeResult(metadata=replicate(warehouse, plan, request, url, context.log))
        except (
            WarehouseError
        ) as exc:  # the source's rows broke a load rule, or the spec no longer fits the table
            raise warehouse_failure(rt.path, exc) from None

    return _replicate


def _stored_state(context: AssetExecutionContext, key: AssetKey, cursor_type: Any) -> CursorState:
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    if materialization is None:
        return CursorState()
    return CursorState.from_metadata(materialization.metadata, cursor_type)


def build_replication_checks(rt: ReplicatedTable) -> AssetChecksDefinition | None:
    checks = column_checks(rt.table.columns)
    if not checks:
        return None
    key = replication_key(rt)
    ref = f"{rt.source.target_dataset}.{rt.table.name}"

    @multi_asset_check(
        specs=[c.spec(key) for c in checks],
        name=f"{rt.source.target_dataset}__{rt.table.name}__checks",
        required_resource_keys={"warehouse"},
    )
    def _checks(context) -> Any:
        results: list[AssetCheckResult] = run_checks(checks, context.resources.warehouse, TableSlice(ref))
        yield from results

    return _checks
