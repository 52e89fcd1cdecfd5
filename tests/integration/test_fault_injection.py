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
import hashlib
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg
import pytest
import yaml
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration
from dagster_k8s import K8sRunLauncher
from helpers import env_var, write_specs
from psycopg import sql
from support import run_job

from derive_assets.demo.generate import SourceUrls, apply_activity, generate
from derive_assets.factory.build import build_definitions
from derive_assets.factory.schedules import export_job_name, source_job_name, table_job_name
from derive_assets.settings import PROJECT_ROOT, DeriveSettings

RUNNER = PROJECT_ROOT / "tests" / "faults" / "runner.py"
USERS = 300
DAY = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date().isoformat()
ONLINE_TABLE = "derive_online__orders_online"
INSTANCE_YAML = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"

MERGE_SPEC = {
    "name": "daily_order_totals",
    "dataset": "analytics",
    "description": "Orders and amounts per status and day (merge by day and status), for the fault tests.",
    "owner": "team-analytics@example.com",
    "strategy": {"type": "merge", "unique_key": ["day", "status"]},
    "window": {"size": "1d", "start": "2026-01-01"},
    "partition": {"key": "day", "granularity": "day"},
    "columns": [
        {"name": "day", "type": "DATE", "constraints": {"not_null": True}},
        {"name": "status", "type": "STRING", "constraints": {"not_null": True}},
        {"name": "orders", "type": "INT64"},
        {"name": "amount", "type": "NUMERIC"},
    ],
    "sql": "SELECT DATE(created_at) AS day, status, COUNT(*) AS orders, SUM(amount) AS amount\n"
    "FROM orders.orders WHERE created_at >= @window_start AND created_at < @window_end GROUP BY day, status\n",
}
EXPORT_SPEC = {
    "kind": "export",
    "name": "orders_online",
    "table": "orders.orders",
    "description": "Orders by id, for the fault tests.",
    "owner": "team-orders@example.com",
    "keyspace": "derive_online",
    "partition_key": ["order_id"],
    "columns": ["order_id", "user_id", "status", "amount", "updated_at"],
    "cursor": "updated_at",
}


@dataclass(frozen=True)
class Write:
    """One kind of write: the job, what it writes, and the recorded state it starts from."""

    job: str
    start: str
    """`empty`, or the name of a recorded home (`base`: orders replicated before the activity; `mid`: after)."""
    asset: AssetKey
    table: str
    """Warehouse `dataset.name`, or the online store's table."""
    online: bool = False
    partition: str | None = None


WRITES = {
    "replication_first": Write(
        source_job_name("orders"), "empty", AssetKey(["orders", "orders"]), "orders.orders"
    ),
    "replication_incremental": Write(
        source_job_name("orders"), "base", AssetKey(["orders", "orders"]), "orders.orders"
    ),
    "derived_merge": Write(
        table_job_name("analytics.daily_order_totals"),
        "mid",
        AssetKey(["analytics", "daily_order_totals"]),
        "analytics.daily_order_totals",
        partition=DAY,
    ),
    "export": Write(
        export_job_name("orders_online"),
        "mid",
        AssetKey(["online", "orders_online"]),
        ONLINE_TABLE,
        online=True,
    ),
}

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


@dataclass
class Home:
    """One Derive home: DuckDB warehouse, SQLite online store and the persistent Dagster instance under it."""

    root: Path

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    def create(self) -> Home:
        self.dagster_home.mkdir(parents=True)
        (self.dagster_home / "dagster.yaml").write_text(INSTANCE_YAML)
        return self

    def clone(self, dest: Path) -> Home:
        shutil.copytree(self.root, dest)
        return Home(dest)

    def run(self, specs: Path, write: Write) -> None:
        defs = build_definitions(DeriveSettings(specs_dir=specs, home=self.root))
        with DagsterInstance.from_config(str(self.dagster_home)) as instance:
            run_job(defs, instance, write.job, write.partition)

    def rows(self, write: Write) -> list[str] | None:
        """Every row of the written table as text, sorted; None when the table does not exist."""
        if write.online:
            path = self.root / "online.sqlite"
            if not path.exists():
                return None
            with sqlite3.connect(path) as con:
                found = con.execute("SELECT name FROM sqlite_master WHERE name = ?", [write.table]).fetchall()
                if not found:
                    return None
                cols = ", ".join(f'"{c}"' for c in EXPORT_SPEC["columns"])
                return sorted(repr(r) for r in con.execute(f'SELECT {cols} FROM "{write.table}"'))
        path = self.root / "warehouse.duckdb"
        if not path.exists():
            return None
        con = duckdb.connect(str(path), read_only=True)
        try:
            dataset, name = write.table.split(".")
            exists = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                [dataset, name],
            ).fetchone()
            if not exists or not exists[0]:
                return None
            con.execute("SET TimeZone = 'UTC'")
            sql_text = f"SELECT CAST(t AS VARCHAR) AS r FROM {write.table} t ORDER BY r"
            return [r[0] for r in con.execute(sql_text).fetchall()]
        finally:
            con.close()

    def max_cursor(self, write: Write) -> dt.datetime | None:
        """Largest `updated_at` among the rows committed in the written table."""
        if write.online:
            with sqlite3.connect(self.root / "online.sqlite") as con:
                value = con.execute(f'SELECT max("updated_at") FROM "{write.table}"').fetchone()[0]
            return dt.datetime.fromisoformat(value) if value else None
        con = duckdb.connect(str(self.root / "warehouse.duckdb"), read_only=True)
        try:
            row = con.execute(f"SELECT max(updated_at) FROM {write.table}").fetchone()
            return row[0] if row else None
        finally:
            con.close()

    def watermark(self, write: Write) -> str | None:
        with DagsterInstance.from_config(str(self.dagster_home)) as instance:
            event = instance.get_latest_materialization_event(write.asset)
        meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
        value = getattr(meta.get("derive/watermark"), "value", None)
        return value if isinstance(value, str) else None

    def partition_run(self, write: Write) -> str | None:
        """Run id of the latest materialization of the write's partition."""
        with DagsterInstance.from_config(str(self.dagster_home)) as instance:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=write.asset, asset_partitions=[write.partition or ""]), limit=1
            ).records
        return records[0].run_id if records else None

    def last_run(self) -> tuple[str, DagsterRunStatus, int]:
        """(run id, status, materializations it recorded) of the newest run in the instance."""
        with DagsterInstance.from_config(str(self.dagster_home)) as instance:
            run = instance.get_runs(limit=1)[0]
            events = instance.all_logs(run.run_id)
        materialized = sum(1 for e in events if e.dagster_event and e.dagster_event.is_step_materialization)
        return run.run_id, run.status, materialized


def checksum(rows: list[str] | None) -> tuple[int, str] | None:
    if rows is None:
        return None
    return len(rows), hashlib.md5("\n".join(rows).encode()).hexdigest()


@dataclass
class World:
    specs: Path
    homes: dict[str, Home]
    expected: dict[str, tuple[list[str] | None, str | None]]
    """Per write: the fault-free run's rows and watermark."""
    env: dict[str, str]


def _add_specs(specs: Path) -> None:
    (specs / "analytics" / "daily_order_totals.yaml").write_text(yaml.safe_dump(MERGE_SPEC, sort_keys=False))
    (specs / "exports" / "orders_online.yaml").write_text(yaml.safe_dump(EXPORT_SPEC, sort_keys=False))


@pytest.fixture(scope="module")
def postgres_module_url(postgres_server_url: str) -> Iterator[str]:
    """A PostgreSQL database for this module's tests (the faults never change the source)."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield postgres_server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def world(postgres_module_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("faults")
    profiles = f"montydb:///{(root / 'profiles').as_posix()}"
    env = {env_var(s): postgres_module_url for s in ("accounts", "orders", "payments")}
    env[env_var("profiles")] = profiles
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.delenv("DERIVE_DUCKDB_PATH", raising=False)
        urls = SourceUrls(postgres_module_url, postgres_module_url, postgres_module_url, profiles)
        specs = write_specs(root / "specs", "postgres")
        _add_specs(specs)
        generate(urls, users=USERS)
        base = Home(root / "base").create()
        for write in ("replication_incremental", "derived_merge", "export"):
            base.run(specs, WRITES[write])
        apply_activity(urls, fraction=0.1)
        mid = base.clone(root / "mid")
        mid.run(specs, WRITES["replication_incremental"])
        homes = {"base": base, "mid": mid}
        expected = {}
        for name, write in WRITES.items():
            start = homes.get(write.start)
            ref = start.clone(root / f"ref_{name}") if start else Home(root / f"ref_{name}").create()
            ref.run(specs, write)
            expected[name] = (ref.rows(write), ref.watermark(write))
        # The fault-free runs changed something, so a kill that lost the write would show.
        assert expected["replication_first"][0] == expected["replication_incremental"][0]
        assert mid.rows(WRITES["derived_merge"]) != expected["derived_merge"][0]
        assert len(expected["export"][0] or []) > len(mid.rows(WRITES["export"]) or [])
        yield World(specs, homes, expected, env)


def _run_child(world: World, home: Home, write: Write, fault: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(RUNNER), "--specs", str(world.specs), "--home", str(home.root)]
    args += ["--job", write.job, "--fault", fault] + (
        ["--partition", write.partition] if write.partition else []
    )
    env = {**os.environ, **world.env, "DAGSTER_HOME": str(home.dagster_home), "RUST_BACKTRACE": "0"}
    env.pop("DERIVE_DUCKDB_PATH", None)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)


@pytest.mark.parametrize(("write_name", "fault", "left"), CASES, ids=[f"{w}-{f}" for w, f, _ in CASES])
def test_rerun_after_sigkill_equals_the_fault_free_run(world, tmp_path, write_name, fault, left):
    write = WRITES[write_name]
    start = world.homes.get(write.start)
    home = start.clone(tmp_path / "home") if start else Home(tmp_path / "home").create()
    rows_before, mark_before = home.rows(write), home.watermark(write)
    partition_run_before = home.partition_run(write) if write.partition else None
    expected_rows, expected_mark = world.expected[write_name]

    child = _run_child(world, home, write, fault)

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

    home.run(world.specs, write)

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
    helm = yaml.safe_load((k8s / "values.yaml").read_text())["dagsterDaemon"]["runMonitoring"]
    assert helm == {
        "enabled": True,
        "startTimeoutSeconds": monitoring["start_timeout_seconds"],
        "pollIntervalSeconds": monitoring["poll_interval_seconds"],
        "maxResumeRunAttempts": monitoring["max_resume_run_attempts"],
    }


def test_run_monitoring_ends_a_killed_run_and_the_rerun_is_complete(world, tmp_path):
    write = WRITES["replication_incremental"]
    home = world.homes["base"].clone(tmp_path / "home")
    child = _run_child(world, home, write, "replication.extract")
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

    home.run(world.specs, write)
    assert checksum(home.rows(write)) == checksum(world.expected["replication_incremental"][0])
