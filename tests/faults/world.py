"""Recorded states to start a write from, and how to run one in a child process: shared by the crash-safety
(test_fault_injection.py) and concurrency (test_concurrency.py) tests.

A *home* is one Derive home (DuckDB warehouse, SQLite online store) plus its persistent Dagster instance; cloning
one copies all three, so every case starts from the same recorded state. The source is a real PostgreSQL database
with the demo's tables; the specs are the project's, plus a merge table and an export over `orders` alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psycopg
import pytest
import yaml
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus
from helpers import env_var, write_specs  # pyright: ignore[reportMissingImports]  (tests/integration, on sys.path under pytest)
from psycopg import sql
from support import run_assets

from derive_assets.demo.generate import SourceUrls, apply_activity, generate
from derive_assets.factory.build import build_definitions
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
    """One kind of write: the asset it materializes (one run of that asset alone, by key), what it writes, and the
    recorded state it starts from."""

    asset: AssetKey
    start: str
    """`empty`, or the name of a recorded home (`base`: orders replicated before the activity; `mid`: after)."""
    table: str
    """Warehouse `dataset.name`, or the online store's table."""
    online: bool = False
    partition: str | None = None


WRITES = {
    "replication_first": Write(AssetKey(["orders", "orders"]), "empty", "orders.orders"),
    "replication_incremental": Write(AssetKey(["orders", "orders"]), "base", "orders.orders"),
    "derived_merge": Write(
        AssetKey(["analytics", "daily_order_totals"]), "mid", "analytics.daily_order_totals", partition=DAY
    ),
    "export": Write(AssetKey(["online", "orders_online"]), "mid", ONLINE_TABLE, online=True),
}


_OPEN: list[Home] = []
"""Homes whose Dagster instance is open in this process (opening one costs ~0.4 s of CPU: keep it)."""


@dataclass
class Home:
    """One Derive home: DuckDB warehouse, SQLite online store and the persistent Dagster instance under it."""

    root: Path
    _instance: DagsterInstance | None = field(default=None, repr=False, compare=False)

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def instance(self) -> DagsterInstance:
        """This home's instance, opened once; child processes write to the same storage meanwhile."""
        if self._instance is None:
            self._instance = DagsterInstance.from_config(str(self.dagster_home))
            _OPEN.append(self)
        return self._instance

    def close(self) -> None:
        if self._instance is not None:
            self._instance.dispose()
            self._instance = None

    def create(self) -> Home:
        self.dagster_home.mkdir(parents=True)
        (self.dagster_home / "dagster.yaml").write_text(INSTANCE_YAML)
        return self

    def clone(self, dest: Path) -> Home:
        self.close()
        shutil.copytree(self.root, dest)
        return Home(dest)

    def run(self, specs: Path, write: Write) -> None:
        defs = build_definitions(DeriveSettings(specs_dir=specs, home=self.root))
        run_assets(defs, self.instance, write.asset, write.partition)

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
        event = self.instance.get_latest_materialization_event(write.asset)
        meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
        value = getattr(meta.get("derive/watermark"), "value", None)
        return value if isinstance(value, str) else None

    def partition_run(self, write: Write) -> str | None:
        """Run id of the latest materialization of the write's partition."""
        records = self.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=write.asset, asset_partitions=[write.partition or ""]), limit=1
        ).records
        return records[0].run_id if records else None

    def last_run(self) -> tuple[str, DagsterRunStatus, int]:
        """(run id, status, materializations it recorded) of the newest run in the instance."""
        run = self.instance.get_runs(limit=1)[0]
        events = self.instance.all_logs(run.run_id)
        materialized = sum(1 for e in events if e.dagster_event and e.dagster_event.is_step_materialization)
        return run.run_id, run.status, materialized


def close_homes() -> None:
    """Close every instance this process opened (call after each test)."""
    while _OPEN:
        _OPEN.pop().close()


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
    """The source URL variables the specs read."""

    def run(self, home: Home, write: Write) -> None:
        """Run `write` in this process on `home`, with the sources' URLs set; asserts it succeeded."""
        with pytest.MonkeyPatch.context() as mp:
            for name, value in self.env.items():
                mp.setenv(name, value)
            mp.delenv("DERIVE_DUCKDB_PATH", raising=False)
            home.run(self.specs, write)


def _add_specs(specs: Path) -> None:
    (specs / "analytics" / "daily_order_totals.yaml").write_text(yaml.safe_dump(MERGE_SPEC, sort_keys=False))
    (specs / "exports" / "orders_online.yaml").write_text(yaml.safe_dump(EXPORT_SPEC, sort_keys=False))


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """URL of a new PostgreSQL database on the test server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def recorded_world(url: str, root: Path) -> World:
    """Sources generated, then the recorded homes: `base` (orders replicated, the merge's day built and orders
    exported, all before a batch of source activity) and `mid` (base, with orders replicated after it); and the
    fault-free result of every write."""
    profiles = f"montydb:///{(root / 'profiles').as_posix()}"
    env = {env_var(s): url for s in ("accounts", "orders", "payments")}
    env[env_var("profiles")] = profiles
    specs = write_specs(root / "specs", "postgres")
    _add_specs(specs)
    world = World(specs, {}, {}, env)
    urls = SourceUrls(url, url, url, profiles)
    generate(urls, users=USERS)
    base = Home(root / "base").create()
    for write in ("replication_incremental", "derived_merge", "export"):
        world.run(base, WRITES[write])
    apply_activity(urls, fraction=0.1)
    mid = base.clone(root / "mid")
    world.run(mid, WRITES["replication_incremental"])
    world.homes.update(base=base, mid=mid)
    for name, write in WRITES.items():
        ref = fresh_home(world.homes, write, root / f"ref_{name}")
        world.run(ref, write)
        world.expected[name] = (ref.rows(write), ref.watermark(write))
    close_homes()
    return world


_SHARED = pytest.StashKey[World]()


def shared_world(request: pytest.FixtureRequest) -> World:
    """The recorded world, built once per test session for every module that asks for it (it takes a dozen
    runs); its database is dropped when the session ends."""
    config = request.config
    world = config.stash.get(_SHARED, None)
    if world is None:
        stack = ExitStack()
        config.add_cleanup(stack.close)
        url = stack.enter_context(postgres_database(request.getfixturevalue("postgres_server_url")))
        world = recorded_world(url, request.getfixturevalue("tmp_path_factory").mktemp("recorded"))
        config.stash[_SHARED] = world
    return world


def fresh_home(homes: dict[str, Home], write: Write, dest: Path) -> Home:
    """A copy of the recorded home `write` starts from (an empty one for a first load)."""
    start = homes.get(write.start)
    return start.clone(dest) if start else Home(dest).create()


def child_command(
    world: World, home: Home, write: Write, fault: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """Arguments and environment of `runner.py` running `write` in `home` (with `fault` armed)."""
    args = [
        sys.executable,
        str(RUNNER),
        "--specs",
        str(world.specs),
        "--home",
        str(home.root),
        "--asset",
        write.asset.to_user_string(),
    ]
    args += ["--partition", write.partition] if write.partition else []
    args += ["--fault", fault] if fault else []
    env = {**os.environ, **world.env, "DAGSTER_HOME": str(home.dagster_home), "RUST_BACKTRACE": "0"}
    env.pop("DERIVE_DUCKDB_PATH", None)
    return args, env


def run_child(
    world: World, home: Home, write: Write, fault: str | None = None
) -> subprocess.CompletedProcess[str]:
    args, env = child_command(world, home, write, fault)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
