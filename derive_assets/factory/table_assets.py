"""One asset per core/derived table spec: its SQL, run inside the warehouse over the run's window.

A run over several partitions (a single-run backfill) is one statement over their union, and records one
materialization per partition, each with that partition's own window and counts (see `run_events.py`).
"""
# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

import time
import warnings
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    MaterializeResult,
    asset,
)

from derive_assets import metadata_keys as K
from derive_assets.factory.checks import column_checks, failed_checks_message, run_checks
from derive_assets.factory.failures import warehouse_failure
from derive_assets.factory.metadata import column_lineage, column_schema, sql_block
from derive_assets.factory.run_events import RunScope, record_partitions, write_metadata
from derive_assets.factory.targets import table_target
from derive_assets.factory.windows import partitions_for
from derive_assets.specs.models import MergeStrategy
from derive_assets.specs.project import Table
from derive_assets.specs.sql_analysis import transpile
from derive_assets.specs.version import code_version
from resources.reads import TableSlice, WindowBound
from resources.schema import ColumnType
from resources.warehouse import WarehouseError, WriteRequest


def table_key(ref: str) -> AssetKey:
    return AssetKey(ref.split("."))


def build_table_asset(table: Table, warehouse_kind: str) -> AssetsDefinition:
    spec, analysis = table.spec, table.analysis
    key = table_key(spec.ref)
    partitions_def = partitions_for(spec.window)
    checks = column_checks(spec.columns)
    version = code_version(spec, analysis.expression)
    target = table_target(spec, code_version=version)
    delete_missing = isinstance(spec.strategy, MergeStrategy) and spec.strategy.delete_missing
    metadata = {
        "dagster/column_schema": column_schema(spec.columns),
        K.SPEC_FILE: str(table.path),
        K.STRATEGY: spec.strategy.type,
        K.SQL: sql_block(spec.sql.strip()),
        K.READS: analysis.reads,
    }
    if spec.partition:
        metadata[K.PARTITION_KEY] = spec.partition.key
        metadata[K.PARTITION_KEY_TYPE] = next(c.type for c in spec.columns if c.name == spec.partition.key)
    if spec.cluster:
        metadata[K.CLUSTER] = spec.cluster

    # backfill_policy is marked beta; it is what lets a backfill of many windows run as one statement.
    warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")

    @asset(
        key=key,
        deps=[table_key(ref) for ref in analysis.reads],
        group_name=spec.dataset,
        description=spec.description or None,
        owners=[spec.owner],
        kinds={"sql", warehouse_kind},
        tags={K.LAYER: spec.layer},
        metadata=metadata,
        code_version=version,
        partitions_def=partitions_def,
        # A backfill of many windows runs as one statement over their union, not one run per window.
        backfill_policy=BackfillPolicy.single_run() if partitions_def else None,
        check_specs=[c.spec(key) for c in checks],
        io_manager_key="warehouse_io_manager",
        required_resource_keys={"warehouse"},
    )
    def _build(context: AssetExecutionContext) -> MaterializeResult:
        warehouse = context.resources.warehouse
        scope = RunScope.of(context, partitions_def, table.path)
        window = scope.window
        sql = transpile(analysis.expression, warehouse.dialect)
        params = {
            name: value
            for name, value in (window.as_params() if window else {}).items()
            if name in analysis.parameters
        }
        estimate = warehouse.estimate_bytes(sql, params)  # a dry run where the engine has one, else None
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
        rows = TableSlice(spec.ref)  # checks cover the run's window of a partitioned table, else all of it
        if window and spec.partition:
            key_type: ColumnType = next(c.type for c in spec.columns if c.name == spec.partition.key)
            rows = TableSlice(spec.ref, window=WindowBound(spec.partition.key, key_type, window))
        check_results = run_checks(checks, warehouse, rows)
        if failed := failed_checks_message(table.path, spec.ref, check_results):
            # Dagster fails the step itself for a failed blocking check (downstream assets wait; `derive demo` and
            # `derive rebuild` tell it apart from other failures), and its error names only the checks: this
            # line, logged first, names the spec file, the offending values and what to do.
            context.log.error(failed)
        run_metadata: dict[str, Any] = {
            K.DURATION_SECONDS: round(duration, 3),
            K.RENDERED_SQL: sql_block(sql),
            K.UPSTREAM_TABLES: analysis.reads,
            "dagster/row_count": warehouse.row_count(spec.ref),
            "dagster/column_lineage": column_lineage(analysis.lineage),
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
