"""The demo's main job: sample sources -> replicated tables -> core and derived tables, on embedded engines.

The first run generates the sample databases and loads everything; every later run plays one batch of new
activity on the sources first, so it shows what an incremental run reads. Runs go through the same Dagster jobs
the schedules use, on the persistent instance in `DAGSTER_HOME`, so `dagster dev` shows their history.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from dagster import DagsterInstance, Definitions, TimeWindowPartitionsDefinition

from derive_assets.demo.generate import apply_activity, embedded_urls, generate
from derive_assets.factory.build import build_definitions, build_online_store, build_warehouse
from derive_assets.factory.export_assets import online_table
from derive_assets.factory.schedules import export_job_name, source_job_name, table_job_name
from derive_assets.factory.windows import partitions_for
from derive_assets.replication.watermark import WATERMARK_KEY
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import SpecProject, load_project

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def run_demo(
    settings: DeriveSettings,
    instance: DagsterInstance,
    users: int = 10_000,
    days: int = 7,
    fresh: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate (or update) the sample sources, then materialize the whole graph. Returns a summary."""
    project = load_project(settings.specs_dir)
    defs = build_definitions(settings, project)
    urls = embedded_urls(settings.embedded_sources_dir)
    first_run = fresh or not (settings.embedded_sources_dir / "accounts.db").exists()
    if first_run:
        say(f"==> generating sample sources: {users:,} users, 14 days of history")
        counts = generate(urls, users=users)
        say("    " + ", ".join(f"{k}: {v:,}" for k, v in counts.items()))
        if settings.warehouse == "duckdb" and settings.duckdb_path.exists():
            settings.duckdb_path.unlink()  # a fresh source means a fresh warehouse (full reloads on BigQuery)
    else:
        say("==> applying a batch of new activity to the sample sources (inserts, updates, soft deletes)")
        changes = apply_activity(urls)
        say("    " + ", ".join(f"{k}: {v:,}" for k, v in changes.items() if v))

    for source in project.sources():
        _run(defs, instance, source_job_name(source.name), {}, say)
    for table in project.tables:
        spec = table.spec
        partitions_def = partitions_for(spec.window)
        tags = _recent_windows(partitions_def, days) if partitions_def else {}
        _run(defs, instance, table_job_name(spec.ref), tags, say)
    for export in project.exports:
        partitions_def = partitions_for(export.window)
        tags = _recent_windows(partitions_def, days) if partitions_def else {}
        _run(defs, instance, export_job_name(export.spec.name), tags, say)
    return summarize(project, settings, instance)


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


def _run(defs: Definitions, instance: DagsterInstance, job_name: str, tags: dict[str, str], say: Any) -> None:
    scope = f" windows {tags[RANGE_START]} .. {tags[RANGE_END]}" if tags else ""
    started = time.perf_counter()
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, tags=tags, run_config=QUIET, raise_on_error=True
    )
    rows = {}
    for event in result.get_asset_materialization_events():
        m = event.step_materialization_data.materialization
        meta = m.metadata
        moved = meta.get("derive/rows_read") or meta.get("derive/rows_written")
        verb = "read" if "derive/rows_read" in meta else "wrote"
        rows[m.asset_key.to_user_string()] = (verb, moved.value if moved else 0)
    detail = ", ".join(f"{k} {verb} {n:,}" for k, (verb, n) in rows.items())
    say(f"==> {job_name}{scope}: {detail} ({time.perf_counter() - started:.1f}s)")


def summarize(project: SpecProject, settings: DeriveSettings, instance: DagsterInstance) -> dict[str, Any]:
    from dagster import AssetKey

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
        summary[table.spec.ref] = {
            "rows": warehouse.row_count(table.spec.ref),
            "strategy": table.spec.strategy.type,
        }
    store = build_online_store(settings)
    for export in project.exports:
        table = online_table(export)
        summary[f"online:{table.ref}"] = {"rows": store.count(table), "strategy": f"from {export.spec.table}"}
    return summary
