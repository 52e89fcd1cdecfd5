"""Crash safety: a run SIGKILLed at any of the fault points leaves nothing half-written, and its rerun gives the
fault-free result.

Three kinds of write, each started from a recorded state (a persistent Dagster instance and the warehouse and
online-store files of one Derive home) and run in a child process (`tests/faults/runner.py`) that kills itself
with SIGKILL at one point (`tests/faults/points.py`):

- replication of `orders` from PostgreSQL into DuckDB, as a first load and as an incremental merge;
- a derived merge table (`analytics.daily_order_totals`, merged by `[day, status]`, one day's window);
- an online export (`online.orders_online`, the rows whose `updated_at` moved, to the SQLite online store).

After each kill the test checks, with the real engines: the killed run recorded no materialization and stays
STARTED in the instance (run monitoring marks it later, see docs/operations.md); the table is exactly as before the
run (a kill before the commit) or exactly the fault-free result (after it); the watermark in the event log is not
ahead of the committed data. Then it reruns the job without the fault, in the same home, and requires the
fault-free run's table (row count and an md5 of every row) and watermark.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration
from dagster_k8s import K8sRunLauncher
from faults.world import (
    WRITES,
    World,
    checksum,
    close_homes,
    fresh_home,
    run_child,
    shared_world,
)

from derive_assets.settings import PROJECT_ROOT

CASES = [
    # (write, fault point, where the kill leaves the written table: before | after | between)
    ("replication_first", "replication.extract", "before"),
    ("replication_first", "replication.stage", "before"),
    ("replication_first", "replication.commit", "after"),
    ("replication_incremental", "replication.extract", "before"),
    ("replication_incremental", "replication.stage", "before"),
    ("replication_incremental", "replication.merge", "before"),
    ("replication_incremental", "replication.commit", "after"),
    ("derived_merge", "table.stage", "before"),
    ("derived_merge", "table.merge", "before"),
    ("derived_merge", "table.commit", "after"),
    ("export", "export.write", "between"),  # the online store commits batch by batch: some rows are new
    ("export", "export.written", "after"),
]


@pytest.fixture(autouse=True)
def _close_homes() -> Iterator[None]:
    yield
    close_homes()


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> World:
    recorded = shared_world(request)
    # The fault-free runs changed something, so a kill that lost the write would show.
    expected, mid = recorded.expected, recorded.homes["mid"]
    assert expected["replication_first"][0] == expected["replication_incremental"][0]
    assert mid.rows(WRITES["derived_merge"]) != expected["derived_merge"][0]
    assert len(expected["export"][0] or []) > len(mid.rows(WRITES["export"]) or [])
    return recorded


@pytest.mark.parametrize(("write_name", "fault", "left"), CASES, ids=[f"{w}-{f}" for w, f, _ in CASES])
def test_rerun_after_sigkill_equals_the_fault_free_run(world, tmp_path, write_name, fault, left):
    write = WRITES[write_name]
    home = fresh_home(world.homes, write, tmp_path / "home")
    rows_before, mark_before = home.rows(write), home.watermark(write)
    partition_run_before = home.partition_run(write) if write.partition else None
    expected_rows, expected_mark = world.expected[write_name]

    child = run_child(world, home, write, fault)

    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr[-3000:]
    assert f"FAULT {fault}" in child.stderr
    _, status, materialized = home.last_run()
    assert (status, materialized) == (DagsterRunStatus.STARTED, 0), "the killed run recorded an outcome"
    rows = home.rows(write)
    if left == "before":
        assert checksum(rows) == checksum(rows_before), "a kill before the commit left a partial write"
    elif left == "after":
        assert checksum(rows) == checksum(expected_rows), (
            "the committed write differs from the fault-free one"
        )
    else:  # some batches are online: each row is the old version or the fault-free new one, never another
        assert set(rows or []) <= set(rows_before or []) | set(expected_rows or [])
        assert set(rows or []) - set(rows_before or []), "the kill came before any batch was written"
    assert home.watermark(write) == mark_before, "the watermark moved without a recorded materialization"
    if mark_before is not None:
        committed = home.max_cursor(write)
        assert committed is not None
        assert dt.datetime.fromisoformat(mark_before) <= committed.astimezone(dt.UTC), (
            "watermark ahead of data"
        )
    if write.partition:
        assert home.partition_run(write) == partition_run_before

    world.run(home, write)

    assert checksum(home.rows(write)) == checksum(expected_rows)
    assert home.watermark(write) == expected_mark
    if write.online:
        # Every row of the source table that moved since the old watermark is online, with its new values.
        assert set(expected_rows or []) <= set(home.rows(write) or [])


def test_every_fault_point_is_covered():
    from faults.points import POINTS

    assert {fault for _, fault, _ in CASES} == set(POINTS)
    kinds = {write for write, _, _ in CASES}
    assert kinds == set(WRITES)


# ----------------------------------------------------------------------------------------------- run monitoring


def _local_instance_config(tmp_path: Path) -> Path:
    """The instance directory the Makefile writes for `make demo` / `make dev` (into `tmp_path`, not .derive)."""
    home = tmp_path / "dagster_home"
    subprocess.run(
        ["make", "--no-print-directory", f"DAGSTER_HOME={home}", f"{home}/dagster.yaml"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    return home


def test_local_and_kubernetes_instances_turn_run_monitoring_on(tmp_path):
    home = _local_instance_config(tmp_path)
    assert (home / "dagster.yaml").read_text() == (PROJECT_ROOT / "dagster.yaml").read_text()
    with DagsterInstance.from_config(str(home)) as instance:  # Dagster 1.13 accepts the file as it is
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_runtime_seconds == 3600
        assert instance.run_monitoring_start_timeout_seconds == 180
        assert instance.run_monitoring_cancel_timeout_seconds == 180
        assert instance.run_monitoring_poll_interval_seconds == 60

    k8s = PROJECT_ROOT / "deployments" / "k8s"
    # Storage and launcher need a cluster and PostgreSQL; the instance schema itself is checked here.
    config, _ = dagster_instance_config(str(k8s))
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] is True
    assert (monitoring["max_resume_run_attempts"], monitoring["start_timeout_seconds"]) == (0, 600)
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    # The K8s launcher checks each run's Job, so a killed run worker is detected (the local launcher cannot).
    assert K8sRunLauncher.supports_check_run_worker_health.fget(None) is True  # type: ignore[attr-defined]
    # The chart cannot say max_runtime_seconds: values.yaml writes the block through additionalInstanceConfig
    # (tests/unit/test_deployment_chart.py renders the values and compares them with dagster.yaml).
    helm = yaml.safe_load((k8s / "values.yaml").read_text())
    assert helm["dagsterDaemon"]["runMonitoring"] == {"enabled": False}
    assert helm["additionalInstanceConfig"]["run_monitoring"] == monitoring


def test_run_monitoring_ends_a_killed_run_and_the_rerun_is_complete(world, tmp_path):
    write = WRITES["replication_incremental"]
    home = world.homes["base"].clone(tmp_path / "home")
    child = run_child(world, home, write, "replication.extract")
    assert child.returncode == -signal.SIGKILL
    run_id, status, _ = home.last_run()
    assert status == DagsterRunStatus.STARTED

    # The local settings the Makefile installs, with the maximum runtime cut to a second for the test.
    config = yaml.safe_load((_local_instance_config(tmp_path) / "dagster.yaml").read_text())
    config["run_monitoring"]["max_runtime_seconds"] = 1
    (home.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with (
        DagsterInstance.from_config(str(home.dagster_home)) as instance,
        WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as workspace,
    ):
        seen = [status]
        for _ in range(40):  # what the daemon does every poll_interval_seconds
            list(execute_run_monitoring_iteration(workspace, logging.getLogger("run_monitoring")))
            run = instance.get_run_by_id(run_id)
            assert run is not None
            if run.status != seen[-1]:
                seen.append(run.status)
            if run.is_finished:
                break
            time.sleep(0.25)
        messages = [e.message for e in instance.all_logs(run_id) if e.dagster_event and e.message]
    # In one poll: "Canceling due to exceeding maximum runtime", then, with no process left to stop, FAILURE.
    assert seen == [DagsterRunStatus.STARTED, DagsterRunStatus.FAILURE]
    assert any("exceeding maximum runtime of 1 seconds" in m for m in messages), messages
    assert any("forcibly marked as failed" in m for m in messages), messages

    world.run(home, write)
    assert checksum(home.rows(write)) == checksum(world.expected["replication_incremental"][0])
