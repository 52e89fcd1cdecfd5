"""The automation sensor's evaluations, simulated with Dagster's own `evaluate_automation_conditions` (no sleeping,
no daemon), and small spec projects to evaluate them on: used by test_automation.py and
test_automation_pitfalls.py.

A run is simulated by reporting what it would record (`report_runless_asset_event`): the materialization and a
passing evaluation of each of the asset's checks (a real Derive step reports both; without the checks, the
blocking-check condition of everything downstream would never hold). Always between two evaluations: Dagster sees
a request as handled one evaluation later, as with the real sensor (every 30 s).
"""

from __future__ import annotations

import datetime as dt
import uuid
import warnings
from pathlib import Path
from typing import Any

import yaml
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    evaluate_automation_conditions,
)
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.events import (
    AssetMaterializationPlannedData,
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from support import events_source

from derive_assets.factory.build import build_definitions
from derive_assets.settings import DeriveSettings

Requested = dict[str, set[str | None]]


class Ticks:
    """Evaluations one after the other on one instance, the cursor carried over."""

    def __init__(self, defs: Definitions, day: dt.date) -> None:
        self.defs = defs
        self.day = day
        self.instance = DagsterInstance.ephemeral()
        self.cursor: AssetDaemonCursor | None = None
        self.graph = defs.resolve_asset_graph()
        self.keys = sorted(self.graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
        self.result: Any = None

    def when(self, clock: str, days: int = 0, day: dt.date | None = None) -> dt.datetime:
        base = day or self.day
        return dt.datetime.combine(
            base + dt.timedelta(days=days), dt.time.fromisoformat(clock), tzinfo=dt.UTC
        )

    def at(self, clock: str, days: int = 0, day: dt.date | None = None) -> Requested:
        """Evaluate every condition at `clock` (`HH:MM:SS`, UTC) on `day` (default: the start day) + `days`."""
        with warnings.catch_warnings():  # Dagster's own deprecation notice about its default selection
            warnings.simplefilter("ignore")
            self.result = evaluate_automation_conditions(
                defs=self.defs,
                instance=self.instance,
                evaluation_time=self.when(clock, days, day),
                cursor=self.cursor,
            )
        self.cursor = self.result.cursor
        return {
            key.to_user_string(): set(self.result.get_requested_partitions(key))
            for key in self.keys
            if self.result.get_num_requested(key)
        }

    def materialized(
        self, key: str, partition: str | None = None, checks_pass: bool = True, run_id: str | None = None
    ) -> None:
        """A run (`run_id`, default a run of its own) materialized `key` (its window `partition`) and evaluated
        its checks (passing, by default)."""
        asset_key = AssetKey.from_user_string(key)
        run_id = self._event(
            DagsterEventType.ASSET_MATERIALIZATION,
            StepMaterializationData(AssetMaterialization(asset_key=asset_key, partition=partition)),
            run_id,
        )
        for check in sorted(self.graph.get(asset_key).check_keys, key=lambda c: c.name):
            self.check(key, check.name, partition, passed=checks_pass, run_id=run_id)

    def check(
        self, key: str, name: str, partition: str | None = None, *, passed: bool, run_id: str | None = None
    ) -> None:
        """An evaluation of the check `name` on `key`'s latest materialization (of `partition`), in the run
        `run_id` (default: a run of its own, after the materialization's)."""
        evaluation = AssetCheckEvaluation(
            asset_key=AssetKey.from_user_string(key), check_name=name, passed=passed, partition=partition
        )
        self._event(DagsterEventType.ASSET_CHECK_EVALUATION, evaluation, run_id)

    def _event(self, event_type: DagsterEventType, data: Any, run_id: str | None = None) -> str:
        """Report an event as a run `run_id` (default: a new one) would: Dagster links a check evaluation to the
        materialization of the same run (runless events all share one run id, and clash)."""
        run_id = run_id or f"simulated-{uuid.uuid4().hex}"
        self.instance.report_dagster_event(
            run_id=run_id,
            dagster_event=DagsterEvent(
                event_type_value=event_type.value, event_specific_data=data, job_name="__simulated__"
            ),
        )
        return run_id

    def failed(self, key: str, partition: str | None = None) -> None:
        """A run planned `key` (its window `partition`) and failed before materializing it."""
        run = DagsterRun(job_name="__simulated__", run_id=f"simulated-{uuid.uuid4().hex}")
        self.instance.add_run(run.with_status(DagsterRunStatus.FAILURE))
        planned = AssetMaterializationPlannedData(AssetKey.from_user_string(key), partition=partition)
        self._event(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, planned, run.run_id)

    def started(self, key: str, partition: str | None = None) -> str:
        """A run of `key` (its window `partition`) planned it and is still going; `finished` ends it."""
        run_id = self._run({key}, DagsterRunStatus.STARTED)
        planned = AssetMaterializationPlannedData(AssetKey.from_user_string(key), partition=partition)
        return self._event(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, planned, run_id)

    def finished(self, run_id: str, key: str, partition: str | None = None) -> None:
        """The run `started` materialized `key` (checks passing) and succeeded."""
        self.materialized(key, partition, run_id=run_id)
        self._event(DagsterEventType.RUN_SUCCESS, None, run_id)  # the run storage marks the run succeeded
        run = self.instance.get_run_by_id(run_id)
        assert run is not None and run.status == DagsterRunStatus.SUCCESS

    def ran(self, requested: Requested) -> None:
        """Every requested asset's run succeeded: one run per set of partitions, as the sensor groups them
        (an unwindowed table and its export share one, so the export does not count its table's update in
        that run as news, `executed_with_root_target`)."""
        runs: dict[tuple[str | None, ...], set[str]] = {}
        for key, partitions in requested.items():
            runs.setdefault(tuple(sorted(partitions, key=str)), set()).add(key)
        for partitions, keys in runs.items():
            run_id = self._run(keys, DagsterRunStatus.SUCCESS)
            for key in sorted(keys):
                for partition in partitions:
                    self.materialized(key, partition, run_id=run_id)

    def _run(self, keys: set[str], status: DagsterRunStatus) -> str:
        run = DagsterRun(
            job_name="__simulated__",
            run_id=f"simulated-{uuid.uuid4().hex}",
            asset_selection=frozenset(AssetKey.from_user_string(k) for k in keys),
        )
        self.instance.add_run(run.with_status(status))
        return run.run_id

    def backfill_in_progress(self, key: str, partitions: list[str]) -> None:
        """A backfill of `key`'s `partitions` was launched and has not materialized them yet."""
        asset_key = AssetKey.from_user_string(key)
        subset = AssetGraphSubset.from_asset_partition_set(
            {AssetKeyPartitionKey(asset_key, p) for p in partitions}, self.graph
        )
        self.instance.add_backfill(
            PartitionBackfill.from_asset_graph_subset(
                backfill_id=f"backfill_{len(self.instance.get_backfills())}",
                backfill_timestamp=dt.datetime.now(dt.UTC).timestamp(),
                tags={},
                dynamic_partitions_store=self.instance,
                asset_graph_subset=subset,
                title=None,
                description=None,
                run_config=None,
            )
        )

    def requested_subsets(self) -> list[Any]:
        """The last evaluation's requested entity subsets (what the sensor turns into runs or a backfill)."""
        return [r.true_subset for r in self.result.results if not r.true_subset.is_empty]


# ----------------------------------------------------------------------------------------- small projects


def table(
    name: str,
    reads: list[str],
    *,
    size: str | None = "1d",
    start: str = "2026-03-01",
    schedule: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A merge table `bench.<name>` reading `reads` (`shop.events` or other `bench.` tables) over its window, or
    the whole of them without one (`size=None`)."""
    columns = [
        {"name": "id", "type": "INT64", "constraints": {"not_null": True}},
        {"name": "day", "type": "DATE", "constraints": {"not_null": True}},
    ]
    selects = " UNION ALL ".join(
        f"SELECT t{i}.id, DATE(t{i}.updated_at) AS day FROM {ref} AS t{i}"
        + (f" WHERE t{i}.updated_at >= @window_start AND t{i}.updated_at < @window_end" if size else "")
        if ref.startswith("shop.")
        else f"SELECT t{i}.id, t{i}.day FROM {ref} AS t{i}"
        + (f" WHERE t{i}.day >= DATE(@window_start) AND t{i}.day < DATE(@window_end)" if size else "")
        for i, ref in enumerate(reads)
    )
    if size == "1h":  # a DATE cannot tell hours apart: partitioned by a TIMESTAMP, read from the source
        columns.append({"name": "hour_at", "type": "TIMESTAMP", "constraints": {"not_null": True}})
        [ref] = reads
        selects = (
            f"SELECT e.id, DATE(e.updated_at) AS day, e.updated_at AS hour_at FROM {ref} AS e"
            " WHERE e.updated_at >= @window_start AND e.updated_at < @window_end"
        )
    spec: dict[str, Any] = {
        "name": name,
        "dataset": "bench",
        "owner": "team:shop",
        "strategy": {"type": "merge", "unique_key": ["id", "day"]},
        "columns": columns,
        "sql": f"SELECT {', '.join(c['name'] for c in columns)} FROM ({selects}) AS u\n",
        **extra,
    }
    if size is not None:
        spec["window"] = {"size": size, "start": start}
        spec["partition"] = {"key": "hour_at" if size == "1h" else "day"}
    if schedule is not None:
        spec["schedule"] = schedule
    return spec


def export(name: str, table_ref: str, **extra: Any) -> dict[str, Any]:
    """An export of `table_ref` (columns id, day) keyed by id."""
    return {
        "kind": "export",
        "name": name,
        "table": table_ref,
        "owner": "team:shop",
        "keyspace": "derive_online",
        "partition_key": ["id"],
        "clustering": ["day"],
        "columns": ["id", "day"],
        **extra,
    }


def project(
    tmp_path: Path, *tables: dict[str, Any], exports: tuple[dict[str, Any], ...] = (), **source: Any
) -> Definitions:
    """The SQLite source `shop` (`source` fields added, e.g. `schedule`), `tables` and `exports`."""
    specs = tmp_path / "specs"
    for folder in ("sources", "bench", "exports"):
        (specs / folder).mkdir(parents=True, exist_ok=True)
    (specs / "sources" / "shop.yaml").write_text(yaml.safe_dump(events_source(**source)))
    for spec in tables:
        (specs / "bench" / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for spec in exports:
        (specs / "exports" / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return build_definitions(DeriveSettings(specs_dir=specs, home=tmp_path / "home"))
