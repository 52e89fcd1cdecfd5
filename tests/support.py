"""Helpers shared by the embedded and integration tests (importable as `support`: tests/ is on sys.path)."""

from __future__ import annotations

from typing import Any

from dagster import DagsterInstance, Definitions

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_job(
    defs: Definitions, instance: DagsterInstance, job: str, partition: str | None = None, ok: bool = True
) -> dict[str, dict[str, Any]]:
    """Execute a job in process; assert it succeeded (or failed); return each materialization's metadata."""
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=partition, run_config=QUIET, raise_on_error=False
    )
    assert result.success is ok
    return {
        e.step_materialization_data.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in e.step_materialization_data.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }
