"""Run a selection of assets by key, in this process: what `derive demo`, `derive rebuild` and the tests use instead
of one job per spec.

Every asset runs through the definitions' implicit global asset job (`__ASSET_JOB`) with an `asset_selection`, as
`dagster asset materialize --select ...` does. Dagster builds that one job over assets of different partitions
definitions; a run selects assets of one partitions definition (or unpartitioned ones) at a time, which is what a
single `partition_key` or partition range means anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dagster import AssetKey, DagsterInstance, Definitions, ExecuteInProcessResult

from derive_assets import metadata_keys as K

RANGE_START = K.RANGE_START_TAG
RANGE_END = K.RANGE_END_TAG
"""The run tags of a single run over a range of partitions (a backfill run); Dagster's own tag names."""


def materialize_keys(
    defs: Definitions,
    keys: Iterable[AssetKey],
    *,
    instance: DagsterInstance,
    partition_key: str | None = None,
    partition_range: tuple[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    raise_on_error: bool = False,
) -> ExecuteInProcessResult:
    """Materialize `keys` (and the checks defined with them) in one in-process run on `instance`.

    `partition_key` runs one partition; `partition_range` (first, last, both included) runs the windows between them
    in one run, as a single-run backfill does. Give at most one of them; an unpartitioned selection takes neither.

    Example:
        ```python
        result = materialize_keys(defs, [AssetKey(["analytics", "daily"])], instance=instance,
                                  partition_key="2026-03-01")
        ```
    """
    selection = list(keys)
    if not selection:
        raise ValueError("materialize_keys: no asset key given; name at least one asset to run.")
    if partition_key is not None and partition_range is not None:
        raise ValueError(
            "materialize_keys: give either partition_key or partition_range, not both "
            f"(got {partition_key!r} and {partition_range!r})."
        )
    run_tags = dict(tags or {})
    if partition_range is not None:
        run_tags[RANGE_START], run_tags[RANGE_END] = partition_range
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=selection,
        partition_key=partition_key,
        tags=run_tags or None,
        run_config=dict(run_config) if run_config is not None else None,
        raise_on_error=raise_on_error,
    )
