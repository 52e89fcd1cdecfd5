"""A spec's `checks.freshness` as Dagster's own freshness checks, evaluated by one sensor.

A stale table has no run to check it in, so freshness is not an in-step check: Dagster's
`build_time_partition_freshness_checks` (windowed tables: at each tick of the deadline cron, the window completed
by then must be materialized) and `build_last_update_freshness_checks` (tables without a window, replicated
tables: the last update is at most one cron interval plus the grace old) build the checks, named
`freshness_check` as Dagster names them, and `build_sensor_for_freshness_checks` evaluates them (the sensor
`derive_freshness_checks`, running by default). Deadlines come from `derive_assets.specs.deadlines`.

A freshness check is never blocking, whatever its severity: it runs on its own, and a check that blocked would
stop an old window's backfill because the newest window is late. Its severity is Dagster's (ERROR or WARN).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagster import (
    AssetChecksDefinition,
    AssetKey,
    DefaultSensorStatus,
    SensorDefinition,
    build_last_update_freshness_checks,
    build_sensor_for_freshness_checks,
    build_time_partition_freshness_checks,
)

from derive_assets.factory.checks import dagster_severity
from derive_assets.specs.deadlines import max_age, window_deadline_cron
from derive_assets.specs.models import CheckSeverity, FreshnessCheck, Window, duration_seconds

if TYPE_CHECKING:
    from derive_assets.translator import DeriveNode

SENSOR_NAME = "derive_freshness_checks"
"""The sensor that evaluates every freshness check."""

CHECK_NAME = "freshness_check"
"""Dagster's name for each freshness check (`build_*_freshness_checks` name them all so)."""


@dataclass(frozen=True)
class Freshness:
    """One asset's freshness rule, with what its deadline derives from."""

    key: AssetKey
    rule: FreshnessCheck
    window: Window | None
    schedule: str | None

    @property
    def group(self) -> tuple[str, str | int, CheckSeverity]:
        """Assets with the same deadline and severity share one checks definition: ("window", cron, severity) or
        ("age", seconds, severity)."""
        grace = duration_seconds(self.rule.grace)
        if self.window is not None:
            cron = window_deadline_cron(self.window.size, self.window.start, grace, self.schedule)
            return ("window", cron, self.rule.severity)
        assert self.schedule is not None, (
            "a freshness check without a window needs a schedule (spec validation)"
        )
        return ("age", int(max_age(self.schedule, grace).total_seconds()), self.rule.severity)


def freshness_checks(rules: Iterable[Freshness]) -> list[AssetChecksDefinition]:
    """Dagster's freshness checks for `rules`, one definition per (deadline, severity)."""
    groups: dict[tuple[str, str | int, CheckSeverity], list[AssetKey]] = {}
    for rule in rules:
        groups.setdefault(rule.group, []).append(rule.key)
    definitions: list[AssetChecksDefinition] = []
    with _without_supersession_warnings():
        for (due_by, deadline, severity), keys in groups.items():
            if due_by == "window":
                definitions += build_time_partition_freshness_checks(
                    assets=keys, deadline_cron=str(deadline), severity=dagster_severity(severity)
                )
            else:
                definitions += build_last_update_freshness_checks(
                    assets=keys,
                    lower_bound_delta=dt.timedelta(seconds=int(deadline)),
                    severity=dagster_severity(severity),
                )
    return definitions


def freshness_sensors(checks: Sequence[AssetChecksDefinition]) -> list[SensorDefinition]:
    """The sensor that evaluates `checks` (running by default), in a list; none without checks."""
    if not checks:
        return []
    with _without_supersession_warnings():
        return [
            build_sensor_for_freshness_checks(
                freshness_checks=checks, name=SENSOR_NAME, default_status=DefaultSensorStatus.RUNNING
            )
        ]


@contextmanager
def _without_supersession_warnings() -> Iterator[None]:
    """Dagster 1.13 marks these builders superseded by `FreshnessPolicy` (evaluated by Dagster itself, shown as
    the asset's freshness state rather than a check); the issue asks for checks with a severity, so the builders
    stay, and their warning, printed by every process that loads the definitions, is silenced here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".* is superseded and its usage is discouraged", category=FutureWarning
        )
        yield


def freshness_rules(nodes: Iterable[DeriveNode], key_of: Callable[[DeriveNode], AssetKey]) -> list[Freshness]:
    """The freshness rule of every table and replicated table whose spec has `checks.freshness` (`key_of`: the
    translator's asset key). A replicated table is due by its source's schedule."""
    from derive_assets.specs.project import ReplicatedTable, Table

    rules = []
    for node in nodes:
        item = node.item
        if isinstance(item, ReplicatedTable) and (rule := item.table.checks.freshness) is not None:
            rules.append(Freshness(key_of(node), rule, None, item.source.schedule))
        elif isinstance(item, Table) and (rule := item.spec.checks.freshness) is not None:
            rules.append(Freshness(key_of(node), rule, item.spec.window, item.spec.schedule))
    return rules
