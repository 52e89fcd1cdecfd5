"""Concurrent runs on one DuckDB warehouse: two runs of the same window, two windows of one table, two replications
of one table, and a run that starts while another process holds the warehouse's write lock.

Each run is a separate process (`tests/faults/runner.py`, no fault armed) on the same home: one DuckDB file, one
online store, one persistent Dagster instance, as with `dagster dev` or an automation sensor requesting a run twice. DuckDB lets one
process write a file at a time; `DuckDBWarehouse` waits for the lock (up to `lock_timeout_seconds`), so concurrent
runs queue. The final table must equal the serial result, with no duplicate keys; a run that cannot get the lock
in time must fail clearly and write nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterEventType, DagsterInstance
from faults.world import (
    DAY,
    WRITES,
    Home,
    World,
    Write,
    checksum,
    child_command,
    close_homes,
    fresh_home,
    shared_world,
)
from support import QUIET

from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import PROJECT_ROOT, DeriveSettings

OTHER_DAY = (dt.date.fromisoformat(DAY) - dt.timedelta(days=1)).isoformat()
MERGE = WRITES["derived_merge"]
REPLICATION = WRITES["replication_incremental"]
MERGE_OTHER_DAY = dataclasses.replace(MERGE, partition=OTHER_DAY)


@pytest.fixture(autouse=True)
def _close_homes() -> Iterator[None]:
    yield
    close_homes()


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> World:
    return shared_world(request)


def serial(world: World, tmp_path: Path, *writes: Write) -> list[str] | None:
    """The table after running `writes` one after the other, from the first one's recorded home."""
    home = fresh_home(world.homes, writes[0], tmp_path / "serial")
    for write in writes:
        world.run(home, write)
    return home.rows(writes[-1])


def at_once(world: World, home: Home, *writes: Write) -> list[subprocess.CompletedProcess[str]]:
    """Start one child run per write, all at once, on the same home; wait for all of them."""
    procs = []
    for write in writes:
        args, env = child_command(world, home, write)
        procs.append(
            subprocess.Popen(
                args, env=env, cwd=PROJECT_ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    done = []
    for proc, write in zip(procs, writes, strict=True):
        out, err = proc.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(write.asset.to_user_string(), proc.returncode, out, err))
    return done


def duplicate_keys(home: Home, table: str, key: str) -> int:
    con = duckdb.connect(str(home.root / "warehouse.duckdb"), read_only=True)
    try:
        row = con.execute(f"SELECT count(*) - count(DISTINCT ({key})) FROM {table}").fetchone()
        return int(row[0]) if row else -1
    finally:
        con.close()


def test_two_runs_of_the_same_window_at_once_give_the_serial_result(world, tmp_path):
    expected = serial(world, tmp_path, MERGE)
    home = fresh_home(world.homes, MERGE, tmp_path / "home")

    runs = at_once(world, home, MERGE, MERGE)

    assert [r.returncode for r in runs] == [0, 0], [r.stderr[-2000:] for r in runs]
    assert checksum(home.rows(MERGE)) == checksum(expected)
    assert duplicate_keys(home, MERGE.table, "day, status") == 0


def test_two_windows_of_one_table_at_once_give_the_serial_result(world, tmp_path):
    expected = serial(world, tmp_path, MERGE, MERGE_OTHER_DAY)
    home = fresh_home(world.homes, MERGE, tmp_path / "home")

    runs = at_once(world, home, MERGE, MERGE_OTHER_DAY)

    assert [r.returncode for r in runs] == [0, 0], [r.stderr[-2000:] for r in runs]
    rows = home.rows(MERGE)
    assert checksum(rows) == checksum(expected)
    assert {r.split(",")[0] for r in rows or []} == {f"{{'day': {OTHER_DAY}", f"{{'day': {DAY}"}
    assert duplicate_keys(home, MERGE.table, "day, status") == 0


def test_two_replications_of_one_table_at_once_give_the_serial_result(world, tmp_path):
    expected_rows, expected_mark = world.expected["replication_incremental"]
    home = fresh_home(world.homes, REPLICATION, tmp_path / "home")

    runs = at_once(world, home, REPLICATION, REPLICATION)

    assert [r.returncode for r in runs] == [0, 0], [r.stderr[-2000:] for r in runs]
    assert checksum(home.rows(REPLICATION)) == checksum(expected_rows)
    assert duplicate_keys(home, REPLICATION.table, "order_id") == 0
    assert home.watermark(REPLICATION) == expected_mark


class LockHolder:
    """Another process with the warehouse file open for writing (DuckDB's exclusive file lock), until released."""

    def __init__(self, path: Path) -> None:
        code = (
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); con.execute('SELECT 1'); "
            "print('locked', flush=True); sys.stdin.readline(); con.close()"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)


@pytest.fixture
def locked_home(world: World, tmp_path: Path) -> Iterator[tuple[Home, LockHolder]]:
    home = fresh_home(world.homes, REPLICATION, tmp_path / "home")
    holder = LockHolder(home.root / "warehouse.duckdb")
    try:
        yield home, holder
    finally:
        holder.release()


def _step_started(instance: DagsterInstance) -> bool:
    runs = instance.get_runs(limit=1)
    return bool(runs) and bool(instance.all_logs(runs[0].run_id, of_type=DagsterEventType.STEP_START))


def test_a_run_waits_for_a_writer_holding_the_lock_then_completes(world, locked_home):
    home, holder = locked_home
    expected_rows, expected_mark = world.expected["replication_incremental"]

    def release_once_the_run_is_inside_its_step() -> None:
        deadline = time.monotonic() + 60
        with DagsterInstance.from_config(str(home.dagster_home)) as instance:
            while not _step_started(instance) and time.monotonic() < deadline:
                time.sleep(0.2)
        time.sleep(1.0)  # the step's first warehouse call is now waiting for the lock
        holder.release()

    releaser = threading.Thread(target=release_once_the_run_is_inside_its_step)
    releaser.start()
    world.run(home, REPLICATION)  # asserts the run succeeded
    releaser.join()

    assert checksum(home.rows(REPLICATION)) == checksum(expected_rows)
    assert home.watermark(REPLICATION) == expected_mark


def test_a_run_that_cannot_get_the_lock_fails_clearly_and_writes_nothing(world, locked_home):
    home, holder = locked_home
    defs = build_definitions(DeriveSettings(specs_dir=world.specs, home=home.root))
    config = {"path": str(home.root / "warehouse.duckdb"), "lock_timeout_seconds": 1.0}
    run_config = {**QUIET, "resources": {"warehouse": {"config": config}}}

    started = time.monotonic()
    with DagsterInstance.from_config(str(home.dagster_home)) as instance:
        result = materialize_keys(defs, [REPLICATION.asset], instance=instance, run_config=run_config)
        errors = [
            e.dagster_event.step_failure_data.error.to_string()
            for e in instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_FAILURE)
            if e.dagster_event
            and e.dagster_event.step_failure_data
            and e.dagster_event.step_failure_data.error
        ]
    assert not result.success
    assert time.monotonic() - started < 60, (
        "a run waiting for the lock must give up after lock_timeout_seconds"
    )
    text = "\n".join(errors)
    assert "lock" in text.lower() and str(holder.proc.pid) in text, text  # names the process holding the file
    holder.release()
    before = fresh_home(world.homes, REPLICATION, home.root.parent / "before")
    assert checksum(home.rows(REPLICATION)) == checksum(before.rows(REPLICATION))
    assert home.watermark(REPLICATION) == before.watermark(REPLICATION)
