"""The IO manager: where rows really pass through Python.

Two paths only. Going in, a replication asset returns an `Extraction` (a plan to stream a source table's changed
rows); `handle_output` streams those Arrow batches into the warehouse, merges them by primary key in one
transaction, and records the new watermark. Going out, a Python asset downstream of a warehouse table (an ML
feature job, say) receives that table - or, when partitioned, just its window - as a pandas DataFrame or an Arrow
table. Core/derived tables are built by SQL inside the warehouse and never come through here.
"""

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext, ResourceDependency

from derive_assets.replication import fence, watermark
from derive_assets.replication.extract import ExtractPlan, prepare, read_batches
from derive_assets.replication.mongo import ExtractStats
from derive_assets.replication.retry import load_with_retries, restarted
from derive_assets.replication.row_guard import RowGuard
from resources.schema import ColumnDef
from resources.sql_text import window_filter
from resources.warehouse import LoadRequest, TargetTable, TimeWindow, Warehouse

PARTITION_KEY_METADATA = "derive/partition_key"
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
PARTITION_KEY_TYPE_METADATA = "derive/partition_key_type"


@dataclass(frozen=True)
class Extraction:
    """What a replication asset hands to the IO manager: which rows to read, from where, into which table."""

    plan: ExtractPlan
    request: LoadRequest
    url: str = field(repr=False)
    """Connection URL with its secrets; never logged, never put in metadata."""


class WarehouseIOManager(ConfigurableIOManager):
    """Streams replication batches into the warehouse and loads warehouse tables for Python assets.

    Example:
        ```python
        resources = {"warehouse": wh, "warehouse_io_manager": WarehouseIOManager(warehouse=wh)}
        ```
    """

    warehouse: ResourceDependency[Warehouse]

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is None:
            return  # a SQL-built table: already written inside the warehouse
        if not isinstance(obj, Extraction):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: the warehouse IO manager stores replication extractions "
                f"only, got {type(obj).__name__}; build tables with SQL specs instead"
            )
        started = time.perf_counter()
        plan, stats = obj.plan, ExtractStats()
        guard, query = RowGuard(plan.source, plan.table), prepare(obj.url, plan)
        # One transaction per attempt: a retry after a dropped source connection reads every batch again.
        result = load_with_retries(
            lambda: self.warehouse.load(
                obj.request,
                read_batches(obj.url, plan, stats=restarted(stats), guard=restarted(guard), query=query),
            ),
            what=f"source '{plan.source.name}' table {plan.table.name}",
            log=context.log,
            secrets=(obj.url,),
        )
        # Taken after the read: the transactions still open then may commit rows behind this run's watermark.
        token = fence.take(obj.url, plan.source, plan.table)
        fenced = fence.applies(plan.source, plan.table)
        state = plan.state.after_run(result.max_cursor, token, fenced, plan.fence_cleared)
        quarantine = self._quarantine(obj, [*stats.quarantined, *guard.quarantined])
        context.add_output_metadata(
            {
                **state.as_metadata(),
                "derive/watermark_before": watermark.to_text(plan.state.watermark),
                "derive/rows_read": result.rows_read,
                "derive/rows_inserted": result.rows_inserted,
                "derive/rows_updated": result.rows_updated,
                "derive/rows_deleted": result.rows_deleted,
                "derive/rows_invalid": sum(guard.counts.values()),
                **({"derive/invalid_rows": dict(guard.counts)} if guard.counts else {}),
                "derive/duration_seconds": round(time.perf_counter() - started, 3),
                "derive/source_query": MetadataValue.md(f"```sql\n{query.text}\n```"),
                "derive/source": f"{plan.source.name} ({plan.source.type}) table {plan.table.name}",
                "dagster/row_count": self.warehouse.row_count(obj.request.target.ref),
                **{f"derive/{k}": v for k, v in result.extra.items()},
                **self._document_metadata(obj, stats, quarantine),
                **({"derive/quarantine_table": quarantine} if quarantine else {}),
            }
        )

    def _quarantine(self, obj: Extraction, rows: list[dict[str, Any]]) -> str | None:
        """Rows set aside (invalid rows, documents that failed coercion) go to `<dataset>.<table>__quarantine`,
        merged by `_id` (the row's key, or a hash of a row without one)."""
        if not rows:
            return None
        unique = list({row["_id"]: row for row in rows}.values())
        target = obj.request.target
        table = TargetTable(target.dataset, f"{target.name}__quarantine", QUARANTINE_COLUMNS, ("_id",))
        request = LoadRequest(table, ("_id",), "quarantined_at")
        self.warehouse.load(request, [pa.RecordBatch.from_pylist(unique, schema=QUARANTINE_SCHEMA)])
        return table.ref

    @staticmethod
    def _document_metadata(obj: Extraction, stats: ExtractStats, quarantine: str | None) -> dict[str, Any]:
        if obj.plan.source.type != "mongodb":
            return {}
        return {
            "derive/documents_read": stats.documents_read,
            "derive/undeclared_fields": dict(stats.undeclared.most_common(50)),
            "derive/undeclared_field_count": len(stats.undeclared),
            "derive/quarantined_documents": len(stats.quarantined),
            **({"derive/quarantine_table": quarantine} if quarantine else {}),
        }

    def load_input(self, context: InputContext) -> pd.DataFrame | pa.Table:
        key = context.asset_key.path
        ref = f"{key[-2]}.{key[-1]}"
        where, params = None, {}
        upstream_meta = context.upstream_output.definition_metadata if context.upstream_output else {}
        partition_key = upstream_meta.get(PARTITION_KEY_METADATA) if upstream_meta else None
        key_type = upstream_meta.get(PARTITION_KEY_TYPE_METADATA) if upstream_meta else None
        if partition_key and key_type and context.has_asset_partitions:
            window = context.asset_partitions_time_window
            wh = self.warehouse
            where = window_filter(str(partition_key), str(key_type), wh.types, wh.dialect)
            params = TimeWindow(window.start, window.end).as_params()
        table = self.warehouse.read_arrow(ref, where, params)
        if context.dagster_type.typing_type is pa.Table:
            return table
        return table.to_pandas()
