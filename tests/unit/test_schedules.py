"""Schedules materialize the last complete window at each tick."""

import datetime as dt

from dagster import RunRequest, SkipReason, build_schedule_context

from derive_assets.factory.build import build_definitions
from derive_assets.settings import PROJECT_ROOT, DeriveSettings


def evaluate(name: str, at: dt.datetime):
    defs = build_definitions(
        DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=PROJECT_ROOT / ".derive")
    )
    schedule = defs.resolve_schedule_def(name)
    context = build_schedule_context(scheduled_execution_time=at, repository_def=defs.get_repository_def())
    return list(schedule.evaluate_tick(context).run_requests or [])


def test_daily_schedule_requests_yesterdays_window():
    [request] = evaluate(
        "analytics__daily_payments_by_region_job_schedule", dt.datetime(2026, 3, 5, 0, 30, tzinfo=dt.UTC)
    )
    assert isinstance(request, RunRequest)
    assert request.partition_key == "2026-03-04"


def test_schedule_before_the_first_window_ends_skips():
    defs = build_definitions(
        DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=PROJECT_ROOT / ".derive")
    )
    schedule = defs.resolve_schedule_def("analytics__order_facts_job_schedule")
    at = dt.datetime(2026, 1, 1, 0, 10, tzinfo=dt.UTC)
    data = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=at))
    assert not data.run_requests
    assert "no complete window" in (data.skip_message or "")
    # What the schedule function itself returns: a SkipReason (a skipped tick), not an error or an empty list.
    result = schedule(build_schedule_context(scheduled_execution_time=at))
    assert isinstance(result, SkipReason)
    assert result.skip_message == "no complete window yet: the first window has not ended"


def test_unpartitioned_schedule_runs_the_whole_table():
    [request] = evaluate("analytics__top_spenders_job_schedule", dt.datetime(2026, 3, 5, 3, 0, tzinfo=dt.UTC))
    assert request.partition_key is None
