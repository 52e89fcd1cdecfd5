"""Each asset's automation condition (`derive_assets/factory/automation.py`, docs/automation.md), evaluated tick by
tick with Dagster's own utility (`evaluate_automation_conditions`, simulated times, no sleeping; harness in
`automation_ticks.py`).

What is pinned: a table's window is requested only once it is complete, not in progress, with every input window
it reads materialized and not in progress, and every input's blocking checks passed; then at its cron's tick once
every input updated since the tick (a table with a `schedule`), or whenever an input updates (without one), and its
latest window at once when missing (a fresh deployment needs no cron tick). Exports follow their table. Source
tables keep their source's `on_cron` (None without a schedule: their sensor requests them).

Simulated event times are wall-clock (Dagster records them when reported): an update reported before the
evaluation in which a cron tick passes counts as after that tick. So every test reports updates only after the
evaluation in which the tick passed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from automation_ticks import Requested, Ticks, export, project, table
from dagster import AssetKey, AutomationCondition, DefaultSensorStatus, Definitions

from derive_assets.factory.automation import (
    AUTOMATION_SENSOR_NAME,
    automation_sensor,
    cron_condition,
    export_condition,
    table_condition,
)
from derive_assets.factory.build import build_definitions
from derive_assets.python_tables import python_tables
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.errors import SpecValidationError
from derive_assets.specs.project import load_project

DAY = dt.date(2026, 3, 5)
SOURCES = {"accounts/auth", "orders/orders", "payments/payments", "profiles/profile"}
DAILY = (
    "analytics/daily_payments_by_region"  # 30 0 * * *, daily; reads core/user_detail and payments/payments
)
ORDER_FACTS = "analytics/order_facts"  # 10 0 * * *, daily; reads orders/orders and core/user_detail
SCORES = "features/region_scores"  # no schedule, daily; reads DAILY
REGION_EXPORT = "online/region_payments_online"  # no schedule, daily; exports DAILY
USER_DETAIL = "core/user_detail"  # no schedule, unwindowed; reads accounts/auth and profiles/profile
PROFILE_EXPORT = "online/user_profile_online"  # no schedule, unwindowed; exports USER_DETAIL
TOP_SPENDERS = "analytics/top_spenders"  # 0 3 * * *, unwindowed; reads payments and user_detail


@pytest.fixture(scope="module")
def shipped() -> Definitions:
    return build_definitions(
        DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=PROJECT_ROOT / ".derive")
    )


@pytest.fixture
def ticks(shipped: Definitions):
    clock = Ticks(shipped, DAY)
    yield clock
    clock.instance.dispose()


# ------------------------------------------------------------------------------------------------ the conditions


def test_every_asset_has_the_condition_of_its_kind_and_nothing_is_a_schedule(shipped: Definitions):
    project_ = load_project(PROJECT_ROOT / "table_specs")
    expected: dict[str, AutomationCondition | None] = {
        rt.ref.replace(".", "/"): cron_condition(rt.source.schedule) for rt in project_.replicated
    }
    for t in project_.tables:
        size = t.spec.window.size if t.spec.window else None
        expected[t.spec.ref.replace(".", "/")] = table_condition(t.spec.schedule, size, t.spec.lookback)
    for p in python_tables(project_):
        expected[p.key.to_user_string()] = table_condition(
            p.spec.schedule, p.spec.window and p.spec.window.size
        )
    for e in project_.exports:
        expected[f"online/{e.spec.name}"] = export_condition(
            e.spec.schedule, e.window.size if e.window is not None else None
        )
    graph = shipped.resolve_asset_graph()
    assert {
        k.to_user_string(): graph.get(k).automation_condition for k in graph.get_all_asset_keys()
    } == expected
    # The shipped specs: core tables and exports follow their inputs; derived daily tables keep a daily cron.
    assert graph.get(AssetKey.from_user_string(USER_DETAIL)).automation_condition == table_condition(
        None, None
    )
    assert graph.get(AssetKey.from_user_string(DAILY)).automation_condition == table_condition(
        "30 0 * * *", "1d"
    )
    assert graph.get(AssetKey.from_user_string(SCORES)).automation_condition == table_condition(None, "1d")
    labels = {
        k.to_user_string(): c.get_label()
        for k in graph.get_all_asset_keys()
        if (c := graph.get(k).automation_condition)
    }
    assert labels[DAILY] == "after its inputs, on 30 0 * * * (UTC); latest 1d window"
    assert labels[USER_DETAIL] == "after any input changes"
    assert labels[REGION_EXPORT] == "follows its table"
    assert not list(shipped.schedules or [])
    [sensor] = [s for s in shipped.sensors or [] if s.name == AUTOMATION_SENSOR_NAME]
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 30


def test_conditions_are_shared_objects_per_shape():
    assert table_condition("30 0 * * *", "1d", 3) is table_condition("30 0 * * *", "1d", 3)
    assert table_condition("30 0 * * *", "1d", 3) != table_condition("30 0 * * *", "1d", 2)
    assert table_condition(None, "1d", 3) == table_condition(None, "1d")  # lookback needs a cron (validated)
    assert export_condition(None, "1d") is export_condition(None, "1d")


def test_the_sensor_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DERIVE_AUTOMATION_INTERVAL_SECONDS", "5")
    sensor = automation_sensor()
    assert sensor.minimum_interval_seconds == 5
    assert sensor.emit_backfills
    monkeypatch.setenv("DERIVE_AUTOMATION_INTERVAL_SECONDS", "soon")
    with pytest.raises(ValueError, match=r"DERIVE_AUTOMATION_INTERVAL_SECONDS='soon' is not a whole number"):
        automation_sensor()


# --------------------------------------------------------------------------------------------- lookback spec


def lookback_spec(tmp_path: Path, **fields: Any) -> Path:
    specs = tmp_path / "specs"
    (specs / "sources").mkdir(parents=True)
    (specs / "bench").mkdir()
    from support import events_source

    (specs / "sources" / "shop.yaml").write_text(yaml.safe_dump(events_source()))
    spec = table("daily", ["shop.events"], **fields)
    (specs / "bench" / "daily.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return specs


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"schedule": "30 0 * * *", "lookback": 0}, r"lookback: .*greater than or equal to 1"),
        (
            {"size": None, "schedule": "30 0 * * *", "lookback": 2},
            r"lookback: 2 re-runs the last 2 windows, but this table has no `window`.*add a `window`, or remove",
        ),
        (
            {"lookback": 3},
            r"lookback: 3 re-runs the 3 windows before the latest at each tick .* add a `schedule`",
        ),
    ],
)
def test_a_lookback_needs_a_window_and_a_schedule(tmp_path, fields, match):
    with pytest.raises(SpecValidationError, match=match) as info:
        load_project(lookback_spec(tmp_path, **fields))
    assert "bench/daily.yaml" in str(info.value)


def test_a_valid_lookback_loads(tmp_path):
    loaded = load_project(lookback_spec(tmp_path, schedule="30 0 * * *", lookback=3))
    [daily] = loaded.tables
    assert daily.spec.lookback == 3


# ------------------------------------------------------------------------------- a small project of one table


def test_a_fresh_deployment_fills_the_latest_window_at_once_then_the_cron_refreshes_it(tmp_path):
    defs = project(tmp_path, table("daily", ["shop.events"], schedule="30 0 * * *"))
    ticks = Ticks(defs, DAY)
    assert ticks.at("10:00:00") == {}  # shop.events has never replicated: nothing can run
    ticks.materialized("shop/events")  # its sensor replicated it
    # The latest complete window and the one before it: not the earlier ones, not 03-05 (not complete).
    assert ticks.at("10:00:30") == {"bench/daily": {"2026-03-03", "2026-03-04"}}
    ticks.ran({"bench/daily": {"2026-03-03", "2026-03-04"}})
    assert ticks.at("10:01:00") == {}
    ticks.materialized("shop/events")
    assert ticks.at("10:01:30") == {}  # a cron table does not follow each update between ticks
    # Midnight: the window 03-05 is complete and missing: built at once.
    assert ticks.at("00:00:30", days=1) == {"bench/daily": {"2026-03-05"}}
    ticks.ran({"bench/daily": {"2026-03-05"}})
    assert ticks.at("00:01:00", days=1) == {}
    # Its tick: the window again, once its input updated after the tick (late rows), once per tick.
    assert ticks.at("00:30:10", days=1) == {}
    assert ticks.at("00:30:40", days=1) == {}
    ticks.materialized("shop/events")
    assert ticks.at("00:31:10", days=1) == {"bench/daily": {"2026-03-05"}}
    assert ticks.at("00:31:40", days=1) == {}
    ticks.instance.dispose()


def test_a_window_that_ended_while_its_inputs_were_being_built_is_still_filled_after_midnight(tmp_path):
    """The CI race of stop 20: the sources replicated at 23:59, so 03-04 could not run before midnight; at 00:00
    03-05 is the latest window, and 03-04 must not stay missing for good."""
    defs = project(tmp_path, table("daily", ["shop.events"], start="2026-03-04", schedule="30 0 * * *"))
    ticks = Ticks(defs, DAY)
    assert ticks.at("23:59:30", days=-1) == {}  # 03-04 is not complete yet; 03-03 does not exist
    assert ticks.at("23:59:50") == {}  # 03-04 is complete and missing, its input has not replicated yet
    ticks.materialized("shop/events")  # its first replication ends after midnight
    assert ticks.at("00:00:20", days=1) == {"bench/daily": {"2026-03-04", "2026-03-05"}}
    ticks.ran({"bench/daily": {"2026-03-04", "2026-03-05"}})
    assert ticks.at("00:00:50", days=1) == {}
    ticks.instance.dispose()


def test_before_its_first_window_ends_a_windowed_table_is_not_requested(tmp_path):
    defs = project(tmp_path, table("daily", ["shop.events"], start="2026-03-05", schedule="30 0 * * *"))
    ticks = Ticks(defs, DAY)
    ticks.materialized("shop/events")
    assert ticks.at("10:00:00") == {}
    assert ticks.at("23:59:59") == {}
    assert ticks.at("00:00:30", days=1) == {"bench/daily": {"2026-03-05"}}
    ticks.instance.dispose()


def test_a_table_without_a_schedule_follows_each_update_of_its_input_latest_window_only(tmp_path):
    defs = project(
        tmp_path,
        table("daily", ["shop.events"], start="2026-03-04"),
        table("whole", ["shop.events"], size=None),
    )
    ticks = Ticks(defs, DAY)
    ticks.materialized("shop/events")
    first = ticks.at("10:00:00")
    assert first == {"bench/daily": {"2026-03-04"}, "bench/whole": {None}}
    ticks.ran(first)
    assert ticks.at("10:00:30") == {}
    ticks.materialized("shop/events")
    again = ticks.at("10:01:00")
    assert again == {"bench/daily": {"2026-03-04"}, "bench/whole": {None}}
    ticks.ran(again)
    assert ticks.at("10:01:30") == {}
    ticks.instance.dispose()


def test_a_missing_table_whose_run_failed_is_not_requested_every_tick_but_at_its_next_trigger(tmp_path):
    defs = project(
        tmp_path,
        table("whole", ["shop.events"], size=None),
        table("daily", ["shop.events"], start="2026-03-04"),
    )
    ticks = Ticks(defs, DAY)
    ticks.materialized("shop/events")
    assert ticks.at("10:00:00") == {"bench/whole": {None}, "bench/daily": {"2026-03-04"}}
    ticks.failed("bench/whole")  # the run failed: still missing
    ticks.failed("bench/daily", "2026-03-04")
    assert ticks.at("10:00:30") == {}
    assert ticks.at("10:01:00") == {}
    ticks.materialized("shop/events")  # the next trigger: its input updated
    assert ticks.at("10:01:30") == {"bench/whole": {None}, "bench/daily": {"2026-03-04"}}
    ticks.instance.dispose()


def test_a_source_table_is_on_its_sources_cron_or_has_no_condition(tmp_path):
    with_cron = project(tmp_path / "a", table("daily", ["shop.events"]), schedule="*/15 * * * *")
    graph = with_cron.resolve_asset_graph()
    assert graph.get(AssetKey(["shop", "events"])).automation_condition == AutomationCondition.on_cron(
        "*/15 * * * *", "UTC"
    )
    ticks = Ticks(with_cron, DAY)
    assert ticks.at("00:20:00") == {}  # the sensor's first evaluation never requests it
    assert ticks.at("00:30:10") == {"shop/events": {None}}
    assert ticks.at("00:30:40") == {}  # once per tick
    ticks.instance.dispose()
    without = project(tmp_path / "b", table("daily", ["shop.events"]))
    assert without.resolve_asset_graph().get(AssetKey(["shop", "events"])).automation_condition is None


# ------------------------------------------------------------------------------------- waiting for the inputs


def test_a_table_waits_for_every_input_window_it_reads_and_for_inputs_in_progress(tmp_path):
    defs = project(
        tmp_path,
        table("a", ["shop.events"], schedule="0 0 1 1 *"),
        table("b", ["shop.events"], schedule="0 0 1 1 *"),
        table("both", ["bench.a", "bench.b"], start="2026-03-04"),
    )
    ticks = Ticks(defs, DAY)
    ticks.materialized("shop/events")
    for day in ("2026-03-03", "2026-03-04"):
        ticks.materialized("bench/a", day)
    ticks.materialized("bench/b", "2026-03-03")
    ticks.backfill_in_progress("bench/b", ["2026-03-04"])  # its window 03-04 is being built
    assert ticks.at("10:00:00") == {}  # both: bench.b's 03-04 is in progress (and missing)
    ticks.materialized("bench/b", "2026-03-04")  # the backfill's run materialized it
    assert ticks.at("10:00:30") == {}  # the backfill is still in progress (its other steps may run)
    ticks.instance.update_backfill(ticks.instance.get_backfills()[0].with_status(_completed()))
    assert ticks.at("10:01:00") == {"bench/both": {"2026-03-04"}}
    ticks.instance.dispose()


def _completed() -> Any:
    from dagster._core.execution.backfill import BulkActionStatus

    return BulkActionStatus.COMPLETED_SUCCESS


def test_an_export_follows_its_table_not_before_its_blocking_checks_passed(tmp_path):
    defs = project(
        tmp_path,
        table("daily", ["shop.events"], start="2026-03-04", schedule="30 0 * * *"),
        table("whole", ["shop.events"], size=None),
        exports=(export("daily_online", "bench.daily"), export("whole_online", "bench.whole")),
    )
    ticks = Ticks(defs, DAY)
    assert ticks.at("10:00:00") == {}
    ticks.materialized("shop/events")
    tables = ticks.at("10:00:30")
    # The unwindowed export shares its table's run (the run skips it if a blocking check fails); the windowed
    # one waits for its table's window checks (never evaluated yet: a partitioned check is not "requested").
    assert tables == {"bench/daily": {"2026-03-04"}, "bench/whole": {None}, "online/whole_online": {None}}
    # That run: the tables materialized, their blocking checks failed, the exports were skipped. They wait.
    ticks.materialized("bench/daily", "2026-03-04", checks_pass=False)
    ticks.materialized("bench/whole", checks_pass=False)
    assert ticks.at("10:01:00") == {}
    assert ticks.at("10:01:30") == {}
    # Fixed and rebuilt: the checks pass, the exports follow (the windowed one for that window).
    ticks.materialized("bench/daily", "2026-03-04")
    ticks.materialized("bench/whole")
    assert ticks.at("10:02:00") == {"online/daily_online": {"2026-03-04"}, "online/whole_online": {None}}
    ticks.instance.dispose()


# ------------------------------------------------------------------------------------------ the shipped graph


def run_until_quiet(ticks: Ticks, clock: dt.datetime, limit: int = 10) -> list[Requested]:
    """Evaluate every 30 s from `clock`, running what is requested, until a tick requests nothing."""
    rounds: list[Requested] = []
    for i in range(limit):
        when = clock + dt.timedelta(seconds=30 * i)
        requested = ticks.at(when.time().isoformat(), day=when.date())
        if not requested:
            return rounds
        rounds.append(requested)
        ticks.ran(requested)
    raise AssertionError(f"still requesting after {limit} ticks: {rounds[-1]}")


def test_a_fresh_demo_flows_from_replicated_sources_to_exports_without_a_cron_tick(ticks: Ticks):
    """What `dagster dev` on the demo does once the sources' sensors replicated them (helper U's e2e test)."""
    assert ticks.at("10:01:00") == {}  # nothing replicated yet: nothing can run
    for key in sorted(SOURCES):
        ticks.materialized(key)  # the sources' sensors found new rows
    rounds = run_until_quiet(ticks, dt.datetime(2026, 3, 5, 10, 1, 30, tzinfo=dt.UTC))
    assert rounds == [
        # The unwindowed tables (one run: the same partitions definition) and the core table's export.
        {USER_DETAIL: {None}, PROFILE_EXPORT: {None}, TOP_SPENDERS: {None}},
        # The daily tables' latest window and the one before it, once the core table they read has
        # materialized (another run).
        {DAILY: {"2026-03-03", "2026-03-04"}, ORDER_FACTS: {"2026-03-03", "2026-03-04"}},
        # What reads those windows, once they materialized and their blocking checks passed.
        {SCORES: {"2026-03-03", "2026-03-04"}, REGION_EXPORT: {"2026-03-03", "2026-03-04"}},
    ]


def test_new_source_rows_reach_the_core_table_and_its_export_at_once(ticks: Ticks):
    for key in sorted(SOURCES):
        ticks.materialized(key)
    run_until_quiet(ticks, dt.datetime(2026, 3, 5, 10, 1, 30, tzinfo=dt.UTC))
    ticks.materialized("accounts/auth")  # a later replication found new accounts
    assert ticks.at("10:10:00") == {USER_DETAIL: {None}, PROFILE_EXPORT: {None}}
    ticks.ran({USER_DETAIL: {None}, PROFILE_EXPORT: {None}})
    assert ticks.at("10:10:30") == {}  # the daily tables do not re-run between their ticks


def test_an_input_updated_while_the_table_runs_reruns_the_table_once_it_finished(ticks: Ticks):
    """The run that started before profiles.profile's new rows arrived did not read them: it must not count as
    handling that update (Dagster's `since_last_handled` would: its materialization resets the trigger)."""
    for key in sorted(SOURCES):
        ticks.materialized(key)
    run_until_quiet(ticks, dt.datetime(2026, 3, 5, 10, 1, 30, tzinfo=dt.UTC))
    ticks.materialized("accounts/auth")
    assert USER_DETAIL in ticks.at("10:10:00")
    run = ticks.started(USER_DETAIL)
    ticks.materialized("profiles/profile")  # while the core table's run reads the old profiles
    assert USER_DETAIL not in ticks.at("10:10:30")  # in progress: wait
    ticks.finished(run, USER_DETAIL)
    requested = ticks.at("10:11:00")
    assert USER_DETAIL in requested  # the profiles update is still to be read
    ticks.ran(requested)
    assert USER_DETAIL not in ticks.at("10:11:30")  # and then it is handled: no run every tick


def test_a_daily_table_waits_for_its_unpartitioned_input_after_its_tick(ticks: Ticks):
    for key in sorted(SOURCES):
        ticks.materialized(key)
    run_until_quiet(ticks, dt.datetime(2026, 3, 5, 10, 1, 30, tzinfo=dt.UTC))
    # Midnight passed: the new windows (complete, missing) are built at the next evaluation, without a tick.
    new = run_until_quiet(ticks, dt.datetime(2026, 3, 6, 0, 20, tzinfo=dt.UTC))
    assert [set(r) for r in new] == [{DAILY, ORDER_FACTS, SCORES, REGION_EXPORT}]
    assert ticks.at("00:30:10", days=1) == {}  # DAILY's tick: nothing it reads updated since
    ticks.materialized("payments/payments")
    assert ticks.at("00:30:40", days=1) == {}  # core/user_detail has not been updated since the tick either
    ticks.materialized("accounts/auth")
    assert ticks.at("00:31:10", days=1) == {USER_DETAIL: {None}, PROFILE_EXPORT: {None}}
    assert ticks.at("00:31:40", days=1) == {}  # requested once
    ticks.ran({USER_DETAIL: {None}, PROFILE_EXPORT: {None}})
    refreshed = ticks.at("00:32:10", days=1)
    # Every input of DAILY updated since its tick: its window is refreshed (with what reads it, in its run);
    # ORDER_FACTS (10 0 * * *) still waits for orders/orders.
    assert refreshed == {DAILY: {"2026-03-05"}, SCORES: {"2026-03-05"}, REGION_EXPORT: {"2026-03-05"}}
