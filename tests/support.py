"""Helpers shared by the embedded and integration tests (importable as `support`: tests/ is on sys.path)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey, DagsterInstance, Definitions, ExecuteInProcessResult

from derive_assets.factory.runs import materialize_keys

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

Keys = Iterable[AssetKey | str] | AssetKey | str
"""Asset keys as `AssetKey`s or as the UI writes them (`analytics/daily_payments_by_region`); one key alone is fine."""


def asset_keys(keys: Keys) -> list[AssetKey]:
    """`keys` as a list of `AssetKey`s (a string is a key's user string: `dataset/name`)."""
    items = [keys] if isinstance(keys, AssetKey | str) else list(keys)
    return [k if isinstance(k, AssetKey) else AssetKey.from_user_string(k) for k in items]


def materializations(result: ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Each materialization of a run, by asset key (user string): its metadata values."""
    return {
        e.step_materialization_data.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in e.step_materialization_data.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }


def run_assets(
    defs: Definitions,
    instance: DagsterInstance,
    keys: Keys,
    partition: str | None = None,
    ok: bool = True,
    partition_range: tuple[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Materialize `keys` in one run in process (`materialize_keys`); assert it succeeded (or failed); return each
    materialization's metadata, by asset key."""
    result = materialize_keys(
        defs,
        asset_keys(keys),
        instance=instance,
        partition_key=partition,
        partition_range=partition_range,
        run_config=QUIET,
    )
    assert result.success is ok
    return materializations(result)


def run_job(
    defs: Definitions, instance: DagsterInstance, job: str, partition: str | None = None, ok: bool = True
) -> dict[str, dict[str, Any]]:
    """Execute a job (a `replicate_<source>` job, a test's own job) in process; assert it succeeded (or failed);
    return each materialization's metadata. Spec assets run by key: `run_assets`."""
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=partition, run_config=QUIET, raise_on_error=False
    )
    assert result.success is ok
    return materializations(result)


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
    return outcome(instance, result)


def execute_assets(
    defs: Definitions, instance: DagsterInstance, keys: Keys, partition: str | None = None
) -> Outcome:
    """Materialize `keys` in one run in process (`materialize_keys`), succeed or fail, and collect its errors'
    messages and its whole log."""
    result = materialize_keys(
        defs, asset_keys(keys), instance=instance, partition_key=partition, run_config=QUIET
    )
    return outcome(instance, result)


def outcome(instance: DagsterInstance, result: ExecuteInProcessResult) -> Outcome:
    """A finished run's `Outcome`: its errors' messages and its whole log, read from `instance`."""
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


def daily_orders_table(name: str, schedule: str = "0 1 * * *", **fields: Any) -> dict[str, Any]:
    """A daily merge table `bench.<name>` over `shop.orders` (`shop_source`), with the cron `schedule`; `fields`
    add or override top-level fields, e.g. `kubernetes`."""
    return {
        "name": name,
        "dataset": "bench",
        "owner": "team:shop",
        "strategy": {"type": "merge", "unique_key": ["order_id"]},
        "schedule": schedule,
        "window": {"size": "1d", "start": "2026-03-01"},
        "partition": {"key": "day"},
        "columns": [
            {"name": "order_id", "type": "INT64"},
            {"name": "day", "type": "DATE", "constraints": {"not_null": True}},
        ],
        "sql": "SELECT o.order_id, DATE(o.created_at) AS day FROM shop.orders AS o\n"
        "WHERE o.created_at >= @window_start AND o.created_at < @window_end\n",
        **fields,
    }


def events_source(**fields: Any) -> dict[str, Any]:
    """A fresh spec of the SQLite source `shop` with one table, `events` (key `id`, cursor `updated_at`), whose
    URL variable is never set (the tests that use it build definitions or simulate runs); `fields` override or add
    top-level fields, e.g. `schedule`."""
    return {
        "kind": "source",
        "name": "shop",
        "type": "sqlite",
        "connection_env": "DERIVE_TEST_SHOP_URL_UNSET",
        "owner": "team:shop",
        "tables": [
            {
                "name": "events",
                "primary_key": ["id"],
                "cursor": "updated_at",
                "columns": [
                    {"name": "id", "type": "INT64"},
                    {"name": "kind", "type": "STRING"},
                    {"name": "updated_at", "type": "TIMESTAMP"},
                ],
            }
        ],
        **fields,
    }


def sensor_tick(defs: Definitions, name: str, instance: DagsterInstance, cursor: str | None = None) -> Any:
    """One evaluation of the sensor `name` of `defs`, as the daemon makes it: with the definitions' own resources
    (those the sensor requires, as the code server merges them into its context) and its repository. Returns
    Dagster's `SensorExecutionData` (`run_requests`, `skip_message`, `cursor`)."""
    from dagster import build_sensor_context

    sensor = defs.resolve_sensor_def(name)
    resources = {k: v for k, v in (defs.resources or {}).items() if k in sensor.required_resource_keys}
    with build_sensor_context(
        instance=instance, resources=resources, repository_def=defs.get_repository_def(), cursor=cursor
    ) as context:
        return sensor.evaluate_tick(context)
