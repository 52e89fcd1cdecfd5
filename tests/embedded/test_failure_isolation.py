"""A failing table stops only its own downstream; the retry settings the instance runs with.

One run of a whole small graph on the embedded engines (SQLite source -> DuckDB -> SQLite online store):

    shop.events ─┬─ bench.fine ──── bench.fine_down,  online/fine_online
                 ├─ bench.broken ── bench.broken_down              (an SQL error at run time)
                 └─ bench.checked ─ bench.checked_down, online/checked_online   (a failed blocking check)

                 └─ bench.dupes                                     (a broken merge rule: duplicate keys)

`bench.broken`, `bench.checked` and `bench.dupes` fail their steps; what reads them (the exports too) never runs;
everything else materializes in the same run. With step retries configured, a broken rule is not retried (a
`Failure(allow_retries=False)`, `factory/failures.py`), nor a failed blocking check (Dagster fails that step outside
the retry policy). An engine error in the SQL itself (DuckDB's ConversionException, BigQuery's BadRequest) is not
classified by the warehouses yet, so a retry policy would retry it: it is left out of the retry test.
"""

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, ExecuteInProcessResult
from dagster._core.instance.config import dagster_instance_config
from support import QUIET, events_source

from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import PROJECT_ROOT, DeriveSettings

COLUMNS = [{"name": "id", "type": "INT64"}, {"name": "kind", "type": "STRING"}]


def table(name: str, sql: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "dataset": "bench",
        "owner": "team:shop",
        "strategy": "replace",
        "columns": COLUMNS,
        "sql": sql,
        **fields,
    }


def export(name: str, of: str) -> dict[str, Any]:
    return {
        "kind": "export",
        "name": name,
        "table": of,
        "owner": "team:shop",
        "keyspace": "bench",
        "partition_key": ["id"],
    }


EVENTS = "SELECT e.id, e.kind FROM shop.events AS e"
TABLES = [
    table("fine", EVENTS),
    table("fine_down", "SELECT f.id, f.kind FROM bench.fine AS f"),
    # valid SQL whose run fails: 'click' is no number
    table("broken", "SELECT CAST(e.kind AS INT64) AS id, e.kind FROM shop.events AS e"),
    table("broken_down", "SELECT b.id, b.kind FROM bench.broken AS b"),
    # every event is a click: a blocking (severity error) check fails
    table(
        "checked",
        EVENTS,
        columns=[
            {"name": "id", "type": "INT64"},
            {"name": "kind", "type": "STRING", "constraints": {"accepted_values": ["view"]}},
        ],
    ),
    table("checked_down", "SELECT c.id, c.kind FROM bench.checked AS c"),
    # merged by `kind`, which every event shares: the merge rule refuses duplicate keys
    table("dupes", EVENTS, strategy={"type": "merge", "unique_key": ["kind"]}),
]
EXPORTS = [export("fine_online", "bench.fine"), export("checked_online", "bench.checked")]


def key(name: str) -> AssetKey:
    return AssetKey(name.split("/"))


SUCCEEDED = {"shop/events", "bench/fine", "bench/fine_down", "online/fine_online"}
FAILED = {"bench/broken", "bench/checked", "bench/dupes"}
NEVER_RAN = {"bench/broken_down", "bench/checked_down", "online/checked_online"}


def write_project(root: Path) -> DeriveSettings:
    settings = DeriveSettings(specs_dir=root / "specs", home=root / "home", cache_dir=None)
    for folder in ("sources", "bench", "exports"):
        (settings.specs_dir / folder).mkdir(parents=True)
    (settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(events_source()))
    for spec in TABLES:
        (settings.specs_dir / "bench" / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    for spec in EXPORTS:
        (settings.specs_dir / "exports" / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    settings.embedded_sources_dir.mkdir(parents=True)
    with sqlite3.connect(settings.embedded_sources_dir / "shop.db") as con:
        con.execute("CREATE TABLE events (id INTEGER, kind TEXT, updated_at TEXT)")
        con.executemany(
            "INSERT INTO events VALUES (?, 'click', ?)",
            [(1, "2026-03-01 01:00:00"), (2, "2026-03-01 02:00:00")],
        )
    return settings


def run_everything(
    settings: DeriveSettings, instance: DagsterInstance, names: set[str]
) -> ExecuteInProcessResult:
    keys = [key(k) for k in sorted(names)]
    return materialize_keys(build_definitions(settings), keys, instance=instance, run_config=QUIET)


def step_keys(result: ExecuteInProcessResult, event_type: DagsterEventType) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type == event_type and e.step_key}


def step(name: str) -> str:
    return key(name).to_python_identifier()


def failures(result: ExecuteInProcessResult) -> dict[str, str]:
    return {
        e.step_key: e.step_failure_data.error.to_string()
        for e in result.all_events
        if e.event_type == DagsterEventType.STEP_FAILURE
        and e.step_key
        and e.step_failure_data
        and e.step_failure_data.error
    }


def test_a_failing_table_stops_only_its_own_downstream(tmp_path, monkeypatch):
    monkeypatch.delenv("DERIVE_STEP_RETRIES", raising=False)
    settings = write_project(tmp_path)
    with DagsterInstance.ephemeral() as instance:
        result = run_everything(settings, instance, SUCCEEDED | FAILED | NEVER_RAN)
        materialized = {
            n for n in SUCCEEDED | FAILED | NEVER_RAN if instance.get_latest_materialization_event(key(n))
        }

    assert not result.success
    assert materialized == SUCCEEDED | {"bench/checked"}  # a failed check fails the step after the write
    assert step_keys(result, DagsterEventType.STEP_SUCCESS) == {step(n) for n in SUCCEEDED}
    assert step_keys(result, DagsterEventType.STEP_FAILURE) == {step(n) for n in FAILED}
    assert not step_keys(result, DagsterEventType.STEP_START) & {step(n) for n in NEVER_RAN}
    failed = failures(result)
    assert "Could not convert string 'click' to INT64" in failed[step("bench/broken")], failed
    assert (
        "specs/bench/dupes.yaml: bench.dupes: the query returned several rows for"
        in failed[step("bench/dupes")]
    )
    assert "blocking asset check failed" in failed[step("bench/checked")], failed


def test_with_step_retries_a_broken_rule_and_a_failed_blocking_check_are_not_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVE_STEP_RETRIES", "2")
    settings = write_project(tmp_path)
    # bench.broken's engine error is not a classified Derive error: a retry policy would retry it (see the module)
    selected = (SUCCEEDED | FAILED | NEVER_RAN) - {"bench/broken", "bench/broken_down"}
    with DagsterInstance.ephemeral() as instance:
        result = run_everything(settings, instance, selected)

    assert step_keys(result, DagsterEventType.STEP_FAILURE) == {step("bench/dupes"), step("bench/checked")}
    assert not step_keys(result, DagsterEventType.STEP_UP_FOR_RETRY)
    assert step_keys(result, DagsterEventType.STEP_SUCCESS) == {step(n) for n in SUCCEEDED}


def test_the_retry_settings_load_with_the_installed_dagsters_instance_schema(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        # a failed step (SQL error, broken rule, failed blocking check) is never re-run by the daemon
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60


def test_the_kubernetes_instance_config_validates_with_the_same_retry_and_pool_settings(tmp_path):
    shutil.copyfile(PROJECT_ROOT / "deployments" / "k8s" / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(
        str(tmp_path)
    )  # the installed Dagster's schema and its cross-field rules
    assert config["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert config["concurrency"]["pools"] == {"granularity": "op", "default_limit": 1}
    assert config["concurrency"]["runs"] == {
        "max_concurrent_runs": 20,
        "tag_concurrency_limits": [
            {"key": "derive/source_database", "value": {"applyLimitPerUniqueValue": True}, "limit": 2},
            {"key": "dagster/retry_number", "limit": 4},
        ],
    }
