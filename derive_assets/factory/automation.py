"""A spec's cron becomes its asset's automation condition, evaluated by Dagster's automation sensor.

There are no schedules: `AutomationCondition.on_cron(cron, "UTC")` requests an asset once per cron tick, as soon as
everything it reads has been updated since that tick. Downstream work is therefore ordered by dependency, not by
clock offsets between crons: a table whose cron is the same as its upstream's runs right after the upstream's run
of that tick. A downstream cron *later* than its upstream's waits for the upstream's next run after it (a day
later for a daily upstream), so give a table the cron at which it should start waiting, usually its upstream's.

For a windowed (partitioned) asset, `on_cron` targets the latest time window (`in_latest_time_window()`): at a
tick, the last *complete* window, since a time-window partition exists only once it has ended, which is what the
schedules requested before. An asset whose spec has no cron gets no condition: it runs when asked (a job, the UI,
`dagster asset materialize`), like a spec without a schedule did.

`AUTOMATION_SENSOR` is Dagster's default automation sensor, declared so that it is running from the start:
Dagster adds one by itself for assets with conditions, but stopped until someone turns it on in the UI.
"""

from __future__ import annotations

from functools import cache

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

AUTOMATION_SENSOR_NAME = "default_automation_condition_sensor"
"""Dagster's own name for its default sensor: the daemon and the UI treat it as such, and a location that names
its own sensor so gets no second, stopped one."""


def cron_condition(cron: str | None) -> AutomationCondition | None:
    """The condition for an asset whose spec says `schedule: <cron>` (UTC); None without a cron.

    Windowed and unwindowed assets get the same `on_cron`: its latest-time-window part is the last complete
    window of a windowed asset and always true for an unwindowed one (see the module docstring).
    """
    return None if cron is None else _on_cron(cron)


@cache
def _on_cron(cron: str) -> AutomationCondition:
    """One (immutable) condition per cron, shared by its assets: building `on_cron` takes ~2 ms, and 1,000 specs
    mostly share a handful of crons."""
    return AutomationCondition.on_cron(cron, "UTC")


def automation_sensor() -> AutomationConditionSensorDefinition:
    """The sensor that evaluates every asset's condition, running as soon as the code location loads (the
    daemon's default of 30 s between evaluations). Assets without a condition are never requested by it."""
    return AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR_NAME,
        target=AssetSelection.all(),
        default_status=DefaultSensorStatus.RUNNING,
    )
