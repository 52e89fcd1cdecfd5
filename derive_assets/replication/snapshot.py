"""Resumable first loads: read a large source table in primary-key chunks, commit each, resume after a crash.

A first load (the warehouse table is missing, or a `derive/full_refresh` run rebuilds it) of a PostgreSQL or
MySQL/MariaDB table whose source holds more than `snapshot.chunk_rows` rows is a *snapshot*:

1. Before any row is read, the cursor's largest source value (the watermark the final materialization records)
   and the open-transaction fence token are taken; the first chunk waits (up to `FENCE_WAIT_SECONDS`) for every
   transaction open then to end, so a row such a transaction commits late, with a cursor at or below that
   watermark, is read by some chunk. Rows changed while the snapshot runs have a cursor beyond it: the next
   incremental run reads them (merged by key: reading a row twice never duplicates it).
2. Chunks are read in primary-key order: keyset (`WHERE key >= last ORDER BY key LIMIT chunk_rows`, any key
   type, composite keys by row comparison), or, with `snapshot.parallel > 1` and a single INT64 key, a key range
   read by several connections (connectorx partitions). Each chunk goes through the row guard and the load rules
   (NULL and duplicate keys refused) and is merged by primary key into `<dataset>.<table>__snapshot` in its own
   transaction, so reading a chunk again after a crash is idempotent. A last read takes the rows whose key is
   NULL (key order cannot reach them), so the guard fails or quarantines them as an unchunked load does.
3. After each committed chunk an `AssetObservation` of the table's asset records the checkpoint (`Checkpoint`:
   last key, chunks and rows done, the watermark and fence of step 1, the code version and `chunk_rows`). A run
   that finds a checkpoint newer than the table's last materialization, with the same code version and
   `chunk_rows`, and the staging table still there, resumes after its last key; otherwise it starts over (the
   stale staging table is dropped).
4. The staging table replaces the target in one atomic step (`Warehouse.promote`). Until then the target and
   the watermark are untouched: a failed run leaves only the staging table and its checkpoints.

SQLite and MongoDB sources are read in one pass, as before: SQLite sources are local files (the embedded demo
databases) whose cells may hold any type, so key order is not the declared type's order; MongoDB collections are
coerced document by document by `replication/mongo.py`, and `_id` order over mixed id types is not one
comparable key either. Tables whose key holds a NUMERIC or FLOAT64 column are read in one pass too: NUMERIC is read
as text (see `extract._select_column`), whose order is not the number's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import MetadataValue

from derive_assets import metadata_keys as K
from derive_assets.progress import Progress
from derive_assets.replication import fence, watermark
from derive_assets.replication.event_time import ColumnTimes, EventTimes
from derive_assets.replication.extract import (
    ChunkBounds,
    ChunkSeen,
    ExtractPlan,
    build_chunk_query,
    max_cursor_query,
    nth_key_query,
    read_chunk,
    source_timestamp_columns,
)
from derive_assets.replication.retry import Log, load_with_retries, restarted
from derive_assets.replication.row_guard import RowGuard
from derive_assets.replication.urls import SourceConnectionError, scrub
from derive_assets.replication.watermark import CursorState
from derive_assets.specs.models import ColumnType, SourceSpec, SourceTable
from resources.evolution import spec_target
from resources.warehouse import LoadRequest, TargetTable, Warehouse, WriteResult

SNAPSHOT_SUFFIX = "__snapshot"
"""`<table>__snapshot`: the staging table a snapshot's chunks are committed to, until it is promoted."""
FENCE_WAIT_SECONDS = 60.0
"""How long the first chunk waits for the transactions open at the snapshot's start to end. Past it, the snapshot
goes on, and the final state has no read floor (the next run reads every row once more: safe, slower)."""
CHUNKABLE_KEY_TYPES = frozenset({"INT64", "STRING", "DATE", "DATETIME", "TIMESTAMP"})
"""Key column types whose source order is the order of the values connectorx returns."""
CHUNKED_SOURCES = frozenset({"postgres", "mysql"})


def unchunkable(source: SourceSpec, table: SourceTable) -> str | None:
    """Why `table` is read in one pass even when large (None: it can be chunked)."""
    if source.type not in CHUNKED_SOURCES:
        return f"{source.type} sources are read in one pass"
    types = {c.name: c.type for c in table.columns}
    odd = [k for k in table.primary_key if types[k] not in CHUNKABLE_KEY_TYPES]
    if odd:
        return f"primary key column(s) {odd} are not INT64, STRING, DATE, DATETIME or TIMESTAMP"
    return None


def wants_chunks(table: SourceTable, estimate: int | None) -> bool:
    """A first load is chunked when the source's row estimate exceeds `chunk_rows` (no estimate: one pass)."""
    return estimate is not None and estimate > table.snapshot.chunk_rows


def staging_target(target: TargetTable) -> TargetTable:
    """The staging table of `target`'s snapshot: same dataset, columns, layout and key, `<name>__snapshot`."""
    return dataclasses.replace(target, name=f"{target.name}{SNAPSHOT_SUFFIX}")


def parallel_key(table: SourceTable) -> str | None:
    """The key column whose ranges several connections can read at once: a single INT64 primary key."""
    if len(table.primary_key) != 1:
        return None
    key = table.primary_key[0]
    return key if next(c.type for c in table.columns if c.name == key) == "INT64" else None


# ------------------------------------------------------------------------------------------------ checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """Where a snapshot stands: recorded after each committed chunk, read back by the next run."""

    snapshot_id: str
    code_version: str | None
    chunk_rows: int
    watermark: str | None
    """The watermark taken before the first chunk (text, as `watermark.to_text` writes it)."""
    fence: str | None
    floor_safe: bool
    chunks: int = 0
    rows: int = 0
    last_key: tuple[Any, ...] | None = None

    def as_metadata(self) -> dict[str, Any]:
        return {
            K.SNAPSHOT_ID: self.snapshot_id,
            K.SNAPSHOT_CHUNKS: self.chunks,
            K.SNAPSHOT_ROWS: self.rows,
            K.SNAPSHOT_LAST_KEY: None if self.last_key is None else key_text(self.last_key),
            K.SNAPSHOT_WATERMARK: self.watermark,
            K.SNAPSHOT_FENCE: self.fence,
            K.SNAPSHOT_FLOOR_SAFE: self.floor_safe,
            K.SNAPSHOT_CODE_VERSION: self.code_version,
            K.SNAPSHOT_CHUNK_ROWS: self.chunk_rows,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], table: SourceTable) -> Checkpoint | None:
        """The checkpoint an observation recorded; None when it is not one (or one this version cannot read)."""

        def value(key: str) -> Any:
            raw = metadata.get(key)
            return getattr(raw, "value", raw)

        snapshot_id, chunk_rows = value(K.SNAPSHOT_ID), value(K.SNAPSHOT_CHUNK_ROWS)
        if not isinstance(snapshot_id, str) or not isinstance(chunk_rows, int):
            return None
        last = value(K.SNAPSHOT_LAST_KEY)
        try:
            last_key = None if last is None else key_from_text(last, table)
        except (ValueError, TypeError):  # a key this version cannot read: start over, never guess
            return None
        return cls(
            snapshot_id=snapshot_id,
            code_version=value(K.SNAPSHOT_CODE_VERSION),
            chunk_rows=chunk_rows,
            watermark=value(K.SNAPSHOT_WATERMARK),
            fence=value(K.SNAPSHOT_FENCE),
            floor_safe=bool(value(K.SNAPSHOT_FLOOR_SAFE)),
            chunks=int(value(K.SNAPSHOT_CHUNKS) or 0),
            rows=int(value(K.SNAPSHOT_ROWS) or 0),
            last_key=last_key,
        )

    def after_chunk(self, rows: int, last_key: tuple[Any, ...] | None) -> Checkpoint:
        return dataclasses.replace(
            self, chunks=self.chunks + 1, rows=self.rows + rows, last_key=last_key or self.last_key
        )


def key_text(key: tuple[Any, ...]) -> str:
    """A key as a JSON list of texts (`watermark.to_text`: datetimes in UTC, ISO 8601)."""
    return json.dumps([watermark.to_text(v) for v in key])


def key_from_text(text: str, table: SourceTable) -> tuple[Any, ...]:
    """The key `key_text` wrote, typed as the key columns (int, date, datetime, text)."""
    values = json.loads(text)
    if not isinstance(values, list) or len(values) != len(table.primary_key):
        raise ValueError(f"not a key of {table.primary_key}: {text!r}")
    types: dict[str, ColumnType] = {c.name: c.type for c in table.columns}
    return tuple(
        watermark.from_text(v, types[k], K.SNAPSHOT_LAST_KEY)
        for v, k in zip(values, table.primary_key, strict=True)
    )


def resumable(
    checkpoint: Checkpoint | None, code_version: str | None, chunk_rows: int, staging_exists: bool
) -> bool:
    """Whether a run may go on after `checkpoint` rather than start over."""
    return (
        checkpoint is not None
        and staging_exists
        and checkpoint.code_version == code_version
        and checkpoint.chunk_rows == chunk_rows
    )


def keyset_bounds(last_key: tuple[Any, ...] | None, chunk_rows: int) -> ChunkBounds:
    """The next keyset chunk: from the last chunk's last key (inclusive, see `extract`), `chunk_rows` rows."""
    return ChunkBounds(start=last_key, limit=chunk_rows)


def keyset_finished(rows_sent: int, chunk_rows: int) -> bool:
    """A keyset chunk that sent fewer rows than it asked for was the last one."""
    return rows_sent < chunk_rows


def add_rejected(
    guard: RowGuard, invalid: Counter[str], quarantined: list[dict[str, Any]], rejected: set[str]
) -> None:
    """Add the rows one committed chunk's guard rejected to the run's counts and quarantine, except those an
    earlier chunk rejected already (`rejected`: their keys, updated here): a chunk starts at the previous chunk's
    last key, inclusive, so an invalid row at a boundary is rejected by both. A row without a key (`row:<hash>`
    ids, from the NULL-key read) is always counted: two such rows may have the same id.

    Every rejection is in `guard.quarantined` with `on_invalid: quarantine`; with `fail` the guard raised at the
    chunk's end, so there are none to add."""
    if not guard.quarantined:
        invalid.update(guard.counts)
        return
    for row in guard.quarantined:
        key = row["_id"]
        if key in rejected:
            continue
        if not key.startswith("row:"):
            rejected.add(key)
        invalid[row["error"]] += 1
        quarantined.append(row)


def final_state(checkpoint: Checkpoint, table: SourceTable, fenced: bool) -> CursorState:
    """The cursor state the promoted table's materialization records: the watermark taken before the snapshot.

    With the fence cleared before the first chunk (`floor_safe`), the next run reads from that watermark (every
    late commit at or below it was read by a chunk). Otherwise the state is the one an unchunked first load
    records: no floor, the watermark pending behind the fence, so the next run reads every row once more."""
    value = watermark.from_text(checkpoint.watermark, table.cursor_column.type)
    if not fenced:
        return CursorState(value, value, None, None)
    if checkpoint.floor_safe:
        return CursorState(value, value, None, None)
    return CursorState(value, None, value, checkpoint.fence)


# ------------------------------------------------------------------------------------------------ the load


@dataclass
class Snapshot:
    """One run of a snapshot: everything it needs besides the rows."""

    warehouse: Warehouse
    plan: ExtractPlan
    request: LoadRequest
    url: str
    log: Log
    info: Callable[[str], None]
    """Where progress lines go (e.g. `context.log.info`)."""
    record: Callable[[Checkpoint], None]
    """Records a checkpoint in the event log (an `AssetObservation` of the table's asset)."""
    code_version: str | None
    estimate: int | None = None

    @property
    def source(self) -> SourceSpec:
        return self.plan.source

    @property
    def table(self) -> SourceTable:
        return self.plan.table

    def run(self, previous: Checkpoint | None) -> dict[str, Any]:
        """Load every chunk (after `previous`, when it may be resumed), promote, and return the metadata."""
        started = time.perf_counter()
        spec, target = self.table.snapshot, self.request.target
        stage = staging_target(target)
        stage_request = dataclasses.replace(self.request, target=stage)
        if resumable(previous, self.code_version, spec.chunk_rows, self.warehouse.table_exists(stage.ref)):
            assert previous is not None
            checkpoint, resumed = previous, previous.chunks
            self.info(
                f"{target.ref}: resuming the snapshot after chunk {resumed} ({previous.rows:,} rows committed to "
                f"{stage.ref}), from key {key_text(previous.last_key or ())}"
            )
        else:
            if previous is not None:
                self.info(
                    f"{target.ref}: starting the snapshot over (the spec changed, or {stage.ref} is gone)"
                )
            self.warehouse.drop_table(stage.ref)
            checkpoint, resumed = self._begin(), 0
        guard = RowGuard(self.source, self.table)
        times = EventTimes.of(self.table, self.source.name)
        invalid: Counter[str] = Counter()
        quarantined: list[dict[str, Any]] = []
        rejected: set[str] = set()
        progress = Progress(self.info, target.ref, total=self.estimate)
        progress.add(checkpoint.rows)
        timestamps = source_timestamp_columns(self.url, self.plan)
        first_sql: str | None = None
        read = WriteResult()
        while True:
            bounds, partitions = self._next(checkpoint, spec.chunk_rows, spec.parallel)
            sql = build_chunk_query(self.plan, bounds, timestamps)
            first_sql = first_sql or sql
            seen = self._chunk(stage_request, sql, guard, times, progress, partitions, read)
            add_rejected(guard, invalid, quarantined, rejected)
            again = 1 if checkpoint.last_key is not None and seen.rows else 0  # the last key, read again
            last = bounds.through if bounds.through is not None else seen.last_key
            checkpoint = checkpoint.after_chunk(seen.rows - again, last)
            self.record(checkpoint)
            if bounds.through is None and keyset_finished(seen.rows, spec.chunk_rows):
                break
        # Rows with a NULL key: key order never reaches them; the guard fails or quarantines them.
        sql = build_chunk_query(self.plan, ChunkBounds(null_keys=True), timestamps)
        self._chunk(stage_request, sql, guard, times, progress, None, read)
        add_rejected(guard, invalid, quarantined, rejected)
        progress.done()
        from derive_assets.replication.run import quarantine_rows

        quarantine = quarantine_rows(self.warehouse, target, quarantined)
        replaced = self.warehouse.promote(stage, spec_target(target, self.request.primary_key))
        state = final_state(checkpoint, self.table, fence.applies(self.source, self.table))
        rows = self.warehouse.row_count(target.ref)
        read.rows_inserted, read.rows_deleted = rows, replaced
        return {
            **state.as_metadata(),
            K.WATERMARK_BEFORE: None,
            **K.row_counts(read),
            K.ROWS_INVALID: sum(invalid.values()),
            **({K.INVALID_ROWS: dict(invalid)} if invalid else {}),
            K.DURATION_SECONDS: round(time.perf_counter() - started, 3),
            K.SOURCE_QUERY: MetadataValue.md(f"```sql\n{first_sql}\n```"),
            K.SOURCE: f"{self.source.name} ({self.source.type}) table {self.table.name}",
            K.ROW_COUNT: rows,
            K.SNAPSHOT_ID: checkpoint.snapshot_id,
            K.SNAPSHOT_CHUNKS: checkpoint.chunks,
            K.SNAPSHOT_ROWS: checkpoint.rows,
            K.SNAPSHOT_RESUMED_CHUNKS: resumed,
            **times.as_metadata(),
            **({K.QUARANTINE_TABLE: quarantine} if quarantine else {}),
        }

    def _next(
        self, checkpoint: Checkpoint, chunk_rows: int, parallel: int
    ) -> tuple[ChunkBounds, tuple[str, int, int, int] | None]:
        """The next read: its bounds, and connectorx partitions for a range chunk read in parallel (a range
        chunk ends at the key `chunk_rows - 1` rows on; past the last such key, the rest is one keyset chunk)."""
        key = parallel_key(self.table)
        # Opt-in: measured 2026-12-02 on the 2-core machine (benchmarks/README.md, "snapshot"), 5M rows in
        # 500k-row chunks took 380 s with 2 connections per chunk against 277 s with 1: the warehouse's insert
        # shares the cores, so `parallel` defaults to 1.
        if parallel > 1 and key is not None:
            start = checkpoint.last_key
            low = start[0] if start is not None else self._key_at(None, 0)
            high = self._key_at(start, chunk_rows - 1)
            if low is not None and high is not None:
                return ChunkBounds(start=(low,), through=(high,)), (key, low, high, parallel)
        return keyset_bounds(checkpoint.last_key, chunk_rows), None

    def _key_at(self, start: tuple[Any, ...] | None, offset: int) -> Any:
        rows = _query(self.url, nth_key_query(self.plan, start, offset), self.source, self.table)
        return rows[0] if rows else None

    def _chunk(
        self,
        stage_request: LoadRequest,
        sql: str,
        guard: RowGuard,
        times: EventTimes,
        progress: Progress,
        partitions: tuple[str, int, int, int] | None,
        read: WriteResult,
    ) -> ChunkSeen:
        """Read one chunk and merge it into the staging table in one transaction (retried from the chunk's start
        when the source connection drops)."""
        seen = ChunkSeen()
        chunk_times = EventTimes.of(self.table, self.source.name)
        result = load_with_retries(
            lambda: self.warehouse.load(
                stage_request,
                progress.batches(
                    restarted(chunk_times).observed(
                        read_chunk(
                            self.url, self.plan, sql, restarted(guard), restarted(seen), partitions=partitions
                        )
                    )
                ),
            ),
            what=f"source '{self.source.name}' table {self.table.name} (snapshot chunk)",
            log=self.log,
            secrets=(self.url,),
        )
        merge_times(times, chunk_times)
        read.rows_read += result.rows_read
        return seen

    def _begin(self) -> Checkpoint:
        """Take the watermark and the fence before the first chunk, and wait for the fence to clear."""
        source, table = self.source, self.table
        value = _max_cursor(self.url, self.plan)
        token = fence.take(self.url, source, table, self.log.warning)
        floor_safe = _wait_for_fence(self.url, source, table, token, self.log)
        return Checkpoint(
            snapshot_id=uuid.uuid4().hex,
            code_version=self.code_version,
            chunk_rows=table.snapshot.chunk_rows,
            watermark=watermark.to_text(_typed(value, table)),
            fence=token,
            floor_safe=floor_safe,
        )


def _max_cursor(url: str, plan: ExtractPlan) -> Any:
    """The cursor's largest source value now, ignoring values beyond `max_future_seconds` (None: no rows)."""
    table = plan.table
    limit = None
    if table.cursor_column.type in ("TIMESTAMP", "DATETIME", "DATE"):
        limit = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=table.max_future_seconds)
        if table.cursor_column.type == "DATE":
            limit = limit.date()
    rows = _query(url, max_cursor_query(plan, source_timestamp_columns(url, plan), limit), plan.source, table)
    return rows[0] if rows else None


ONE_PASS_FENCE_WAIT_SECONDS = 5.0
"""How long a first load read in one pass waits for the transactions open before it (a snapshot waits longer:
it is worth it for a large table, and a small one is cheap to read again)."""


def fenced_before_read(plan: ExtractPlan, url: str, log: Log) -> ExtractPlan:
    """A first load read in one pass from a fenced source (PostgreSQL, MySQL): like a snapshot, take the cursor's
    largest value and the fence before the read, and when every transaction open then ends within
    `ONE_PASS_FENCE_WAIT_SECONDS`, that value becomes the next run's read floor. Every transaction that began
    later takes cursor values above it, so the next run reads from there, not every row once more. Otherwise
    (or with nothing to read) the plan is unchanged: the next run reads every row again, as before."""
    source, table = plan.source, plan.table
    if not fence.applies(source, table):
        return plan
    value = _max_cursor(url, plan)
    token = fence.take(url, source, table, log.warning)
    if value is None or not _wait_for_fence(
        url, source, table, token, log, ONE_PASS_FENCE_WAIT_SECONDS, "load"
    ):
        return plan
    return dataclasses.replace(
        plan, state=CursorState(pending_floor=_typed(value, table)), fence_cleared=True
    )


def merge_times(into: EventTimes, chunk: EventTimes) -> None:
    """Add one committed chunk's event times to the run's."""
    for name, times in chunk.by_column.items():
        total = into.by_column.setdefault(name, ColumnTimes())
        total.hours |= times.hours
        total.rows += times.rows
        lows = [v for v in (total.low, times.low) if v is not None]
        highs = [v for v in (total.high, times.high) if v is not None]
        total.low = min(lows) if lows else None  # type: ignore[type-var]
        total.high = max(highs) if highs else None  # type: ignore[type-var]


def _typed(value: Any, table: SourceTable) -> Any:
    """A source value as the cursor's type (connectorx gives naive datetimes for UTC columns)."""
    if value is None:
        return None
    return watermark.from_text(watermark.to_text(value), table.cursor_column.type)


def _wait_for_fence(
    url: str,
    source: SourceSpec,
    table: SourceTable,
    token: str | None,
    log: Log,
    seconds: float | None = None,
    what: str = "snapshot",
) -> bool:
    """Wait (`seconds`, default `FENCE_WAIT_SECONDS`) until every transaction open at `token` has ended; False if
    they still run after the wait."""
    seconds = FENCE_WAIT_SECONDS if seconds is None else seconds
    deadline = time.monotonic() + seconds
    delay = 0.1
    while not fence.cleared(url, source, table, token):
        if time.monotonic() >= deadline:
            log.warning(
                f"source '{source.name}' table {table.name}: transactions open when the {what} began still run "
                f"after {seconds:g} s; the {what} goes on, and the next run reads every row once more so that "
                "their rows are not missed"
            )
            return False
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    return True


def _query(url: str, sql: str, source: SourceSpec, table: SourceTable) -> list[Any]:
    """The first column of a small query's rows."""
    import connectorx as cx

    try:
        found = cx.read_sql(url, sql, return_type="arrow")
    except RuntimeError as exc:  # connectorx raises RuntimeError with the driver's message
        raise SourceConnectionError(
            f"source '{source.name}' table '{table.name}': reading failed: {scrub(str(exc), url)}"
        ) from None
    return found.column(0).to_pylist()  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------------ the asset's end


def load_if_large(
    context: Any,
    warehouse: Warehouse,
    plan: ExtractPlan,
    request: LoadRequest,
    url: str,
    rebuild: bool = False,
) -> dict[str, Any] | None:
    """From the replication asset's body (`context`: its `AssetExecutionContext`), on a first load: snapshot the
    table when it can be chunked and is large (always, for a `rebuild`); None when it is read in one pass.

    Large: the source's row estimate (`estimate.estimate_rows`) exceeds `chunk_rows`; without an estimate (a
    view, a PostgreSQL table never analyzed) it is read in one pass."""
    from dagster import AssetObservation

    from derive_assets.replication.estimate import estimate_rows

    source, table = plan.source, plan.table
    why = unchunkable(source, table)
    if why is not None:
        if rebuild:
            context.log.info(f"{request.target.ref}: rebuilt in one pass ({why})")
            return rebuild_in_one_pass(warehouse, plan, request, url, context.log)
        return None
    estimate = estimate_rows(url, source, table)
    if not rebuild and not wants_chunks(table, estimate):
        # No estimate (a view, a PostgreSQL table never analyzed: autovacuum analyzes any table that grows large):
        # one pass. Counting rows into key order instead would scan a view's rows before the load reads them.
        return None
    key = context.asset_key

    def record(checkpoint: Checkpoint) -> None:
        context.log_event(AssetObservation(asset_key=key, metadata=checkpoint.as_metadata()))

    run = Snapshot(
        warehouse,
        plan,
        request,
        url,
        context.log,
        context.log.info,
        record,
        request.target.code_version,
        estimate,
    )
    return run.run(latest_checkpoint(context.instance, key, table))


def rebuild_in_one_pass(
    warehouse: Warehouse, plan: ExtractPlan, request: LoadRequest, url: str, log: Any
) -> dict[str, Any]:
    """A rebuild of a table that cannot be chunked (SQLite, MongoDB, a NUMERIC key): every row read in one pass
    into `<table>__snapshot`, which then replaces the table (`Warehouse.promote`), so rows gone from the source
    leave it too; a failed read leaves the table as it was. `rows_deleted` counts the old table's rows, as a
    chunked rebuild does."""
    from derive_assets.replication.run import replicate

    target = request.target
    stage = staging_target(target)
    warehouse.drop_table(stage.ref)
    metadata = replicate(
        warehouse, plan, dataclasses.replace(request, target=stage), url, log, quarantine_target=target
    )
    replaced = warehouse.promote(stage, spec_target(target, request.primary_key))
    return {**metadata, K.ROWS_DELETED: replaced}


def latest_checkpoint(instance: Any, key: Any, table: SourceTable) -> Checkpoint | None:
    """The newest snapshot checkpoint of `key` recorded after its last materialization (None: none since)."""
    materialized = instance.fetch_materializations(key, limit=1).records
    after = materialized[0].storage_id if materialized else -1
    for record in instance.fetch_observations(key, limit=20).records:
        if record.storage_id <= after:
            return None
        observation = record.asset_observation
        found = Checkpoint.from_metadata(observation.metadata, table) if observation else None
        if found is not None:
            return found
    return None
