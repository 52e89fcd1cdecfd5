"""Dagster concurrency pools: who may run at the same time, across every run of the instance.

Every asset's step claims one slot of its pool while it runs (the instance's `concurrency.pools.granularity: op`,
see `dagster.yaml`); a step that finds its pool full waits, queued, until a slot frees. Two kinds of pools:

- `derive/source/<source>` (replication steps): at most `max_concurrent_extractions` of the source's tables are
  extracted at once (default 1), whatever the runs, so a production database sees at most that many Derive
  queries. With the default, two replications of one table are also never at once.
- `derive/table/<ref>` (table, Python table and export steps): who may write the table at once. The limit is 1,
  except for tables whose windows write disjoint rows *and* disjoint warehouse partitions (`parallel_windows`),
  whose limit is `WINDOWS_IN_PARALLEL`:
  - `append` (a window's run replaces its window's rows, by `partition.key`) and `merge` whose `unique_key` holds
    `partition.key` (a key belongs to one window): two windows never touch the same row;
  - the partition granularity is no coarser than the window (an hourly window on a daily-partitioned table shares
    its day's partition with 23 other windows): BigQuery detects DML conflicts per partition, so two windows' MERGEs
    on different partitions run side by side, on one partition one of them fails;
  - everything else (`replace`, `merge` without the partition key in `unique_key`, tables without a window, cursor
    exports) rewrites rows any window may hold: one writer at a time.
  DuckDB lets one process write its file at a time (`DuckDBWarehouse` waits for the lock), so there the limit only
  decides how many steps wait; BigQuery runs two mutating DML statements per table at once and queues the rest,
  hence `WINDOWS_IN_PARALLEL = 2`. Two runs of the *same* window are kept apart by the automation conditions
  (a window in progress is never requested again); a run launched by hand over a window that is already running
  writes the same rows twice, which every strategy makes idempotent.

A pool that has no limit in the instance gets the instance's `concurrency.pools.default_limit` (1 in both
`dagster.yaml`s) on first use: a pool is safe before `derive pools` (`apply_pool_limits`) raised it.

Example:
    ```python
    with DagsterInstance.get() as instance:
        changed = apply_pool_limits(instance, load_project(Path("table_specs")))
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from derive_assets.specs.models import AppendStrategy, MergeStrategy, SourceSpec, TableSpec

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from derive_assets.specs.project import SpecProject

POOL_PREFIX = "derive/"
WINDOWS_IN_PARALLEL = 2
"""Windows of one table written at once where `parallel_windows` allows it: BigQuery's number of mutating DML
statements it runs at once on one table (more wait in its queue anyway)."""

_PARTITIONS_WITHIN = {
    "hour": {"1h", "1d", "1w", "1mo"},
    "day": {"1d", "1w", "1mo"},
    "month": {"1mo"},
    "year": set(),
}
"""Partition granularity -> the window sizes made of whole partitions of it (a window never shares a partition
with another window): an hour, day or month partition lies inside one window of these sizes."""


def source_pool(source_name: str) -> str:
    """The pool of every replication step of source `source_name`."""
    return f"{POOL_PREFIX}source/{source_name}"


def table_pool(ref: str) -> str:
    """The pool of the step that writes `ref` (`dataset.name` of a table or Python table, `online.<export>`)."""
    return f"{POOL_PREFIX}table/{ref}"


def parallel_windows(spec: TableSpec) -> bool:
    """Whether two windows of `spec` write disjoint rows and disjoint warehouse partitions (see the module)."""
    if spec.window is None or spec.partition is None:
        return False
    strategy = spec.strategy
    disjoint_rows = isinstance(strategy, AppendStrategy) or (
        isinstance(strategy, MergeStrategy) and spec.partition.key in strategy.unique_key
    )
    return disjoint_rows and spec.window.size in _PARTITIONS_WITHIN[spec.partition.granularity]


def table_limit(spec: TableSpec) -> int:
    """How many steps may write `spec`'s table at once."""
    return WINDOWS_IN_PARALLEL if parallel_windows(spec) else 1


def source_limit(source: SourceSpec) -> int:
    return source.max_concurrent_extractions


def pool_limits(project: SpecProject) -> dict[str, int]:
    """Every pool the project's assets use, with its limit: sources, tables, Python tables, exports (an export's
    windows write disjoint rows when its table's do; a cursor export or one of a table without a window, 1)."""
    from derive_assets.python_tables import python_tables

    limits = {source_pool(s.name): source_limit(s) for s in project.sources()}
    tables = [t.spec for t in project.tables] + [p.spec for p in python_tables(project)]
    limits |= {table_pool(spec.ref): table_limit(spec) for spec in tables}
    by_ref = {spec.ref: spec for spec in tables}
    for export in project.exports:
        table = by_ref.get(export.spec.table)
        limits[table_pool(f"online.{export.spec.name}")] = table_limit(table) if table else 1
    return limits


def apply_pool_limits(instance: DagsterInstance, project: SpecProject) -> dict[str, int]:
    """Write the limit of each of `project`'s pools to `instance` where it differs from what the pool has (or, for
    a pool without a limit yet, from the instance's `default_limit`); returns the changed ones.

    Idempotent and cheap when nothing changed (one read of the instance's limits): run it on deploy and before
    `dagster dev` (`derive pools`, `make dev`, `derive demo`). Pools of specs that no longer exist are left alone
    (a running step may still hold their slots); `dagster instance concurrency` lists and deletes them.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    default = instance.get_concurrency_config().pool_config.default_pool_limit
    current: Mapping[str, int] = {p.name: p.limit for p in storage.get_pool_limits() if not p.from_default}
    # A pool whose limit is the instance's default is not written: its first step sets it to the default. Each
    # write is a transaction that re-reads every pool (~70 ms on SQLite): 2,501 pools of the 2,500-spec scale graph
    # took 182 s to write, a second run that changed nothing 1.1 s.
    changed = {
        pool: limit for pool, limit in pool_limits(project).items() if current.get(pool, default) != limit
    }
    for pool, limit in changed.items():
        storage.set_concurrency_slots(pool, limit)
    return changed
