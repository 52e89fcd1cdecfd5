"""One replication run of a source table: stream its changed rows into the warehouse and say what happened.

The replication asset calls `replicate` from its body (the IO manager takes no part): the load is one warehouse
transaction per attempt (`Warehouse.load`), retried from scratch when the source connection drops; rows the guard
or the MongoDB coercion set aside go to a quarantine table; the fence token is taken after the read. What it
returns is the materialization's metadata, whose cursor keys are the next run's watermark (see `watermark.py`).

Example:
    ```python
    metadata = replicate(warehouse, ExtractPlan(source, table, since, state, cleared), request, url, context.log)
    return MaterializeResult(metadata=metadata)
    ```
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
from dagster import MetadataValue

from derive_assets import metadata_keys as K
from derive_assets.progress import Progress
from derive_assets.replication import fence, watermark
from derive_assets.replication.estimate import estimate_rows
from derive_assets.replication.event_time import EventTimes
from derive_assets.replication.extract import ExtractPlan, prepare, read_batches
from derive_assets.replication.mongo import ExtractStats
from derive_assets.replication.retry import Log, load_with_retries, restarted
from derive_assets.replication.row_guard import RowGuard
from resources.schema import ColumnDef
from resources.warehouse import LoadRequest, TargetTable, Warehouse, WriteResult

QUARANTINE_COLUMNS = (
    ColumnDef("_id", "STRING", not_null=True),
    ColumnDef("error", "STRING"),
    ColumnDef("document", "STRING"),
    ColumnDef("quarantined_at", "TIMESTAMP"),
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("_id", pa.string()),
        ("error", pa.string()),
        ("document", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)


def replicate(
    warehouse: Warehouse,
    plan: ExtractPlan,
    request: LoadRequest,
    url: str,
    log: Log,
    quarantine_target: TargetTable | None = None,
) -> dict[str, Any]:
    """Load `plan`'s rows into `request.target` (retrying dropped source connections); the run's metadata.

    `url` carries the source's secrets: it is only connected with, and redacted from every retry message.
    `quarantine_target`: the table whose `__quarantine` takes the rows set aside (default `request.target`; a
    rebuild loads into a staging table but quarantines under the table's own name)."""
    started = time.perf_counter()
    stats = ExtractStats()
    guard, query = RowGuard(plan.source, plan.table), prepare(url, plan)
    times = EventTimes.of(plan.table, plan.source.name)
    # A full read's progress shows a total (the source's estimate); the rows changed since a watermark have none.
    total = estimate_rows(url, plan.source, plan.table) if plan.since is None else None

    def attempt():  # one progress bar per attempt: a retry reads every row again
        progress = Progress(log.info, request.target.ref, total)
        batches = read_batches(url, plan, stats=restarted(stats), guard=restarted(guard), query=query)
        loaded = warehouse.load(request, progress.batches(restarted(times).observed(batches)))
        progress.done()
        return loaded

    # One transaction per attempt: a retry after a dropped source connection reads every batch again (and counts
    # the event times of that attempt's rows only).
    result = load_with_retries(
        attempt,
        what=f"source '{plan.source.name}' table {plan.table.name}",
        log=log,
        secrets=(url,),
    )
    # Taken after the read: the transactions still open then may commit rows behind this run's watermark.
    token = fence.take(url, plan.source, plan.table, log.warning)
    fenced = fence.applies(plan.source, plan.table)
    state = plan.state.after_run(result.max_cursor, token, fenced, plan.fence_cleared)
    quarantined = [*stats.quarantined, *guard.quarantined]
    quarantine = _quarantine(warehouse, quarantine_target or request.target, quarantined)
    return {
        **state.as_metadata(),
        K.WATERMARK_BEFORE: watermark.to_text(plan.state.watermark),
        **K.row_counts(result),
        K.ROWS_INVALID: sum(guard.counts.values()),
        **({K.INVALID_ROWS: dict(guard.counts)} if guard.counts else {}),
        K.DURATION_SECONDS: round(time.perf_counter() - started, 3),
        K.SOURCE_QUERY: MetadataValue.md(f"```sql\n{query.text}\n```"),
        K.SOURCE: f"{plan.source.name} ({plan.source.type}) table {plan.table.name}",
        K.ROW_COUNT: _row_count(warehouse, request.target.ref, result),
        **{K.extra(k): v for k, v in result.extra.items()},
        **_document_metadata(plan, stats, quarantine),
        **times.as_metadata(),
        **({K.QUARANTINE_TABLE: quarantine} if quarantine else {}),
    }


def _row_count(warehouse: Warehouse, ref: str, result: WriteResult) -> int:
    """The table's rows after the load: counted by the load itself (no second connection), else asked."""
    return result.row_count if result.row_count is not None else warehouse.row_count(ref)


def _quarantine(warehouse: Warehouse, target: TargetTable, rows: list[dict[str, Any]]) -> str | None:
    """Rows set aside (invalid rows, documents that failed coercion) go to `<dataset>.<table>__quarantine`,
    merged by `_id` (the row's key, or a hash of a row without one)."""
    if not rows:
        return None
    unique = list({row["_id"]: row for row in rows}.values())
    table = TargetTable(target.dataset, f"{target.name}__quarantine", QUARANTINE_COLUMNS, ("_id",))
    request = LoadRequest(table, ("_id",), "quarantined_at")
    warehouse.load(request, [pa.RecordBatch.from_pylist(unique, schema=QUARANTINE_SCHEMA)])
    return table.ref


quarantine_rows = _quarantine
"""`_quarantine` for a chunked first load (`replication/snapshot.py`), which quarantines each chunk's rows."""


def _document_metadata(plan: ExtractPlan, stats: ExtractStats, quarantine: str | None) -> dict[str, Any]:
    if plan.source.type != "mongodb":
        return {}
    return {
        K.DOCUMENTS_READ: stats.documents_read,
        K.UNDECLARED_FIELDS: dict(stats.undeclared.most_common(50)),
        K.UNDECLARED_FIELD_COUNT: len(stats.undeclared),
        K.QUARANTINED_DOCUMENTS: len(stats.quarantined),
        **({K.QUARANTINE_TABLE: quarantine} if quarantine else {}),
    }
