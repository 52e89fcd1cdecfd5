"""`derive plan`: what the next run of each table would do, in the configured warehouse's dialect.

For every core/derived spec: the window the schedule would build next, the rendered SQL with its bound
parameters, the table's DDL, and the warehouse's estimate of bytes processed (a BigQuery dry run).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from dagster import partition_loading_context

from derive_assets.factory.targets import table_target
from derive_assets.factory.windows import partitions_for
from derive_assets.specs.project import SpecProject, Table
from derive_assets.specs.sql_analysis import transpile
from resources.warehouse import EstimateUnavailable, TimeWindow, Warehouse


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


def next_window(table: Table, now: dt.datetime) -> TimeWindow | None:
    partitions_def = partitions_for(table.spec.window)
    if partitions_def is None:
        return None
    with partition_loading_context(effective_dt=now):
        key = partitions_def.get_last_partition_key()
    if key is None:
        return None
    window = partitions_def.time_window_for_partition_key(key)
    return TimeWindow(window.start, window.end)


def plan(project: SpecProject, warehouse: Warehouse, now: dt.datetime | None = None) -> list[PlanEntry]:
    now = now or dt.datetime.now(dt.UTC)
    entries = []
    for table in project.tables:
        window = next_window(table, now)
        sql = transpile(table.analysis.expression, warehouse.dialect)
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
        entries.append(
            PlanEntry(
                table.spec.ref,
                table.spec.strategy.type,
                window,
                sql,
                params,
                warehouse.ddl_for(table_target(table.spec)),
                estimate,
                note,
            )
        )
    return entries


def render(entries: list[PlanEntry]) -> str:
    out = []
    for e in entries:
        window = f"{e.window.start.isoformat()} .. {e.window.end.isoformat()}" if e.window else "whole table"
        cost = f"{e.estimated_bytes:,} bytes" if e.estimated_bytes is not None else e.estimate_note
        params = ", ".join(
            f"{k}={v.isoformat() if hasattr(v, 'isoformat') else v}" for k, v in e.params.items()
        )
        out += [
            f"== {e.ref} ({e.strategy}) — next window: {window}",
            f"-- estimate: {cost}",
            f"-- parameters: {params or 'none'}",
            e.ddl + ";",
            e.sql + ";",
            "",
        ]
    return "\n".join(out)
