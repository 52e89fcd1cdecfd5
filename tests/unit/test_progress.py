"""Progress lines: formatting, throttling, totals, no total, zero rows, huge numbers (a fake clock, no sleeps)."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from derive_assets.progress import Progress


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def progress(clock: Clock, total: int | None = None, every: float = 5.0) -> tuple[Progress, list[str]]:
    lines: list[str] = []
    return Progress(lines.append, "accounts.auth", total=total, every_seconds=every, clock=clock), lines


@pytest.mark.parametrize(
    ("total", "seconds", "rows", "line"),
    [
        (5_000_000, 5, 2_050_000, "2,050,000 of ~5,000,000 rows (41 %), 410,000 rows/s, ~7 s left"),
        (None, 6, 1_200, "1,200 rows, 200 rows/s"),
        # The estimate was low: say so, never a share above 100 % or a negative time left.
        (1_000_000, 10, 1_500_000, "1,500,000 rows (more than the estimated ~1,000,000), 150,000 rows/s"),
        (1_000, 5, 1_000, "1,000 of ~1,000 rows (100 %), 200 rows/s"),  # at the estimate: no time left
        (0, 5, 10, "10 rows (more than the estimated ~0), 2 rows/s"),
        (0, 6, 0, "0 of ~0 rows (100 %), 0 rows/s"),
        (-1, 5, 10, "10 rows, 2 rows/s"),  # PostgreSQL's reltuples of a never-analyzed table: no total
    ],
)
def test_one_progress_line(clock: Clock, total: int | None, seconds: float, rows: int, line: str) -> None:
    p, lines = progress(clock, total=total)
    clock.now += seconds
    p.add(rows)
    assert lines == [f"accounts.auth: {line}"]


def test_lines_are_throttled_to_every_seconds(clock: Clock) -> None:
    p, lines = progress(clock, total=10_000_000)
    for _ in range(40):  # a batch every 0.5 s for 20 s: one line per 5 s, not one per batch
        clock.now += 0.5
        p.add(100_000)
    assert len(lines) == 4
    assert lines[0].startswith("accounts.auth: 1,000,000 of ~10,000,000 rows (10 %)")
    assert lines[-1].startswith("accounts.auth: 4,000,000 of ~10,000,000 rows (40 %)")


def test_work_shorter_than_every_seconds_logs_only_the_final_line(clock: Clock) -> None:
    p, lines = progress(clock, total=1000)
    clock.now += 1.25
    p.add(1000)
    p.done()
    assert lines == ["accounts.auth: 1,000 rows in 1.2 s (800 rows/s)"]


def test_zero_rows(clock: Clock) -> None:
    p, lines = progress(clock, total=0)
    clock.now += 6
    p.add(0)
    clock.now += 0.25
    p.done()
    assert lines == ["accounts.auth: 0 of ~0 rows (100 %), 0 rows/s", "accounts.auth: 0 rows in 6.2 s"]


def test_done_with_no_time_passed_has_no_rate(clock: Clock) -> None:
    p, lines = progress(clock)
    p.add(1)
    p.done()
    assert lines == ["accounts.auth: 1 row in 0.0 s"]


def test_done_logs_once(clock: Clock) -> None:
    p, lines = progress(clock)
    clock.now += 2
    p.add(5)
    p.done()
    p.done()
    assert lines == ["accounts.auth: 5 rows in 2.0 s (2 rows/s)"]


def test_huge_numbers_and_long_durations(clock: Clock) -> None:
    p, lines = progress(clock, total=1_000_000_000, every=60)
    clock.now += 600
    p.add(120_000_000)
    assert lines == [
        "accounts.auth: 120,000,000 of ~1,000,000,000 rows (12 %), 200,000 rows/s, ~1 h 13 min left"
    ]
    clock.now += 3 * 3600
    p.add(880_000_000)
    p.done()
    assert lines[-1] == "accounts.auth: 1,000,000,000 rows in 3 h 10 min (87,719 rows/s)"


@pytest.mark.parametrize(
    ("rows_per_second", "left"),
    [
        (100_000, "~1 s left"),  # 0.1 s: never "~0 s"
        (1000, "~10 s left"),
        (600, "~17 s left"),
        (100, "~1 min 40 s left"),
        (10, "~16 min 40 s left"),
        (1, "~2 h 46 min left"),
        (5, "~33 min 20 s left"),
    ],
)
def test_time_left_reads_like_a_person_would_say_it(clock: Clock, rows_per_second: int, left: str) -> None:
    """10,000 rows remain after 5 s at `rows_per_second`."""
    p, lines = progress(clock, total=10_000 + 5 * rows_per_second)
    clock.now += 5
    p.add(5 * rows_per_second)
    assert lines[0].endswith(left)


def test_batches_counts_each_batch_and_passes_it_through(clock: Clock) -> None:
    p, lines = progress(clock)
    batch = pa.RecordBatch.from_pydict({"id": list(range(300))})

    def source():
        for _ in range(3):
            clock.now += 3
            yield batch

    assert [b.num_rows for b in p.batches(source())] == [300, 300, 300]
    assert p.rows == 900
    assert lines == ["accounts.auth: 600 rows, 100 rows/s"]  # at 6 s; no final line until done()


def test_add_from_several_threads_loses_no_rows(clock: Clock) -> None:
    p, _ = progress(clock)

    def work() -> None:
        for _ in range(10_000):
            p.add(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.rows == 40_000


def test_a_long_command_prints_the_lines_on_stderr_and_only_while_it_runs(clock: Clock, capsys) -> None:
    from derive_assets.cli import _progress_on_terminal

    with _progress_on_terminal():
        p, lines = progress(clock, total=2_000)
        clock.now += 5
        p.add(1_000)
        clock.now += 5
        p.add(1_000)
        p.done()
    p, _ = progress(clock)  # after the command: nothing on the terminal
    clock.now += 5
    p.add(1)
    p.done()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "accounts.auth: 1,000 of ~2,000 rows (50 %), 200 rows/s, ~5 s left",
        "accounts.auth: 2,000 of ~2,000 rows (100 %), 200 rows/s",
        "accounts.auth: 2,000 rows in 10 s (200 rows/s)",
    ]
    assert lines == captured.err.splitlines()  # the run log has the same lines


def test_short_work_is_quiet_on_the_terminal_but_keeps_its_final_line_in_the_run_log(
    clock: Clock, capsys
) -> None:
    from derive_assets.cli import _progress_on_terminal

    with _progress_on_terminal():
        p, lines = progress(clock)
        clock.now += 1
        p.add(10)
        p.done()
    assert capsys.readouterr().err == ""
    assert lines == ["accounts.auth: 10 rows in 1.0 s (10 rows/s)"]
