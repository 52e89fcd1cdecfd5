"""A spec's cron is its asset's `AutomationCondition.on_cron(cron, "UTC")`, evaluated tick by tick with Dagster's own
evaluation utility (`evaluate_automation_conditions`, simulated evaluation times, no sleeping).

What `on_cron` means (dagster `declarative_automation/automation_condition.py`), pinned by these tests:
`in_latest_time_window()` (a windowed asset: its last *complete* window only; an unwindowed one: always)
& `cron_tick_passed(cron).since_last_handled()` (a tick passed since the asset was last requested or updated)
& `all_deps_updated_since_cron(cron)` (every asset it reads updated since that tick, or requested in this same tick
*and able to share its run*: `will_be_requested` counts only for a dependency of the same partitions definition).
So a table waits for what it reads instead of for a clock offset, and a daily table never starts in the same tick
as an unpartitioned upstream (they cannot share a run, so the table waits for the upstream's run to materialize).

A request's run is simulated, where a test says so, by reporting the materializations it would make
(`report_runless_asset_event`), always between two evaluations. As the real sensor (every 30 s), every tick is
followed by another evaluation before the next tick: Dagster sees a request as handled one evaluation later, and a
cron tick passing in that same evaluation would be lost.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    AssetKey,
    AssetMaterialization,
    AutomationCondition,
    DagsterInstance,
    Definitions,
    evaluate_automation_conditions,
)
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from support import events_source

from derive_assets.factory.build import build_definitions
from derive_assets.python_tables import python_tables
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project

SOURCES = {"accounts/auth", "orders/orders", "payments/payments", "profiles/profile"}
"""The shipped sources' tables: every source replicates on `*/15 * * * *`."""
DAILY = (
    "analytics/daily_payments_by_region"  # 30 0 * * *, daily; reads core/user_detail and payments/payments
)
SCORES = "features/region_scores"  # 30 0 * * *, daily; reads DAILY
REGION_EXPORT = "online/region_payments_online"  # 30 0 * * *, daily; exports DAILY
USER_DETAIL = "core/user_detail"  # 5 * * * *, unpartitioned; reads accounts/auth and profiles/profile
PROFILE_EXPORT = "online/user_profile_online"  # 15 * * * *, unpartitioned; exports USER_DETAIL
TOP_SPENDERS = "analytics/top_spenders"  # 0 3 * * *, unpartitioned (replace); reads payments and user_detail

Requested = dict[str, set[str | None]]


class Ticks:
    """The automation sensor's evaluations, one after the other, on one instance (the cursor carried over)."""

    def __init__(self, defs: Definitions, day: dt.date) -> None:
        self.defs = defs
        self.day = day
        self.instance = DagsterInstance.ephemeral()
        self.cursor: AssetDaemonCursor | None = None
        self.keys = sorted(defs.resolve_asset_graph().get_all_asset_keys(), key=lambda k: k.to_user_string())

    def at(self, clock: str, days: int = 0) -> Requested:
        """Evaluate every condition at `clock` (`HH:MM:SS`, UTC) on `day` (+ `days`): what is requested, by key."""
        when = dt.datetime.combine(
            self.day + dt.timedelta(days=days), dt.time.fromisoformat(clock), tzinfo=dt.UTC
        )
        with warnings.catch_warnings():  # Dagster's own deprecation notice about its default selection
            warnings.simplefilter("ignore")
            result = evaluate_automation_conditions(
                defs=self.defs, instance=self.instance, evaluation_time=when, cursor=self.cursor
            )
        self.cursor = result.cursor
        return {
            key.to_user_string(): set(result.get_requested_partitions(key))
            for key in self.keys
            if result.get_num_requested(key)
        }

    def materialized(self, key: str, partition: str | None = None) -> None:
        """A run (or anything else) materialized `key` (its window `partition`)."""
        self.instance.report_runless_asset_event(
            AssetMaterialization(asset_key=AssetKey.from_user_string(key), partition=partition)
        )

    def ran(self, requested: Requested) -> None:
        """Every requested asset's run succeeded."""
        for key, partitions in requested.items():
            for partition in partitions:
                self.materialized(key, partition)


@pytest.fixture(scope="module")
def shipped() -> Definitions:
    return build_definitions(
        DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=PROJECT_ROOT / ".derive")
    )


@pytest.fixture
def ticks(shipped: Definitions) -> Iterator[Ticks]:
    clock = Ticks(shipped, dt.date(2026, 3, 5))
    yield clock
    clock.instance.dispose()


# ------------------------------------------------------------------------------------------------ the conditions


def shipped_crons() -> dict[str, str | None]:
    """Every shipped asset's spec cron, by asset key: a source's for its tables."""
    project = load_project(PROJECT_ROOT / "table_specs")
    crons: dict[str, str | None] = {rt.ref.replace(".", "/"): rt.source.schedule for rt in project.replicated}
    crons |= {t.spec.ref.replace(".", "/"): t.spec.schedule for t in project.tables}
    crons |= {t.key.to_user_string(): t.spec.schedule for t in python_tables(project)}
    crons |= {f"online/{e.spec.name}": e.spec.schedule for e in project.exports}
    return crons


def test_every_asset_is_on_its_specs_cron_in_utc_and_nothing_is_a_schedule(shipped: Definitions):
    graph = shipped.resolve_asset_graph()
    crons = shipped_crons()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == set(crons)
    for key, cron in crons.items():
        assert cron is not None, key  # every shipped spec has a cron
        condition = graph.get(AssetKey.from_user_string(key)).automation_condition
        assert condition == AutomationCondition.on_cron(cron, "UTC"), key
        assert condition is not None and condition.get_label() == f"on_cron({cron}, UTC)"
    assert not list(shipped.schedules or [])
    [sensor] = list(shipped.sensors or [])
    assert sensor.name == "default_automation_condition_sensor"


# ------------------------------------------------------------------------------- a small project of one table


SOURCE: dict[str, Any] = events_source(schedule="30 0 * * *")


def daily_table(name: str, start: str, schedule: str | None) -> dict[str, Any]:
    table: dict[str, Any] = {
        "name": name,
        "dataset": "bench",
        "owner": "team:shop",
        "strategy": {"type": "merge", "unique_key": ["id"]},
        "window": {"size": "1d", "start": start},
        "partition": {"key": "day"},
        "columns": [
            {"name": "id", "type": "INT64", "constraints": {"not_null": True}},
            {"name": "day", "type": "DATE", "constraints": {"not_null": True}},
            {"name": "kind", "type": "STRING"},
        ],
        "sql": "SELECT e.id, DATE(e.updated_at) AS day, e.kind FROM shop.events AS e\n"
        "WHERE e.updated_at >= @window_start AND e.updated_at < @window_end\n",
    }
    if schedule is not None:
        table["schedule"] = schedule
    return table


def small_project(tmp_path: Path, *tables: dict[str, Any]) -> Definitions:
    """The SQLite source `shop` (replicated at 00:30) and `tables` (daily tables reading shop.events)."""
    specs = tmp_path / "specs"
    (specs / "sources").mkdir(parents=True)
    (specs / "bench").mkdir()
    (specs / "sources" / "shop.yaml").write_text(yaml.safe_dump(SOURCE))
    for table in tables:
        (specs / "bench" / f"{table['name']}.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    return build_definitions(DeriveSettings(specs_dir=specs, home=tmp_path / "home"))


def test_a_windowed_table_requests_exactly_its_last_complete_window_once_its_tick_passed(tmp_path):
    defs = small_project(
        tmp_path,
        daily_table("daily_events", "2026-03-01", "30 0 * * *"),
        daily_table("adhoc_events", "2026-03-01", None),
    )
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey(["bench", "adhoc_events"])).automation_condition is None  # no cron: on request
    ticks = Ticks(defs, dt.date(2026, 3, 5))
    assert ticks.at("00:20:00") == {}  # the sensor's first evaluation never requests (no tick passed yet)
    assert ticks.at("00:29:59") == {}  # before the tick: nothing
    # On the tick: the source's table. The daily table reads it and cannot share its run (another partitions
    # definition), so it waits for that run to materialize.
    source = ticks.at("00:30:10")
    assert source == {"shop/events": {None}}
    assert ticks.at("00:30:40") == {}  # once per tick, even before the run materialized
    ticks.ran(source)
    # Then the window 2026-03-04 alone: not the earlier windows it never built, not 2026-03-05 (not complete).
    assert ticks.at("00:31:10") == {"bench/daily_events": {"2026-03-04"}}
    assert ticks.at("00:31:40") == {}
    assert ticks.at("23:59:59") == {}
    ticks.ran(source := ticks.at("00:30:10", days=1))
    assert source == {"shop/events": {None}}
    assert ticks.at("00:30:40", days=1) == {"bench/daily_events": {"2026-03-05"}}
    assert ticks.at("00:31:10", days=1) == {}
    # Missed ticks are not caught up: three days later, only the then-latest window.
    ticks.ran(ticks.at("00:30:10", days=4))
    assert ticks.at("00:30:40", days=4) == {"bench/daily_events": {"2026-03-08"}}
    ticks.instance.dispose()


def test_before_its_first_window_ends_a_windowed_table_is_not_requested(tmp_path):
    defs = small_project(tmp_path, daily_table("daily_events", "2026-03-05", "30 0 * * *"))
    ticks = Ticks(defs, dt.date(2026, 3, 5))
    assert ticks.at("00:20:00") == {}
    ticks.ran(ticks.at("00:30:10"))
    assert ticks.at("00:30:40") == {}  # its first window (2026-03-05) has not ended: nothing to request
    assert ticks.at("23:59:59") == {}
    ticks.ran(ticks.at("00:30:10", days=1))
    assert ticks.at("00:30:40", days=1) == {"bench/daily_events": {"2026-03-05"}}
    ticks.instance.dispose()


# ------------------------------------------------------------------------------------------ the shipped graph


def test_an_unpartitioned_source_table_is_requested_on_its_sources_cron(ticks: Ticks):
    assert ticks.at("00:20:00") == {}
    assert ticks.at("00:29:59") == {}
    assert ticks.at("00:30:10") == {key: {None} for key in SOURCES}  # */15: the 00:30 tick
    assert ticks.at("00:30:40") == {}  # once per tick
    # Nothing materialized (the run failed): not retried before the next tick, requested again on it.
    assert ticks.at("00:44:59") == {}
    assert ticks.at("00:45:10") == {key: {None} for key in SOURCES}


def test_a_daily_table_waits_for_its_unpartitioned_upstream_to_materialize_after_its_tick(ticks: Ticks):
    assert ticks.at("00:20:00") == {}
    # DAILY's tick passed, but core/user_detail has not been updated since, and cannot run with it: it waits.
    sources = ticks.at("00:30:10")
    assert sources == {key: {None} for key in SOURCES}
    ticks.ran(sources)
    assert ticks.at("00:30:40") == {}  # payments/payments is updated; core/user_detail still is not
    # core/user_detail's tick (5 * * * *): it runs with the sources it reads (one unpartitioned run). DAILY does
    # not start in this tick: its upstream's run, of another partitions definition, is a separate run.
    upstream = ticks.at("01:05:10")
    assert upstream == {**{key: {None} for key in SOURCES}, USER_DETAIL: {None}}
    assert ticks.at("01:05:40") == {}  # requested, not yet materialized: DAILY still waits
    ticks.ran(upstream)
    # Now every table DAILY reads has been updated since its 00:30 tick: yesterday's window, and the daily
    # assets reading it in the same run (same partitions definition and window, so Dagster runs them in one run,
    # DAILY's step first).
    assert ticks.at("01:06:10") == {
        DAILY: {"2026-03-04"},
        SCORES: {"2026-03-04"},
        REGION_EXPORT: {"2026-03-04"},
    }
    assert ticks.at("01:06:40") == {}


def test_a_downstream_table_is_requested_only_after_its_upstream_window_materialized(ticks: Ticks):
    assert ticks.at("00:20:00") == {}
    ticks.ran(ticks.at("00:30:10"))  # the sources; DAILY waits for core/user_detail (above)
    assert ticks.at("00:31:00") == {}
    ticks.materialized(DAILY, "2026-03-03")  # another window of the upstream: not the one SCORES would build
    assert ticks.at("00:32:00") == {}
    ticks.materialized(DAILY, "2026-03-04")  # e.g. `dagster asset materialize --select ... --partition`
    # The window SCORES and the export read has materialized since their tick: they are requested, for that
    # window; DAILY itself is not (it was updated since its tick).
    assert ticks.at("00:33:00") == {SCORES: {"2026-03-04"}, REGION_EXPORT: {"2026-03-04"}}
    assert ticks.at("00:34:00") == {}


def test_an_export_is_requested_after_its_table(ticks: Ticks):
    assert ticks.at("00:20:00") == {}
    upstream = ticks.at("01:05:10")  # core/user_detail's tick, with the sources it reads (one run)
    assert upstream == {**{key: {None} for key in SOURCES}, USER_DETAIL: {None}}
    assert ticks.at("01:05:40") == {}
    ticks.ran(upstream)
    assert ticks.at("01:06:10") == {
        DAILY: {"2026-03-04"},
        SCORES: {"2026-03-04"},
        REGION_EXPORT: {"2026-03-04"},
    }
    # The export's tick (15 * * * *): its table was updated before that tick, not since, and is not requested
    # in it: the export waits.
    sources = ticks.at("01:15:10")
    assert sources == {key: {None} for key in SOURCES}
    ticks.ran(sources)
    assert ticks.at("01:15:40") == {}
    ticks.materialized(USER_DETAIL)  # its table is built again (here by hand)
    assert ticks.at("01:20:00") == {PROFILE_EXPORT: {None}}
    assert ticks.at("01:20:30") == {}


def test_unpartitioned_tables_wait_for_what_they_read_then_run_with_it_in_one_run(ticks: Ticks):
    assert ticks.at("02:01:00") == {}  # the first evaluation; the 02:00 and earlier ticks are not caught up
    # core/user_detail's 02:05 tick passed, but its sources have not been updated since: it waits for their
    # 02:15 tick, and runs in their run, its export (on 15 * * * *) after it.
    chain = ticks.at("02:15:10")
    assert chain == {**{key: {None} for key in SOURCES}, USER_DETAIL: {None}, PROFILE_EXPORT: {None}}
    assert ticks.at("02:15:40") == {}
    ticks.ran(chain)
    assert ticks.at("02:16:10") == {}
    # TOP_SPENDERS' tick (0 3 * * *): payments/payments runs in this tick, but core/user_detail was updated
    # before it: TOP_SPENDERS waits for core/user_detail's next run.
    sources = ticks.at("03:00:10")
    assert sources == {key: {None} for key in SOURCES}
    ticks.ran(sources)
    assert ticks.at("03:00:40") == {}
    assert ticks.at("03:05:10") == {}  # core/user_detail's tick: its sources were updated before it: waits
    # The sources' 03:15 tick: one unpartitioned run of the sources, core/user_detail, its export and
    # TOP_SPENDERS (no partition: the whole table), in dependency order.
    assert ticks.at("03:15:10") == {
        **{key: {None} for key in SOURCES},
        USER_DETAIL: {None},
        PROFILE_EXPORT: {None},
        TOP_SPENDERS: {None},
    }
