"""The partition-events benchmark measures what it says, at 3 windows on a SQLite instance (no timing checked):
each side records one materialization and one planned event per window, and the ratio line is printed."""

import json
import subprocess
import sys

import pytest

from derive_assets.settings import PROJECT_ROOT


@pytest.mark.slow
def test_the_backfill_benchmark_counts_one_event_per_window_on_both_sides():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_partition_events",
            "--windows",
            "3",
            "--instances",
            "sqlite",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ratio, _, results = done.stdout.partition("\n{")
    assert ratio.startswith("single-run backfill of 3 daily windows, sqlite instance: step ")
    assert " x step time (≤ 2.0x)" in ratio
    methods = json.loads("{" + results)["partition_events_sqlite"]["methods"]
    for side in ("derive", "floor"):
        assert methods[side]["materializations_median"] == 3
        assert methods[side]["planned_events_median"] == 3
    # Derive's events carry their window and counts, the last one the SQL too: larger than the no-op's
    assert methods["derive"]["event_bytes_max_median"] > methods["floor"]["event_bytes_max_median"]
