"""Helpers shared by the embedded and integration tests (importable as `support`: tests/ is on sys.path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dagster import DagsterInstance, Definitions, ExecuteInProcessResult

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


def error_messages(error: Any) -> list[str]:
    """The messages of the errors a Dagster step error wraps (`cause`, `context`); Dagster's own wrappers
    ("Error occurred while handling output ... of step "<source>__<table>"") are left out."""
    found: list[str] = []
    while error is not None:
        if not (error.cls_name or "").startswith("Dagster"):
            found.append(error.message)
        error = error.cause or error.context
    return found


@dataclass(frozen=True)
class Outcome:
    """A job run in process, with what its errors say."""

    result: ExecuteInProcessResult
    errors: str
    """The messages of the run's errors and their causes, without stacks or Dagster's wrappers."""
    logs: str
    """Every log message and error with its stack: where a secret must not appear."""

    @property
    def success(self) -> bool:
        return self.result.success


def execute(defs: Definitions, instance: DagsterInstance, job: str, partition: str | None = None) -> Outcome:
    """Execute a job in process, succeed or fail, and collect its errors' messages and its whole log."""
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=partition, run_config=QUIET, raise_on_error=False
    )
    logs, messages = [], []
    for record in instance.all_logs(result.run_id):
        logs.append(record.user_message or "")
        event = record.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        if error is not None:
            logs.append(error.to_string())
            messages.extend(error_messages(error))
    return Outcome(result, "\n".join(messages), "\n".join(logs))


SHOP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("order_id", "INT64"),
    ("status", "STRING"),
    ("amount", "NUMERIC"),
    ("created_at", "TIMESTAMP"),
    ("updated_at", "TIMESTAMP"),
)


def shop_source(columns: Sequence[tuple[str, str]] = SHOP_COLUMNS) -> dict[str, Any]:
    """A fresh spec of the SQLite source `shop` with one table, `orders` (key `order_id`, cursor `updated_at`), as
    the spec-validation tests write it to `sources/shop.yaml`."""
    return {
        "kind": "source",
        "name": "shop",
        "type": "sqlite",
        "connection_env": "DERIVE_SHOP_URL",
        "owner": "team:shop",
        "tables": [
            {
                "name": "orders",
                "primary_key": ["order_id"],
                "cursor": "updated_at",
                "columns": [{"name": name, "type": type_} for name, type_ in columns],
            }
        ],
    }
