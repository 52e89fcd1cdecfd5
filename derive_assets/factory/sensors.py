"""Source sensors: one per source, replicating its tables as soon as (and only when) they have new rows.

`replicate_<source>_sensor` ticks every `sensor.interval_seconds` of the source's spec. For each of the source's
tables it decides, in this order (the first that applies wins):

1. a run that will materialize the table is queued or in progress: leave it alone (the run reads the new rows);
2. never materialized: request it (a first run copies every row);
3. the probe (`replication/probe.py`) finds a cursor value beyond the stored watermark (`derive/watermark` of
   the latest materialization, as the replication asset reads it): request it;
3b. its warehouse table is missing (dropped for a rebuild): request it. The warehouse is opened only here, when
   the probe saw nothing, and waits at most `SENSOR_LOCK_WAIT_SECONDS` for a run's file lock;
4. the last run left a fence pending (`wait_for_open_transactions`: its read floor waits below its watermark)
   and every transaction open after that read has now ended: request one more run, which reads again from the
   old floor, picks up rows those transactions committed late behind the watermark, and moves the floor up;
5. otherwise nothing, and the tick's skip reason says why, table by table.

All requested tables of a tick go in one run. Its `run_key` names each table with the newest cursor value its
probe saw (or the fence token being settled), so the same new rows are never requested twice: the daemon drops a
request whose run key a run of this sensor already used, even if that run failed (Dagster's run retries, set in
the instance, retry transient failures; new rows make a new key). Probe failures (timeouts, an unreachable
server) skip only their table, with the fix in the tick's log or skip reason; they never show the URL's secrets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

from derive_assets.factory.jobs import source_job_name
from derive_assets.metadata_keys import SOURCE_TAG
from derive_assets.replication import watermark
from derive_assets.replication.urls import SourceConnectionError
from derive_assets.replication.watermark import CursorState, WatermarkError
from derive_assets.specs.models import SourceSpec
from derive_assets.specs.project import ReplicatedTable, SpecProject
from resources.warehouse import WarehouseUnavailable

SENSOR_LOCK_WAIT_SECONDS = 2.0
"""How long a tick waits for a warehouse whose file a run holds, before the probe alone decides."""


def sensor_name(source: str) -> str:
    return f"replicate_{source}_sensor"


def source_sensors(project: SpecProject, keys: Mapping[str, AssetKey]) -> list[SensorDefinition]:
    """One sensor per source whose `sensor.enabled` (the default); `keys`: each replicated table's ref -> the
    asset key the translator gave it."""
    sensors = []
    for source in project.sources():
        tables = [
            (rt, keys[rt.ref])
            for rt in project.replicated
            if rt.source.name == source.name and rt.ref in keys
        ]
        if source.sensor.enabled and tables:
            sensors.append(source_sensor(source, tables))
    return sensors


@dataclass(frozen=True)
class Decision:
    """What a tick decided for one table."""

    key: AssetKey
    request: bool
    reason: str
    """Why, in a few words (a skip reason's or log line's part); never holds a secret."""
    run_key_part: str = ""
    """What identifies the rows requested (the newest cursor value seen, or the fence settled)."""


def source_sensor(source: SourceSpec, tables: Sequence[tuple[ReplicatedTable, AssetKey]]) -> SensorDefinition:
    """The sensor of `source` (its tables with their asset keys)."""

    @sensor(
        name=sensor_name(source.name),
        minimum_interval_seconds=source.sensor.interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        asset_selection=[key for _, key in tables],
        required_resource_keys={"sources", "warehouse"},
        description=f"Replicates the tables of source '{source.name}' when a probe sees rows beyond their "
        f"watermark (every {source.sensor.interval_seconds} s; see docs/replication.md).",
    )
    def _probe(context: SensorEvaluationContext) -> Any:
        busy = _keys_in_progress(context.instance, source, [key for _, key in tables])
        decisions = [decide(context, source, rt, key, busy) for rt, key in tables]
        wanted = [d for d in decisions if d.request]
        summary = "; ".join(f"{d.key.to_user_string()}: {d.reason}" for d in decisions)
        if not wanted:
            return SkipReason(summary)
        context.log.info(summary)
        digest = hashlib.sha256(
            "|".join(f"{d.key.to_user_string()}={d.run_key_part}" for d in wanted).encode()
        )
        return RunRequest(
            run_key=f"{source.name}:{digest.hexdigest()[:16]}",
            asset_selection=[d.key for d in wanted],
            # The instance's run limit per source database (deployments/k8s/dagster.yaml).
            tags={SOURCE_TAG: source.name},
        )

    return _probe


def decide(
    context: SensorEvaluationContext,
    source: SourceSpec,
    rt: ReplicatedTable,
    key: AssetKey,
    busy: set[AssetKey],
) -> Decision:
    """One table's decision (the rules in the module docstring)."""
    from derive_assets.replication.probe import ProbeError, fence_cleared, probe

    table = rt.table
    if key in busy:
        return Decision(key, False, "a run of it is queued or in progress")
    timeout = source.sensor.probe_timeout_seconds
    try:
        state = _stored_state(context.instance, key, table.cursor_column.type)
        url = context.resources.sources.url_for(source)
        newest = probe(source, table, url, None if state is None else state.watermark, timeout)
        seen = watermark.to_text(newest) or "none"
        if state is None:
            return Decision(key, True, "first run (never replicated)", f"first:{seen}")
        if newest is not None:
            return Decision(
                key,
                True,
                f"new rows ({table.cursor} up to {seen} > watermark {watermark.to_text(state.watermark)})",
                seen,
            )
        # Only now the warehouse (a run may hold its file): a table dropped there is copied again in full.
        if not _in_warehouse(context, rt):
            return Decision(key, True, "first run (not in the warehouse)", f"first:{seen}")
        if _fence_pending(state) and fence_cleared(source, table, url, state.fence, timeout):
            return Decision(
                key,
                True,
                "settling: transactions open at the last read have ended; reading again from the read floor "
                f"{watermark.to_text(state.floor) or '(start)'} for rows they committed late",
                f"fence:{state.fence}",
            )
        return Decision(
            key, False, f"no row with {table.cursor} > watermark {watermark.to_text(state.watermark)}"
        )
    except (ProbeError, SourceConnectionError, WatermarkError) as exc:
        context.log.warning(str(exc))
        return Decision(key, False, f"not probed: {exc}")


def _stored_state(instance: DagsterInstance, key: AssetKey, cursor_type: Any) -> CursorState | None:
    """The cursor state of the latest materialization, read as `replication_assets._stored_state` reads it;
    None before the first."""
    event = instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    if materialization is None:
        return None
    return CursorState.from_metadata(materialization.metadata, cursor_type)


def _in_warehouse(context: SensorEvaluationContext, rt: ReplicatedTable) -> bool:
    """Whether the replicated table exists in the warehouse (a warehouse that cannot be opened now, e.g. locked
    by a run, counts as yes: the probe decides)."""
    warehouse = context.resources.warehouse
    if "lock_timeout_seconds" in type(warehouse).model_fields:
        # A tick must not wait minutes for a run's file lock (Dagster cuts a sensor off after 60 s).
        warehouse = warehouse.model_copy(update={"lock_timeout_seconds": SENSOR_LOCK_WAIT_SECONDS})
    try:
        return bool(warehouse.table_exists(rt.ref))
    except WarehouseUnavailable as exc:
        context.log.info(f"{rt.ref}: could not check the warehouse ({exc}); deciding by the probe")
        return True


def _fence_pending(state: CursorState) -> bool:
    return state.fence is not None and state.pending_floor is not None and state.pending_floor != state.floor


def _keys_in_progress(
    instance: DagsterInstance, source: SourceSpec, keys: Sequence[AssetKey]
) -> set[AssetKey]:
    """The keys among `keys` that a queued or running run will materialize: runs not finished whose asset
    selection holds them, or runs of the source's job without a selection (the whole job)."""
    wanted, busy = set(keys), set()
    for run in instance.get_runs(RunsFilter(statuses=list(NOT_FINISHED_STATUSES))):
        if run.asset_selection is not None:
            busy |= wanted & set(run.asset_selection)
        elif run.job_name == source_job_name(source.name):
            busy |= wanted
    return busy
