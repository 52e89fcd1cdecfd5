"""The demo's main job: sample sources -> replicated tables -> core and derived tables.

The sample sources are the ones the replication reads (`demo/sources.py`): each source spec's `connection_env`
URL when set (PostgreSQL, MariaDB, a MongoDB server), else the embedded SQLite files and montydb store. The first
run (or any run that finds a source's tables missing or empty) generates the sample databases and loads everything; every later run plays one batch of new
activity on the sources first, so it shows what an incremental run reads. Each step is one run of one source's
tables or of one asset, by asset key (`factory/runs.py`, as `dagster asset materialize --select` runs them), in
dependency order, on the persistent instance in `DAGSTER_HOME`, so `dagster dev` shows their history.

A failed check is printed (name, asset, description) under its step; an asset whose blocking check failed stops
the steps downstream of it, as it would in one run, and `derive demo` exits non-zero.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    TimeWindowPartitionsDefinition,
)

from derive_assets import metadata_keys as K
from derive_assets.demo.connections import SOURCES
from derive_assets.demo.generate import apply_activity, generate
from derive_assets.demo.sources import (
    SampleSourceMismatch,
    describe,
    incomplete_sources,
    sample_source_errors,
    sample_urls,
    spec_database_mismatch,
)
from derive_assets.factory.build import build_definitions, build_online_store, build_warehouse
from derive_assets.factory.export_assets import export_key, online_table
from derive_assets.factory.replication_assets import replication_key
from derive_assets.factory.runs import RANGE_END, RANGE_START, materialize_keys
from derive_assets.factory.table_assets import table_key
from derive_assets.factory.windows import partitions_for
from derive_assets.python_tables import python_tables
from derive_assets.replication.watermark import WATERMARK_KEY
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import SpecProject, load_project

__all__ = ["DemoSummary", "FailedCheck", "incomplete_sources", "run_demo"]

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
CHECK_FAILED = "DagsterAssetCheckFailedError"  # the step error Dagster raises for a failed blocking check


@dataclass(frozen=True)
class FailedCheck:
    name: str
    asset: str
    description: str
    severity: str


class DemoSummary(dict[str, dict[str, Any]]):
    """Rows per table, by name; `failed_checks` lists the checks that failed (ERROR ones make the demo fail)."""

    def __init__(self, tables: dict[str, dict[str, Any]], failed_checks: list[FailedCheck]):
        super().__init__(tables)
        self.failed_checks = failed_checks

    @property
    def errors(self) -> list[FailedCheck]:
        return [c for c in self.failed_checks if c.severity == "ERROR"]


class DemoStepFailed(RuntimeError):
    """A step of a demo run failed for a reason other than a failed check."""


def run_demo(
    settings: DeriveSettings,
    instance: DagsterInstance,
    users: int = 10_000,
    days: int = 7,
    fresh: bool = False,
    say: Callable[[str], None] = print,
) -> DemoSummary:
    """Generate (or update) the sample sources, then materialize the whole graph. Returns a summary.

    The sample data goes to the sources the replication reads (`demo.sources.sample_urls`); raises
    `SampleSourceMismatch` when the profiles URL names a database the profiles spec does not read, the
    replication's `SourceConnectionError` when a source's variable holds a URL its spec's `type` refuses, and
    `SampleSourceUnavailable` when a source cannot be read or written.
    """
    project = load_project(settings.specs_dir, cache_dir=settings.cache_dir)
    urls = sample_urls(project, settings.embedded_sources_dir)
    if (mismatch := spec_database_mismatch(project, urls)) is not None:
        raise SampleSourceMismatch(mismatch)
    defs = build_definitions(settings, project)
    with sample_source_errors(urls):
        missing = incomplete_sources(urls)
        first_run = fresh or bool(missing)
        if missing and len(missing) < len(SOURCES) + 1:
            say(f"==> the sample sources are incomplete ({', '.join(missing)})")
        where = "\n".join(f"    {line}" for line in describe(urls))
        if first_run:
            say(f"==> generating sample sources: {users:,} users, 14 days of history, into\n{where}")
            counts = generate(urls, users=users)
            say("    " + ", ".join(f"{k}: {v:,}" for k, v in counts.items()))
        else:
            say(f"==> applying a batch of new activity (inserts, updates, soft deletes) to\n{where}")
            changes = apply_activity(urls)
            say("    " + ", ".join(f"{k}: {v:,}" for k, v in changes.items() if v))
    if first_run and (local := settings.warehouse_config().local_file) and Path(local).exists():
        Path(local).unlink()  # a fresh source means a fresh warehouse (full reloads on BigQuery)

    steps: list[tuple[str, list[AssetKey], dict[str, str] | None]] = []
    for source in project.sources():
        keys = [replication_key(rt) for rt in project.replicated if rt.source.name == source.name]
        steps.append((f"replicate {source.name}", keys, {}))
    # Then every table, Python table and export, in that order, each over its recent windows if it has any.
    windowed = [
        *((table_key(table.spec.ref), table.spec.window) for table in project.tables),
        *((python_table.key, python_table.spec.window) for python_table in python_tables(project)),
        *((export_key(export), export.window) for export in project.exports),
    ]
    for key, window in windowed:
        partitions_def = partitions_for(window)
        tags = (_recent_windows(partitions_def, days) or None) if partitions_def else {}
        steps.append((key.to_user_string(), [key], tags))

    graph = defs.resolve_asset_graph()
    failed: list[FailedCheck] = []
    blocked: set[AssetKey] = set()  # assets whose blocking check failed
    for label, keys, tags in steps:
        if tags is None:
            say(f"==> {label}: skipped, no complete window in the last {days} day(s)")
            continue
        stopped_by = sorted(k.to_user_string() for k in blocked & _upstream(graph, keys))
        if stopped_by:
            say(f"==> {label}: skipped, upstream {', '.join(stopped_by)} failed a blocking check")
            continue
        checks = _run(defs, instance, label, keys, tags, say)
        failed += checks
        blocked |= {AssetKey.from_user_string(c.asset) for c in checks if c.severity == "ERROR"}
    tables = summarize(project, settings, instance)
    if failed:
        say(f"==> {len(failed)} check(s) failed:")
        for check in failed:
            say(f"    {check.severity} {check.name} on {check.asset}: {check.description}")
    return DemoSummary(tables, failed)


def _upstream(graph: Any, keys: Iterable[AssetKey]) -> set[AssetKey]:
    """Every asset upstream of `keys`, transitively."""
    seen: set[AssetKey] = set()
    todo = [parent for key in keys for parent in graph.get(key).parent_keys]
    while todo:
        key = todo.pop()
        if key not in seen:
            seen.add(key)
            todo.extend(graph.get(key).parent_keys)
    return seen


def _recent_windows(partitions_def: TimeWindowPartitionsDefinition, days: int) -> dict[str, str]:
    """The complete windows of the last `days` days, as a single-run partition range."""
    now = dt.datetime.now(dt.UTC)
    since = now - dt.timedelta(days=days)
    keys = [
        key
        for key in partitions_def.get_partition_keys(current_time=now)
        if partitions_def.time_window_for_partition_key(key).start >= since
    ]
    return {RANGE_START: keys[0], RANGE_END: keys[-1]} if keys else {}


def _run(
    defs: Definitions,
    instance: DagsterInstance,
    label: str,
    keys: list[AssetKey],
    tags: dict[str, str],
    say: Any,
) -> list[FailedCheck]:
    """Run `keys` (over the windows `tags` name, if any) in one run; print what moved and every failed check. A
    step error other than a failed check raises."""
    scope = f" windows {tags[RANGE_START]} .. {tags[RANGE_END]}" if tags else ""
    started = time.perf_counter()
    result = materialize_keys(
        defs,
        keys,
        instance=instance,
        partition_range=(tags[RANGE_START], tags[RANGE_END]) if tags else None,
        run_config=QUIET,
    )
    _raise_step_errors(label, result)
    rows = {}
    for event in result.get_asset_materialization_events():
        m = event.step_materialization_data.materialization
        meta = m.metadata
        if K.RUN_ROWS_READ not in meta and m.asset_key.to_user_string() in rows:
            continue  # a multi-window run: the run's totals are on its latest partition's event
        moved = meta.get(K.RUN_ROWS_READ) or meta.get(K.ROWS_READ) or meta.get("derive/rows_written")
        verb = "wrote" if "derive/rows_written" in meta else "read"
        rows[m.asset_key.to_user_string()] = (verb, moved.value if moved else 0)
    detail = ", ".join(f"{k} {verb} {n:,}" for k, (verb, n) in rows.items())
    say(f"==> {label}{scope}: {detail} ({time.perf_counter() - started:.1f}s)")
    failed = [
        FailedCheck(
            name=e.check_name,
            asset=e.asset_key.to_user_string(),
            description=e.description or "(no description)",
            severity="ERROR" if e.severity == AssetCheckSeverity.ERROR else "WARN",
        )
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    for check in failed:
        say(f"    FAILED check {check.name} on {check.asset} ({check.severity}): {check.description}")
    return failed


def _raise_step_errors(label: str, result: ExecuteInProcessResult) -> None:
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        if error is None or error.cls_name == CHECK_FAILED:
            continue
        messages = []
        while error is not None:
            messages.append(error.message.strip())
            error = error.cause
        raise DemoStepFailed(f"{label}: step {event.step_key} failed: " + " <- ".join(messages))


def summarize(project: SpecProject, settings: DeriveSettings, instance: DagsterInstance) -> dict[str, Any]:
    warehouse = build_warehouse(settings)
    summary: dict[str, Any] = {}
    for rt in project.replicated:
        event = instance.get_latest_materialization_event(AssetKey(rt.ref.split(".")))
        mark = (
            event.asset_materialization.metadata.get(WATERMARK_KEY)
            if event and event.asset_materialization
            else None
        )
        summary[rt.ref] = {"rows": warehouse.row_count(rt.ref), "watermark": getattr(mark, "value", None)}
    for table in project.tables:
        built = warehouse.table_exists(table.spec.ref)  # not if its step was skipped on the first run
        summary[table.spec.ref] = {
            "rows": warehouse.row_count(table.spec.ref) if built else 0,
            "strategy": table.spec.strategy.type if built else "not built",
        }
    for python_table in python_tables(project):
        ref = python_table.spec.ref
        built = warehouse.table_exists(ref)
        summary[ref] = {
            "rows": warehouse.row_count(ref) if built else 0,
            "strategy": python_table.spec.strategy.type if built else "not built",
        }
    store = build_online_store(settings)
    for export in project.exports:
        table = online_table(export)
        exported = instance.get_latest_materialization_event(export_key(export)) is not None
        summary[f"online:{table.ref}"] = {
            "rows": store.count(table) if exported else 0,
            "strategy": f"from {export.spec.table}" if exported else "not exported",
        }
    return summary
