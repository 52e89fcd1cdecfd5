"""What each spec item is in Dagster: its asset key, dependencies, group, owners, kinds, tags, description,
metadata, partitions, code version, automation condition and checks, in one place.

The factory (`derive_assets/factory/build.py`) turns every spec item into a `DeriveNode`, in dependency order,
asks a `DeriveTranslator` for its `AssetSpec` and check specs, and wraps them around an asset body that only
executes (`factory/*_assets.py`). Like `dagster_sling`'s `DagsterSlingTranslator` or dagster-dbt's translator,
subclass it and override a method to change keys, groups, tags or conditions without touching the factory:

Example:
    ```python
    from dagster import AssetKey
    from derive_assets import DeriveNode, DeriveTranslator
    from derive_assets.factory.build import build_definitions
    from derive_assets.settings import DeriveSettings


    class TeamTranslator(DeriveTranslator):
        def get_asset_key(self, node: DeriveNode) -> AssetKey:
            return super().get_asset_key(node).with_prefix("warehouse")

        def get_group_name(self, node: DeriveNode) -> str:
            return node.dataset  # one group per dataset instead of one per layer


    defs = build_definitions(DeriveSettings.from_env(), translator=TeamTranslator())
    ```

`get_asset_key` is also what the deps of every downstream node are made of, so a changed key stays connected.
Check names are the factory's: `get_check_specs` may drop a check or change its description, blocking or
metadata, but an asset body only reports the checks it knows (a column's `not_null`, `unique`,
`accepted_values`; an export's verification); add other checks as `@asset_check`s of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dagster import (
    AssetCheckSpec,
    AssetDep,
    AssetKey,
    AssetSpec,
    AutomationCondition,
    PartitionsDefinition,
)

from derive_assets import metadata_keys as K
from derive_assets.factory.automation import (
    cron_condition,
    export_condition,
    straddles,
    table_condition,
)
from derive_assets.factory.export_assets import online_table, verification_check_spec
from derive_assets.factory.metadata import column_schema, sql_block, table_metadata
from derive_assets.factory.python_assets import PythonTable, python_metadata
from derive_assets.factory.quality_checks import asset_checks
from derive_assets.factory.windows import partition_mapping, partitions_for
from derive_assets.specs.project import Export, ReplicatedTable, Table
from derive_assets.specs.version import code_version, export_code_version, source_code_version

NodeKind = Literal["source_table", "table", "export", "python_table"]


@dataclass(frozen=True)
class DeriveNode:
    """One spec item the translator turns into an asset."""

    kind: NodeKind
    ref: str
    """`accounts.auth` (a replicated table: `<target dataset>.<table>`), `analytics.daily_payments_by_region`,
    `online.<export name>`, `features.region_scores` (a Python table)."""
    path: Path
    """The spec file (a Python table: the module that declares it)."""
    item: ReplicatedTable | Table | Export | PythonTable
    upstream: tuple[DeriveNode, ...] = ()
    """What it reads (a table: its SQL's tables; an export: its table; a Python table: its inputs, in the order
    of its function's `inputs`), each translated before it."""
    warehouse_kind: str = "duckdb"
    """The warehouse the settings choose (`DeriveSettings.warehouse`): a kind of every table and source asset."""
    online_store_kind: str = "sqlite"
    """The online store the settings choose (`DeriveSettings.online_store`): an export's kind."""
    relation_identifier: str | None = None
    """The warehouse table's real name (`Warehouse.relation_identifier`: `project.dataset.table` on BigQuery),
    shown as Dagster's `dagster/table_name`; None for exports (their online table is `derive/online_table`)."""

    @property
    def dataset(self) -> str:
        """The first part of `ref`: the warehouse dataset (`online` for an export)."""
        return self.ref.split(".", 1)[0]


class DeriveTranslator:
    """Turns a `DeriveNode` into its `AssetSpec` and check specs; subclass and override a method to change them.

    `get_asset_key` is also used for the deps of everything downstream, so a changed key stays connected.
    """

    def get_asset_spec(self, node: DeriveNode) -> AssetSpec:
        """The whole spec, from the other methods (override those, or this to change several at once)."""
        return AssetSpec(
            key=self.get_asset_key(node),
            deps=self.get_deps(node),
            description=self.get_description(node),
            metadata=self.get_metadata(node),
            group_name=self.get_group_name(node),
            code_version=self.get_code_version(node),
            automation_condition=self.get_automation_condition(node),
            owners=self.get_owners(node),
            tags=self.get_tags(node),
            kinds=self.get_kinds(node),
            partitions_def=self.get_partitions_def(node),
        )

    def get_asset_key(self, node: DeriveNode) -> AssetKey:
        """`<target dataset>/<table>` for a replicated table, `<dataset>/<name>` for a table, `online/<export>`."""
        return AssetKey(node.ref.split("."))

    def get_deps(self, node: DeriveNode) -> list[AssetDep]:
        """What the node reads: `get_asset_key` of each upstream node, with the partition mapping of its
        windows to the upstream's (`factory/windows.py` `partition_mapping`; Dagster's default where None)."""
        window = _window(node)
        return [
            AssetDep(self.get_asset_key(up), partition_mapping=partition_mapping(window, _window(up)))
            for up in node.upstream
        ]

    def get_group_name(self, node: DeriveNode) -> str:
        """The layer: `sources` (replicated tables), `core`, `derived` (SQL and Python tables by their spec's
        `layer`) or `exports`.

        Groups are what Dagster's asset graph folds and lays out: four layer groups read left to right in the
        order data flows (replicated, cleaned, derived, served), whatever the number of tables. Groups per dataset
        would be one box per dataset (dozens at 2,000 tables) whose order says nothing about the flow, and a
        dataset's tables of different layers would share a box. The dataset is not lost: it is the first part of
        every asset key (`analytics/daily_payments_by_region`), so the UI's key-prefix folders and selections
        such as `key:"analytics/*"` (or `group:derived and key:"analytics/*"`) still pick one dataset. Dataset
        jobs select by `node.dataset`, never by group.
        """
        item = node.item
        if isinstance(item, ReplicatedTable):
            return "sources"
        if isinstance(item, Export):
            return "exports"
        return _table_spec(node).layer

    def get_owners(self, node: DeriveNode) -> list[str]:
        item = node.item
        if isinstance(item, ReplicatedTable):
            return [item.source.owner]
        return [item.spec.owner]

    def get_kinds(self, node: DeriveNode) -> set[str]:
        """Where it comes from and where it lands: the source's engine or `sql`/`python`, and the warehouse."""
        item = node.item
        if isinstance(item, ReplicatedTable):
            return {item.source.type, node.warehouse_kind}
        if isinstance(item, Table):
            return {"sql", node.warehouse_kind}
        if isinstance(item, Export):
            return {node.online_store_kind}
        return {"python", "pandas"}

    def get_tags(self, node: DeriveNode) -> dict[str, str]:
        """`derive/layer`: `source`, `core`, `derived` or `online`."""
        item = node.item
        if isinstance(item, ReplicatedTable):
            layer = "source"
        elif isinstance(item, Export):
            layer = "online"
        else:
            layer = _table_spec(node).layer
        return {K.LAYER: layer}

    def get_description(self, node: DeriveNode) -> str | None:
        item = node.item
        if isinstance(item, ReplicatedTable):
            table = item.table
            return (
                table.description
                or f"{item.source.name}.{table.name}, replicated incrementally by {table.cursor}"
            )
        if isinstance(item, Table):
            return item.spec.description or None
        if isinstance(item, Export):
            return item.spec.description or f"{item.spec.table} for reads by key, in {online_table(item).ref}"
        return item.spec.description or item.fn.__doc__ or None

    def get_metadata(self, node: DeriveNode) -> dict[str, Any]:
        """Definition metadata: the column schema, the spec file, and what the body and the IO manager read
        (a table's strategy, SQL, reads and layout; a source table's key and cursor; an export's online table)."""
        item = node.item
        metadata: dict[str, Any]
        if isinstance(item, ReplicatedTable):
            table = item.table
            metadata = {
                **table_metadata(table.columns, node.relation_identifier),
                K.SPEC_FILE: str(item.path),
                K.PRIMARY_KEY: table.primary_key,
                K.CURSOR: table.cursor,
            }
        elif isinstance(item, Table):
            metadata = {
                **table_metadata(item.spec.columns, node.relation_identifier),
                **_table_metadata(item),
            }
        elif isinstance(item, Export):
            online = online_table(item)
            return {
                K.COLUMN_SCHEMA: column_schema(list(item.columns)),
                K.SPEC_FILE: str(item.path),
                K.ONLINE_TABLE: online.ref,
                K.PRIMARY_KEY: list(online.primary_key),
            }
        else:
            metadata = {
                **table_metadata(item.spec.columns, node.relation_identifier),
                **python_metadata(item.spec),
            }
        return metadata

    def get_partitions_def(self, node: DeriveNode) -> PartitionsDefinition | None:
        """The spec's window as time-window partitions (an export: its table's window); None without one."""
        item = node.item
        if isinstance(item, ReplicatedTable):
            return None
        if isinstance(item, Export):
            return partitions_for(item.window)
        return partitions_for(_table_spec(node).window)

    def get_code_version(self, node: DeriveNode) -> str | None:
        """The spec's version (`specs/version.py`): what changes a table's contents; None for Python tables,
        whose code is the function's."""
        item = node.item
        if isinstance(item, ReplicatedTable):
            return source_code_version(item.source, item.table)
        if isinstance(item, Table):
            return code_version(item.spec, normalized=item.analysis.normalized_sql)  # cached: no SQL parse
        if isinstance(item, Export):
            return export_code_version(item.spec)
        return None

    def get_automation_condition(self, node: DeriveNode) -> AutomationCondition | None:
        """When Dagster's automation sensor requests the asset (`factory/automation.py`, docs/automation.md):
        a source table on its source's `schedule` (`on_cron`; None without one: the source's sensor requests
        it); a table once what it reads is ready (on its `schedule` if it has one, else whenever an input
        updates; its latest window when missing); an export after its table (and its `schedule` if set)."""
        item = node.item
        if isinstance(item, ReplicatedTable):
            return cron_condition(item.source.schedule)
        if isinstance(item, Export):
            return export_condition(item.spec.schedule, item.window.size if item.window is not None else None)
        spec = _table_spec(node)
        size = spec.window.size if spec.window is not None else None
        inputs = [w.size for w in map(_window, node.upstream) if w is not None]
        straddling = tuple(s for s in inputs if size is not None and straddles(size, s))
        return table_condition(spec.schedule, size, getattr(spec, "lookback", None), straddling)

    def get_check_specs(self, node: DeriveNode, key: AssetKey) -> list[AssetCheckSpec]:
        """The checks on `key` (the node's asset key) that run in the asset's own step: one per column
        constraint (`<column>_<rule>`), the spec's `row_count` and custom `sql` checks, or an export's
        verification. `severity: error` checks are blocking, `warn` ones are not (`factory/checks.py`); a spec's
        freshness check is a separate Dagster freshness check (`factory/freshness.py`)."""
        item = node.item
        if isinstance(item, Export):
            return [verification_check_spec(key)]
        if isinstance(item, PythonTable):
            return []  # its constraints are the IO manager's write rules, not checks
        checks = item.table.checks if isinstance(item, ReplicatedTable) else item.spec.checks
        return [c.spec(key) for c in asset_checks(list(_columns(node)), checks, node.path)]


def _table_spec(node: DeriveNode) -> Any:
    """A table's or a Python table's `TableSpec`."""
    item = node.item
    if isinstance(item, Table):
        return item.spec
    if isinstance(item, ReplicatedTable | Export):
        raise TypeError(f"{node.ref} is a {node.kind}, not a table")
    return item.spec


def _window(node: DeriveNode) -> Any:
    """The node's spec `Window` (an export: its table's), None when unwindowed (a replicated table)."""
    item = node.item
    if isinstance(item, ReplicatedTable):
        return None
    if isinstance(item, Export):
        return item.window
    return _table_spec(node).window


def _columns(node: DeriveNode) -> Sequence[Any]:
    item = node.item
    if isinstance(item, ReplicatedTable):
        return item.table.columns
    if isinstance(item, Export):
        return item.columns
    return _table_spec(node).columns


def _table_metadata(table: Table) -> dict[str, Any]:
    spec, analysis = table.spec, table.analysis
    metadata: dict[str, Any] = {
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
    return metadata
