"""Pools on a real instance: the repository's `dagster.yaml` (SQLite storage, `concurrency.pools`) in a temporary
DAGSTER_HOME, the limits written by `apply_pool_limits`, and steps of real runs held back by a full pool.

"Another run" holds a pool's slots through the instance's own claim (`claim_concurrency_slot`, what a running step
of another run does); the run under test then waits, its step recorded as pending in the pool, and materializes
nothing until the slot is freed. No timing: each wait is a poll of the instance's state with a generous bound.
"""

import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult
from support import QUIET, events_source

from derive_assets.factory.build import build_definitions
from derive_assets.factory.pools import apply_pool_limits, source_pool, table_pool
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project

TABLE_KEY = AssetKey(["bench", "daily"])
EVENTS_KEY = AssetKey(["shop", "events"])
DAY = "2026-03-01"
BOUND_SECONDS = 60
OTHER_RUN = "another-run"


def table_spec(**fields: Any) -> dict[str, Any]:
    return {
        "name": "daily",
        "dataset": "bench",
        "owner": "team:shop",
        "strategy": "append",
        "window": {"size": "1d", "start": DAY},
        "partition": {"key": "day"},
        "columns": [{"name": "id", "type": "INT64"}, {"name": "day", "type": "DATE"}],
        "sql": "SELECT e.id, DATE(e.updated_at) AS day FROM shop.events AS e\n"
        "WHERE e.updated_at >= @window_start AND e.updated_at < @window_end",
        **fields,
    }


class World:
    """Specs (source `shop`, table `bench.daily`), the SQLite source, and an instance from the repo's dagster.yaml."""

    def __init__(self, root: Path, **source_fields: Any) -> None:
        self.settings = DeriveSettings(specs_dir=root / "specs", home=root / "home", cache_dir=None)
        (self.settings.specs_dir / "sources").mkdir(parents=True)
        (self.settings.specs_dir / "bench").mkdir()
        self.write_source(**source_fields)
        (self.settings.specs_dir / "bench" / "daily.yaml").write_text(yaml.safe_dump(table_spec()))
        self.settings.embedded_sources_dir.mkdir(parents=True)
        with sqlite3.connect(self.settings.embedded_sources_dir / "shop.db") as con:
            con.execute("CREATE TABLE events (id INTEGER, kind TEXT, updated_at TEXT)")
            con.executemany(
                "INSERT INTO events VALUES (?, 'click', ?)", [(1, f"{DAY} 01:00:00"), (2, f"{DAY} 02:00:00")]
            )
        dagster_home = root / "dagster_home"
        dagster_home.mkdir()
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
        self.instance = DagsterInstance.from_config(str(dagster_home))
        self.storage = self.instance.event_log_storage

    def write_source(self, **fields: Any) -> None:
        (self.settings.specs_dir / "sources" / "shop.yaml").write_text(
            yaml.safe_dump(events_source(**fields))
        )

    def apply(self) -> dict[str, int]:
        return apply_pool_limits(self.instance, load_project(self.settings.specs_dir))

    def limits(self) -> dict[str, tuple[int, bool]]:
        return {p.name: (p.limit, p.from_default) for p in self.storage.get_pool_limits()}

    def materialized(self, key: AssetKey) -> bool:
        return self.instance.get_latest_materialization_event(key) is not None


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    yield world
    world.instance.dispose()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"not within {BOUND_SECONDS} s: {what}"
        time.sleep(0.1)


class BackgroundRun:
    """A run of `keys` on the world's instance, in a thread (the in-process executor waits there for its slot)."""

    def __init__(self, world: World, keys: list[AssetKey], partition: str | None = None) -> None:
        defs = build_definitions(world.settings)
        self.result: ExecuteInProcessResult | None = None

        def run() -> None:
            self.result = materialize_keys(
                defs, keys, instance=world.instance, partition_key=partition, run_config=QUIET
            )

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> ExecuteInProcessResult:
        self.thread.join(BOUND_SECONDS)
        assert not self.thread.is_alive(), f"the run did not end within {BOUND_SECONDS} s"
        assert self.result is not None
        return self.result


def test_the_repository_instance_has_pools_at_op_granularity_with_a_default_limit_of_one(world):
    pools = world.instance.get_concurrency_config().pool_config
    assert (pools.pool_granularity.value if pools.pool_granularity else None, pools.default_pool_limit) == (
        "op",
        1,
    )
    assert world.storage.supports_global_concurrency_limits


def test_apply_pool_limits_writes_each_pools_limit_once_and_only_what_changed(world):
    # the source's 1 is the instance's default_limit: not written, its first step gets it
    assert world.apply() == {table_pool("bench.daily"): 2}
    assert world.limits() == {table_pool("bench.daily"): (2, False)}
    assert world.apply() == {}  # nothing changed: nothing written

    world.write_source(max_concurrent_extractions=3)
    assert world.apply() == {source_pool("shop"): 3}
    assert world.limits()[source_pool("shop")] == (3, False)
    world.write_source(max_concurrent_extractions=1)  # back to the default: written, since the pool says 3
    assert world.apply() == {source_pool("shop"): 1}


def test_a_pool_without_a_written_limit_gets_the_default_of_one_on_first_use(world):
    pool = source_pool("shop")
    assert pool not in world.limits()
    assert world.storage.initialize_concurrency_limit_to_default(pool)  # what a step's first claim does
    assert world.limits()[pool] == (1, True)
    assert world.storage.claim_concurrency_slot(pool, OTHER_RUN, "first").is_claimed
    assert not world.storage.claim_concurrency_slot(pool, "second-run", "second").is_claimed


def replicated(world: World) -> None:
    result = (
        build_definitions(world.settings)
        .resolve_job_def("replicate_shop")
        .execute_in_process(instance=world.instance, run_config=QUIET)
    )
    assert result.success


def test_a_table_step_waits_while_another_run_writes_the_table_then_runs(world):
    world.apply()
    replicated(world)
    pool = table_pool("bench.daily")
    world.storage.set_concurrency_slots(
        pool, 1
    )  # one writer, as for a table whose windows cannot run at once
    assert world.storage.claim_concurrency_slot(pool, OTHER_RUN, "other_step").is_claimed

    run = BackgroundRun(world, [TABLE_KEY], DAY)
    wait_for(
        lambda: world.storage.get_concurrency_info(pool).pending_step_count == 1,
        "the step pending in its pool",
    )
    assert run.thread.is_alive()
    assert not world.materialized(TABLE_KEY)
    assert world.storage.get_concurrency_info(pool).active_run_ids == {OTHER_RUN}

    world.storage.free_concurrency_slot_for_step(OTHER_RUN, "other_step")
    assert run.finish().success
    assert world.materialized(TABLE_KEY)
    info = world.storage.get_concurrency_info(pool)
    assert (info.active_slot_count, info.pending_step_count) == (0, 0)  # the run gave its slot back


def test_two_windows_of_a_table_with_disjoint_partitions_may_write_at_once(world):
    world.apply()  # bench.daily is append on day windows and day partitions: 2 at once
    replicated(world)
    pool = table_pool("bench.daily")
    assert world.storage.claim_concurrency_slot(pool, OTHER_RUN, "other_window").is_claimed

    run = BackgroundRun(world, [TABLE_KEY], DAY)  # the second writer: not held back
    assert run.finish().success
    assert world.storage.get_concurrency_info(pool).active_run_ids == {OTHER_RUN}
    world.storage.free_concurrency_slots_for_run(OTHER_RUN)


@pytest.mark.parametrize("extractions", [1, 2])
def test_a_replication_waits_once_its_source_has_max_concurrent_extractions_running(tmp_path, extractions):
    world = World(tmp_path, max_concurrent_extractions=extractions)
    try:
        world.apply()
        pool = source_pool("shop")
        if pool not in world.limits():  # the default (1) is not written: the first step's claim sets it
            world.storage.initialize_concurrency_limit_to_default(pool)
        assert world.limits()[pool][0] == extractions
        holders = [f"extraction_{n}" for n in range(extractions)]
        for step in holders:  # other runs extracting from the same database
            assert world.storage.claim_concurrency_slot(pool, OTHER_RUN, step).is_claimed
        assert not world.storage.claim_concurrency_slot(
            pool, "probe-run", "probe"
        ).is_claimed  # the pool is full
        world.storage.free_concurrency_slot_for_step("probe-run", "probe")

        run = BackgroundRun(world, [EVENTS_KEY])
        wait_for(
            lambda: world.storage.get_concurrency_info(pool).pending_step_count == 1,
            "the replication pending",
        )
        assert not world.materialized(EVENTS_KEY)

        world.storage.free_concurrency_slot_for_step(OTHER_RUN, holders[0])
        assert run.finish().success
        assert world.materialized(EVENTS_KEY)
    finally:
        world.instance.dispose()


def test_derive_pools_writes_the_limits_to_the_instance_of_dagster_home(tmp_path, monkeypatch, capsys):
    from derive_assets.cli import main

    world = World(tmp_path, max_concurrent_extractions=2)
    world.instance.dispose()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(world.settings.specs_dir))
    monkeypatch.setenv("DERIVE_HOME", str(world.settings.home))
    assert main(["pools"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "derive/source/shop: 2",
        "derive/table/bench.daily: 2",
        "2 pool limit(s) written",
    ]
    assert main(["pools"]) == 0
    assert capsys.readouterr().out == "pool limits up to date\n"
    with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        limits = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
    assert limits == {"derive/source/shop": 2, "derive/table/bench.daily": 2}
