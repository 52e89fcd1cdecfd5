"""The operator's side of a table's life: find orphaned tables, drop them, rebuild a table on purpose.

- **Orphans** are warehouse tables in Derive's datasets (every dataset some spec names) that carry Derive's marker
  and that no spec owns any more: a deleted or renamed spec's table. A table Derive did not create has no marker,
  so it is never an orphan, and `Warehouse.drop_table` refuses it anyway.
- **Rebuild** materializes one table's asset as ONE run over its whole partition range (every complete window,
  `dagster/asset_partition_range_start/end`) with the `derive/full_refresh` tag: the asset then builds the table
  from scratch into a new table and swaps it in, so a failed rebuild leaves the old table as it was.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult
from dagster_shared.error import SerializableErrorInfo  # a step's error (not exported by dagster)

from derive_assets.environments import shadow_ref
from derive_assets.factory.windows import partitions_for
from derive_assets.metadata_keys import ENV_TAG, FULL_REFRESH_TAG
from derive_assets.plan import Backfill, partition_keys
from derive_assets.python_tables import PYTHON_TABLES
from derive_assets.selection import near
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import ReplicatedTable, SpecProject, Table
from resources.warehouse import Warehouse

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
"""The run's console log stays silent: a failure is reported once, as `LifecycleError`'s message (the run's whole
log, with stacks, is in the Dagster instance)."""
CHECK_FAILED = "DagsterAssetCheckFailedError"
QUARANTINE_SUFFIX = "__quarantine"
SNAPSHOT_SUFFIX = "__snapshot"
"""A chunked first load's staging table (`replication.snapshot.SNAPSHOT_SUFFIX`, which imports pyarrow): kept by
`prune`, since the next run resumes from it."""


class LifecycleError(ValueError):
    """An operator's request that cannot be done as asked (unknown table, a source table, a failed rebuild);
    the message says what to do instead."""


# ------------------------------------------------------------------------------------------------ orphans


def datasets(project: SpecProject) -> set[str]:
    """Every dataset a spec names: the tables', the sources' targets and the Python tables'."""
    found = {t.spec.dataset for t in project.tables} | {rt.source.target_dataset for rt in project.replicated}
    return found | {t.spec.dataset for t in PYTHON_TABLES}


def owned(project: SpecProject) -> set[str]:
    """Every table some spec (or Python table) writes, with the replicated tables' quarantine and snapshot
    companions."""
    replicated = {rt.ref for rt in project.replicated}
    return (
        {t.spec.ref for t in project.tables}
        | replicated
        | {ref + QUARANTINE_SUFFIX for ref in replicated}
        | {ref + SNAPSHOT_SUFFIX for ref in replicated}
        | {t.spec.ref for t in PYTHON_TABLES}
    )


def orphans(project: SpecProject, warehouse: Warehouse) -> list[str]:
    """Marked tables in Derive's datasets that no spec owns, sorted."""
    mine = owned(project)
    return sorted(ref for ref in warehouse.managed_tables(sorted(datasets(project))) if ref not in mine)


def prune(warehouse: Warehouse, refs: Iterable[str], say: Callable[[str], None] = print) -> list[str]:
    """Drop `refs` (orphans found by `orphans`); the warehouse refuses any table without Derive's marker."""
    dropped = []
    for ref in refs:
        warehouse.drop_table(ref)
        say(f"dropped {ref}")
        dropped.append(ref)
    return dropped


# ------------------------------------------------------------------------------------------------ rebuild


def normalize_ref(text: str) -> str:
    """`dataset/name` (an asset key) or `dataset.name` (a ref) as a ref."""
    return text.strip().replace("/", ".", 1) if "/" in text else text.strip()


def rebuild_table(project: SpecProject, text: str) -> Table | ReplicatedTable:
    """The core/derived table or the replicated source table `text` names; a clear `LifecycleError` for anything
    else. A source table is rebuilt by reading every row again into `<table>__snapshot` (chunked and resumable
    where it can be, `replication/snapshot.py`) and swapping it in: rows gone from the source leave the table."""
    ref = normalize_ref(text)
    for table in project.tables:
        if table.spec.ref == ref:
            return table
    replicated = next((rt for rt in project.replicated if rt.ref == ref), None)
    if replicated is not None:
        return replicated
    if any(t.spec.ref == ref for t in PYTHON_TABLES):
        raise LifecycleError(
            f"{ref} is a Python table; `derive rebuild` rebuilds YAML-spec tables only for now. Materialize its "
            "asset again over its partition range instead."
        )
    names = sorted({t.spec.ref for t in project.tables})
    raise LifecycleError(f"no table spec under {project.root} defines '{text}'; {near(ref, names)}")


def materialize_command(ref: str, fill: Backfill) -> str:
    """The commands that re-run the windows an added column left NULL."""
    key = ref.replace(".", "/")
    return (
        f"`derive rebuild {ref}`, or `dagster asset materialize -m derive_assets.definitions --select {key} "
        f"--partition-range {fill.first}...{fill.last}`"
    )


@dataclass(frozen=True)
class RebuildRun:
    """What one rebuild run covers."""

    table: Table | ReplicatedTable
    tags: dict[str, str]
    """The run's tags (the full-refresh tag); the range of `windows` is passed to the run as its partition range."""
    windows: Backfill | None
    """The partition range (None: an unpartitioned table, one run over the whole query)."""
    env: str | None = None
    """Rebuild the environment's copy (`<env>__<dataset>.<name>`) instead of production's table."""

    @property
    def ref(self) -> str:
        """The table the run rebuilds (an environment's copy with `env`)."""
        ref = self.table.ref if isinstance(self.table, ReplicatedTable) else self.table.spec.ref
        return shadow_ref(self.env, ref) if self.env else ref

    def describe(self) -> str:
        if isinstance(self.table, ReplicatedTable):
            source = self.table.source
            return (
                f"rebuild {self.ref} from scratch: read every row of source '{source.name}' again (one run)"
            )
        if self.windows is None:
            return f"rebuild {self.ref} from scratch (one run, unpartitioned)"
        w = self.windows
        return f"rebuild {self.ref} from scratch: one run over {w.count:,} window(s) {w.first} .. {w.last}"


def rebuild_run(
    table: Table | ReplicatedTable, now: dt.datetime | None = None, env: str | None = None
) -> RebuildRun:
    """The run that rebuilds `table` (`env`: its copy in that environment): every complete window at `now`, as
    one single-run backfill (a replicated table: one unpartitioned run)."""
    now = now or dt.datetime.now(dt.UTC)
    tags = {FULL_REFRESH_TAG: "true", **({ENV_TAG: env} if env else {})}
    if isinstance(table, ReplicatedTable):
        return RebuildRun(table, tags, None, env)
    partitions_def = partitions_for(table.spec.window)
    if partitions_def is None:
        return RebuildRun(table, tags, None, env)
    keys = partition_keys(partitions_def, now)
    if not keys:
        raise LifecycleError(
            f"{table.spec.ref} ({table.path}): no window of it is complete yet, so there is nothing to rebuild; "
            "rebuild it once its first window (window.start) has passed."
        )
    return RebuildRun(table, tags, Backfill(keys[0], keys[-1], len(keys)), env)


@dataclass(frozen=True)
class RebuildResult:
    ref: str
    rows: int
    seconds: float
    run_id: str


def execute_rebuild(
    settings: DeriveSettings,
    project: SpecProject,
    run: RebuildRun,
    instance: DagsterInstance,
    warehouse: Warehouse,
) -> RebuildResult:
    """Run the rebuild on `instance` (in this process, as `derive demo` runs its jobs); raise `LifecycleError`
    with the step's error when it fails."""
    from derive_assets.factory.build import build_definitions
    from derive_assets.factory.runs import materialize_keys

    if run.env != settings.env:
        raise LifecycleError(
            f"{run.ref}: the rebuild is for environment {run.env or 'production'}, the settings build "
            f"{settings.env or 'production'}; make both the same (derive rebuild --env NAME sets both)"
        )
    ref = run.ref
    defs = build_definitions(settings, project)
    started = time.perf_counter()
    key = AssetKey(
        ref.split(".")
    )  # a table's asset key: <dataset>/<name> (an environment's: <env>__<dataset>)
    windows = (run.windows.first, run.windows.last) if run.windows else None  # one run over all of them
    result = materialize_keys(
        defs, [key], instance=instance, partition_range=windows, tags=run.tags, run_config=QUIET
    )
    seconds = time.perf_counter() - started
    if not result.success:
        raise LifecycleError(failed_run_message(ref, result, "rebuild", "derive rebuild"))
    return RebuildResult(ref, warehouse.row_count(ref), seconds, result.run_id)


def failed_run_message(ref: str, result: ExecuteInProcessResult, what: str, command: str) -> str:
    """The first failed step's errors (without Dagster's own wrappers), in one paragraph. `what`: the run's kind
    (`rebuild`, `build`); `command`: what to run again once the cause is fixed (`derive rebuild`,
    `derive build --env alice ...`)."""
    checks = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        if error is None:
            continue
        if error.cls_name == CHECK_FAILED:
            checks.append(_text(error))
            continue
        messages = []
        while error is not None:
            if not (error.cls_name or "").startswith("Dagster"):
                messages.append(_text(error))
            error = error.cause or error.context
        return (
            f"{ref}: the {what} run {result.run_id} failed: {' <- '.join(messages) or 'see the run in the UI'}. "
            f"A failed run leaves the old table as it was; fix the cause and run `{command}` again."
        )
    if checks:
        return (
            f"{ref}: the table was written, but a blocking check failed: {'; '.join(checks)}. Fix the data or the "
            f"spec, then run `{command}` again."
        )
    return f"{ref}: the {what} run {result.run_id} did not succeed; see it in the Dagster UI."


def _text(error: SerializableErrorInfo) -> str:
    """An error's message without its `module.Class: ` prefix or trailing period."""
    text = error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name or "error"
    head, _, rest = text.partition(": ")
    if rest and error.cls_name and head.endswith(error.cls_name):
        text = rest
    return text.rstrip(".")
