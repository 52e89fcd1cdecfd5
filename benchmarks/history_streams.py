"""What `benchmarks/history.py` writes: one `Stream` per asset key, its materializations' moments and metadata,
and the generator that stores them through Dagster's storage API (`store_event_batch`).

The metadata of each kind of asset is what Derive's own code builds for it: a replication run's cursor state
(`CursorState.after_run` / `as_metadata`), source query (`build_query`, or `mongo.describe`) and event-time hours
(`EventTimes`); a table window's counts, rendered SQL (`sql_block`), column lineage (`column_lineage`) and
upstream tables; an export's watermark and writes; a Python table's IO-manager metadata. Every key comes from
`derive_assets.metadata_keys`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.core import log

BATCH_EVENTS = 500
"""Events per `store_event_batch` call at most (one asset key per call)."""
CHUNK_DAYS = 61
"""Days generated per pass over the streams: each key's events of those days are one batch (or a few)."""


@dataclass
class Stream:
    """One asset key's materializations: when they happen and the metadata each carries."""

    key: Any  # AssetKey
    kind: str
    """`replication`, `table`, `export` or `python`."""
    every: dt.timedelta
    """How often it materializes."""
    partitions: str | None
    """None, `daily` or `hourly`: a partitioned stream writes the partition just ended (and daily: the one
    before it, late data), once per `every`."""
    build: Callable[[dt.datetime, str | None, random.Random], dict[str, Any]]
    """The materialization's metadata at a moment, for a partition."""
    code_version: str | None = None
    upstream: Sequence[Any] = ()
    """Upstream asset keys (their input data version tags)."""
    starts: dt.datetime | None = None
    """No materialization before this (a partitions definition's start)."""
    late_partition: bool = True
    state: dict[str, Any] = field(default_factory=dict)

    def moments(self, start: dt.datetime, end: dt.datetime) -> Iterator[tuple[dt.datetime, str | None]]:
        """(when, partition key) of each materialization in [start, end)."""
        step = self.every
        offset = _offset(self.key, step)
        t = start.replace(hour=0, minute=0, second=0, microsecond=0) + offset
        while t < end:
            if t >= start and (self.starts is None or t >= self.starts + step):
                if self.partitions is None:
                    yield t, None
                elif self.partitions == "hourly":
                    yield t, _hour_key(t - dt.timedelta(hours=1))
                else:
                    day = (t - dt.timedelta(days=1)).date()
                    yield t, day.isoformat()
                    before = day - dt.timedelta(days=1)
                    if self.late_partition and (self.starts is None or before >= self.starts.date()):
                        yield t + dt.timedelta(minutes=7), before.isoformat()
            t += step


def _offset(key: Any, step: dt.timedelta) -> dt.timedelta:
    """A stable offset within `step` per key, so streams do not all fire on the same second."""
    digest = int(hashlib.sha1(key.to_user_string().encode()).hexdigest()[:8], 16)
    return dt.timedelta(seconds=digest % max(int(step.total_seconds()) // 2, 1) + 37)


def _hour_key(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d-%H:00")  # Dagster's hourly partition key format


def _window(partition: str | None, kind: str | None) -> tuple[dt.datetime, dt.datetime] | None:
    if partition is None:
        return None
    if kind == "hourly":
        start = dt.datetime.strptime(partition, "%Y-%m-%d-%H:%M").replace(tzinfo=dt.UTC)
        return start, start + dt.timedelta(hours=1)
    start = dt.datetime.fromisoformat(partition).replace(tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def _counts(rng: random.Random, scale: int) -> Any:
    from resources.warehouse import WriteResult

    read = rng.randint(scale // 4, scale)
    inserted = rng.randint(0, read)
    return WriteResult(rows_read=read, rows_inserted=inserted, rows_updated=read - inserted)


def replication_builder(rt: Any, every: dt.timedelta) -> Callable[..., dict[str, Any]]:
    """A replication run's metadata as `replication/run.py` `replicate` returns it: the cursor state after the
    run (fenced where the source is), the source query `build_query` renders from the previous floor, counts."""
    from dagster import MetadataValue

    from derive_assets import metadata_keys as K
    from derive_assets.replication import fence, mongo, watermark
    from derive_assets.replication.event_time import EventTimes
    from derive_assets.replication.extract import ExtractPlan, build_query
    from derive_assets.replication.watermark import CursorState

    source, table = rt.source, rt.table
    fenced = fence.applies(source, table)
    queries: dict[dt.date, str] = {}
    total = {"rows": 0}
    holder: dict[str, Any] = {"state": CursorState()}

    def build(moment: dt.datetime, partition: str | None, rng: random.Random) -> dict[str, Any]:
        state: CursorState = holder["state"]
        since = watermark.with_overlap(state.floor, table.effective_overlap)
        # The query's text changes only with its `since` literal: rendered once a day (sqlglot costs ~1 ms).
        day = moment.date()
        if day not in queries:
            queries.clear()
            if source.type == "mongodb":  # what `extract.prepare` renders for a document source
                queries[day] = mongo.describe(source, table, since)
            else:
                queries[day] = build_query(ExtractPlan(source, table, since, state))[0]
        max_read = moment - dt.timedelta(seconds=rng.randint(1, int(every.total_seconds())))
        token = f"{rng.randint(10**6, 10**7)}:{rng.randint(10**7, 2 * 10**7)}:" if fenced else None
        after = state.after_run(max_read.replace(microsecond=0), token, fenced, cleared=True)
        result = _counts(rng, 5000)
        total["rows"] += result.rows_inserted
        holder["state"] = after
        times = EventTimes.of(table, source.name)
        if times.columns:  # `derive/event_time/<column>`: the hours the rows touched, now and then a late one
            times.observe(_event_time_batch(times.columns, moment, every, rng))
        return {
            **after.as_metadata(),
            K.WATERMARK_BEFORE: watermark.to_text(state.watermark),
            **K.row_counts(result),
            K.ROWS_INVALID: 0,
            K.DURATION_SECONDS: round(rng.uniform(0.4, 30.0), 3),
            K.SOURCE_QUERY: MetadataValue.md(f"```sql\n{queries[day]}\n```"),
            K.SOURCE: f"{source.name} ({source.type}) table {table.name}",
            K.ROW_COUNT: total["rows"],
            **times.as_metadata(),
        }

    return build


def _event_time_batch(
    columns: Sequence[str], moment: dt.datetime, every: dt.timedelta, rng: random.Random
) -> Any:
    """The event-time columns of a run's rows: within the run's interval, and in one run of 20 a row days late."""
    import pyarrow as pa

    span = int(every.total_seconds())
    values = [moment - dt.timedelta(seconds=rng.randint(0, span)) for _ in range(20)]
    if rng.random() < 0.05:
        values.append(moment - dt.timedelta(days=rng.randint(2, 40), seconds=rng.randint(0, 86400)))
    return pa.RecordBatch.from_pydict({c: pa.array(values, pa.timestamp("us", tz="UTC")) for c in columns})


def table_builder(
    table: Any, granularity: str | None, dialect: str = "duckdb"
) -> Callable[..., dict[str, Any]]:
    """A table run's metadata as `factory/table_assets.py` records it for one window (or none)."""
    from derive_assets import metadata_keys as K
    from derive_assets.factory.metadata import column_lineage, sql_block
    from derive_assets.specs.sql_analysis import transpile

    analysis = table.analysis
    rendered = sql_block(transpile(analysis.expression, dialect))
    lineage = column_lineage(analysis.lineage)
    total = {"rows": 0}

    def build(moment: dt.datetime, partition: str | None, rng: random.Random) -> dict[str, Any]:
        window = _window(partition, granularity)
        result = _counts(rng, 20000)
        total["rows"] += result.rows_inserted
        return {
            K.WINDOW_START: window[0].isoformat() if window else None,
            K.WINDOW_END: window[1].isoformat() if window else None,
            **K.row_counts(result),
            K.DURATION_SECONDS: round(rng.uniform(0.5, 120.0), 3),
            K.RENDERED_SQL: rendered,
            K.UPSTREAM_TABLES: analysis.reads,
            K.ROW_COUNT: total["rows"],
            K.COLUMN_LINEAGE: lineage,
        }

    return build


def export_builder(export: Any, store: str = "cassandra") -> Callable[..., dict[str, Any]]:
    """An export run's metadata as `factory/export_assets.py` records it (window, watermark, writes)."""
    from derive_assets import metadata_keys as K
    from derive_assets.replication import watermark

    spec = export.spec
    holder: dict[str, Any] = {"watermark": None}
    online = f"{store}: {getattr(spec, 'keyspace', None) or 'derive'}.{spec.name}"

    def build(moment: dt.datetime, partition: str | None, rng: random.Random) -> dict[str, Any]:
        window = _window(partition, "daily")
        written = rng.randint(100, 50000)
        seconds = rng.uniform(0.5, 60.0)
        before, after = holder["watermark"], moment.replace(microsecond=0) - dt.timedelta(minutes=3)
        holder["watermark"] = after
        meta: dict[str, Any] = {}
        if window:
            meta = {K.WINDOW_START: window[0].isoformat(), K.WINDOW_END: window[1].isoformat()}
        if spec.cursor if hasattr(spec, "cursor") else False:
            meta |= {K.WATERMARK: watermark.to_text(after), K.WATERMARK_BEFORE: watermark.to_text(before)}
        return {
            **meta,
            K.ROWS_WRITTEN: written,
            K.ROWS_DELETED: 0,
            K.BATCHES: max(1, written // 2000),
            K.WRITE_RETRIES: 0,
            K.DURATION_SECONDS: round(seconds, 3),
            K.ROWS_PER_SECOND: round(written / seconds),
            K.ONLINE_TABLE: online,
        }

    return build


def python_builder(granularity: str | None) -> Callable[..., dict[str, Any]]:
    """A Python table's metadata as the warehouse IO manager records it (`resources/io_manager.py`)."""
    from derive_assets import metadata_keys as K

    def build(moment: dt.datetime, partition: str | None, rng: random.Random) -> dict[str, Any]:
        window = _window(partition, granularity)
        result = _counts(rng, 2000)
        return {
            K.WINDOW_START: window[0].isoformat() if window else None,
            K.WINDOW_END: window[1].isoformat() if window else None,
            **K.row_counts(result),
            K.DURATION_SECONDS: round(rng.uniform(0.2, 10.0), 3),
            K.ROW_COUNT: rng.randint(100, 5000),
        }

    return build


def _granularity(partitions_def: Any) -> str | None:
    if partitions_def is None:
        return None
    return "hourly" if "* * * *" in str(getattr(partitions_def, "cron_schedule", "")) else "daily"


def demo_streams(defs: Any, project: Any) -> list[Stream]:
    """One stream per asset of the demo graph, with the metadata its kind of asset records."""
    from dagster import AssetKey

    from derive_assets import metadata_keys as K

    graph = defs.resolve_asset_graph()
    replicated = {AssetKey(rt.ref.split(".")): rt for rt in project.replicated}
    tables = {AssetKey(t.spec.ref.split(".")): t for t in project.tables}
    exports = {AssetKey(["online", e.spec.name]): e for e in project.exports}
    streams = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        if node.tags.get(K.LAYER) is None:
            continue  # not a Derive asset (the error placeholders of a lenient load)
        pdef = node.partitions_def
        granularity = _granularity(pdef)
        starts = pdef.start if pdef is not None else None  # type: ignore[attr-defined]
        if key in replicated:
            every = dt.timedelta(minutes=15)
            build = replication_builder(replicated[key], every)
            kind = "replication"
        elif key in tables:
            every = dt.timedelta(hours=1) if granularity is None else dt.timedelta(days=1)
            build, kind = table_builder(tables[key], granularity), "table"
        elif key in exports:
            every = dt.timedelta(hours=1) if granularity is None else dt.timedelta(days=1)
            build, kind = export_builder(exports[key]), "export"
        else:
            every = dt.timedelta(hours=1) if granularity is None else dt.timedelta(days=1)
            build, kind = python_builder(granularity), "python"
        if granularity == "hourly":
            every = dt.timedelta(hours=1)
        streams.append(
            Stream(key, kind, every, granularity, build, node.code_version, tuple(node.parent_keys), starts)
        )
    return streams


def extra_streams(project: Any, count: int) -> list[Stream]:
    """`count` keys of other teams' tables, each modelled on one of the demo's specs (its metadata's shape)."""
    from dagster import AssetKey

    replicated, tables = project.replicated, project.tables
    n_replicated, n_hourly = count // 10, max(count * 3 // 200, 1 if count >= 20 else 0)
    streams = []
    for i in range(count):
        if i < n_replicated:
            rt = replicated[i % len(replicated)]
            key = AssetKey([f"src_{i:04d}", rt.table.name])
            every = dt.timedelta(hours=4)
            streams.append(Stream(key, "replication", every, None, replication_builder(rt, every), "v1"))
            continue
        table = tables[i % len(tables)]
        key = AssetKey([f"team_{i:04d}", table.spec.name])
        hourly = i < n_replicated + n_hourly
        granularity = "hourly" if hourly else "daily"
        every = dt.timedelta(hours=1) if hourly else dt.timedelta(days=1)
        streams.append(
            Stream(
                key,
                "table",
                every,
                granularity,
                table_builder(table, granularity),
                "v1",
                late_partition=False,
            )
        )
    return streams


def per_day(streams: Sequence[Stream]) -> int:
    """Materializations a day of `streams` (away from their partitions' start)."""
    start = dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
    return sum(
        sum(1 for _ in s.moments(start, start + dt.timedelta(days=1)))
        for s in (
            Stream(s.key, s.kind, s.every, s.partitions, s.build, late_partition=s.late_partition)
            for s in streams
        )
    )


def _entry(
    stream: Stream, moment: dt.datetime, partition: str | None, run_id: str, rng: random.Random
) -> Any:
    """The EventLogEntry a step's materialization is stored as (its DagsterEvent, as `dagster` builds one)."""
    from dagster import AssetMaterialization, DagsterEventType
    from dagster._core.definitions.data_version import (
        CODE_VERSION_TAG,
        DATA_VERSION_TAG,
        INPUT_DATA_VERSION_TAG_PREFIX,
        INPUT_EVENT_POINTER_TAG_PREFIX,
    )
    from dagster._core.events import DagsterEvent, StepMaterializationData
    from dagster._core.events.log import EventLogEntry

    tags = {DATA_VERSION_TAG: uuid.UUID(int=rng.getrandbits(128)).hex}
    if stream.code_version:
        tags[CODE_VERSION_TAG] = stream.code_version
    for up in stream.upstream:
        name = up.to_user_string()
        tags[f"{INPUT_DATA_VERSION_TAG_PREFIX}/{name}"] = uuid.UUID(int=rng.getrandbits(128)).hex
        tags[f"{INPUT_EVENT_POINTER_TAG_PREFIX}/{name}"] = str(rng.randint(1, 10**7))
    materialization = AssetMaterialization(
        asset_key=stream.key,
        partition=partition,
        metadata=stream.build(moment, partition, rng),
        tags=tags,
    )
    step_key = stream.key.to_python_identifier()
    job_name = "__ASSET_JOB"
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=job_name,
        step_key=step_key,
        event_specific_data=StepMaterializationData(materialization),
        message=f"Materialized value {stream.key.to_user_string()}.",
        pid=rng.randint(100, 60000),
    )
    return EventLogEntry(
        error_info=None,
        level=logging.DEBUG,
        user_message="",
        run_id=run_id,
        timestamp=moment.timestamp(),
        step_key=step_key,
        job_name=job_name,
        dagster_event=event,
    )


@dataclass
class Written:
    events: int = 0
    batches: int = 0
    seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)


def generate(
    instances: Sequence[Any],
    streams: Sequence[Stream],
    start: dt.datetime,
    end: dt.datetime,
    seed: int = 15,
    progress: Callable[[str], None] = log,
) -> Written:
    """Store every stream's materializations in [start, end) in each of `instances` (the same events), `CHUNK_DAYS`
    at a time: each key's events of a chunk, oldest first, in batches of at most `BATCH_EVENTS`."""
    rng = random.Random(seed)
    written = Written()
    started = time.perf_counter()
    chunk = dt.timedelta(days=CHUNK_DAYS)
    t = start
    while t < end:
        upto = min(t + chunk, end)
        for stream in streams:
            entries = []
            run_for: dict[dt.datetime, str] = {}
            for moment, partition in stream.moments(t, upto):
                run_id = run_for.setdefault(moment, str(uuid.UUID(int=rng.getrandbits(128))))
                entries.append(_entry(stream, moment, partition, run_id, rng))
            for i in range(0, len(entries), BATCH_EVENTS):
                batch = entries[i : i + BATCH_EVENTS]
                for instance in instances:
                    instance.event_log_storage.store_event_batch(batch)
                written.batches += 1
            written.events += len(entries)
            written.by_kind[stream.kind] = written.by_kind.get(stream.kind, 0) + len(entries)
        t = upto
        elapsed = time.perf_counter() - started
        progress(
            f"history: {written.events:,} events up to {upto:%Y-%m-%d} in {elapsed:.0f} s "
            f"({written.events / elapsed if elapsed else 0:,.0f} events/s)"
        )
    written.seconds = time.perf_counter() - started
    return written
