"""Each asset's automation condition, evaluated by Dagster's automation sensor: a table refreshes as soon as
what it reads is ready, and no sooner. docs/automation.md says which condition each kind of asset has, and why.

Built only from Dagster's own operands (the daemon evaluates them; a custom condition class would need the
user-code sensor, limited to 500 assets). Every derived asset gets one (`table_condition`, `export_condition`):

    (  window       in_latest_time_window(lookback)        the latest complete window (+ `lookback` before it)
     & trigger      (cron)    cron_tick_passed(cron).since_last_handled() & all_deps_updated_since_cron(cron)
                    (no cron) any_deps_updated().since(requested, not in an evaluation an input updated)
                                                                                 (latest window only)
     | catch_up     in_latest_time_window(1 before) & missing() & ~execution_failed()   (a new window, table) )
    & ready         ~in_progress() & ~any_deps_missing() & ~any_deps_in_progress()
                    & all_deps_blocking_checks_passed() [& inputs_complete]

- A window exists (is a Dagster partition) only once it has ended, so "complete" is Dagster's own rule; `lookback`
  widens `in_latest_time_window` by N windows, and only the cron trigger reaches those: lookback windows re-run
  at the tick, when their inputs changed since it (dbt microbatch style), never on each update of a source.
- A missing window is filled in the latest window and the one before it (`_catch_up`): a day that ended while its
  inputs were still being built is no longer the latest at 00:00, and would otherwise stay missing for good.
- An input's update is forgotten once the asset was requested after it, not when the asset materializes: a run
  that started before the update did not read it (`_input_updated`).
- `since_last_handled` forgets a trigger once the window was requested (or updated), and a missing window whose
  run failed waits for the next trigger: a failed run is not retried every 30 s. A missing latest window needs
  no trigger, so a fresh deployment (or a new day) fills them as soon as its inputs are there, without a cron tick.
- `inputs_complete` is only on a table that reads a table whose windows straddle its own (weekly inputs to a
  monthly table): Dagster's dependency operands see only the input windows that exist, so January would launch
  on February 1st without the week of January 26th (dagster#25723). It holds once an input-window boundary
  passed after the table's latest window ended (`cron_tick_passed(input).since(cron_tick_passed(own))`), and
  `~any_deps_missing` then needs that week materialized.

Conditions are immutable and shared: one object per distinct shape (cron, lookback, window size, ...), cached,
since building one costs ~2 ms and 1,000+ specs share a handful of shapes.

`automation_sensor()` is Dagster's default automation sensor, declared so that it is running from the start
(Dagster adds one by itself, stopped until someone turns it on in the UI).
"""

from __future__ import annotations

import calendar
import datetime as dt
from functools import cache

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

from derive_assets.settings import automation_interval_seconds
from derive_assets.specs.models import WindowSize

AUTOMATION_SENSOR_NAME = "default_automation_condition_sensor"
"""Dagster's own name for its default sensor: the daemon and the UI treat it as such, and a location that names
its own sensor so gets no second, stopped one."""
WINDOW_CRONS: dict[str, str] = {"1h": "0 * * * *", "1d": "0 0 * * *", "1w": "0 0 * * 0", "1mo": "0 0 1 * *"}
"""Where each window size's windows end (Dagster's hourly/daily/weekly/monthly partitions, UTC): weeks on Sundays."""
_ORDER = ("1h", "1d", "1w", "1mo")


def cron_condition(cron: str | None) -> AutomationCondition | None:
    """A source table's condition: `on_cron` of the source's `schedule`; None without one (the source's sensor
    requests its tables when they have new rows)."""
    return None if cron is None else _on_cron(cron)


@cache
def _on_cron(cron: str) -> AutomationCondition:
    return AutomationCondition.on_cron(cron, "UTC")


def straddles(size: WindowSize, input_size: WindowSize) -> bool:
    """Whether a `size` window can end inside an `input_size` window: the input is coarser (a day read by an
    hourly table) or the two do not nest (weeks and months)."""
    if input_size == size:
        return False
    if {size, input_size} == {"1w", "1mo"}:
        return True
    return _ORDER.index(input_size) > _ORDER.index(size)


def table_condition(
    cron: str | None,
    size: WindowSize | None,
    lookback: int | None = None,
    straddling: tuple[WindowSize, ...] = (),
) -> AutomationCondition:
    """A core/derived/Python table's condition (module docstring): `cron` its `schedule`, `size` its window's
    (None: unwindowed), `lookback` its windows re-run at each tick, `straddling` the window sizes of its inputs
    whose windows straddle its own (`straddles`). Cached per distinct arguments."""
    return _table_condition(cron, size, lookback, tuple(sorted(set(straddling))))


@cache
def _table_condition(
    cron: str | None, size: WindowSize | None, lookback: int | None, straddling: tuple[WindowSize, ...]
) -> AutomationCondition:
    if cron is None:
        trigger = _input_updated("input updated")
        label = "after any input changes"
    else:
        trigger = _cron_trigger(cron)
        label = f"after its inputs, on {cron} (UTC)"
    if size is None:
        return ((trigger | _missing()) & _ready(size, straddling)).with_label(label)
    if cron is None or not lookback:  # lookback windows re-run on the cron's ticks only (module docstring)
        lookback = None
    window = _window(size, lookback)
    condition = ((window & trigger) | (_catch_up(size) & _missing())) & _ready(size, straddling)
    windows = f"latest {size} window" + (f" + {lookback} before it" if lookback else "")
    return condition.with_label(f"{label}; {windows}")


@cache
def export_condition(cron: str | None, size: WindowSize | None) -> AutomationCondition:
    """An export's: each window of its table that was updated (and passed its blocking checks) is exported,
    any window, not only the latest, so a backfill or a lookback re-run of the table reaches the online store
    too. `size` is its table's window size (None: unwindowed); a missing window is filled as a table's is
    (`_catch_up`). With an optional `schedule`, also not before a tick passed since the export last ran."""
    follow = _input_updated("table updated")
    new = _missing() if size is None else _catch_up(size) & _missing()
    condition = (follow | new) & _ready(None, ())
    if cron is not None:
        gate = AutomationCondition.cron_tick_passed(cron, "UTC").since_last_handled()
        condition = condition & gate.with_label(f"cron tick passed ({cron}, UTC)")
    return condition.with_label("follows its table" if cron is None else f"follows its table, on {cron}")


@cache
def _input_updated(label: str) -> AutomationCondition:
    """(`label`) An input was updated since the asset was last requested. Not `since_last_handled()`, which a
    materialization also resets: a run that started before an input's update did not read it, yet its
    materialization would clear that update, and the asset would wait for the next one with stale rows. Nor does
    a request reset it in the evaluation an input updated (Dagster sees a request one evaluation later, when its
    run may already have started): the asset runs once more then, which is harmless."""
    handled = (
        AutomationCondition.newly_requested() & ~AutomationCondition.any_deps_updated()
    ) | AutomationCondition.initial_evaluation()
    return (
        AutomationCondition.any_deps_updated().since(handled.with_label("requested since")).with_label(label)
    )


def _cron_trigger(cron: str) -> AutomationCondition:
    tick = AutomationCondition.cron_tick_passed(cron, "UTC").since_last_handled()
    return (tick & AutomationCondition.all_deps_updated_since_cron(cron, "UTC")).with_label(
        f"tick of {cron} passed, every input updated since"
    )


def _missing() -> AutomationCondition:
    """Never materialized, and its last run (if any) did not fail: a fresh deployment, a new window, a new table.
    Not `newly_missing`, which the first evaluation's reset swallows (it only sees windows added later)."""
    return (AutomationCondition.missing() & ~AutomationCondition.execution_failed()).with_label(
        "missing (and not failed)"
    )


def _latest() -> AutomationCondition:
    return AutomationCondition.in_latest_time_window()


def _catch_up(size: WindowSize) -> AutomationCondition:
    """The windows a missing one is filled in without a trigger: the latest complete window and the one before
    it. The one before covers a window that ended while its inputs were still being built (sources replicating
    at 23:59, their day is over at 00:00 and no longer the latest), which would otherwise stay missing; earlier
    ones are a backfill's job."""
    return AutomationCondition.in_latest_time_window(lookback_delta(size, 1)).with_label(
        "latest window or the one before it"
    )


def _window(size: WindowSize, lookback: int | None) -> AutomationCondition:
    if not lookback:
        return _latest()
    return AutomationCondition.in_latest_time_window(lookback_delta(size, lookback)).with_label(
        f"latest window and the {lookback} before it"
    )


def _ready(size: WindowSize | None, straddling: tuple[WindowSize, ...]) -> AutomationCondition:
    ready = (
        ~AutomationCondition.in_progress()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & AutomationCondition.all_deps_blocking_checks_passed()
    )
    if size is not None:
        for input_size in straddling:
            ready = ready & _inputs_complete(size, input_size)
    return ready.with_label("inputs ready")


def _inputs_complete(size: WindowSize, input_size: WindowSize) -> AutomationCondition:
    """True once an `input_size` window ended after the latest `size` window did: then the input window that
    straddles the end of the table's latest window exists (`~any_deps_missing` needs it materialized)."""
    passed = AutomationCondition.cron_tick_passed(WINDOW_CRONS[input_size], "UTC").since(
        AutomationCondition.cron_tick_passed(WINDOW_CRONS[size], "UTC")
    )
    return passed.with_label(f"a {input_size} input window ended after the latest window")


def lookback_delta(size: WindowSize, lookback: int) -> dt.timedelta:
    """The `in_latest_time_window` delta that takes the latest window and exactly `lookback` before it: Dagster
    takes every window that ends after `latest end - delta`, so the delta must exceed `lookback` windows and not
    exceed `lookback + 1` of them. Months differ in length: more than the longest `lookback` consecutive months,
    which is never more than the shortest `lookback + 1` ones."""
    if size == "1h":
        return dt.timedelta(hours=lookback + 1)
    if size == "1d":
        return dt.timedelta(days=lookback + 1)
    if size == "1w":
        return dt.timedelta(weeks=lookback + 1)
    return dt.timedelta(days=_longest_months(lookback + 1))


@cache
def _longest_months(n: int) -> int:
    """Days in the longest run of `n` consecutive months (over a 400-year Gregorian cycle)."""
    lengths = [calendar.monthrange(2000 + i // 12, i % 12 + 1)[1] for i in range(400 * 12 + n)]
    window = sum(lengths[:n])
    longest = window
    for i in range(n, len(lengths)):
        window += lengths[i] - lengths[i - n]
        longest = max(longest, window)
    return longest


def automation_sensor() -> AutomationConditionSensorDefinition:
    """The sensor that evaluates every asset's condition, running as soon as the code location loads, every
    `DERIVE_AUTOMATION_INTERVAL_SECONDS` (`settings.automation_interval_seconds`, default 30). `emit_backfills=True` (Dagster's default, set explicitly): several windows of one asset
    requested in one tick become one backfill, which follows the asset's backfill policy (a single run by
    default, `backfill.max_partitions_per_run` windows per run with one) instead of one run per window."""
    return AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR_NAME,
        target=AssetSelection.all(),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=automation_interval_seconds(),
        emit_backfills=True,
    )
