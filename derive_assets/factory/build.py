"""Turn a validated spec project into Dagster definitions: assets with their checks, a few jobs, the automation
sensor, resources. What each asset *is* (key, deps, group, condition, ...) is the translator's (`translator.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Definitions,
    ExecutorDefinition,
    SensorDefinition,
    in_process_executor,
    multiprocess_executor,
)

from derive_assets.factory.automation import automation_sensor
from derive_assets.factory.environment import Environment
from derive_assets.factory.error_assets import broken_specs, error_asset, warn
from derive_assets.factory.export_assets import build_export_asset
from derive_assets.factory.freshness import freshness_checks, freshness_rules, freshness_sensors
from derive_assets.factory.jobs import JobMember, dataset_jobs, source_job
from derive_assets.factory.late_data import late_data_sensor
from derive_assets.factory.python_assets import PythonTable, build_python_asset
from derive_assets.factory.replication_assets import build_replication_asset
from derive_assets.factory.sensors import source_sensors
from derive_assets.factory.table_assets import build_table_asset
from derive_assets.python_tables import PYTHON_TABLES, python_tables
from derive_assets.replication.connections import SourceConnections
from derive_assets.settings import DeriveSettings
from derive_assets.specs.models import TableSpec
from derive_assets.specs.project import Export, LeftOut, ReplicatedTable, SpecProject, Table, load_project
from derive_assets.translator import DeriveNode, DeriveTranslator
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


def build_definitions(
    settings: DeriveSettings,
    project: SpecProject | None = None,
    translator: DeriveTranslator | None = None,
) -> Definitions:
    """Build everything from the specs directory named by `settings`: one asset per spec item, whose key, deps,
    group, metadata, partitions, checks and automation condition `translator` decides (default: Derive's own;
    subclass `DeriveTranslator` to change them), the `replicate_<source>` and dataset jobs (`factory/jobs.py`),
    the automation sensor, and the resources.

    Unless `settings.strict_specs`, the specs load leniently: an invalid spec (and what reads or exports it) is left
    out, becomes a placeholder asset in the `derive_errors` group, and is logged as a warning (see
    `derive_assets/factory/error_assets.py`); the valid specs load and run as usual.

    Example:
        ```python
        defs = build_definitions(DeriveSettings.from_env())
        ```
    """
    project = project or load_project(
        settings.specs_dir, strict=settings.strict_specs, cache_dir=settings.cache_dir
    )
    translator = translator or DeriveTranslator()
    resources = build_resources(settings)
    env = Environment(settings.env) if settings.env else None
    graph = _Graph(translator, settings, resources["warehouse"], env)
    jobs = []

    for source in project.sources():
        keys = [
            graph.add(DeriveNode("source_table", rt.ref, rt.path, rt), build_replication_asset, member=False)
            for rt in project.replicated
            if rt.source.name == source.name
        ]
        jobs.append(source_job(source.name, keys))

    for table in project.tables:
        upstream = graph.upstream(table.analysis.reads)
        graph.add(DeriveNode("table", table.spec.ref, table.path, table, upstream), build_table_asset)

    for python_table in python_tables(project):
        upstream = graph.upstream(python_table.inputs)
        node = DeriveNode("python_table", python_table.spec.ref, python_table.path, python_table, upstream)
        ins = {p: translator.get_asset_key(up) for p, up in zip(python_table.params, upstream, strict=True)}
        graph.add(node, _python_asset(ins))

    for export in project.exports:
        node = DeriveNode(
            "export", f"online.{export.spec.name}", export.path, export, graph.upstream([export.spec.table])
        )
        graph.add(node, _export_asset(node.upstream[0].item))

    broken = broken_specs(project, _python_tables_left_out(project))
    warn(broken)
    if env is not None:  # an environment is built when asked: no jobs, schedules, sensors or freshness checks
        return Definitions(
            executor=build_executor(settings),
            assets=[*graph.assets, *(error_asset(b) for b in broken)],
            resources=resources,
        )
    freshness = freshness_checks(freshness_rules(graph.nodes.values(), translator.get_asset_key))

    return Definitions(
        executor=build_executor(settings),
        assets=[*graph.assets, *(error_asset(b) for b in broken)],
        asset_checks=freshness,
        jobs=[*jobs, *dataset_jobs(graph.members)],
        sensors=[
            automation_sensor(),
            *source_sensors(project, _replicated_keys(project, graph)),
            *freshness_sensors(freshness),
            *_optional(late_data_sensor(project, _node_keys(graph))),
        ],
        resources=resources,
    )


AssetBuilder = Callable[..., AssetsDefinition]
"""`(item, asset spec, check specs)` -> the asset; the table and replication builders also take `env=`."""


def _node_keys(graph: _Graph) -> dict[str, AssetKey]:
    """Every translated node's ref -> its asset key (the translator's), for the late-data sensor."""
    return {ref: graph.translator.get_asset_key(node) for ref, node in graph.nodes.items()}


def _optional(sensor: SensorDefinition | None) -> list[SensorDefinition]:
    return [] if sensor is None else [sensor]


def _replicated_keys(project: SpecProject, graph: _Graph) -> dict[str, AssetKey]:
    """Each replicated table's ref -> its asset key (the translator's), for the source sensors."""
    return {rt.ref: graph.translator.get_asset_key(graph.nodes[rt.ref]) for rt in project.replicated}


class _Graph:
    """The nodes translated so far, by ref (a node's upstream is always translated before it), and their assets.

    With an environment (`factory/environment.py`), tables and replicated tables become the environment's assets
    (shadow keys and targets, no automation); Python tables stay production's, as specs this build cannot
    materialize; exports are left out (an environment never writes the online store)."""

    def __init__(
        self,
        translator: DeriveTranslator,
        settings: DeriveSettings,
        warehouse: Warehouse,
        env: Environment | None = None,
    ) -> None:
        self.translator = translator
        self.warehouse_kind, self.online_store_kind = settings.warehouse, settings.online_store
        self.warehouse = warehouse
        self.env = env
        self.versions: dict[str, str | None] = {}
        """Each table's and replicated table's code version, which the environment compares with production's."""
        self.shadowed: dict[AssetKey, AssetKey] = {}
        """Production key -> the environment's key, of every node the environment builds."""
        self.nodes: dict[str, DeriveNode] = {}
        self.assets: list[AssetsDefinition | AssetSpec] = []
        self.members: list[JobMember] = []
        if env is not None:
            self.env = replace(env, versions=self.versions)

    def upstream(self, refs: Iterable[str]) -> tuple[DeriveNode, ...]:
        return tuple(self.nodes[ref] for ref in refs)

    def add(self, node: DeriveNode, build: AssetBuilder, member: bool = True) -> AssetKey:
        """Translate `node`, build its asset with `build`; return its key. `member`: in its dataset's job."""
        env = self.env
        shadow = env is not None and isinstance(node.item, Table | ReplicatedTable)
        identifier = None
        if not isinstance(node.item, Export):
            ref = env.ref(node.ref) if shadow and env is not None else node.ref
            identifier = self.warehouse.relation_identifier(ref)
        node = replace(
            node,
            warehouse_kind=self.warehouse_kind,
            online_store_kind=self.online_store_kind,
            relation_identifier=identifier,
        )
        spec = self.translator.get_asset_spec(node)
        self.nodes[node.ref] = node
        if env is None:
            self.assets.append(build(node.item, spec, self.translator.get_check_specs(node, spec.key)))
        elif shadow:
            self.versions[node.ref] = spec.code_version
            production_key = spec.key
            spec = env.asset_spec(spec, self.shadowed)
            self.shadowed[production_key] = spec.key
            checks = self.translator.get_check_specs(node, spec.key)
            self.assets.append(build(node.item, spec, checks, env=env))
        elif isinstance(node.item, PythonTable):
            self.assets.append(AssetSpec(spec.key, group_name=spec.group_name, description=spec.description))
        if member:
            self.members.append(JobMember(spec.key, node.dataset, spec.partitions_def))
        return spec.key


def _python_asset(ins: dict[str, AssetKey]) -> AssetBuilder:
    """A Python table's builder: its function receives its inputs (`ins`: parameter -> the upstream asset's key,
    from the translator) through the IO manager. It declares no checks of its own (its spec's constraints are
    the IO manager's write rules)."""

    def build(table: PythonTable, spec: AssetSpec, check_specs: Sequence[AssetCheckSpec]) -> AssetsDefinition:
        del check_specs
        return build_python_asset(table, spec, ins)

    return build


def _export_asset(table: Any) -> AssetBuilder:
    """An export's builder: its windows are split into runs as its table's (`table`: the upstream node's item)."""
    spec = getattr(table, "spec", None)
    table_spec = spec if isinstance(spec, TableSpec) else None  # a replicated source table has no windows

    def build(export: Export, spec: AssetSpec, check_specs: Sequence[AssetCheckSpec]) -> AssetsDefinition:
        return build_export_asset(export, spec, check_specs, table_spec)

    return build


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
