"""Turn a validated spec project into Dagster definitions: assets, checks, jobs, schedules, resources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import (
    AssetsDefinition,
    Definitions,
    ExecutorDefinition,
    in_process_executor,
    multiprocess_executor,
)

from derive_assets.factory.error_assets import broken_specs, error_asset, warn
from derive_assets.factory.export_assets import build_export_asset, export_key
from derive_assets.factory.replication_assets import (
    build_replication_asset,
    build_replication_checks,
    replication_key,
)
from derive_assets.factory.schedules import (
    export_job_name,
    job_for,
    schedule_for,
    source_job_name,
    table_job_name,
)
from derive_assets.factory.table_assets import build_table_asset, table_key
from derive_assets.factory.windows import partitions_for
from derive_assets.python_tables import PYTHON_TABLES, python_tables
from derive_assets.replication.connections import SourceConnections
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import LeftOut, SpecProject, load_project
from resources.io_manager import WarehouseIOManager
from resources.online_store import OnlineStore
from resources.warehouse import Warehouse


def build_warehouse(settings: DeriveSettings) -> Warehouse:
    """The warehouse resource the settings choose (by the registry in `resources/backends.py`); specs never change
    between warehouses."""
    return settings.warehouse_config().build()


def build_online_store(settings: DeriveSettings) -> OnlineStore:
    """The online store the settings choose; Cassandra's `DERIVE_CASSANDRA_*` variables are read now (see
    `derive_assets/settings.py`), its password as an `EnvVar`, which the UI shows by name only."""
    return settings.online_store_config().build()


def build_executor(settings: DeriveSettings) -> ExecutorDefinition:
    """Production: every asset's step in its own Kubernetes pod; the warehouse does the heavy SQL."""
    if settings.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return in_process_executor if settings.executor == "in_process" else multiprocess_executor


def build_resources(settings: DeriveSettings) -> dict[str, Any]:
    warehouse = build_warehouse(settings)
    return {
        "warehouse": warehouse,
        "online_store": build_online_store(settings),
        "warehouse_io_manager": WarehouseIOManager(warehouse=warehouse),
        "sources": SourceConnections(embedded_dir=str(settings.embedded_sources_dir)),
    }


def build_definitions(settings: DeriveSettings, project: SpecProject | None = None) -> Definitions:
    """Build everything from the specs directory named by `settings`.

    Unless `settings.strict_specs`, the specs load leniently: an invalid spec (and what reads or exports it) is left
    out, becomes a placeholder asset in the `derive_errors` group, and is logged as a warning (see
    `derive_assets/factory/error_assets.py`); the valid specs load and run as usual.

    Example:
        ```python
        defs = build_definitions(DeriveSettings.from_env())
        ```
    """
    project = project or load_project(settings.specs_dir, strict=settings.strict_specs)
    kind = settings.warehouse
    assets: list[AssetsDefinition] = []
    checks = []
    jobs, schedules = [], []

    for source in project.sources():
        tables = [rt for rt in project.replicated if rt.source.name == source.name]
        for rt in tables:
            assets.append(build_replication_asset(rt, kind))
            if (check := build_replication_checks(rt)) is not None:
                checks.append(check)
        job = job_for(source_job_name(source.name), [replication_key(rt) for rt in tables])
        jobs.append(job)
        if source.schedule:
            schedules.append(schedule_for(job, source.schedule, None))

    for table in project.tables:
        spec = table.spec
        assets.append(build_table_asset(table, kind))
        partitions_def = partitions_for(spec.window)
        job = job_for(table_job_name(spec.ref), [table_key(spec.ref)], partitions_def)
        jobs.append(job)
        if spec.schedule:
            schedules.append(schedule_for(job, spec.schedule, partitions_def))

    for python_table in python_tables(project):
        assets.append(python_table.asset)
        jobs.append(python_table.job)
        if python_table.schedule is not None:
            schedules.append(python_table.schedule)

    for export in project.exports:
        assets.append(build_export_asset(export, settings.online_store))
        partitions_def = partitions_for(export.window)
        job = job_for(export_job_name(export.spec.name), [export_key(export)], partitions_def)
        jobs.append(job)
        if export.spec.schedule:
            schedules.append(schedule_for(job, export.spec.schedule, partitions_def))

    broken = broken_specs(project, _python_tables_left_out(project))
    warn(broken)
    assets += [error_asset(b) for b in broken]

    return Definitions(
        executor=build_executor(settings),
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        resources=build_resources(settings),
    )


def _python_tables_left_out(project: SpecProject) -> list[LeftOut]:
    """The Python tables missing because a table they read is left out (each with the file that caused it)."""
    cause = {lo.name: lo.cause for lo in project.left_out}
    out = []
    for table in PYTHON_TABLES:
        missing = [ref for ref in table.inputs if ref in cause]
        if missing:
            name = f"{table.spec.dataset}.{table.spec.name} (Python table)"
            out.append(LeftOut(name, Path("derive_assets/python_tables"), cause[missing[0]]))
    return out
