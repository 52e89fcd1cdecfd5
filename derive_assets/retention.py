"""Prune old runs from the event log, keeping every event Derive reads back (docs/retention.md).

`python -m derive_assets.retention --keep-days 90` lists what it would delete (on the instance of `DAGSTER_HOME`);
`--apply` deletes it. Only finished runs last updated more than `keep_days` ago are candidates, and a run is kept
when any event it wrote is:

1. the latest materialization of an asset (a replication's or export's watermark, a table's last run);
2. the latest materialization of one partition of an asset (partition status, automation, late data);
3. an observation newer than its asset's latest materialization (a chunked first load's checkpoints).

Runs are deleted through Dagster's own `DagsterInstance.delete_run`, which removes the run and every event it
wrote (and their `asset_event_tags` rows); `asset_keys`, which keeps a copy of each asset's latest
materialization, is never touched because that event is never deleted. `keep_days` may not be under 7: the
late-data sensor reads replication materializations after its cursor, at most a tick behind while it runs.

Example:
    ```python
    plan = plan_prune(instance, keep_days=90)
    print(plan.summary())
    prune(instance, plan)
    ```
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)

MIN_KEEP_DAYS = 7
FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
PAGE = 1000


class RetentionError(ValueError):
    """A prune asked for something that would lose state Derive reads back."""

    def __init__(self, keep_days: int) -> None:
        self.keep_days = keep_days
        super().__init__(
            f"keep_days={keep_days} is under {MIN_KEEP_DAYS}: the late-data sensor reads replication "
            f"materializations after its cursor, so keep at least {MIN_KEEP_DAYS} days (docs/retention.md, rule 5)."
        )


@dataclass(frozen=True)
class PrunePlan:
    cutoff: dt.datetime
    """Runs last updated before this are candidates."""
    delete: list[str] = field(default_factory=list)
    """Run ids to delete."""
    kept: dict[str, str] = field(default_factory=dict)
    """Candidate run id -> why it is kept (the first protected event found)."""

    def summary(self) -> str:
        return (
            f"{len(self.delete):,} finished runs last updated before {self.cutoff:%Y-%m-%d %H:%M} UTC to delete; "
            f"{len(self.kept):,} kept for events Derive reads back"
        )


def _pages(instance: DagsterInstance, records_filter: AssetRecordsFilter) -> Iterator[tuple[int, str]]:
    cursor = None
    while True:
        result = instance.fetch_observations(records_filter, limit=PAGE, cursor=cursor)
        yield from ((r.storage_id, r.run_id) for r in result.records)
        if not result.has_more:
            return
        cursor = result.cursor


def _runs_of(instance: DagsterInstance, key: AssetKey, storage_ids: Sequence[int]) -> Iterator[str]:
    ids = sorted(set(storage_ids))
    for i in range(0, len(ids), PAGE):
        batch = ids[i : i + PAGE]
        found = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, storage_ids=batch), limit=len(batch)
        )
        yield from (r.run_id for r in found.records)


def protected_runs(instance: DagsterInstance) -> dict[str, str]:
    """Run id -> why one of its events must be kept (rules 1-3 of the module docstring), over every asset key."""
    protected: dict[str, str] = {}
    for key in instance.get_asset_keys():
        name = key.to_user_string()
        latest = instance.fetch_materializations(key, limit=1).records
        latest_id = latest[0].storage_id if latest else None
        if latest:
            protected.setdefault(latest[0].run_id, f"the latest materialization of {name}")
        by_partition = instance.get_latest_storage_id_by_partition(
            key, DagsterEventType.ASSET_MATERIALIZATION
        )
        for run_id in _runs_of(instance, key, list(by_partition.values())):
            protected.setdefault(run_id, f"the latest materialization of a partition of {name}")
        for _, run_id in _pages(instance, AssetRecordsFilter(asset_key=key, after_storage_id=latest_id)):
            protected.setdefault(run_id, f"an observation of {name} after its latest materialization")
    return protected


def plan_prune(instance: DagsterInstance, keep_days: int, now: dt.datetime | None = None) -> PrunePlan:
    """Which finished runs last updated more than `keep_days` ago may go, and which are kept, and why."""
    if keep_days < MIN_KEEP_DAYS:
        raise RetentionError(keep_days)
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=keep_days)
    protected = protected_runs(instance)
    plan = PrunePlan(cutoff)
    cursor = None
    while True:
        records = instance.get_run_records(
            filters=RunsFilter(statuses=list(FINISHED), updated_before=cutoff), limit=PAGE, cursor=cursor
        )
        for record in records:
            run_id = record.dagster_run.run_id
            if run_id in protected:
                plan.kept[run_id] = protected[run_id]
            else:
                plan.delete.append(run_id)
        if len(records) < PAGE:
            return plan
        cursor = records[-1].dagster_run.run_id


def prune(instance: DagsterInstance, plan: PrunePlan) -> int:
    """Delete `plan`'s runs and their events (Dagster's `delete_run`); how many were deleted."""
    for run_id in plan.delete:
        instance.delete_run(run_id)
    return len(plan.delete)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m derive_assets.retention", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--keep-days", type=int, required=True, help=f"keep runs of the last N days (N ≥ {MIN_KEEP_DAYS})"
    )
    parser.add_argument("--apply", action="store_true", help="delete (default: only list what would go)")
    args = parser.parse_args(argv)
    with DagsterInstance.get() as instance:
        try:
            plan = plan_prune(instance, args.keep_days)
        except RetentionError as exc:
            parser.error(str(exc))
        print(plan.summary())
        if args.apply:
            print(f"deleted {prune(instance, plan):,} runs and their events")
        else:
            print("nothing deleted: run again with --apply")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
