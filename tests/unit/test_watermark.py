"""Watermark values and the read floor: round trips through event-log text, overlap, and the fence rules."""

import datetime as dt

import pytest

from derive_assets.replication import watermark
from derive_assets.replication.watermark import CursorState, WatermarkError

UTC = dt.UTC


@pytest.mark.parametrize(
    ("column_type", "value"),
    [
        ("INT64", 42),
        ("INT64", -(2**63)),
        ("DATE", dt.date(1969, 12, 31)),
        ("DATETIME", dt.datetime(2026, 11, 30, 9, 0, 0, 123456)),
        ("TIMESTAMP", dt.datetime(1901, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
        ("TIMESTAMP", dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("STRING", "6b0e7a1c2f9d4e0012345678"),  # a MongoDB ObjectId cursor
    ],
)
def test_every_cursor_type_round_trips_through_the_event_log_text(column_type, value):
    text = watermark.to_text(value)
    assert isinstance(text, str)
    assert watermark.from_text(text, column_type) == value
    state = CursorState(value, value, value, "17")
    assert CursorState.from_metadata(state.as_metadata(), column_type) == state


def test_an_aware_timestamp_is_stored_in_utc_and_read_back_as_the_same_instant():
    tokyo = dt.timezone(dt.timedelta(hours=9))
    value = dt.datetime(2026, 11, 30, 18, 0, tzinfo=tokyo)
    assert watermark.to_text(value) == "2026-11-30T09:00:00+00:00"
    assert watermark.from_text(watermark.to_text(value), "TIMESTAMP") == value


def test_an_unreadable_stored_watermark_says_how_to_recover():
    with pytest.raises(WatermarkError, match=r"'262142-12-31T00:00:00' is not a valid TIMESTAMP .*Rebuild"):
        watermark.from_text("262142-12-31T00:00:00", "TIMESTAMP")


def test_overlap_steps_back_seconds_days_or_ids():
    at = dt.datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert watermark.with_overlap(at, 600) == dt.datetime(2026, 11, 30, 8, 50, tzinfo=UTC)
    assert watermark.with_overlap(dt.date(2026, 11, 30), 600) == dt.date(2026, 11, 29)
    assert watermark.with_overlap(dt.date(2026, 11, 30), 2 * 86400) == dt.date(2026, 11, 28)
    assert watermark.with_overlap(100, 5) == 95
    assert watermark.with_overlap(at, 0) == at
    assert watermark.with_overlap(None, 600) is None
    assert watermark.with_overlap(dt.datetime.min.replace(tzinfo=UTC), 600) == dt.datetime.min.replace(
        tzinfo=UTC
    )


def test_the_watermark_never_moves_backwards_and_an_idle_run_keeps_it():
    assert watermark.latest(10, 7) == 10
    assert watermark.latest(10, None) == 10
    assert watermark.latest(None, 7) == 7
    state = CursorState(10, 10)
    assert state.after_run(max_read=None, fence=None, fenced=False, cleared=True) == CursorState(10, 10)
    assert state.after_run(max_read=8, fence=None, fenced=False, cleared=True) == CursorState(10, 10)
    assert state.after_run(max_read=12, fence=None, fenced=False, cleared=True) == CursorState(12, 12)


def test_a_fenced_floor_moves_only_after_a_read_that_began_once_the_open_transactions_had_ended():
    # Run 1 reads id 101 while transaction 899 (holding id 100) is open; the token names it.
    first = CursorState().after_run(max_read=101, fence="900", fenced=True, cleared=True)
    assert first == CursorState(101, None, 101, "900")
    # Run 2 begins while 899 is still open: it reads from the old floor, which stays.
    second = first.after_run(max_read=101, fence="905", fenced=True, cleared=False)
    assert second == CursorState(101, None, 101, "905")
    # Run 3 begins after it ended: it read from the old floor (so it saw id 100); now the floor may move up.
    third = second.after_run(max_read=140, fence="950", fenced=True, cleared=True)
    assert third == CursorState(140, 101, 140, "950")
    # ... but never beyond what an earlier run read, and never backwards.
    fourth = third.after_run(max_read=None, fence="960", fenced=True, cleared=True)
    assert fourth == CursorState(140, 140, 140, "960")


def test_materializations_from_before_the_read_floor_start_from_their_watermark():
    old = {watermark.WATERMARK_KEY: "2026-11-30T09:00:00+00:00"}
    state = CursorState.from_metadata(old, "TIMESTAMP")
    assert state.floor == state.watermark == dt.datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert state.pending_floor is None and state.fence is None
