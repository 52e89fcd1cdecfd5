"""The known Declarative Automation pitfalls the issue lists, each pinned against Derive's conditions
(`factory/automation.py`) with Dagster's own evaluation (`evaluate_automation_conditions`, simulated times):

- `eager()` requests only the latest partition: a lookback re-runs its N windows, and an export follows every
  window of its table that changed, not only the latest;
- automation ignoring the backfill policy (10 windows requested in one tick becoming 10 runs): the sensor emits
  one backfill, which the asset's backfill policy splits (one run, or chunks of `max_partitions_per_run`);
- a monthly window launching before its weekly inputs exist (dagster#25723);
- requests for windows whose input windows do not exist (dagster#34094): never automated, and a backfill of
  them reads nothing instead of failing.
"""

from __future__ import annotations

import datetime as dt

import pytest
from automation_ticks import Ticks, export, project, table
from dagster import AssetKey, BackfillPolicy, TimeWindow, TimeWindowPartitionMapping
from dagster._core.definitions.automation_tick_evaluation_context import (
    build_run_requests,
    build_run_requests_with_backfill_policies,
)
from dagster._core.definitions.events import AssetKeyPartitionKey

from derive_assets.factory.automation import AUTOMATION_SENSOR_NAME, lookback_delta
from derive_assets.factory.windows import partitions_for
from derive_assets.specs.models import Window

DAY = dt.date(2026, 3, 12)
"""A Thursday; the tables' windows start on 2026-03-01."""


def days(first: str, last: str) -> set[str | None]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return {(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)}


@pytest.fixture
def lookback_ticks(tmp_path):
    """bench.daily (cron 30 0 * * *, lookback 9: ten windows at each tick) and its export, on a day when every
    window since 2026-03-01 was built."""

    def make(**extra) -> Ticks:
        defs = project(
            tmp_path,
            table("daily", ["shop.events"], schedule="30 0 * * *", lookback=9, **extra),
            exports=(export("daily_online", "bench.daily"),),
        )
        ticks = Ticks(defs, DAY)
        ticks.materialized("shop/events")
        for day in sorted(days("2026-03-01", "2026-03-11"), key=str):
            ticks.materialized("bench/daily", day)
            ticks.materialized("online/daily_online", day)
        assert ticks.at("00:20:00") == {}  # everything is built: nothing to do
        return ticks

    return make


def test_lookback_requests_the_latest_window_and_the_n_before_it_not_only_the_latest(lookback_ticks):
    ticks = lookback_ticks()
    assert ticks.at("00:30:10") == {}  # the tick passed, but shop.events has not been updated since
    ticks.materialized("shop/events")  # the source replicates after the tick
    # 10 windows, not 1; its export's too, in the same run (same windows; stopped by a failed blocking check).
    assert ticks.at("00:31:00") == {
        "bench/daily": days("2026-03-02", "2026-03-11"),
        "online/daily_online": days("2026-03-02", "2026-03-11"),
    }
    assert ticks.at("00:31:30") == {}  # once per tick
    ticks.instance.dispose()


def test_ten_windows_of_one_tick_become_one_backfill_which_is_one_run_by_default(lookback_ticks):
    ticks = lookback_ticks()
    ticks.at("00:30:10")
    ticks.materialized("shop/events")
    ticks.at("00:31:00")
    [sensor] = [s for s in ticks.defs.sensors or [] if s.name == AUTOMATION_SENSOR_NAME]
    assert sensor.emit_backfills  # type: ignore[attr-defined]
    graph = ticks.graph
    # The pitfall: without emit_backfills, each window is a run of its own.
    per_window = build_run_requests(ticks.requested_subsets(), graph, None, emit_backfills=False)
    assert len(per_window) == 10
    # What the sensor does: one backfill of the ten windows...
    [backfill] = build_run_requests(ticks.requested_subsets(), graph, None, emit_backfills=True)
    assert backfill.asset_graph_subset is not None
    windows = backfill.asset_graph_subset.get_partitions_subset(
        AssetKey(["bench", "daily"])
    ).get_partition_keys()
    assert set(windows) == days("2026-03-02", "2026-03-11")
    # ...whose runs the backfill daemon builds from the asset's policy: the default is one run for the range.
    key = AssetKey(["bench", "daily"])
    assert graph.get(key).backfill_policy == BackfillPolicy.single_run()
    [run] = build_run_requests_with_backfill_policies(
        [AssetKeyPartitionKey(key, w) for w in windows], graph, ticks.instance
    )
    assert run.tags["dagster/asset_partition_range_start"] == "2026-03-02"
    assert run.tags["dagster/asset_partition_range_end"] == "2026-03-11"
    ticks.instance.dispose()


def test_with_max_partitions_per_run_the_ten_windows_run_in_chunks(lookback_ticks):
    ticks = lookback_ticks(backfill={"max_partitions_per_run": 4})
    ticks.at("00:30:10")
    ticks.materialized("shop/events")
    ticks.at("00:31:00")
    key = AssetKey(["bench", "daily"])
    assert ticks.graph.get(key).backfill_policy == BackfillPolicy.multi_run(4)
    [backfill] = build_run_requests(ticks.requested_subsets(), ticks.graph, None, emit_backfills=True)
    assert backfill.asset_graph_subset is not None
    windows = backfill.asset_graph_subset.get_partitions_subset(key).get_partition_keys()
    runs = build_run_requests_with_backfill_policies(
        [AssetKeyPartitionKey(key, w) for w in windows], ticks.graph, ticks.instance
    )
    ranges = sorted(
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in runs
    )
    assert ranges == [
        ("2026-03-02", "2026-03-05"),
        ("2026-03-06", "2026-03-09"),
        ("2026-03-10", "2026-03-11"),
    ]
    ticks.instance.dispose()


def test_an_export_follows_every_window_its_table_rebuilt_not_only_the_latest(lookback_ticks):
    ticks = lookback_ticks()
    ticks.materialized("bench/daily", "2026-03-03")  # e.g. a backfill of an old window
    assert ticks.at("00:21:00") == {"online/daily_online": {"2026-03-03"}}
    ticks.ran({"online/daily_online": {"2026-03-03"}})
    assert ticks.at("00:21:30") == {}
    ticks.instance.dispose()


# ------------------------------------------------------------------------------------ weekly inputs, monthly


def test_a_monthly_window_waits_for_the_weekly_window_that_straddles_its_end(tmp_path):
    """April 2026 ends on a Thursday: its last week (Sunday 04-26 to Sunday 05-03) exists only from May 3rd."""
    defs = project(
        tmp_path,
        table("weekly", ["shop.events"], size="1w", start="2026-03-29"),
        table("monthly", ["bench.weekly"], size="1mo", start="2026-04-01"),
    )
    ticks = Ticks(defs, dt.date(2026, 4, 30))
    ticks.materialized("shop/events")
    for week in ("2026-03-29", "2026-04-05", "2026-04-12", "2026-04-19"):
        ticks.materialized("bench/weekly", week)
    assert ticks.at("23:59:00") == {}  # April is not complete
    # May 1st: the window April exists, and every *existing* week it reads is materialized. Dagster's
    # dependency operands see only those (any_deps_missing is false): eager()/on_missing would launch it now.
    assert ticks.at("00:00:30", days=1) == {}
    ticks.materialized("shop/events")
    # The weekly table (no cron) re-runs its latest week on each source update: still not a reason.
    assert ticks.at("00:01:00", days=1) == {"bench/weekly": {"2026-04-19"}}
    ticks.ran({"bench/weekly": {"2026-04-19"}})
    assert ticks.at("12:00:00", days=1) == {}
    assert ticks.at("12:00:00", days=2) == {}
    # May 3rd: the straddling week ends and is built (missing latest window); then April runs.
    assert ticks.at("00:00:30", days=3) == {"bench/weekly": {"2026-04-26"}}
    assert ticks.at("00:01:00", days=3) == {"bench/weekly": {"2026-04-26"}}  # not materialized yet
    ticks.ran({"bench/weekly": {"2026-04-26"}})
    assert ticks.at("00:01:30", days=3) == {"bench/monthly": {"2026-04-01"}}
    ticks.instance.dispose()


def test_an_hourly_input_to_a_daily_table_every_hour_of_the_day_first(tmp_path):
    defs = project(
        tmp_path,
        table("hourly", ["shop.events"], size="1h", start="2026-03-10"),
        table("daily", ["bench.hourly"], size="1d", start="2026-03-10"),
    )
    ticks = Ticks(defs, DAY)
    ticks.materialized("shop/events")
    for hour in range(23):
        ticks.materialized("bench/hourly", f"2026-03-11-{hour:02d}:00")
    ticks.materialized("bench/daily", "2026-03-10")
    assert ticks.at("23:59:00", days=-1) == {}  # every existing hour is built; the day is not complete
    # 00:00: the day 03-11 is complete; its 23:00 hour exists but is not materialized: the day waits.
    first = ticks.at("00:00:30")
    assert "bench/daily" not in first
    assert first == {"bench/hourly": {"2026-03-11-23:00"}}
    ticks.ran(first)
    assert ticks.at("00:01:00") == {"bench/daily": {"2026-03-11"}}
    ticks.instance.dispose()


# ------------------------------------------------------------------------------ input windows that never exist


def test_windows_before_their_inputs_start_are_never_requested_and_a_backfill_of_them_reads_nothing(tmp_path):
    defs = project(
        tmp_path,
        table("late_start", ["shop.events"], start="2026-03-08"),
        table("early", ["bench.late_start"], start="2026-03-01", schedule="30 0 * * *", lookback=9),
    )
    graph = defs.resolve_asset_graph()
    child, parent = AssetKey(["bench", "early"]), AssetKey(["bench", "late_start"])
    mapping = graph.get_partition_mapping(child, parent)
    assert mapping == TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)
    result = mapping.get_upstream_mapped_partitions_result_for_partitions(
        graph.get(child).partitions_def.subset_with_partition_keys(["2026-03-02", "2026-03-09"]),  # type: ignore[union-attr]
        graph.get(child).partitions_def,
        graph.get(parent).partitions_def,  # type: ignore[arg-type]
    )
    # What Dagster's backfill raises "depends on non-existent partitions" on: nothing.
    assert result.required_but_nonexistent_subset.is_empty
    assert set(result.partitions_subset.get_partition_keys()) == {"2026-03-09"}
    ticks = Ticks(defs, DAY)
    ticks.materialized("shop/events")
    for day in sorted(days("2026-03-08", "2026-03-11"), key=str):
        ticks.materialized("bench/late_start", day)
    for day in sorted(days("2026-03-01", "2026-03-11"), key=str):
        ticks.materialized("bench/early", day)
    assert ticks.at("00:20:00") == {}
    assert ticks.at("00:30:10") == {}  # the tick: its inputs have not been updated since
    for day in sorted(days("2026-03-08", "2026-03-11"), key=str):
        ticks.materialized("bench/late_start", day)  # the input's windows are rebuilt after the tick
    # The lookback windows whose input windows exist (03-08..03-11), not the six before 03-08.
    assert ticks.at("00:31:00") == {"bench/early": days("2026-03-08", "2026-03-11")}
    ticks.instance.dispose()


def test_an_input_of_the_same_start_keeps_dagsters_default_mapping(tmp_path):
    defs = project(
        tmp_path, table("a", ["shop.events"]), table("b", ["bench.a"]), table("c", ["bench.b"], size=None)
    )
    graph = defs.resolve_asset_graph()
    b, a, c = (AssetKey(["bench", n]) for n in "bac")
    assert graph.get_partition_mapping(b, a) == TimeWindowPartitionMapping()
    assert (
        graph.get_partition_mapping(b, AssetKey(["shop", "events"])).__class__.__name__
        == "AllPartitionMapping"
    )
    assert graph.get_partition_mapping(c, b).__class__.__name__ == "AllPartitionMapping"


@pytest.mark.parametrize(
    ("size", "lookback", "latest_end", "first"),
    [
        ("1h", 2, "2026-03-12T10:00", "2026-03-12T07:00"),
        ("1d", 3, "2026-03-12T00:00", "2026-03-08T00:00"),
        ("1w", 1, "2026-03-08T00:00", "2026-02-22T00:00"),
        ("1mo", 1, "2026-04-01T00:00", "2026-02-01T00:00"),
        ("1mo", 2, "2026-03-01T00:00", "2025-12-01T00:00"),
        ("1mo", 11, "2026-08-01T00:00", "2025-08-01T00:00"),
    ],
)
def test_the_lookback_delta_takes_exactly_the_latest_window_and_n_before_it(
    size, lookback, latest_end, first
):
    parts = partitions_for(Window(size=size, start=dt.date(2020, 1, 1)))
    assert parts is not None
    end = dt.datetime.fromisoformat(latest_end).replace(tzinfo=dt.UTC)
    delta = lookback_delta(size, lookback)
    # Dagster's rule (compute_latest_time_window_subset): every window that starts before the latest window's
    # end and ends after `end - delta`.
    windows = parts.get_partition_keys_in_time_window(TimeWindow(end - delta, end))
    assert len(windows) == lookback + 1, windows
    assert parts.time_window_for_partition_key(windows[0]).start == dt.datetime.fromisoformat(first).replace(
        tzinfo=dt.UTC
    )
