"""Done when: `dagster dev` on the demo (webserver + daemon), plus new source rows from `derive activity`, leads
with no manual step to replicated, derived and exported windows, in dependency order, with checks shown in the UI.

The test does what `make dev` does, on a temporary home: the repository's dagster.yaml in a fresh DAGSTER_HOME,
`derive pools`, `dagster dev -w workspace.yaml`, over a copy of the shipped specs and embedded sources made by
`derive generate`. Nothing is ever launched by hand: the source sensors (`replicate_<source>_sensor`) replicate the
new rows, the automation sensor requests everything downstream by its condition. Three settings make it fast, none
changes what is requested or when: the copied source specs set `sensor: {interval_seconds: 5}` (default 60),
`DERIVE_AUTOMATION_INTERVAL_SECONDS=5` (default 30), and `DERIVE_EXECUTOR=in_process` (a run's steps in the run's
process instead of one process each, ~8 s apiece here).

1. Started on never-replicated sources, it polls the webserver's GraphQL API until every source table, core/user_detail,
   the latest complete window of analytics/daily_payments_by_region and both exports (that window of
   region_payments_online) have materialized; each materialized after everything it reads, in a run created after
   those inputs materialized (or in the same run, later); every check of those assets passed.
2. `derive activity` then writes new rows (new accounts and profiles, updates, soft deletes); it polls until the
   sources' sensors replicated them (rows read > 0), core/user_detail was rebuilt after both of its inputs' new
   materializations and its export wrote rows after that. Then the warehouse holds exactly the open accounts of the
   source (the new ones in, the closed ones out), and `derive lookup` finds a new user in the online store.

Every wait is a bounded poll, with bounds generous for a loaded 2-core machine. Measured here (2026-12-01, six
agents on 2 cores): phase 1 159-189 s, phase 2 111-137 s, 380-430 s in all. Most of it is run start-up: the
instance's QueuedRunCoordinator launches one run at a time, and each launch waits ~10-20 s for the run's process
to load the code location. With `run_coordinator: {config: {dequeue_use_threads: true, dequeue_num_workers: 4}}`
added to the instance the same test took 241 s (phase 1 109 s, phase 2 49 s), measured once, 20 minutes later.
`dagster dev`'s whole process group (webserver, daemon, code servers, runs) is killed at the end.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from dagster import AssetKey, TimeWindowPartitionsDefinition
from dagster_servers import (
    Server,
    assert_not_blank,
    free_port,
    keep_for_humans,
    render,
    serve,
    stop_group,
    write_dagster_home,
)

from derive_assets import metadata_keys as K
from derive_assets.factory.build import build_definitions
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
USERS = 300
FIRST_BOUND_SECONDS = 420
"""Bound on phase 1: four replications, then the tables and exports downstream (159-189 s here)."""
AFTER_ACTIVITY_BOUND_SECONDS = 300
"""Bound on phase 2: the sources' next probes and runs, user_detail and its export (111-137 s here)."""
POLL_SECONDS = 2
DAILY = AssetKey(["analytics", "daily_payments_by_region"])
DAILY_EXPORT = AssetKey(["online", "region_payments_online"])
CORE = AssetKey(["core", "user_detail"])
CORE_EXPORT = AssetKey(["online", "user_profile_online"])

MATERIALIZATIONS_QUERY = """
query Materializations($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    assetMaterializations(limit: 50) {
      timestamp
      partition
      runOrError { __typename ... on Run { runId creationTime } }
      metadataEntries { label ... on IntMetadataEntry { intValue } }
    }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name executionForLatestMaterialization { status } } }
    }
  }
}
"""
FAILED_RUNS_QUERY = """
query {
  runsOrError(filter: {statuses: [FAILURE]}, limit: 10) {
    ... on Runs { results { runId jobName tags { key value } } }
  }
}
"""


@dataclass(frozen=True)
class Materialization:
    at: float
    """When it was recorded (epoch seconds)."""
    partition: str | None
    run_id: str
    run_created: float
    counts: dict[str, int]


@dataclass(frozen=True)
class State:
    """What the webserver says right now: each watched asset's materializations (oldest first) and checks."""

    materializations: dict[AssetKey, list[Materialization]]
    checks: dict[AssetKey, dict[str, str | None]]
    """Check name -> status of its execution for the latest materialization (None: never executed)."""

    def first(self, key: AssetKey, partition: str | None = None) -> Materialization | None:
        found = [m for m in self.materializations[key] if partition is None or m.partition == partition]
        return found[0] if found else None

    def after(self, key: AssetKey, moment: float) -> list[Materialization]:
        return [m for m in self.materializations[key] if m.at > moment]


def read_state(server: Server, keys: Iterable[AssetKey]) -> State:
    variables = {"keys": [{"path": list(k.path)} for k in keys]}
    materializations: dict[AssetKey, list[Materialization]] = {}
    checks: dict[AssetKey, dict[str, str | None]] = {}
    for node in server.graphql(MATERIALIZATIONS_QUERY, variables)["assetNodes"]:
        key = AssetKey(node["assetKey"]["path"])
        found = []
        for m in node["assetMaterializations"]:
            run = m["runOrError"]
            assert run["__typename"] == "Run", run
            counts = {
                e["label"]: e["intValue"] for e in m["metadataEntries"] if e.get("intValue") is not None
            }
            found.append(
                Materialization(
                    int(m["timestamp"]) / 1000, m["partition"], run["runId"], run["creationTime"], counts
                )
            )
        materializations[key] = sorted(found, key=lambda m: m.at)
        assert node["assetChecksOrError"]["__typename"] == "AssetChecks", node["assetChecksOrError"]
        checks[key] = {
            c["name"]: (c["executionForLatestMaterialization"] or {}).get("status")
            for c in node["assetChecksOrError"]["checks"]
        }
    return State(materializations, checks)


def poll(
    server: Server, keys: list[AssetKey], bound: float, missing: Callable[[State], list[str]], what: str
) -> State:
    """Read the state every POLL_SECONDS until `missing` finds nothing missing; fail after `bound` seconds with
    what is still missing, the failed runs and the end of the log."""
    deadline = time.monotonic() + bound
    while True:
        assert server.process.poll() is None, f"dagster dev exited:\n{server.log_tail()}"
        state = read_state(server, keys)
        left = missing(state)
        if not left:
            return state
        if time.monotonic() > deadline:
            failed = server.graphql(FAILED_RUNS_QUERY)["runsOrError"].get("results", [])
            pytest.fail(
                f"{what}: still missing after {bound:.0f} s: {left}\nfailed runs: {failed}\n"
                f"dagster dev log (end):\n{server.log_tail(6000)}"
            )
        time.sleep(POLL_SECONDS)


@dataclass(frozen=True)
class Demo:
    root: Path
    specs: Path
    home: Path
    env: dict[str, str]
    graph: Any
    """The in-process asset graph of the same specs (dependencies, partitions)."""
    sources: list[AssetKey]


def copy_specs(dest: Path) -> Path:
    """The shipped specs, with each source's sensor probing every 5 s."""
    shutil.copytree(PROJECT_ROOT / "table_specs", dest)
    for path in sorted((dest / "sources").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        spec["sensor"] = {**(spec.get("sensor") or {}), "interval_seconds": 5}
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def derive(demo: Demo, *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "derive"), *args],
        cwd=PROJECT_ROOT,
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"derive {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def demo(tmp_path: Path) -> Demo:
    specs = copy_specs(tmp_path / "specs")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DERIVE_", "DAGSTER_"))}
    env |= {
        "DERIVE_SPECS_DIR": str(specs),
        "DERIVE_HOME": str(home),  # embedded sources, warehouse and online store
        "DERIVE_STRICT_SPECS": "1",
        "DERIVE_EXECUTOR": "in_process",
        "DERIVE_AUTOMATION_INTERVAL_SECONDS": "5",
        "DAGSTER_HOME": str(
            write_dagster_home(tmp_path / "dagster_home", base=PROJECT_ROOT / "dagster.yaml")
        ),
    }
    project = load_project(specs)
    graph = build_definitions(
        DeriveSettings(specs_dir=specs, home=tmp_path / "graph_home")
    ).resolve_asset_graph()
    sources = [AssetKey(r.ref.split(".")) for r in project.replicated]
    demo = Demo(tmp_path, specs, home, env, graph, sources)
    derive(demo, "generate", "--users", str(USERS))
    derive(demo, "pools")  # as `make dev` does before `dagster dev`
    return demo


@pytest.fixture
def dagster_dev(demo: Demo) -> Iterator[Server]:
    port = free_port()
    command = [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with serve(command, demo.env, demo.root / "dagster-dev.log", port) as server:
        yield server


def latest_window(demo: Demo) -> str:
    partitions = demo.graph.get(DAILY).partitions_def
    assert isinstance(partitions, TimeWindowPartitionsDefinition), partitions
    key = partitions.get_last_partition_key()
    assert key is not None
    return key


def check_failures(state: State, keys: Iterable[AssetKey]) -> list[str]:
    return [
        f"{key.to_user_string()}:{name}={status}"
        for key in keys
        for name, status in state.checks[key].items()
        if status != "SUCCEEDED"
    ]


def assert_dependency_order(demo: Demo, state: State, window: str, keys: list[AssetKey]) -> None:
    """Each asset's first materialization (of `window` when windowed) came after the first of each input (of the
    window it reads), in a run created after that input materialized, or later in the same run."""
    for key in keys:
        partition = window if demo.graph.get(key).partitions_def else None
        down = state.first(key, partition)
        assert down is not None, key
        for parent in demo.graph.get(key).parent_keys:
            up = state.first(parent, window if demo.graph.get(parent).partitions_def else None)
            assert up is not None, (
                f"{key.to_user_string()} materialized but its input {parent.to_user_string()} never did"
            )
            assert up.at < down.at, (
                f"{key.to_user_string()} materialized before its input {parent.to_user_string()}"
            )
            assert down.run_id == up.run_id or down.run_created >= up.at, (
                f"the run of {key.to_user_string()} was created before its input {parent.to_user_string()} "
                "materialized: it was requested too soon"
            )


def open_accounts(home: Path) -> set[int]:
    with sqlite3.connect(home / "sources" / "accounts.db") as conn:
        return {row[0] for row in conn.execute("SELECT user_id FROM auth WHERE deleted_at IS NULL")}


def test_dagster_dev_replicates_derives_and_exports_with_no_manual_step(
    demo: Demo, dagster_dev: Server, chromium: Path
) -> None:
    window = latest_window(demo)
    first_keys = [*demo.sources, CORE, DAILY, DAILY_EXPORT, CORE_EXPORT]

    def first_missing(state: State) -> list[str]:
        missing = []
        for key in first_keys:
            partition = window if demo.graph.get(key).partitions_def else None
            if state.first(key, partition) is None:
                missing.append(key.to_user_string() + (f"[{partition}]" if partition else ""))
        return missing + check_failures(state, [k for k in first_keys if state.materializations[k]])

    started = time.monotonic()
    state = poll(
        dagster_dev, first_keys, FIRST_BOUND_SECONDS, first_missing, "replicated, derived and exported"
    )
    first_seconds = time.monotonic() - started
    assert_dependency_order(demo, state, window, first_keys)
    assert not check_failures(state, first_keys)
    for key in demo.sources:
        assert state.first(key).counts[K.ROWS_READ] > 0, key  # type: ignore[union-attr]

    # New rows in the sources: new accounts and profiles, updates, closed accounts.
    before_ids = open_accounts(demo.home)
    activity_at = time.time()
    output = derive(demo, "activity", "--fraction", "0.05")
    changed = {line.rsplit(".", 1)[0] for line in output.splitlines() if not line.endswith(": 0")}
    after_ids = open_accounts(demo.home)
    new_ids, closed_ids = after_ids - before_ids, before_ids - after_ids
    assert new_ids and closed_ids, output
    touched = [k for k in demo.sources if ".".join(k.path) in changed]
    assert {".".join(k.path) for k in touched} >= {"accounts.auth", "profiles.profile"}, output

    def replicated_again(state: State) -> list[str]:
        missing = []
        for key in touched:
            if not any(m.counts.get(K.ROWS_READ, 0) > 0 for m in state.after(key, activity_at)):
                missing.append(f"{key.to_user_string()} replicated with the new rows")
        inputs = [state.after(parent, activity_at) for parent in demo.graph.get(CORE).parent_keys]
        if missing or not all(inputs):
            return [*missing, f"{CORE.to_user_string()} rebuilt after its inputs"]
        inputs_at = max(m[0].at for m in inputs)
        rebuilt = state.after(CORE, inputs_at)
        if not rebuilt:
            return [f"{CORE.to_user_string()} rebuilt after its inputs' new materializations"]
        # A rebuild may find its rows already exported: a run that started while an input replicated can read
        # the new rows before that input's materialization is recorded. So: some export after the activity wrote
        # rows, and one followed the latest rebuild (the online store's contents are checked at the end).
        wrote = [m for m in state.after(CORE_EXPORT, activity_at) if m.counts.get(K.ROWS_WRITTEN, 0) > 0]
        if not wrote:
            return [f"{CORE_EXPORT.to_user_string()} wrote the new rows"]
        if not state.after(CORE_EXPORT, rebuilt[-1].at):
            return [f"{CORE_EXPORT.to_user_string()} ran after the latest rebuild"]
        return check_failures(state, [CORE, CORE_EXPORT])

    started = time.monotonic()
    state = poll(
        dagster_dev, first_keys, AFTER_ACTIVITY_BOUND_SECONDS, replicated_again, "after derive activity"
    )
    activity_seconds = time.monotonic() - started

    # The checks in the UI: the core table's Checks tab lists each check, none failed.
    shots = demo.root / "screenshots"
    shots.mkdir()
    profile = demo.root / "chromium-profile"
    checks = render(
        chromium,
        f"{dagster_dev.url}/assets/{CORE.to_user_string()}?view=checks",
        shots / "core-checks.png",
        profile,
    )
    graph = render(chromium, f"{dagster_dev.url}/asset-groups", shots / "asset-graph-after-runs.png", profile)
    assert not checks.shows(*state.checks[CORE]), checks.text
    assert not [t for t in checks.text if t == "Failed"], checks.text
    for page in (checks, graph):
        assert_not_blank(page.png)
    keep_for_humans([checks.png, graph.png], "dagster-dev")

    print(
        f"phase 1 (to exported windows): {first_seconds:.0f} s; after derive activity: {activity_seconds:.0f} s"
    )
    # The new rows arrived: the warehouse has exactly the source's open accounts, the online store the new users.
    # `dagster dev` is stopped first: DuckDB's lock refuses readers while a run writes.
    stop_group(dagster_dev.process)
    with duckdb.connect(str(demo.home / "warehouse.duckdb"), read_only=True) as conn:
        core_ids = {row[0] for row in conn.execute("SELECT user_id FROM core.user_detail").fetchall()}
    assert core_ids == after_ids
    new_id = max(new_ids)
    found = derive(demo, "lookup", "user_profile_online", str(new_id))
    assert str(new_id) in found, found
