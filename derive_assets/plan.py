"""`derive plan`: what the next run of each table would do, in the configured warehouse's dialect. Never writes.

For every core/derived spec: whether its spec changed since the table was last written (the code version on the
table's Derive marker against the spec's), the schema diff against the existing table and what a run will do about
it (nothing, add a column, widen a type, or refuse until `derive rebuild`), the window its cron tick builds next,
the number of partitions, the rendered SQL with its bound parameters, the table's DDL and the warehouse's estimate
of bytes processed (a BigQuery dry run), against the spec's `max_bytes_billed` when it sets one. Replications and
exports are planned in `plan_feeds`; orphaned tables (marked by Derive, owned by no spec) are found by
`lifecycle.orphans`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from dagster import AssetKey, DagsterInstance, TimeWindowPartitionsDefinition, partition_loading_context

from derive_assets.factory.environment import Environment, rewrite_tables
from derive_assets.factory.targets import table_target
from derive_assets.factory.windows import partitions_for
from derive_assets.specs.models import Window
from derive_assets.specs.project import SpecProject, Table
from derive_assets.specs.sql_analysis import transpile
from resources.bytes_limit import exceeds
from resources.schema_diff import diff
from resources.warehouse import EstimateUnavailable, TargetTable, TimeWindow, Warehouse


@dataclass(frozen=True)
class Backfill:
    """The windows an added column leaves NULL: the table's first partition up to its last materialized one."""

    first: str
    last: str
    count: int


@dataclass(frozen=True)
class Evolution:
    """How the existing table compares with the spec, and what the next run does about it."""

    status: str
    """`new` (no table yet), `changed` (code version differs), `unchanged`, or `unknown` (the table carries no
    recorded version)."""
    action: str
    """One line: `create the table`, `nothing`, `add column …`, `refuse: rebuild needed …`."""
    changes: tuple[str, ...] = ()
    """The schema diff, one line per change."""
    breaking: bool = False
    backfill: Backfill | None = None
    recorded_version: str | None = None


@dataclass(frozen=True)
class PlanEntry:
    ref: str
    strategy: str
    window: TimeWindow | None
    sql: str
    params: dict[str, Any]
    ddl: str
    estimated_bytes: int | None
    estimate_note: str = ""
    code_version: str = ""
    evolution: Evolution | None = None
    partitions: int | None = None
    """How many partitions the table's window has up to now (None: not partitioned)."""
    max_bytes_billed: int | None = None
    """The spec's cost limit (None: none): a run whose estimate is above it fails before writing."""
    relation: str = ""
    """The table the run writes: `ref`, or in an environment its copy (`alice__analytics.order_facts`)."""
    reads: dict[str, str] = field(default_factory=dict)
    """In an environment: each table the SQL reads -> the relation it reads (production's or the copy)."""
    unbuilt: dict[str, str] = field(default_factory=dict)
    """In an environment: the changed upstreams whose copy is missing or stale -> why."""

    @property
    def over_limit(self) -> bool:
        """The estimate is above `max_bytes_billed`: the run will fail (`BytesBilledLimitExceeded`)."""
        return exceeds(self.estimated_bytes, self.max_bytes_billed)

    def estimate_text(self) -> str:
        """`1,234 bytes`, or why there is no estimate; with a limit, how the estimate compares with it."""
        cost = f"{self.estimated_bytes:,} bytes" if self.estimated_bytes is not None else self.estimate_note
        if self.max_bytes_billed is None:
            return cost
        if self.estimated_bytes is None:
            verdict = "no estimate to check it against"
        elif self.over_limit:
            verdict = "over the limit, the run will fail"
        else:
            verdict = "within the limit"
        return f"{cost} (max_bytes_billed {self.max_bytes_billed:,}: {verdict})"


def next_window(table: Table, now: dt.datetime) -> TimeWindow | None:
    return window_before(table.spec.window, now)


def window_before(window: Window | None, now: dt.datetime) -> TimeWindow | None:
    """The last complete window of a spec's `window` at `now` (what the automation condition requests next)."""
    partitions_def = partitions_for(window)
    if partitions_def is None:
        return None
    with partition_loading_context(effective_dt=now):
        key = partitions_def.get_last_partition_key()
    if key is None:
        return None
    tw = partitions_def.time_window_for_partition_key(key)
    return TimeWindow(tw.start, tw.end)


def partition_keys(partitions_def: TimeWindowPartitionsDefinition, now: dt.datetime) -> list[str]:
    """Every complete partition at `now`, oldest first."""
    with partition_loading_context(effective_dt=now):
        return list(partitions_def.get_partition_keys(current_time=now))


def evolution(
    warehouse: Warehouse, target: TargetTable, backfill: Callable[[], Backfill | None] = lambda: None
) -> Evolution:
    """Compare the spec (`target`, with its `code_version`) with the warehouse's table; `backfill` is asked only
    when a column is added (it reads the event log)."""
    existing = warehouse.describe(target.ref)
    if existing is None:
        return Evolution("new", "create the table")
    recorded = existing.layout.code_version if existing.layout else None
    version = target.code_version
    if recorded is None or version is None:
        status = "unknown"  # no marker (a table Derive did not create, or an older one), or no version given
    else:
        status = "unchanged" if recorded == version else "changed"
    found = diff(target, existing)
    changes = tuple(c.describe() for c in found.changes)
    breaking = tuple(c.describe() for c in found.breaking)
    if breaking:
        action = f"refuse before writing: rebuild needed ({'; '.join(breaking)}); run `derive rebuild {target.ref}`"
        return Evolution(status, action, changes, True, None, recorded)
    if changes:
        added = "add_column" in {c.kind for c in found.additive}
        return Evolution(status, "; ".join(changes), changes, False, backfill() if added else None, recorded)
    if status == "changed":
        return Evolution(
            status, "nothing to alter: later windows use the new spec", (), False, None, recorded
        )
    return Evolution(status, "nothing", (), False, None, recorded)


def backfill_range(
    partitions_def: TimeWindowPartitionsDefinition | None,
    key: AssetKey,
    instance: DagsterInstance | None,
    now: dt.datetime,
) -> Backfill | None:
    """The windows that were written before a column was added: the ones the event log has materialized (a
    window never materialized has no rows to fill); with no instance, every complete window."""
    if partitions_def is None:
        return None
    keys = partition_keys(partitions_def, now)
    if instance is not None:
        done = instance.get_materialized_partitions(key)
        keys = [k for k in keys if k in done]
    if not keys:
        return None
    return Backfill(keys[0], keys[-1], len(keys))


def plan(
    project: SpecProject,
    warehouse: Warehouse,
    now: dt.datetime | None = None,
    instance: DagsterInstance | None = None,
    selected: Iterable[str] | None = None,
) -> list[PlanEntry]:
    """One entry per core/derived table (those whose refs are in `selected`, when given), in dependency order."""
    now = now or dt.datetime.now(dt.UTC)
    wanted = set(selected) if selected is not None else None
    entries = []
    for table in project.tables:
        if wanted is not None and table.spec.ref not in wanted:
            continue
        entries.append(entry(table, warehouse, now, instance))
    return entries


def entry(
    table: Table,
    warehouse: Warehouse,
    now: dt.datetime,
    instance: DagsterInstance | None,
    env: Environment | None = None,
) -> PlanEntry:
    """The plan of one table; `env`: of its copy in that environment (the SQL reading what the environment's
    run would read, the schema diff against the copy)."""
    spec = table.spec
    window = next_window(table, now)
    reads, unbuilt = {}, {}
    if env is not None:
        reads, unbuilt = env.planned_relations(warehouse, spec.ref, table.analysis.reads)
    sql = transpile(rewrite_tables(table.analysis.expression, reads), warehouse.dialect)
    params = {
        k: v for k, v in (window.as_params() if window else {}).items() if k in table.analysis.parameters
    }
    estimate, note = None, ""
    try:
        estimate = warehouse.estimate_bytes(sql, params)
    except EstimateUnavailable as exc:  # advisory: say why it is missing and go on
        note = f"no estimate: {str(exc).splitlines()[0][:200]}"
    if estimate is None and not note:
        note = f"{warehouse.kind} gives no estimate"
    partitions_def = partitions_for(spec.window)
    target = table_target(spec)
    if env is not None:
        target = replace(target, dataset=env.dataset(spec.dataset))
    key = AssetKey(target.ref.split("."))
    change = evolution(warehouse, target, lambda: backfill_range(partitions_def, key, instance, now))
    count = len(partition_keys(partitions_def, now)) if partitions_def else None
    return PlanEntry(
        spec.ref,
        spec.strategy.type,
        window,
        sql,
        params,
        warehouse.ddl_for(target),
        estimate,
        note,
        target.code_version or "",
        change,
        count,
        spec.max_bytes_billed,
        target.ref,
        {r: v for r, v in reads.items() if r != spec.ref},
        unbuilt,
    )


def window_text(window: TimeWindow | None) -> str:
    return f"{window.start.isoformat()} .. {window.end.isoformat()}" if window else "whole table"


def render(entries: list[PlanEntry], backfill_hint: Callable[[str, Backfill], str] | None = None) -> str:
    """The tables' part of the plan; `backfill_hint(ref, backfill)` words the command that fills old windows."""
    out = []
    for e in entries:
        params = ", ".join(
            f"{k}={v.isoformat() if hasattr(v, 'isoformat') else v}" for k, v in e.params.items()
        )
        out.append(f"== {e.ref} ({e.strategy}) — next window: {window_text(e.window)}")
        out += _evolution_lines(e, backfill_hint)
        if e.partitions is not None:
            out.append(f"-- partitions: {e.partitions:,}")
        out += [
            f"-- estimate: {e.estimate_text()}",
            f"-- parameters: {params or 'none'}",
            e.ddl + ";",
            e.sql + ";",
            "",
        ]
    return "\n".join(out)


def _evolution_lines(e: PlanEntry, backfill_hint: Callable[[str, Backfill], str] | None) -> list[str]:
    change = e.evolution
    if change is None:
        return []
    was = f" (table written by {change.recorded_version})" if change.recorded_version else ""
    lines = [f"-- spec: {change.status}, code version {e.code_version}{was}"]
    if change.breaking and len(change.changes) > 1:
        lines.append(f"-- schema diff: {'; '.join(change.changes)}")
    lines.append(f"-- will: {change.action}")
    if change.backfill is not None:
        fill = change.backfill
        hint = f": {backfill_hint(e.ref, fill)}" if backfill_hint else ""
        lines.append(
            f"-- backfill: {fill.count:,} window(s) {fill.first} .. {fill.last} hold NULL in the new column"
            f"{hint}"
        )
    return lines
