"""The whole `derive plan` report: the selected tables, replications and exports, then the orphaned tables.

The selection is resolved by Dagster over the asset graph the code location builds (`selection.select`), so
`+analytics/foo` means what it means in the UI. Orphans are always listed (they belong to no asset, so no
selection can name them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from dagster import AssetKey, DagsterInstance

from derive_assets.factory.build import build_definitions
from derive_assets.factory.export_assets import export_key
from derive_assets.factory.replication_assets import replication_key
from derive_assets.lifecycle import materialize_command, orphans
from derive_assets.plan import PlanEntry, plan, render
from derive_assets.plan_feeds import (
    ExportPlan,
    PythonTablePlan,
    ReplicationPlan,
    export_plan,
    python_table_plan,
    replication_plan,
)
from derive_assets.python_tables import python_tables
from derive_assets.selection import select
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import SpecProject
from resources.warehouse import Warehouse


@dataclass
class FullPlan:
    """Everything `derive plan` shows."""

    tables: list[PlanEntry]
    feeds: list[PythonTablePlan | ReplicationPlan | ExportPlan] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    """Tables Derive created in its datasets that no spec owns (`lifecycle.orphans`)."""


def full_plan(
    settings: DeriveSettings,
    project: SpecProject,
    warehouse: Warehouse,
    selection: Sequence[str] = (),
    instance: DagsterInstance | None = None,
    now: dt.datetime | None = None,
) -> FullPlan:
    """Plan what `selection` selects (everything when empty). Raises `SelectionError` for an unknown selection."""
    now = now or dt.datetime.now(dt.UTC)
    defs = build_definitions(settings, project)
    graph = defs.resolve_asset_graph()
    chosen = select(selection, graph, graph.get_all_asset_keys())
    refs = {t.spec.ref for t in project.tables if AssetKey(t.spec.ref.split(".")) in chosen}
    feeds: list[PythonTablePlan | ReplicationPlan | ExportPlan] = [
        python_table_plan(t, warehouse) for t in python_tables(project) if t.key in chosen
    ]
    feeds += [
        replication_plan(rt, warehouse, instance)
        for rt in project.replicated
        if replication_key(rt) in chosen
    ]
    feeds += [export_plan(e, instance, now) for e in project.exports if export_key(e) in chosen]
    return FullPlan(plan(project, warehouse, now, instance, refs), feeds, orphans(project, warehouse))


def render_full(report: FullPlan) -> str:
    out = [render(report.tables, materialize_command)] if report.tables else []
    over = [e for e in report.tables if e.over_limit]
    if over:
        out.append(
            f"== over max_bytes_billed: {len(over)} table(s) whose next run will fail before writing (raise the "
            "spec's max_bytes_billed, or narrow its window or SQL):"
        )
        out += [f"  {e.ref}: {e.estimate_text()}" for e in over]
    out += [feed.render() for feed in report.feeds]
    if report.orphans:
        out.append(
            f"== orphaned tables: {len(report.orphans)} table(s) Derive created that no spec owns any more "
            "(a deleted or renamed spec); `derive prune` drops them after asking:"
        )
        out += [f"  {ref}" for ref in report.orphans]
    else:
        out.append("== orphaned tables: none")
    return "\n".join(out)
