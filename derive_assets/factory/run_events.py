"""What a table run covers (its window, its partitions, a rebuild) and the materialization metadata it records.

A run over several partitions (a single-run backfill) writes all of them with one statement, and Dagster records
one materialization event per partition. Metadata returned in `MaterializeResult` is copied onto every one of
those events, so a 2,500-day backfill would store the rendered SQL, the column lineage and the run's totals 2,500
times, and every partition would claim the whole run's window and counts. Instead:

- each partition's event carries only its own window and counts (`derive/window_start`, `derive/window_end`,
  `derive/rows_read`, `dagster/partition_row_count`), added with `context.add_asset_metadata(partition_key=...)`;
- the run-level metadata (rendered SQL, lineage, upstream tables, the run's window and totals, the estimate) is
  recorded once, on the event of the run's *latest* partition. That event is the asset's latest materialization,
  which is what the UI's asset page shows (its SQL, its column lineage, its row count) and what `derive` reads
  back. An `AssetObservation` would keep it off the materializations altogether, but the UI shows observations in
  another tab and draws column lineage from materializations only, so the asset page would lose both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, PartitionsDefinition, TimeWindowPartitionsDefinition

try:  # Dagster-internal (1.13); without it `add_partition_metadata` uses the public call
    from dagster._core.execution.context.metadata_logging import (
        AssetMetadataHandle,
        OutputMetadataAccumulator,
    )
except ImportError:  # pragma: no cover - a Dagster that moved them
    AssetMetadataHandle = OutputMetadataAccumulator = None  # type: ignore[assignment,misc]

from derive_assets import metadata_keys as K
from derive_assets.factory.failures import run_failure
from resources.warehouse import TimeWindow, WriteResult

TRUE_VALUES, FALSE_VALUES = ("true", "1", "yes"), ("false", "0", "no", "")


@dataclass(frozen=True)
class RunScope:
    """The windows one run of a table asset covers, and whether it rebuilds the table."""

    window: TimeWindow | None
    """The run's whole window (the union of its partitions); None for an unpartitioned table."""
    keys: tuple[str, ...] = ()
    """The run's partition keys, oldest first, when it covers more than one partition; else empty."""
    windows: tuple[TimeWindow, ...] = ()
    """Each of `keys`' windows, in the same order."""
    rebuild: bool = False

    @classmethod
    def of(
        cls,
        context: AssetExecutionContext,
        partitions_def: PartitionsDefinition | None,
        spec_file: Path | str,
    ) -> RunScope:
        rebuild = full_refresh(context.run.tags, spec_file)
        if partitions_def is None:
            return cls(None, rebuild=rebuild)
        tw = context.partition_time_window
        window = TimeWindow(tw.start, tw.end)
        keys = tuple(context.partition_keys)
        if len(keys) < 2 or not isinstance(partitions_def, TimeWindowPartitionsDefinition):
            return cls(window, rebuild=rebuild)
        return cls(window, keys, partition_windows(partitions_def, keys, window), rebuild)


def partition_windows(
    partitions_def: TimeWindowPartitionsDefinition, keys: Sequence[str], run_window: TimeWindow
) -> tuple[TimeWindow, ...]:
    """The window of each of a run's partition keys (a single-run backfill's keys: consecutive, oldest first).

    Each key is parsed with the definition's format and ends where the next begins; the last ends with the run.
    Dagster's `time_window_for_partition_key` validates each key against the whole definition (0.4 ms a key
    here: a second for a 2,500-day backfill), which this does not need. Keys that do not tile the run's window
    (a UTC definition is all Derive builds) fall back to Dagster's own windows.
    """
    starts = [dt.datetime.strptime(key, partitions_def.fmt).replace(tzinfo=dt.UTC) for key in keys]
    if partitions_def.timezone == "UTC" and starts[0] == run_window.start and starts == sorted(starts):
        ends = [*starts[1:], run_window.end]
        return tuple(TimeWindow(start, end) for start, end in zip(starts, ends, strict=True))
    return tuple(
        TimeWindow(w.start, w.end) for w in partitions_def.time_windows_for_partition_keys(frozenset(keys))
    )


def full_refresh(tags: dict[str, str] | Any, spec_file: Path | str) -> bool:
    """The run tag `derive/full_refresh`: `true` rebuilds the table; an unknown value fails the run by name."""
    value = str(tags.get(K.FULL_REFRESH_TAG, "")).strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise run_failure(
        spec_file,
        f"run tag {K.FULL_REFRESH_TAG}={tags.get(K.FULL_REFRESH_TAG)!r} is neither true nor false; set it to "
        "true to rebuild the table from scratch (what `derive rebuild` does), or remove the tag.",
    )


def write_metadata(result: WriteResult) -> dict[str, Any]:
    """What a write reports beyond its counts: a rebuild, the schema changes it applied."""
    meta: dict[str, Any] = {}
    if result.extra.get("rebuilt"):
        meta[K.REBUILT] = True
    changes: Sequence[str] = result.extra.get("schema_changes") or ()
    if changes:
        meta[K.SCHEMA_CHANGES] = list(changes)
    return meta


def record_partitions(
    context: AssetExecutionContext, scope: RunScope, result: WriteResult, run_metadata: dict[str, Any]
) -> None:
    """Each partition's own window and counts on its own event; `run_metadata` and the run's window and totals
    once, on the latest partition's event (see the module docstring)."""
    counts = result.by_partition
    if counts and len(counts) != len(scope.keys):
        raise ValueError(
            f"the warehouse returned counts for {len(counts)} partitions of a run over {len(scope.keys)}"
        )
    by_key: dict[str, dict[str, Any]] = {}
    for i, (key, window) in enumerate(zip(scope.keys, scope.windows, strict=True)):
        meta: dict[str, Any] = {
            K.WINDOW_START: window.start.isoformat(),
            K.WINDOW_END: window.end.isoformat(),
        }
        if counts:
            meta[K.ROWS_READ] = counts[i].rows_read
            meta[K.PARTITION_ROW_COUNT] = counts[i].row_count
        by_key[key] = meta
    assert scope.window is not None
    by_key[scope.keys[-1]] |= {
        K.RUN_PARTITIONS: len(scope.keys),
        K.RUN_WINDOW_START: scope.window.start.isoformat(),
        K.RUN_WINDOW_END: scope.window.end.isoformat(),
        **K.run_row_counts(result),
        **run_metadata,
    }
    add_partition_metadata(context, by_key)


def add_partition_metadata(context: AssetExecutionContext, by_key: Mapping[str, Mapping[str, Any]]) -> None:
    """`context.add_asset_metadata(meta, partition_key=key)` for each key, in time linear in the keys.

    The public call checks the key against every key of the run (`get_partition_keys_in_range`, ~8 ms for 2,500
    daily keys) and copies all metadata added so far, so 2,500 calls cost ~20 s: more than Dagster needs to
    record the 2,500 events. The keys here are the run's own, so this adds them all to the step's metadata at
    once. The step context's accumulator is internal to Dagster 1.13; without it, the public call is used (slow,
    same result).
    """
    step = getattr(context.op_execution_context, "_step_execution_context", None)
    accumulator = getattr(step, "_metadata_accumulator", None)
    if (
        step is None
        or OutputMetadataAccumulator is None
        or AssetMetadataHandle is None
        or not isinstance(accumulator, OutputMetadataAccumulator)
    ):
        for key, meta in by_key.items():
            context.add_asset_metadata(meta, partition_key=key)
        return
    asset_key = context.asset_key
    entries = dict(accumulator.per_output_metadata)
    for key, meta in by_key.items():
        handle = AssetMetadataHandle(asset_key=asset_key, partition_key=key)
        entries[handle] = {**entries.get(handle, {}), **meta}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=entries)
