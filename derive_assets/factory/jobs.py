"""The few jobs Derive declares, for manual runs; automation conditions do the scheduled work.

- `replicate_<source>`: every table of one source (what `derive demo` and operators run to replicate a source).
- one job per dataset (the first part of a spec's `dataset.name`; `online` for exports), named
  `<dataset>_job` when all of the dataset's assets share one partitions definition (or none), else one job per
  partitions definition: `<dataset>__<hourly|daily|weekly|monthly|unpartitioned>_job`, and, when two definitions of
  the same size differ (another `start` or `end`), `<dataset>__daily_<start>_job` (`start` as YYYYMMDD, then
  `_<end>` when they share the start too). Dagster refuses a job whose assets have different partitions
  definitions, hence the split. A source's tables are in `replicate_<source>`, not in a dataset job.

No job per spec and no schedule: 1,000 specs used to add 2,000 definitions, each schedule evaluated on every
daemon tick. To run any set of assets, select them (`dagster asset materialize --select ...`, the UI, or
`derive_assets.factory.runs.materialize_keys`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dagster import AssetKey, AssetSelection, PartitionsDefinition, define_asset_job
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

SIZES = {
    "0 * * * *": "hourly",
    "0 0 * * *": "daily",
    "0 0 * * 0": "weekly",
    "0 0 1 * *": "monthly",
}
"""A Derive window's cron schedule (`factory/windows.py`) -> its size in a job name."""


@dataclass(frozen=True)
class JobMember:
    """One asset for the dataset jobs: its key, its dataset and its partitions definition."""

    key: AssetKey
    dataset: str
    partitions_def: PartitionsDefinition | None


def source_job_name(source: str) -> str:
    return f"replicate_{source}"


def source_job(source: str, keys: Sequence[AssetKey]) -> UnresolvedAssetJobDefinition:
    """The job replicating every table of `source` (`keys`: their assets)."""
    return define_asset_job(source_job_name(source), selection=AssetSelection.assets(*keys))


def dataset_jobs(members: Iterable[JobMember]) -> list[UnresolvedAssetJobDefinition]:
    """One job per dataset, or per partitions definition of a dataset (the rule in the module docstring)."""
    by_dataset: dict[str, dict[PartitionsDefinition | None, list[AssetKey]]] = {}
    for member in members:
        by_dataset.setdefault(member.dataset, {}).setdefault(member.partitions_def, []).append(member.key)
    jobs = []
    for dataset, by_partitions in by_dataset.items():
        names = _names(dataset, list(by_partitions))
        for partitions_def, keys in by_partitions.items():
            jobs.append(define_asset_job(names[partitions_def], selection=AssetSelection.assets(*keys)))
    return jobs


def _names(dataset: str, defs: list[PartitionsDefinition | None]) -> dict[PartitionsDefinition | None, str]:
    if len(defs) == 1:
        return {defs[0]: f"{dataset}_job"}
    sizes = {d: _size(d) for d in defs}
    names = {}
    for d in defs:
        same_size = [o for o in defs if sizes[o] == sizes[d]]
        name = f"{dataset}__{sizes[d]}"
        if len(same_size) > 1 and d is not None:
            start = _bound(d, "start")
            name += f"_{start}"
            if sum(_bound(o, "start") == start for o in same_size if o is not None) > 1:
                name += f"_{_bound(d, 'end') or 'open'}"
        names[d] = f"{name}_job"
    return names


def _size(partitions_def: PartitionsDefinition | None) -> str:
    if partitions_def is None:
        return "unpartitioned"
    cron = getattr(partitions_def, "cron_schedule", None)
    return SIZES.get(str(cron), "partitioned")


def _bound(partitions_def: PartitionsDefinition, which: str) -> str | None:
    value = getattr(partitions_def, which, None)
    return value.strftime("%Y%m%d") if value is not None else None
