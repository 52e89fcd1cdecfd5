"""One asset per source table: incremental replication into the warehouse, merged by primary key."""
# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    MaterializeResult,
    multi_asset,
)

from derive_assets.factory.checks import (
    failed_checks_message,
    run_checks,
    selected,
    warned_checks_message,
)
from derive_assets.factory.environment import Environment, check_run_env
from derive_assets.factory.failures import warehouse_failure
from derive_assets.factory.kubernetes_tags import k8s_op_tags
from derive_assets.factory.policies import step_retry_policy
from derive_assets.factory.pools import source_pool
from derive_assets.factory.quality_checks import asset_checks, check_run
from derive_assets.factory.run_events import full_refresh
from derive_assets.factory.targets import source_target
from derive_assets.replication import fence, watermark
from derive_assets.replication.watermark import CursorState
from derive_assets.specs.kubernetes import merge as merge_k8s
from derive_assets.specs.project import ReplicatedTable
from resources.reads import TableSlice
from resources.warehouse import LoadRequest, WarehouseError


def replication_key(rt: ReplicatedTable) -> AssetKey:
    """The default translator's key of a replicated table (`derive_assets/translator.py` decides keys)."""
    return AssetKey([rt.source.target_dataset, rt.table.name])


def build_replication_asset(
    rt: ReplicatedTable,
    asset_spec: AssetSpec,
    check_specs: Sequence[AssetCheckSpec],
    env: Environment | None = None,
) -> AssetsDefinition:
    """The asset `asset_spec` (from the translator), whose body replicates `rt`, then runs the column checks of
    `check_specs` (by name) in the same step: a run of N source tables is N steps, each one process. `env`:
    replicate into that environment's copy (`factory/environment.py`), with its own watermark (its asset key's)."""
    source, table = rt.source, rt.table
    dataset = env.dataset(source.target_dataset) if env is not None else source.target_dataset
    target = source_target(dataset, table, code_version=asset_spec.code_version)
    request = LoadRequest(
        target=target,
        primary_key=tuple(table.primary_key),
        cursor=table.cursor,
        soft_delete_column=table.soft_delete.column if table.soft_delete else None,
    )
    cursor_type = next(c.type for c in table.columns if c.name == table.cursor)
    checks = asset_checks(table.columns, table.checks, rt.path)

    @multi_asset(
        name=asset_spec.key.to_python_identifier(),
        # The load runs in the body below; the IO manager only loads this table into Python assets downstream.
        specs=[asset_spec.with_io_manager_key("warehouse_io_manager")],
        check_specs=check_specs,
        pool=source_pool(source.name),  # at most `max_concurrent_extractions` of the source's tables at once
        retry_policy=step_retry_policy(),
        # the step's pod under k8s_job_executor: the table's block over its source's (defaults merged in)
        op_tags=k8s_op_tags(merge_k8s(source.kubernetes, table.kubernetes)),
        required_resource_keys={"warehouse", "sources"},
    )
    def _replicate(context: AssetExecutionContext) -> MaterializeResult:
        # The extraction code (pyarrow, sqlglot, the drivers) is imported by the step that replicates, not by
        # every process that loads the definitions.
        from derive_assets.replication.extract import ExtractPlan
        from derive_assets.replication.run import replicate

        check_run_env(context.run.tags, env, rt.path)
        warehouse = context.resources.warehouse
        state = CursorState()
        existed = warehouse.table_exists(target.ref)
        # A `derive/full_refresh` run (`derive rebuild`) reads every row and replaces the table.
        rebuild = full_refresh(context.run.tags, rt.path)
        if existed and not rebuild:
            # A missing table means a first (or rebuilt) warehouse: copy everything, whatever the event log says.
            state = _stored_state(context, context.asset_key, cursor_type)
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
            chunked = None if existed and not rebuild else _snapshot(context, plan, request, url, rebuild)
            if chunked is None and not existed:  # a first load read in one pass
                plan = _fenced_before_read(plan, url, context.log)
            metadata = (
                chunked if chunked is not None else replicate(warehouse, plan, request, url, context.log)
            )
        except (
            WarehouseError
        ) as exc:  # the source's rows broke a load rule, or the spec no longer fits the table
            raise warehouse_failure(rt.path, exc) from None
        metadata = _reconciled(context, rt, request, url, metadata, first_load=not existed)
        # A failed blocking check fails this step after Dagster has recorded the materialization (and so the new
        # watermark: the rows are in the warehouse); assets downstream wait.
        checks_run = check_run(context, warehouse, TableSlice(target.ref), (), {})
        check_results = run_checks(selected(context, checks), warehouse, checks_run)
        if failed := failed_checks_message(rt.path, target.ref, check_results):
            context.log.error(failed)
        if warned := warned_checks_message(rt.path, target.ref, check_results):
            context.log.warning(warned)  # `severity: warn`: reported, never blocking
        return MaterializeResult(metadata=metadata, check_results=check_results)

    return _replicate


def _snapshot(
    context: AssetExecutionContext, plan: Any, request: LoadRequest, url: str, rebuild: bool
) -> dict[str, Any] | None:
    """A first load (or a rebuild) of a large table, chunked and resumable (`replication/snapshot.py`); None:
    the table is read in one pass."""
    from derive_assets.replication import snapshot

    return snapshot.load_if_large(context, context.resources.warehouse, plan, request, url, rebuild)


def _fenced_before_read(plan: Any, url: str, log: Any) -> Any:
    """A one-pass first load's plan with the fence taken before the read (`snapshot.fenced_before_read`)."""
    from derive_assets.replication import snapshot

    return snapshot.fenced_before_read(plan, url, log)


def _stored_state(context: AssetExecutionContext, key: AssetKey, cursor_type: Any) -> CursorState:
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    if materialization is None:
        return CursorState()
    return CursorState.from_metadata(materialization.metadata, cursor_type)


def _reconciled(
    context: AssetExecutionContext,
    rt: ReplicatedTable,
    request: LoadRequest,
    url: str,
    metadata: dict[str, Any],
    first_load: bool,
) -> dict[str, Any]:
    """The run's metadata after the table's key reconciliation (`reconcile:`), when one is declared and due: it
    runs after the load, so it never deletes a row the run just loaded (`replication/reconcile.py`)."""
    if rt.table.reconcile is None:
        return metadata
    from derive_assets.replication import reconcile

    event = context.instance.get_latest_materialization_event(context.asset_key)
    previous = event.asset_materialization.metadata if event and event.asset_materialization else None
    found = reconcile.reconcile_after_load(
        context.resources.warehouse, request, rt.source, rt.table, url, previous, first_load, context.log
    )
    return reconcile.merge_counts(metadata, found)
