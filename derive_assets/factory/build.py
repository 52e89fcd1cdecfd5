"""Turn a validated spec project into Dagster definitions: assets, checks, jobs, schedules, resources."""

from __future__ import annotations

import os
from typing import Any

from dagster import (
    AssetsDefinition,
    Definitions,
    EnvVar,
    ExecutorDefinition,
    in_process_executor,
    multiprocess_executor,
)

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
from derive_assets.replication.connections import SourceConnections
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import SpecProject, load_project
from resources.duckdb_warehouse import DuckDBWarehouse
from resources.io_manager import WarehouseIOManager
from resources.sqlite_online_store import SQLiteOnlineStore


def build_warehouse(settings: DeriveSettings) -> Any:
    """The warehouse resource the settings choose; specs never change between warehouses."""
    if settings.warehouse == "bigquery":
        from resources.bigquery_warehouse import BigQueryWarehouse

        return BigQueryWarehouse(
            project=settings.bigquery_project,
            location=settings.bigquery_location,
            api_endpoint=settings.bigquery_endpoint,
            timeout_seconds=settings.bigquery_timeout_seconds,
            retry_deadline_seconds=settings.bigquery_retry_deadline_seconds,
        )
    return DuckDBWarehouse(path=str(settings.duckdb_path))


def build_online_store(settings: DeriveSettings) -> Any:
    """The online store the settings choose. Cassandra is configured by `DERIVE_CASSANDRA_HOSTS` (comma-separated),
    `_PORT`, `_LOCAL_DC`, `_USERNAME`, `_PASSWORD` (an EnvVar: never shown in the UI) and `_SSL_CA`; outage
    handling by `_CONNECT_TIMEOUT`, `_REQUEST_TIMEOUT` (seconds), `_WRITE_RETRIES` and `_RETRY_BACKOFF` (seconds)."""
    if settings.online_store == "cassandra":
        from resources.cassandra_online_store import CassandraOnlineStore

        env = os.environ
        tuning = {
            field: _env_number(name, kind)
            for field, name, kind in CASSANDRA_TUNING
            if env.get(name, "").strip()
        }
        return CassandraOnlineStore(
            contact_points=[
                h.strip() for h in env.get("DERIVE_CASSANDRA_HOSTS", "127.0.0.1").split(",") if h.strip()
            ],
            port=_env_number("DERIVE_CASSANDRA_PORT", int, 9042),
            local_datacenter=env.get("DERIVE_CASSANDRA_LOCAL_DC"),
            username=env.get("DERIVE_CASSANDRA_USERNAME"),
            # An EnvVar: Dagster resolves it at run time and shows only its name in the UI.
            password=EnvVar("DERIVE_CASSANDRA_PASSWORD") if env.get("DERIVE_CASSANDRA_PASSWORD") else None,
            ssl_ca_file=env.get("DERIVE_CASSANDRA_SSL_CA"),
            **tuning,
        )
    return SQLiteOnlineStore(path=str(settings.sqlite_online_path))


CASSANDRA_TUNING: list[tuple[str, str, type[int] | type[float]]] = [
    ("connect_timeout_seconds", "DERIVE_CASSANDRA_CONNECT_TIMEOUT", float),
    ("request_timeout_seconds", "DERIVE_CASSANDRA_REQUEST_TIMEOUT", float),
    ("write_retries", "DERIVE_CASSANDRA_WRITE_RETRIES", int),
    ("retry_backoff_seconds", "DERIVE_CASSANDRA_RETRY_BACKOFF", float),
]
"""(store field, environment variable, type) of the Cassandra outage settings; unset means the store's default."""


def _env_number(name: str, kind: type[int] | type[float], default: float | None = None) -> Any:
    text = os.environ.get(name, "").strip()
    if not text and default is not None:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(
            f"{name}={text!r} is not {'an integer' if kind is int else 'a number'}; set a value of at least 0, "
            "or unset it for the default"
        ) from None
    if value < 0:
        raise ValueError(
            f"{name}={text!r} is negative; set a value of at least 0, or unset it for the default"
        )
    return value


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

    Example:
        ```python
        defs = build_definitions(DeriveSettings.from_env())
        ```
    """
    project = project or load_project(settings.specs_dir)
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

    for export in project.exports:
        assets.append(build_export_asset(export, settings.online_store))
        partitions_def = partitions_for(export.window)
        job = job_for(export_job_name(export.spec.name), [export_key(export)], partitions_def)
        jobs.append(job)
        if export.spec.schedule:
            schedules.append(schedule_for(job, export.spec.schedule, partitions_def))

    return Definitions(
        executor=build_executor(settings),
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        resources=build_resources(settings),
    )
