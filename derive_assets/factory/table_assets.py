"""One asset per core/derived table spec: its SQL, run inside the warehouse over the run's window.

A run over several partitions (a single-run backfill) is one statement over their union, and records one
materialization per partition, each with that partition's own window and counts (see `run_events.py`).
"""
# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

import time
from collections.abc import Sequence
from dataclasses import replace
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

from derive_assets import metadata_keys as K
from derive_assets.factory.checks import (
    failed_checks_message,
    run_checks,
    selected,
    warned_checks_message,
)
from derive_assets.factory.environment import Environment, check_run_env, rewrite_tables
from derive_assets.factory.failures import warehouse_failure
from derive_assets.factory.kubernetes_tags import k8s_op_tags
from derive_assets.factory.metadata import column_lineage, sql_block
from derive_assets.factory.policies import backfill_policy, step_retry_policy
from derive_assets.factory.pools import table_pool
from derive_assets.factory.quality_checks import asset_checks, check_run, window_rows
from derive_assets.factory.run_events import RunScope, record_partitions, write_metadata
from derive_assets.factory.targets import table_target
from derive_assets.specs.models import MergeStrategy
from derive_assets.specs.project import Table
from derive_assets.specs.sql_analysis import transpile
from resources.warehouse import EstimateUnavailable, WarehouseError, WriteRequest

IO_MANAGER_KEY = "warehouse_io_manager"
"""The body writes the table itself; the IO manager only loads it into Python assets downstream."""


def table_key(ref: str) -> AssetKey:
    """The default translator's key of a table (`derive_assets/translator.py` decides keys)."""
    return AssetKey(ref.split("."))


def build_table_asset(
    table: Table,
    asset_spec: AssetSpec,
    check_specs: Sequence[AssetCheckSpec],
    env: Environment | None = None,
) -> AssetsDefinition:
    """The asset `asset_spec` (from the translator), whose body runs `table`'s SQL, then the column checks of
    `check_specs` (by name) in the same step. `env`: build into that environment's copy of the table
    (`factory/environment.py`), reading each upstream as `Environment.relations` chooses when the run starts."""
    spec, analysis = table.spec, table.analysis
    partitions_def = asset_spec.partitions_def
    checks = asset_checks(spec.columns, spec.checks, table.path)
    target = table_target(spec, code_version=asset_spec.code_version)
    if env is not None:
        target = replace(target, dataset=env.dataset(spec.dataset))
    ref = target.ref
    delete_missing = isinstance(spec.strategy, MergeStrategy) and spec.strategy.delete_missing

    @multi_asset(
        name=asset_spec.key.to_python_identifier(),
        specs=[asset_spec.with_io_manager_key(IO_MANAGER_KEY)],
        check_specs=check_specs,
        # A backfill of many windows runs as one statement over their union (or in chunks: `spec.backfill`).
        backfill_policy=backfill_policy(spec, partitions_def),
        pool=table_pool(ref),  # who may write the table at once (`factory/pools.py`)
        retry_policy=step_retry_policy(),
        op_tags=k8s_op_tags(spec.kubernetes),  # the step's pod under k8s_job_executor (defaults merged in)
        required_resource_keys={"warehouse"},
    )
    def _build(context: AssetExecutionContext) -> MaterializeResult:
        warehouse = context.resources.warehouse
        check_run_env(context.run.tags, env, table.path)
        scope = RunScope.of(context, partitions_def, table.path)
        window = scope.window
        try:
            relations = env.relations(warehouse, spec.ref, analysis.reads) if env is not None else {}
        except WarehouseError as exc:  # an environment's changed upstream is not built yet: says how
            raise warehouse_failure(table.path, exc) from None
        sql = transpile(rewrite_tables(analysis.expression, relations), warehouse.dialect)
        params = {
            name: value
            for name, value in (window.as_params() if window else {}).items()
            if name in analysis.parameters
        }
        try:
            estimate = warehouse.estimate_bytes(sql, params)  # a dry run where the engine has one, else None
        except (
            EstimateUnavailable
        ) as exc:  # advisory: the write's own dry run or the query says what is wrong
            context.log.warning(
                f"{table.path}: no estimate of bytes processed: {str(exc).splitlines()[0][:300]}"
            )
            estimate = None
        request = WriteRequest(
            target,
            sql,
            params,
            spec.strategy.type,
            target.unique_key,
            window,
            rebuild=scope.rebuild,
            delete_missing=delete_missing,
            partitions=scope.windows,
        )
        started = time.perf_counter()
        try:
            result = warehouse.write(request)
        except WarehouseError as exc:  # the data or the spec broke a rule: the message names it and the fix
            raise warehouse_failure(table.path, exc) from None
        duration = time.perf_counter() - started
        # checks cover the run's window of a partitioned table, else all of it
        rows = window_rows(ref, spec.columns, spec.partition.key if spec.partition else None, window)
        checks_run = check_run(
            context, warehouse, rows, scope.windows, window.as_params() if window else {}, relations
        )
        check_results = run_checks(selected(context, checks), warehouse, checks_run)
        if failed := failed_checks_message(table.path, ref, check_results):
            # Dagster fails the step itself for a failed blocking check (downstream assets wait; `derive demo` and
            # `derive rebuild` tell it apart from other failures), and its error names only the checks: this
            # line, logged first, names the spec file, the offending values and what to do.
            context.log.error(failed)
        if warned := warned_checks_message(table.path, ref, check_results):
            context.log.warning(warned)  # `severity: warn`: reported, never blocking
        run_metadata: dict[str, Any] = {
            K.DURATION_SECONDS: round(duration, 3),
            K.RENDERED_SQL: sql_block(sql),
            K.UPSTREAM_TABLES: [relations.get(r, r) for r in analysis.reads],
            K.ROW_COUNT: warehouse.row_count(ref),
            K.COLUMN_LINEAGE: column_lineage(analysis.lineage),
            **({K.ESTIMATED_BYTES: estimate} if estimate is not None else {}),
            **write_metadata(result),
        }
        if scope.keys:
            record_partitions(context, scope, result, run_metadata)
            return MaterializeResult(check_results=check_results)
        return MaterializeResult(
            metadata={
                K.WINDOW_START: window.start.isoformat() if window else None,
                K.WINDOW_END: window.end.isoformat() if window else None,
                **K.row_counts(result),
                **run_metadata,
            },
            check_results=check_results,
        )

    return _build
