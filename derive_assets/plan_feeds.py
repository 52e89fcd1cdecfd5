"""`derive plan` for the graph's edges: replications (what the next read asks the source for) and exports (which
slice goes online, into which CQL table). Reads the event log for watermarks; never connects to a source, never
writes.

A replication's source query is built as the run builds it (`replication.extract.build_query`) from the read
floor the last materialization recorded, stepped back by `cursor_overlap`. Without a Dagster instance (no
`DAGSTER_HOME` yet), or when the warehouse has no table (the run then reloads everything), it is a first load.
For MySQL sources the run also converts the source's `TIMESTAMP` columns to UTC, which needs a connection: the plan
shows the query without that conversion.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from dagster import DagsterInstance, MetadataValue

from derive_assets import metadata_keys as K
from derive_assets.factory.export_assets import export_key, online_table
from derive_assets.factory.python_assets import PythonTable
from derive_assets.factory.replication_assets import replication_key
from derive_assets.factory.targets import source_target, table_target
from derive_assets.plan import Evolution, evolution, window_before, window_text
from derive_assets.replication import mongo, watermark
from derive_assets.replication.extract import ExtractPlan, build_query
from derive_assets.replication.watermark import CursorState
from derive_assets.specs.project import Export, ReplicatedTable
from resources.online_store import CQL_TYPES, OnlineTable
from resources.warehouse import Warehouse


@dataclass(frozen=True)
class ReplicationPlan:
    ref: str
    reads: str
    """`first load` or `rows with <cursor> > <value>`, and why."""
    query: str
    params: list[Any]
    ddl: str
    evolution: Evolution

    def render(self) -> str:
        params = f"\n-- parameters: {self.params}" if self.params else ""
        return (
            f"== {self.ref} (replication) — {self.reads}\n-- will: {self.evolution.action}\n"
            f"{self.ddl};\n-- source query:{params}\n{self.query}\n"
        )


@dataclass(frozen=True)
class PythonTablePlan:
    """A Python table: its function computes the rows, so there is no SQL to show; the schema is compared."""

    ref: str
    strategy: str
    ddl: str
    evolution: Evolution

    def render(self) -> str:
        return (
            f"== {self.ref} (python table, {self.strategy})\n-- will: {self.evolution.action}\n{self.ddl};\n"
        )


def python_table_plan(table: PythonTable, warehouse: Warehouse) -> PythonTablePlan:
    # Its asset records no spec version on the table, so only the schema is compared.
    target = dataclasses.replace(table_target(table.spec), code_version=None)
    return PythonTablePlan(
        table.spec.ref, table.spec.strategy.type, warehouse.ddl_for(target), evolution(warehouse, target)
    )


@dataclass(frozen=True)
class ExportPlan:
    name: str
    table: str
    slice: str
    cql: str

    def render(self) -> str:
        return f"== online/{self.name} (export of {self.table}) — {self.slice}\n{self.cql};\n"


def _metadata(instance: DagsterInstance | None, key: Any) -> dict[str, Any] | None:
    if instance is None:
        return None
    event = instance.get_latest_materialization_event(key)
    return dict(event.asset_materialization.metadata) if event and event.asset_materialization else None


def replication_plan(
    rt: ReplicatedTable, warehouse: Warehouse, instance: DagsterInstance | None
) -> ReplicationPlan:
    target = source_target(rt.source.target_dataset, rt.table, rt.source)
    change = evolution(warehouse, target)
    meta = _metadata(instance, replication_key(rt))
    state, why = CursorState(), ""
    if change.status == "new":
        why = "first load (no table in the warehouse yet)"
    elif instance is None:
        why = "first load (no Dagster instance at DAGSTER_HOME, so no watermark)"
    elif meta is None:
        why = "first load (no materialization in the event log yet)"
    else:
        state = CursorState.from_metadata(meta, rt.table.cursor_column.type)
    since = watermark.with_overlap(state.floor, rt.table.effective_overlap)
    if since is not None:
        why = (
            f"rows with {rt.table.cursor} > {watermark.to_text(since)} (read floor {watermark.to_text(state.floor)}"
            f" less cursor_overlap {rt.table.effective_overlap})"
        )
    elif not why:
        why = "first load (the event log holds no watermark)"
    if rt.source.type == "mongodb":
        query, params = mongo.describe(rt.source, rt.table, since), []
    else:
        query, params = build_query(ExtractPlan(rt.source, rt.table, since, state))
        query += ";"
    return ReplicationPlan(rt.ref, why, query, params, warehouse.ddl_for(target), change)


def export_plan(export: Export, instance: DagsterInstance | None, now: dt.datetime) -> ExportPlan:
    spec = export.spec
    table = online_table(export)
    if export.window is not None and export.partition_key:
        part = f"next window {window_text(window_before(export.window, now))} on {export.partition_key}"
    elif spec.cursor:
        meta = _metadata(instance, export_key(export)) or {}
        stored = meta.get(K.WATERMARK)
        stored = stored.value if isinstance(stored, MetadataValue) else stored
        part = (
            f"rows with {spec.cursor} > {stored}"
            if isinstance(stored, str)
            else f"every row (no export watermark yet; later runs: rows with a newer {spec.cursor})"
        )
    else:
        part = "the whole table"
    return ExportPlan(spec.name, spec.table, part, cql_ddl(table))


def cql_ddl(table: OnlineTable) -> str:
    """The CQL table the export creates if missing (as `CassandraOnlineStore.ensure_table` builds it)."""
    columns = ", ".join(f"{_q(c.name)} {CQL_TYPES[c.type]}" for c in table.columns)
    partition = ", ".join(_q(k) for k in table.partition_key)
    clustering = "".join(f", {_q(k)}" for k in table.clustering)
    return (
        f"CREATE TABLE IF NOT EXISTS {_q(table.keyspace)}.{_q(table.name)} "
        f"({columns}, PRIMARY KEY (({partition}){clustering}))"
    )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
