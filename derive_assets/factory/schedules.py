"""Each spec's cron becomes a schedule over a job of that spec's asset(s)."""
# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.

from dagster import (
    AssetKey,
    AssetSelection,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    TimeWindowPartitionsDefinition,
    define_asset_job,
    partition_loading_context,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def table_job_name(ref: str) -> str:
    """`analytics.daily` -> `analytics__daily_job` (an asset's op is already named `analytics__daily`)."""
    return ref.replace(".", "__") + "_job"


def source_job_name(source: str) -> str:
    return f"replicate_{source}"


def export_job_name(export: str) -> str:
    return f"export_{export}"


def job_for(
    name: str, keys: list[AssetKey], partitions_def: TimeWindowPartitionsDefinition | None = None
) -> UnresolvedAssetJobDefinition:
    return define_asset_job(name, selection=AssetSelection.assets(*keys), partitions_def=partitions_def)


def schedule_for(
    job: UnresolvedAssetJobDefinition, cron: str, partitions_def: TimeWindowPartitionsDefinition | None
) -> ScheduleDefinition:
    if partitions_def is None:
        return ScheduleDefinition(
            name=f"{job.name}_schedule", job=job, cron_schedule=cron, execution_timezone="UTC"
        )

    @schedule(name=f"{job.name}_schedule", job=job, cron_schedule=cron, execution_timezone="UTC")
    def _last_complete_window(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        with partition_loading_context(effective_dt=context.scheduled_execution_time):
            key = partitions_def.get_last_partition_key()
        if key is None:
            return SkipReason("no complete window yet: the first window has not ended")
        return RunRequest(run_key=key, partition_key=key)

    return _last_complete_window
