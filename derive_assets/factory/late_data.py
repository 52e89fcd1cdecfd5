"""The `derive_late_data` sensor: re-run exactly the windows that late rows fall into, however late they came.

A replication run records, for each declared `event_time` column, the UTC hours its rows touched
(`derive/event_time/<column>`, see `replication/event_time.py`). A windowed table whose SQL filters on that column
with the window parameters (`SqlAnalysis.window_columns`, e.g. `p.paid_at >= @window_start AND p.paid_at <
@window_end`) is stale in every window those hours fall into. Each tick reads the replication materializations
recorded since the last tick (a storage-id cursor per replication asset) and requests, for each such table, the
windows that

- the rows touched (a window overlapping a recorded hour range);
- exist: inside the table's partitions definition, and materialized before (a window never built is not late
  data's to build; a first replication of years of history requests nothing);
- are older than the replication: their latest materialization was recorded before the replication's (a window
  rebuilt since already read the late rows);
- are older than what the table's automation condition covers: the latest complete window plus `lookback`
  (`TableSpec.lookback`) are re-run by the condition itself.

The windows of windowed assets downstream of those (an export's same window, a weekly rollup's week) that were
built before are added: their own conditions cover only their latest windows (`with_descendants`).

All of one tick's windows, of every table, are requested as ONE backfill (`RunRequest.for_asset_graph_subset`,
tagged `derive/late_data`). Dagster runs a backfill by the assets' backfill policy: with Derive's single-run
policy that is one run per *contiguous* range of windows (Dagster 1.13 `asset_backfill.py` and
`automation_tick_evaluation_context._build_run_requests_with_backfill_policy`: `get_partition_key_ranges` of the
subset), so a wave of late rows over 300 scattered days is one backfill of up to 300 runs, each exactly one range
of touched windows, each one warehouse transaction: a failed run leaves its windows as they were, and no window
that no late row touched is rewritten or recorded as materialized. One run over the whole span would instead
rewrite (or record) every window between the first and last touched one; see docs/late-data.md.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DefaultSensorStatus,
    PartitionsDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    TimeWindowPartitionsDefinition,
    sensor,
)
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.events import AssetKeyPartitionKey

from derive_assets import metadata_keys as K
from derive_assets.specs.project import SpecProject

SENSOR_NAME = "derive_late_data"
INTERVAL_SECONDS = 60
EVENTS_PER_TICK = 200
"""Replication materializations read per replication asset and tick (the cursor carries on from there)."""

Ranges = list[tuple[dt.datetime, dt.datetime]]


@dataclass(frozen=True)
class LateTarget:
    """A windowed table that filters on a replicated table's event-time column with the window parameters."""

    table: AssetKey
    source: AssetKey
    """The replicated table's asset."""
    column: str
    lookback: int
    """Windows before the latest complete one that the table's automation condition re-runs itself."""


def late_targets(project: SpecProject, keys: Mapping[str, AssetKey]) -> list[LateTarget]:
    """Every (windowed table, replicated event-time column) pair of `project`; `keys`: ref -> asset key."""
    declared = {f"{rt.ref}.{column}": rt.ref for rt in project.replicated for column in rt.table.event_time}
    targets = []
    for table in project.tables:
        if table.spec.window is None or table.spec.ref not in keys:
            continue
        for ref in table.analysis.window_columns:
            source = declared.get(ref)
            if source is not None and source in keys:
                lookback = table.spec.lookback or 0
                column = ref.rsplit(".", 1)[1]
                targets.append(LateTarget(keys[table.spec.ref], keys[source], column, lookback))
    return targets


def late_data_sensor(project: SpecProject, keys: Mapping[str, AssetKey]) -> SensorDefinition | None:
    """The sensor (running from the start), or None when no windowed table filters on a declared event time."""
    targets = late_targets(project, keys)
    if not targets:
        return None

    @sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        asset_selection=sorted({t.table for t in targets}, key=lambda k: k.to_user_string()),
        description=(
            "Re-runs the windows of windowed tables that late replicated rows fall into (by their declared "
            "event_time), beyond what each table's automation condition covers; one backfill per tick."
        ),
    )
    def _late_data(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        return evaluate(context, targets)

    return _late_data


def evaluate(context: SensorEvaluationContext, targets: Sequence[LateTarget]) -> SensorResult | SkipReason:
    """One tick: read the new replication materializations, request the stale windows (module docstring)."""
    # pyarrow and numpy come with the recording module: imported by a tick, not by every process that loads.
    from derive_assets.replication.event_time import touched

    instance, repository = context.instance, context.repository_def
    if repository is None:
        return SkipReason("the sensor was evaluated without its definitions")
    graph = repository.asset_graph
    cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    requested: set[AssetKeyPartitionKey] = set()
    origins: list[str] = []
    tables = {t.table: _Table(instance, t, graph.get(t.table).partitions_def) for t in targets}
    for source in sorted({t.source for t in targets}, key=lambda k: k.to_user_string()):
        name = source.to_user_string()
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=source, after_storage_id=cursor.get(name)),
            limit=EVENTS_PER_TICK,
            ascending=True,
        ).records
        for record in records:
            materialization = record.asset_materialization
            if materialization is None:
                continue
            for target in (t for t in targets if t.source == source):
                value = materialization.metadata.get(K.event_time(target.column))
                ranges = touched(value.value if value is not None else None)  # type: ignore[arg-type]
                keys = tables[target.table].stale(ranges, record.storage_id)
                if keys:
                    origins.append(f"{name}#{record.storage_id}")
                requested.update(AssetKeyPartitionKey(target.table, key) for key in keys)
        if records:
            cursor[name] = records[-1].storage_id
    new_cursor = json.dumps(cursor, sort_keys=True)
    if not requested:
        return SensorResult(
            skip_reason="no late rows in a built window older than what the automation re-runs",
            cursor=new_cursor,
        )
    requested = with_descendants(graph, instance, requested)
    subset = AssetGraphSubset.from_asset_partition_set(requested, graph)
    tags = {K.LATE_DATA_TAG: ",".join(dict.fromkeys(origins))[:4000]}
    context.log.info(
        f"late rows: requesting {len(requested)} windows of "
        f"{', '.join(sorted({k.asset_key.to_user_string() for k in requested}))} as one backfill"
    )
    return SensorResult(run_requests=[RunRequest.for_asset_graph_subset(subset, tags)], cursor=new_cursor)


def with_descendants(
    graph: BaseAssetGraph, instance: Any, requested: set[AssetKeyPartitionKey]
) -> set[AssetKeyPartitionKey]:
    """`requested` and the windows of every windowed asset downstream that read them (by each dependency's
    partition mapping: a weekly rollup's week, an export's same window) and were built before.

    Their own automation conditions cover only their latest windows, so without this a re-run 1995 day would
    leave its export and its rollups stale. Unwindowed assets downstream are left to their conditions (a
    dependency updated is enough for them). The backfill runs parents before children."""
    out = set(requested)
    frontier = list(requested)
    built: dict[AssetKey, set[str]] = {}
    while frontier:
        item = frontier.pop()
        for child in graph.get_children_partitions(item.asset_key, item.partition_key):
            if child.partition_key is None or child in out:
                continue
            if child.asset_key not in built:
                built[child.asset_key] = set(instance.get_materialized_partitions(child.asset_key))
            if child.partition_key in built[child.asset_key]:
                out.add(child)
                frontier.append(child)
    return out


class _Table:
    """One target table during one tick: its built windows (read once) and the windows automation covers."""

    def __init__(self, instance: Any, target: LateTarget, partitions: PartitionsDefinition | None) -> None:
        self.partitions = partitions if isinstance(partitions, TimeWindowPartitionsDefinition) else None
        self.built: dict[str, int] = {}
        self.covered_from: dt.datetime | None = None
        self._windows: dict[str, tuple[dt.datetime, dt.datetime] | None] = {}
        if self.partitions is None:
            return
        last = self.partitions.get_last_partition_window()
        if last is None:
            return
        covered_from = last.start
        for _ in range(target.lookback):
            previous = self.partitions.get_prev_partition_window(covered_from)
            if previous is None:
                break
            covered_from = previous.start
        self.covered_from = covered_from
        self.built = dict(
            instance.get_latest_storage_id_by_partition(target.table, DagsterEventType.ASSET_MATERIALIZATION)
        )
        self._starts = {key: _start(self.partitions, key) for key in self.built}

    def stale(self, ranges: Ranges, replicated_at: int) -> list[str]:
        """The keys whose windows overlap `ranges`, built before the replication event `replicated_at` (a
        storage id), ending no later than the first window automation covers; oldest first."""
        if not ranges or self.partitions is None or self.covered_from is None:
            return []
        starts, ends = [r[0] for r in ranges], [r[1] for r in ranges]
        earliest, latest = starts[0] - MAX_WINDOW, ends[-1]
        stale = []
        for key, storage_id in self.built.items():
            start = self._starts[key]
            if storage_id >= replicated_at or start is None or not earliest <= start < latest:
                continue
            window = self._window(key)
            if window is None or window[1] > self.covered_from or window[0] < self.partitions.start:
                continue
            if _overlaps(starts, ends, window):
                stale.append((window[0], key))
        return [key for _, key in sorted(stale)]

    def _window(self, key: str) -> tuple[dt.datetime, dt.datetime] | None:
        """A key's `[start, end)` (Dagster's ~0.4 ms a key: only for keys near a touched range), None for a key
        that is no longer one of the definition's."""
        if key not in self._windows:
            assert self.partitions is not None
            try:
                window = self.partitions.time_window_for_partition_key(key)
                self._windows[key] = (window.start.astimezone(dt.UTC), window.end.astimezone(dt.UTC))
            except ValueError:
                self._windows[key] = None
        return self._windows[key]


MAX_WINDOW = dt.timedelta(days=31)
"""The longest window (a month): a window overlapping a range starts at most this long before it."""


def _start(partitions: TimeWindowPartitionsDefinition, key: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(key, partitions.fmt).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _overlaps(
    starts: list[dt.datetime], ends: list[dt.datetime], window: tuple[dt.datetime, dt.datetime]
) -> bool:
    """Whether `window` overlaps one of the sorted, disjoint ranges `zip(starts, ends)`."""
    i = bisect.bisect_left(starts, window[1]) - 1  # the last range starting before the window ends
    return i >= 0 and ends[i] > window[0]


def late_keys(requests: Iterable[RunRequest]) -> dict[str, list[str]]:
    """The partition keys a tick's backfill request asks for, by asset key (user string): what tests compare."""
    out: dict[str, list[str]] = {}
    for request in requests:
        subset = request.asset_graph_subset
        if subset is None:
            continue
        for item in subset.iterate_asset_partitions():
            out.setdefault(item.asset_key.to_user_string(), []).append(str(item.partition_key))
    return {key: sorted(values) for key, values in out.items()}
