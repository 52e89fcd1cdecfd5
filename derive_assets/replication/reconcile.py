"""Hard deletes without a flag column: a replicated table's key reconciliation (`reconcile:` in its spec).

An incremental read sees changed rows only, so a row deleted at the source stays in the warehouse forever unless
the source flags it (`soft_delete`). A reconciliation reads every primary key of the source table (the key columns
only: PostgreSQL and MySQL/MariaDB through connectorx, SQLite through the standard library, MongoDB with a
projection), streams them into a staging table of the warehouse, and deletes the warehouse rows whose key is
gone (`Warehouse.reconcile`), counted in `derive/rows_deleted`.

When: on every `every_runs`-th run of the table, or on the first run after each tick of `schedule`, read from the
last materialization (`derive/reconciled_at`, `derive/runs_since_reconcile`). A table that was never reconciled is
due at once; a first load (the table did not exist) reads every row, so it counts as a reconciliation.

Order and safety: the keys are read after the run's load committed, so every row the run loaded is in the key
scan unless the source deleted it since. Nothing is deleted until the last key was staged. When the key read fails
(the connection drops on every retry, a query error) or the delete guard (`max_delete_percent`) refuses, nothing
is deleted, the run's load is kept (its rows and watermark are recorded as usual), the run log says why (a
warning; an error for the guard), `derive/reconcile_error` records it, and the next run is due again.

Example:
    ```python
    metadata |= reconcile_after_load(warehouse, request, source, table, url, previous, first_load, context.log)
    ```
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
from croniter import croniter

from derive_assets import metadata_keys as K
from derive_assets.progress import Progress
from derive_assets.replication import mongo
from derive_assets.replication.estimate import estimate_rows
from derive_assets.replication.extract import ExtractPlan, SourceReadError, read_batches
from derive_assets.replication.mongo_client import open_mongo
from derive_assets.replication.retry import load_with_retries, shown
from derive_assets.replication.row_guard import RowGuard
from derive_assets.replication.urls import SourceConnectionError
from derive_assets.replication.values import ARROW_TYPES
from derive_assets.specs.models import ReconcileSpec, SourceSpec, SourceTable
from resources.warehouse import LoadRequest, ReconcileRefused, Warehouse, WarehouseError, WriteResult

KEY_BATCH_ROWS = 200_000
"""Keys per Arrow batch: a batch of one or two key columns is a few MB, so memory stays flat at any size."""


class Log(Protocol):
    """The part of a Dagster log manager the reconciliation writes to."""

    def info(self, msg: str) -> Any: ...

    def warning(self, msg: str) -> Any: ...

    def error(self, msg: str) -> Any: ...


# ----------------------------------------------------------------------------------------------- when


@dataclass(frozen=True)
class ReconcileState:
    """What the last materialization says about the table's reconciliations."""

    reconciled_at: dt.datetime | None = None
    """When the last completed reconciliation began (None: never reconciled)."""
    runs_since: int = 0
    """Runs since then (0: the last run reconciled)."""

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ReconcileState:
        """Read back from a materialization's metadata (values or Dagster `MetadataValue`s)."""
        at, runs = _value(metadata.get(K.RECONCILED_AT)), _value(metadata.get(K.RUNS_SINCE_RECONCILE))
        return cls(dt.datetime.fromisoformat(at) if at else None, int(runs or 0))


def is_due(spec: ReconcileSpec, state: ReconcileState, now: dt.datetime) -> bool:
    """Whether this run reconciles: never reconciled; the `every_runs`-th run since the last reconciliation; or a
    tick of `schedule` (UTC) has passed since the last reconciliation began."""
    if state.reconciled_at is None:
        return True
    if spec.every_runs is not None:
        return state.runs_since + 1 >= spec.every_runs
    assert spec.schedule is not None  # the model allows exactly one of the two
    tick = croniter(spec.schedule, state.reconciled_at.astimezone(dt.UTC)).get_next(dt.datetime)
    return tick <= now


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)


# ----------------------------------------------------------------------------------------------- keys


def key_columns_only(table: SourceTable) -> SourceTable:
    """The table with only its primary-key columns declared (and nothing that names another column), so that the
    ordinary extraction path reads just the keys (built by `model_copy`: the cursor is not among the columns, which
    validation would refuse, and the row guard checks only the columns a batch has)."""
    keys = [c for c in table.columns if c.name in table.primary_key]
    return table.model_copy(
        update={"columns": keys, "event_time": [], "soft_delete": None, "on_invalid": "quarantine"}
    )


def read_keys(
    url: str, source: SourceSpec, table: SourceTable, batch_rows: int | None = None
) -> Iterator[pa.RecordBatch]:
    """Every primary key of the source table, as Arrow batches of the key columns in their declared types.

    A key with a NULL (or, for SQLite and MongoDB, a value that is not its declared type) is left out: the load
    refuses such rows, so the warehouse cannot hold them. `batch_rows`: keys per batch (`KEY_BATCH_ROWS`)."""
    keys = key_columns_only(table)
    batch_rows = batch_rows or KEY_BATCH_ROWS
    if source.type == "mongodb":
        yield from _mongo_keys(url, source, keys, batch_rows)
        return
    plan = ExtractPlan(source, keys, since=None)
    yield from read_batches(url, plan, batch_rows=batch_rows, guard=RowGuard(source, keys))


def _mongo_keys(url: str, source: SourceSpec, keys: SourceTable, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The key fields of every document (a projection: the rest of the document never leaves the server)."""
    columns = keys.columns
    schema = pa.schema([(c.name, ARROW_TYPES[c.type]) for c in columns])
    paths = [mongo.path_of(c) for c in columns]
    projection: dict[str, int] = {path: 1 for path in paths}
    if "_id" not in paths:
        projection["_id"] = 0
    with open_mongo(url) as client:
        collection = client[source.mongo_database][keys.name].with_options(codec_options=mongo.READ_OPTIONS)
        rows: list[list[Any]] = []
        for document in collection.find({}, projection, batch_size=batch_rows):
            try:
                row = [mongo._coerce(mongo._get(document, p), c) for p, c in zip(paths, columns, strict=True)]
            except mongo.CoercionError:
                continue  # such a document was never loaded (the load refuses or quarantines it)
            if any(v is None for v in row):
                continue
            rows.append(row)
            if len(rows) >= batch_rows:
                yield mongo._batch(rows, schema)
                rows = []
        if rows:
            yield mongo._batch(rows, schema)


# ----------------------------------------------------------------------------------------------- run


def reconcile_after_load(
    warehouse: Warehouse,
    request: LoadRequest,
    source: SourceSpec,
    table: SourceTable,
    url: str,
    previous: Mapping[str, Any] | None,
    first_load: bool,
    log: Log,
) -> dict[str, Any]:
    """Reconcile the table if due (after its load) and return the materialization metadata that records it;
    `{}` for a table without `reconcile`. `previous` is the last materialization's metadata.

    A reconciliation that fails or is refused deletes nothing and does not fail the run (its load is kept): it
    logs why, records `derive/reconcile_error` and leaves the next run due. `url` carries secrets: only connected
    with, scrubbed from every message."""
    spec = table.reconcile
    if spec is None:
        return {}
    now = dt.datetime.now(dt.UTC)
    state = ReconcileState.from_metadata(previous or {})
    if first_load:  # the load read every row of the source: nothing can be stale
        return _state(now, 0)
    if not is_due(spec, state, now):
        return _state(state.reconciled_at, state.runs_since + 1)
    ref = request.target.ref
    what = f"source '{source.name}' table {table.name}"
    started = time.perf_counter()
    total = estimate_rows(url, source, table)  # None when the source cannot tell quickly

    def attempt() -> WriteResult:
        """One key read and delete (a retry reads every key again), with its own progress lines."""
        progress = Progress(log.info, f"{ref}: reconciling keys", total=total)
        try:
            keys = progress.batches(read_keys(url, source, table))
            return warehouse.reconcile(request, keys, spec.max_delete_percent)
        finally:
            progress.done()

    try:
        result = load_with_retries(
            attempt,
            what=f"{what} (key reconciliation)",
            log=log,
            secrets=(url,),
        )
    except ReconcileRefused as exc:
        log.error(f"{exc} The run's load was kept; the next run reconciles again.")
        return {**_state(state.reconciled_at, state.runs_since + 1), K.RECONCILE_ERROR: str(exc)}
    # The extraction's own errors (connection lost on every attempt, a query or value the driver cannot read),
    # and the warehouse's: each message is already scrubbed of the URL's secrets.
    except (SourceConnectionError, SourceReadError, mongo.CoercionError, WarehouseError) as exc:
        message = (
            f"{what}: the key reconciliation deleted nothing: reading the source's keys failed "
            f"({shown(exc, (url,))}). The run's load was kept; the next run reconciles again. Check that the "
            "source answers a full scan of the table's primary key within its timeouts."
        )
        log.warning(message)
        return {**_state(state.reconciled_at, state.runs_since + 1), K.RECONCILE_ERROR: message}
    log.info(
        f"{ref}: key reconciliation read {result.rows_read:,} keys and deleted {result.rows_deleted:,} rows whose "
        "key the source no longer has"
    )
    return {
        **_state(now, 0),
        K.RECONCILE_KEYS_READ: result.rows_read,
        K.RECONCILE_ROWS_DELETED: result.rows_deleted,
        K.RECONCILE_SECONDS: round(time.perf_counter() - started, 3),
    }


def _state(reconciled_at: dt.datetime | None, runs_since: int) -> dict[str, Any]:
    at = {K.RECONCILED_AT: reconciled_at.isoformat()} if reconciled_at is not None else {}
    return {**at, K.RUNS_SINCE_RECONCILE: runs_since}


def merge_counts(metadata: dict[str, Any], reconciled: Mapping[str, Any]) -> dict[str, Any]:
    """The run's metadata with the reconciliation's: its deletes added to `derive/rows_deleted` and taken off
    `dagster/row_count` (counted after the load)."""
    deleted = int(reconciled.get(K.RECONCILE_ROWS_DELETED) or 0)
    merged = {**metadata, **reconciled}
    if deleted:
        merged[K.ROWS_DELETED] = int(metadata.get(K.ROWS_DELETED) or 0) + deleted
        if isinstance(metadata.get(K.ROW_COUNT), int):
            merged[K.ROW_COUNT] = metadata[K.ROW_COUNT] - deleted
    return merged
