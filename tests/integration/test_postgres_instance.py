"""Dagster on the production instance's storage: `dagster-postgres` on the real PostgreSQL test server.

The instance is `deployments/k8s/dagster.yaml` itself, with its storage's variables (`DAGSTER_PG_HOST`, `_USER`,
`_PASSWORD`) set to the test server's, its `db_name` and `port` pointed at a fresh database of that server (one per
test: each test counts the events of the same asset keys), and without its run launcher (no cluster here; runs
execute in process, as a run worker pod executes them). The event log in PostgreSQL is read back both through the
instance and with plain SQL on its `event_logs` table, so what the runs found there is shown to be what is there.

Also here: both instance files load with the installed versions' config schemas (the k8s run launcher's config is
built into a `K8sRunLauncher`, with a kubeconfig that points nowhere instead of a cluster's service account).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, EventLogEntry
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._serdes import deserialize_value
from dagster._serdes.config_class import ConfigurableClassData
from dagster_postgres import PostgresEventLogStorage
from helpers import Replication, materializations, utc, value  # pyright: ignore[reportMissingImports]
from psycopg import sql

from derive_assets.cli import main as derive
from derive_assets.factory.build import build_definitions
from derive_assets.factory.pools import pool_limits
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project

K8S_INSTANCE = PROJECT_ROOT / "deployments" / "k8s" / "dagster.yaml"
LOCAL_INSTANCE = PROJECT_ROOT / "dagster.yaml"
CHILD = Path(__file__).with_name("pg_instance_child.py")
ORDERS, PAYMENTS = AssetKey(["orders", "orders"]), AssetKey(["payments", "payments"])
USERS = 300
PLANNED = (
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value,
    DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
)
"""The events `create_run` writes for a run before it executes (not among the events the run itself emits)."""
TARGETED = ("db_name", "port")
"""The only storage fields the tests change: the test server is not on 5432, and each test has its own database."""


def as_time(text: str) -> dt.datetime:
    """A stored watermark (ISO text) as an aware UTC datetime, as the source's `updated_at` reads."""
    return utc(dt.datetime.fromisoformat(text))


def env_vars_in(node: Any) -> set[str]:
    """Every variable an instance file reads (`{env: NAME}` anywhere in it)."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return {node["env"]}
        return set().union(*(env_vars_in(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(env_vars_in(v) for v in node))
    return set()


@dataclass(frozen=True)
class PgHome:
    """A `DAGSTER_HOME` whose dagster.yaml is the production one on a database of its own."""

    path: Path
    url: str
    """The instance's database, for reading its tables with plain SQL."""

    def instance(self) -> DagsterInstance:
        """A new instance object on the home (a run worker or a daemon opening it), to be closed by the caller."""
        return DagsterInstance.from_config(str(self.path))

    def query(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(statement, params).fetchall()  # pyright: ignore[reportArgumentType]

    def materializations(self, key: AssetKey) -> list[tuple[int, str, dict[str, Any]]]:
        """(storage id, run id, metadata values) of each materialization of `key` in `event_logs`, oldest first."""
        rows = self.query(
            "SELECT id, run_id, event FROM event_logs WHERE dagster_event_type = %s AND asset_key = %s ORDER BY id",
            DagsterEventType.ASSET_MATERIALIZATION.value,
            key.to_string(),
        )
        found = []
        for storage_id, run_id, text in rows:
            entry = deserialize_value(text, EventLogEntry)
            assert entry.asset_materialization is not None
            found.append(
                (storage_id, run_id, {k: value(v) for k, v in entry.asset_materialization.metadata.items()})
            )
        return found

    def run_events(self, run_id: str) -> list[tuple[int, str | None]]:
        """(storage id, event type) of each event of run `run_id` in `event_logs`, in storage order."""
        return [
            (row[0], row[1])
            for row in self.query(
                "SELECT id, dagster_event_type FROM event_logs WHERE run_id = %s ORDER BY id", run_id
            )
        ]


def production_instance_config(database: str, port: int) -> dict[str, Any]:
    config = yaml.safe_load(K8S_INSTANCE.read_text())
    del config["run_launcher"]  # K8sRunLauncher needs a cluster; execute_in_process never launches a run
    config["storage"]["postgres"]["postgres_db"].update(db_name=database, port=port)
    return config


@pytest.fixture
def pg_home(postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgHome]:
    server = urlsplit(postgres_server_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", server.hostname or "")
    monkeypatch.setenv("DAGSTER_PG_USER", unquote(server.username or ""))
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", unquote(server.password or ""))
    database = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        yaml.safe_dump(production_instance_config(database, server.port or 5432))
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    try:
        yield PgHome(home, server._replace(path=f"/{database}").geturl())
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def test_the_instance_is_the_production_file_on_postgres_storage(pg_home: PgHome):
    production = yaml.safe_load(K8S_INSTANCE.read_text())
    used = yaml.safe_load((pg_home.path / "dagster.yaml").read_text())
    storage, production_storage = used.pop("storage"), production.pop("storage")
    assert used == {k: v for k, v in production.items() if k != "run_launcher"}
    db, production_db = (
        storage["postgres"].pop("postgres_db"),
        production_storage["postgres"].pop("postgres_db"),
    )
    assert storage == production_storage
    assert {k: v for k, v in db.items() if k not in TARGETED} == {
        k: v for k, v in production_db.items() if k not in TARGETED
    }
    with pg_home.instance() as instance:
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert type(instance.run_storage).__module__.startswith("dagster_postgres.")
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    tables = {row[0] for row in pg_home.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"event_logs", "runs", "asset_keys", "concurrency_slots"} <= tables


def test_a_watermark_is_written_to_and_read_back_from_the_postgres_event_log(
    pg_home: PgHome, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    rep = Replication(tmp_path, monkeypatch, postgres_url, "postgres")
    counts = rep.generate(users=USERS)
    with pg_home.instance() as instance:
        rep.instance = instance
        first = rep.replicate("orders")
    first_meta = materializations(first)["orders.orders"]
    assert first_meta["derive/rows_read"] == counts["orders.orders"] > 0
    activity = rep.apply_activity()
    first_mark = first_meta["derive/watermark"]
    changed = rep.source_changed_since("orders.orders", as_time(first_mark))
    assert 0 < changed < counts["orders.orders"] + activity["orders.orders.inserted"]

    # A second instance object, as the next run's worker opens it: all it knows is in PostgreSQL.
    with pg_home.instance() as instance:
        rep.instance = instance
        second = rep.replicate("orders")
    second_meta = materializations(second)["orders.orders"]

    assert second_meta["derive/watermark_before"] == first_mark  # what the second run read as its watermark
    assert second_meta["derive/rows_read"] == changed  # so it read only the rows changed since
    assert as_time(second_meta["derive/watermark"]) == rep.source_max_updated_at("orders.orders")
    rows = pg_home.materializations(ORDERS)
    assert [(run_id, meta["derive/watermark"]) for _, run_id, meta in rows] == [
        (first.run_id, first_mark),
        (second.run_id, second_meta["derive/watermark"]),
    ]
    assert rows[0][0] < rows[1][0]
    assert rows[1][2]["derive/watermark_before"] == rows[0][2]["derive/watermark"]
    assert [meta["derive/rows_read"] for _, _, meta in rows] == [counts["orders.orders"], changed]
    assert rep.warehouse("SELECT count(*) FROM orders.orders") == rep.source("SELECT count(*) FROM orders")


@pytest.mark.slow  # the `derive` CLI, in process
def test_the_demo_graph_runs_on_the_postgres_instance(
    pg_home: PgHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    for name in ("DERIVE_ACCOUNTS_URL", "DERIVE_ORDERS_URL", "DERIVE_PAYMENTS_URL", "DERIVE_DUCKDB_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DERIVE_HOME", str(tmp_path / "derive_home"))
    settings = DeriveSettings.from_env()
    project = load_project(settings.specs_dir, cache_dir=settings.cache_dir)
    expected_keys = set(build_definitions(settings, project).resolve_asset_graph().get_all_asset_keys())

    # A deploy: the pools' limits, then the graph (`derive demo`: every source's tables, then every table, Python
    # table and export over its windows of the last 2 days), the instance opened from DAGSTER_HOME.
    assert derive(["pools"]) == 0
    assert derive(["demo", "--users", str(USERS), "--days", "2"]) == 0
    out = capsys.readouterr().out

    materialized = {
        AssetKey.from_db_string(row[0])
        for row in pg_home.query(
            "SELECT DISTINCT asset_key FROM event_logs WHERE dagster_event_type = %s",
            DagsterEventType.ASSET_MATERIALIZATION.value,
        )
    }
    assert materialized == expected_keys, out
    statuses = pg_home.query("SELECT status, count(*) FROM runs GROUP BY status")
    assert [status for status, _ in statuses] == [DagsterRunStatus.SUCCESS.value], statuses
    with pg_home.instance() as instance:
        for rt in project.replicated:
            key = AssetKey(rt.ref.split("."))
            (_, _, stored), *_ = reversed(pg_home.materializations(key))
            assert stored["derive/watermark"], rt.ref
            assert (
                f"{rt.ref} " in out and stored["derive/watermark"] in out
            )  # the summary shows the stored mark
        limits = pool_limits(project)
        for pool, limit in limits.items():
            info = instance.event_log_storage.get_concurrency_info(pool)
            assert info.slot_count == limit, pool
            assert (info.active_slot_count, info.pending_step_count) == (0, 0), pool  # every slot given back
    assert len(limits) >= len(expected_keys) // 2  # one per source and one per table: the steps ran in them


@pytest.mark.slow  # two child processes
def test_two_runs_at_once_in_two_processes_do_not_interfere(
    pg_home: PgHome, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    rep = Replication(tmp_path, monkeypatch, postgres_url, "postgres")
    rep.generate(users=USERS)
    with pg_home.instance() as instance:
        rep.instance = instance
        before = {key: materializations(rep.materialize(".".join(key.path))) for key in (ORDERS, PAYMENTS)}
    marks = {key: before[key][".".join(key.path)]["derive/watermark"] for key in (ORDERS, PAYMENTS)}
    rep.apply_activity()
    changed = {
        key: rep.source_changed_since(".".join(key.path), as_time(mark)) for key, mark in marks.items()
    }
    # Each process has a warehouse of its own (a copy), as production's steps share BigQuery rather than a DuckDB
    # file one process at a time may write: the two runs overlap in the event log, not in a lock queue.
    homes = {key: shutil.copytree(rep.home, tmp_path / f"home_{key.path[0]}") for key in (ORDERS, PAYMENTS)}
    meet = tmp_path / "meet"
    meet.mkdir()
    names = {ORDERS: "orders", PAYMENTS: "payments"}
    procs = {
        key: start_child(
            tmp_path / "specs", home, key, meet, names[key], names[PAYMENTS if key == ORDERS else ORDERS]
        )
        for key, home in homes.items()
    }
    done = {key: proc.communicate(timeout=240) for key, proc in procs.items()}
    assert [procs[k].returncode for k in done] == [0, 0], [err[-3000:] for _, err in done.values()]
    reported = {key: json.loads(out.strip().splitlines()[-1]) for key, (out, _) in done.items()}
    run_ids = {key: seen["run_id"] for key, seen in reported.items()}

    events = {key: pg_home.run_events(run_id) for key, run_id in run_ids.items()}
    with pg_home.instance() as instance:
        for key, run_id in run_ids.items():
            run = instance.get_run_by_id(run_id)
            assert run is not None and run.status == DagsterRunStatus.SUCCESS, key
            records = instance.get_records_for_run(run_id, limit=10_000).records
            assert [(r.storage_id, r.event_log_entry.dagster_event_type) for r in records] == [
                (storage_id, DagsterEventType(kind) if kind else None) for storage_id, kind in events[key]
            ]
            kinds = [kind for _, kind in events[key]]
            for kind in ("RUN_START", "STEP_START", "ASSET_MATERIALIZATION", "STEP_SUCCESS", "RUN_SUCCESS"):
                assert kinds.count(DagsterEventType[kind].value) == 1, (key, kind, kinds)
            assert kinds[-1] == DagsterEventType.RUN_SUCCESS.value, key
            # Every event the run emitted is in its event log, in order, after the events its creation wrote.
            stored = [kind for kind in kinds if kind]
            planned = [kind for kind in stored if kind in PLANNED]
            assert stored == planned + reported[key]["events"], key
            assert planned[0] == DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value, key
            # Its materialization is of its own table, with the watermark of that table's rows at the source.
            ((_, stored_run, meta),) = [row for row in pg_home.materializations(key) if row[1] == run_id]
            ref = ".".join(key.path)
            assert meta["derive/watermark_before"] == marks[key], key  # its own table's watermark, from PG
            assert meta["derive/rows_read"] == changed[key] > 0, key
            assert as_time(meta["derive/watermark"]) == rep.source_max_updated_at(ref), key
            latest = instance.get_latest_materialization_event(key)
            assert latest is not None and latest.run_id == stored_run == run_id, key
    ids = [storage_id for key in events for storage_id, _ in events[key]]
    assert len(ids) == len(set(ids))  # distinct storage ids across both runs
    orders, payments = ([storage_id for storage_id, _ in events[key]] for key in (ORDERS, PAYMENTS))
    # Both runs were writing at the same time (they met inside their steps): their events interleave.
    assert min(orders) < max(payments) and min(payments) < max(orders)


def start_child(
    specs: Path, home: Path, key: AssetKey, meet: Path, me: str, other: str
) -> subprocess.Popen[str]:
    """`pg_instance_child.py` materializing `key` on the instance under `DAGSTER_HOME`, in a process of its own."""
    args = [
        sys.executable,
        str(CHILD),
        "--specs",
        str(specs),
        "--home",
        str(home),
        "--asset",
        key.to_user_string(),
    ]
    args += ["--meet", str(meet), "--me", me, "--other", other]
    env = {**os.environ, "RUST_BACKTRACE": "0"}
    return subprocess.Popen(
        args, env=env, cwd=PROJECT_ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _with_every_variable(path: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    names = env_vars_in(yaml.safe_load(path.read_text()))
    for name in names:
        monkeypatch.setenv(name, f"value-of-{name.lower().replace('_', '-')}")
    return names


def _class_configs(config: Mapping[str, Any]) -> dict[str, tuple[type[Any], Any]]:
    """The configurable classes of the k8s instance, each with the config the instance builds it from."""
    from dagster_k8s import K8sRunLauncher

    return {
        "run_launcher": (K8sRunLauncher, config["run_launcher"]["config"]),
        "run_coordinator": (QueuedRunCoordinator, config["run_coordinator"]["config"]),
        "storage": (PostgresEventLogStorage, config["storage"]["postgres"]),
    }


def _processed(klass: type[Any], config: Any) -> Any:
    """`config` through `klass`'s own schema, variables resolved (what `ConfigurableClassData.rehydrate` does)."""
    return process_config(resolve_to_config_type(klass.config_type()), config)


def test_the_kubernetes_instance_file_loads_with_the_installed_schemas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _with_every_variable(K8S_INSTANCE, monkeypatch)
    shutil.copyfile(K8S_INSTANCE, tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(
        str(tmp_path)
    )  # the instance's schema and its cross-field rules
    assert custom_class is None
    assert (config["run_launcher"]["module"], config["run_launcher"]["class"]) == (
        "dagster_k8s",
        "K8sRunLauncher",
    )
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    classes = _class_configs(config)
    resolved = {}
    for part, (klass, part_config) in classes.items():
        processed = _processed(klass, part_config)
        assert processed.success, (part, processed.errors)
        resolved[part] = processed.value
    db = resolved["storage"]["postgres_db"]
    assert (db["hostname"], db["username"], db["password"]) == (
        os.environ["DAGSTER_PG_HOST"], os.environ["DAGSTER_PG_USER"], os.environ["DAGSTER_PG_PASSWORD"],
    )  # fmt: skip
    assert db["scheme"] == "postgresql+psycopg2"  # not psycopg 3: see the comment in the file

    # In a pod the launcher reads its service account's in-cluster config; here a kubeconfig that points nowhere.
    from dagster_k8s import K8sRunLauncher

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "none",
            "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
            "users": [{"name": "none", "user": {"token": "unused"}}],
            "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        })
    )  # fmt: skip
    elsewhere = {
        **config["run_launcher"]["config"],
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
    }
    launcher = ConfigurableClassData("dagster_k8s", "K8sRunLauncher", yaml.safe_dump(elsewhere)).rehydrate(
        K8sRunLauncher
    )
    wanted = resolved["run_launcher"]
    assert launcher.service_account_name == wanted["service_account_name"]
    assert launcher.instance_config_map == wanted["instance_config_map"]
    assert list(launcher.env_config_maps) == wanted.get("env_config_maps", [])
    assert list(launcher.env_secrets) == wanted.get("env_secrets", [])
    assert launcher.job_image == wanted.get("job_image")


def test_every_variable_of_the_kubernetes_instance_file_is_required_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    names = _with_every_variable(K8S_INSTANCE, monkeypatch)
    assert {"DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD"} <= names
    shutil.copyfile(K8S_INSTANCE, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    for name in sorted(names):
        with monkeypatch.context() as unset:
            unset.delenv(name)
            refused = [
                part
                for part, (klass, part_config) in _class_configs(config).items()
                if not (processed := _processed(klass, part_config)).success
                and name in " ".join(e.message for e in processed.errors)
            ]
        assert refused, f"{name} unset, and no part of the instance refused its config"


def test_the_local_instance_file_loads_with_the_installed_schemas(tmp_path: Path):
    shutil.copyfile(LOCAL_INSTANCE, tmp_path / "dagster.yaml")
    raw = yaml.safe_load(LOCAL_INSTANCE.read_text())
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    assert "storage" not in raw  # the default: SQLite under DAGSTER_HOME
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        assert coordinator.dequeue_use_threads == raw["run_coordinator"]["config"]["dequeue_use_threads"]
        assert coordinator.dequeue_num_workers == raw["run_coordinator"]["config"]["dequeue_num_workers"]
        monitoring = raw["run_monitoring"]
        assert instance.run_monitoring_enabled is monitoring["enabled"]
        assert instance.run_monitoring_max_runtime_seconds == monitoring["max_runtime_seconds"]
        assert instance.run_monitoring_start_timeout_seconds == monitoring["start_timeout_seconds"]
        assert instance.run_retries_enabled is raw["run_retries"]["enabled"]
        assert instance.run_retries_max_retries == raw["run_retries"]["max_retries"]
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == raw["concurrency"]["pools"]["default_limit"]
        assert pools.pool_granularity is not None and pools.pool_granularity.value == "op"
        assert instance.event_log_storage.supports_global_concurrency_limits
        assert not instance.telemetry_enabled
    assert json.dumps(config, default=str)  # the validated config is plain data
