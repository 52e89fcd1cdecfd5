"""Every metadata and tag key the factory, replication and export write, declared once, in Dagster's metadata sets.

The strings are an interface: the event log keeps them (watermarks are read back from old materializations), the
UI shows them, and the IO manager reads a table's layout from its definition metadata. Never rename one.

Each `derive/...` key is one field of a `NamespacedMetadataSet` (namespace `derive`) below, or of a set in
`resources.metadata_sets` (the IO manager's, which may not import this package); a set used in several places
inherits the fields it shares (`ReplicationRunMetadata` is a `WriteMetadata` and a `WatermarkMetadata`). Where
Dagster has a standard key (`dagster/row_count`, `dagster/column_schema`, ...) it comes from Dagster's
`TableMetadataSet`. The module-level constants (`WATERMARK`, `ROWS_READ`, ...) are derived from those fields, so
code can keep writing `{K.WATERMARK: ...}`; a set reads its fields back, typed:
`ReplicationRunMetadata.extract(event.metadata).watermark`.

Splatting a set (`{**WriteMetadata(...)}`) drops every field whose value is None, which the window keys of an
unpartitioned run are: build dicts with the constants, or use `DeriveMetadataSet.entries()`, which keeps a field
that was set explicitly.

Example:
    ```python
    from derive_assets import metadata_keys as K

    MaterializeResult(metadata={K.WINDOW_START: "2024-03-01T00:00:00+00:00", **K.row_counts(result)})
    ```
"""

from __future__ import annotations

from dagster._core.definitions.metadata import TableMetadataSet
from dagster._core.definitions.metadata.metadata_value import MarkdownMetadataValue
from dagster._core.definitions.tags import NamespacedTagSet
from dagster._core.storage import tags as dagster_tags

from resources.metadata_sets import (
    NAMESPACE,
    DeriveMetadataSet,
    Json,
    TableLayoutMetadata,
    WriteMetadata,
    key_of,
)
from resources.warehouse import WriteResult

__all__ = [
    "NAMESPACE",
    "DeriveMetadataSet",
    "TableLayoutMetadata",
    "TableMetadataSet",
    "WriteMetadata",
    "key_of",
]

Markdown = MarkdownMetadataValue | None
"""The field type of SQL shown in the UI (`MetadataValue.md`)."""


# ------------------------------------------------------------------------------------------------- tag sets


class DeriveTagSet(NamespacedTagSet):
    @classmethod
    def namespace(cls) -> str:
        return NAMESPACE


class AssetTags(DeriveTagSet):
    """Asset tags."""

    layer: str | None = None
    """The asset's layer (`source`, `core`, `derived`, `online`)."""


class RunTags(DeriveTagSet):
    """Run tags Derive reads."""

    full_refresh: str | None = None
    """`true` on a run of a table asset rebuilds the table from scratch over the run's whole window (a new table
    swapped in atomically; `derive rebuild` sets it)."""
    late_data: str | None = None
    """On a backfill the `derive_late_data` sensor requested: the replication materialization(s) whose late rows
    it re-runs, as `<asset key>#<storage id>`, comma-separated (see `derive_assets/factory/late_data.py`)."""
    env: str | None = None
    """On a run that builds into an environment (`derive build --env`, `DERIVE_ENV`): the environment's name. Its
    tables are written to `<env>__<dataset>` under asset keys `<env>__<dataset>/<name>` (derive_assets/environments.py)."""
    source_database: str | None = None
    """On a run a source's sensor requested: the source's name. The production instance limits how many runs of
    one source database are in flight at once by this tag (`tag_concurrency_limits` in deployments/k8s/dagster.yaml)."""


# ------------------------------------------------------------------------------------------ metadata sets


class SpecFileMetadata(DeriveMetadataSet):
    spec_file: str | None = None
    """The spec file an asset comes from (definitions, and the failure of a run)."""


class OnlineTableMetadata(DeriveMetadataSet):
    online_table: str | None = None
    """Definition: `keyspace.table`; materialization: `<store kind>: keyspace.table`."""


class DefinitionMetadata(TableLayoutMetadata, SpecFileMetadata, OnlineTableMetadata):
    """Definition metadata of Derive's assets (beside Dagster's `dagster/column_schema`)."""

    sql: Markdown = None
    reads: Json = None
    """The `dataset.table` refs a table's SQL reads."""
    primary_key: Json = None
    cursor: str | None = None


class FailureMetadata(SpecFileMetadata):
    """Metadata of a failed run."""

    error: str | None = None
    """The class of the error (`DuplicateKeys`, `BreakingSchemaChange`, ...)."""


class TableRunMetadata(WriteMetadata):
    """Materialization metadata of a core/derived table's run (with Dagster's `dagster/row_count`,
    `dagster/column_lineage` and, per partition, `dagster/partition_row_count`)."""

    rendered_sql: Markdown = None
    upstream_tables: Json = None
    estimated_bytes: int | None = None
    rebuilt: bool | None = None
    """True when the run rebuilt the table from scratch (run tag `derive/full_refresh=true`)."""
    schema_changes: Json = None
    """The additive schema changes the run applied to the existing table, one line each."""


class MultiPartitionRunMetadata(DeriveMetadataSet):
    """A run over several partitions (a single-run backfill). Each partition's event carries its own window,
    `rows_read` and `dagster/partition_row_count`; the run's totals, SQL and lineage are recorded once, on the
    latest partition's event, under these keys and `TableRunMetadata`'s."""

    run_partitions: int | None = None
    run_window_start: str | None = None
    run_window_end: str | None = None
    run_rows_read: int | None = None
    run_rows_inserted: int | None = None
    run_rows_updated: int | None = None
    run_rows_deleted: int | None = None


class WatermarkMetadata(DeriveMetadataSet):
    watermark: str | None = None
    """The largest cursor value replicated (or exported) so far; read back by the next run."""
    watermark_before: str | None = None


class ReplicationRunMetadata(WriteMetadata, WatermarkMetadata):
    """Materialization metadata of a source table's replication run (with Dagster's `dagster/row_count`)."""

    read_floor: str | None = None
    pending_floor: str | None = None
    fence: str | None = None
    rows_invalid: int | None = None
    invalid_rows: Json = None
    source: str | None = None
    source_query: Markdown = None
    quarantine_table: str | None = None
    documents_read: int | None = None
    quarantined_documents: int | None = None
    undeclared_fields: Json = None
    undeclared_field_count: int | None = None


class ReconcileMetadata(DeriveMetadataSet):
    """A replicated table's key reconciliation (`reconcile:` in its spec, `derive_assets/replication/reconcile.py`),
    on its replication materialization; the next run reads `reconciled_at` and `runs_since_reconcile` back to
    know when the next one is due."""

    reconciled_at: str | None = None
    """When the last completed reconciliation (or the first load, which reads every key) began, ISO 8601 UTC;
    carried over by the runs in between."""
    runs_since_reconcile: int | None = None
    """Replication runs since the last completed reconciliation (0: this run reconciled)."""
    reconcile_keys_read: int | None = None
    """Primary keys the source sent to this run's reconciliation."""
    reconcile_rows_deleted: int | None = None
    """Warehouse rows this run's reconciliation deleted (also counted in `rows_deleted`)."""
    reconcile_seconds: float | None = None
    """How long this run's reconciliation took (key read, staging, delete)."""
    reconcile_error: str | None = None
    """Why this run's reconciliation deleted nothing (the key read failed, or the delete guard refused); the
    load itself was kept, and the next run reconciles again."""


class SnapshotMetadata(DeriveMetadataSet):
    """A chunked first load of a replicated table (`derive_assets/replication/snapshot.py`): on the table's
    `AssetObservation` after each committed chunk (the checkpoint the next run resumes from), and the chunk counts
    on the final materialization."""

    snapshot_id: str | None = None
    """Names one snapshot (a uuid): the checkpoints of one chunked load share it."""
    snapshot_chunks: int | None = None
    """Chunks committed to `<dataset>.<table>__snapshot` so far (on the materialization: in all)."""
    snapshot_rows: int | None = None
    """Source rows committed to the staging table so far."""
    snapshot_last_key: str | None = None
    """JSON list of the primary-key values (as text) the last committed chunk ended at; the next chunk starts
    there."""
    snapshot_watermark: str | None = None
    """The cursor's largest source value taken before the snapshot's first chunk: the watermark the final
    materialization records."""
    snapshot_fence: str | None = None
    """The open-transaction fence token taken with `snapshot_watermark` (PostgreSQL, MySQL)."""
    snapshot_floor_safe: bool | None = None
    """True when every transaction open at `snapshot_fence` had ended before the first chunk was read: the next
    run may then read from `snapshot_watermark`; False: it reads every row once more."""
    snapshot_code_version: str | None = None
    """The table's code version when the snapshot began; a different one starts the snapshot over."""
    snapshot_chunk_rows: int | None = None
    """`snapshot.chunk_rows` when the snapshot began; a different one starts the snapshot over."""
    snapshot_resumed_chunks: int | None = None
    """On the materialization: chunks an earlier run had committed, which this run resumed after."""


class ExportRunMetadata(WriteMetadata, WatermarkMetadata, OnlineTableMetadata):
    """Materialization metadata of an export to the online store."""

    rows_written: int | None = None
    rows_in_slice: int | None = None
    batches: int | None = None
    write_retries: int | None = None
    rows_per_second: int | None = None
    watermark_held: bool | None = None
    """True when the export's verification failed and the old watermark was kept."""
    writers: int | None = None
    """Writer processes the online store used (1: the export's own process)."""


METADATA_SETS: tuple[type[DeriveMetadataSet], ...] = (
    TableLayoutMetadata,
    WriteMetadata,
    SpecFileMetadata,
    OnlineTableMetadata,
    DefinitionMetadata,
    FailureMetadata,
    TableRunMetadata,
    MultiPartitionRunMetadata,
    WatermarkMetadata,
    ReplicationRunMetadata,
    ReconcileMetadata,
    SnapshotMetadata,
    ExportRunMetadata,
)
"""Every `derive` metadata set (tests check that each key is declared once and the constants match)."""

# ------------------------------------------------------------------------------------- the keys, by name

# --- Dagster's standard keys (`TableMetadataSet`)
COLUMN_SCHEMA = key_of(TableMetadataSet, "column_schema")
COLUMN_LINEAGE = key_of(TableMetadataSet, "column_lineage")
ROW_COUNT = key_of(TableMetadataSet, "row_count")
PARTITION_ROW_COUNT = key_of(TableMetadataSet, "partition_row_count")
"""Rows of the table in this event's partition after the run."""
TABLE_NAME = key_of(TableMetadataSet, "table_name")
"""`dagster/table_name`: the table's real name in the warehouse (`Warehouse.relation_identifier`). Dagster called
it `dagster/relation_identifier` until 2024 (dagster-io/dagster#25400) and still reads that key as its legacy alias."""

# --- tags
LAYER = key_of(AssetTags, "layer")
FULL_REFRESH_TAG = key_of(RunTags, "full_refresh")
LATE_DATA_TAG = key_of(RunTags, "late_data")
SOURCE_TAG = key_of(RunTags, "source_database")
ENV_TAG = key_of(RunTags, "env")
STEP_OP_LABEL = "dagster/op"
"""The label dagster-k8s puts on a step's Job and pod: the op (step) it runs (`derive pod` prints it)."""
RANGE_START_TAG: str = dagster_tags.ASSET_PARTITION_RANGE_START_TAG
"""Dagster's run tag `dagster/asset_partition_range_start`: the first partition of a run over several."""
RANGE_END_TAG: str = dagster_tags.ASSET_PARTITION_RANGE_END_TAG

# --- definition metadata the IO manager reads (`TableLayoutMetadata`)
PARTITION_KEY = TableLayoutMetadata.key("partition_key")
PARTITION_KEY_TYPE = TableLayoutMetadata.key("partition_key_type")
STRATEGY = TableLayoutMetadata.key("strategy")
UNIQUE_KEY = TableLayoutMetadata.key("unique_key")
CLUSTER = TableLayoutMetadata.key("cluster")
PARTITION_GRANULARITY = TableLayoutMetadata.key("partition_granularity")
PARTITION_EXPIRATION_DAYS = TableLayoutMetadata.key("partition_expiration_days")
REQUIRE_PARTITION_FILTER = TableLayoutMetadata.key("require_partition_filter")

# --- definition metadata
SPEC_FILE = DefinitionMetadata.key("spec_file")
SQL = DefinitionMetadata.key("sql")
READS = DefinitionMetadata.key("reads")
PRIMARY_KEY = DefinitionMetadata.key("primary_key")
CURSOR = DefinitionMetadata.key("cursor")
ONLINE_TABLE = DefinitionMetadata.key("online_table")

# --- failure metadata
ERROR = FailureMetadata.key("error")

# --- materialization metadata: every write
WINDOW_START = WriteMetadata.key("window_start")
WINDOW_END = WriteMetadata.key("window_end")
ROWS_READ = WriteMetadata.key("rows_read")
ROWS_INSERTED = WriteMetadata.key("rows_inserted")
ROWS_UPDATED = WriteMetadata.key("rows_updated")
ROWS_DELETED = WriteMetadata.key("rows_deleted")
DURATION_SECONDS = WriteMetadata.key("duration_seconds")

# --- materialization metadata: core/derived tables
RENDERED_SQL = TableRunMetadata.key("rendered_sql")
UPSTREAM_TABLES = TableRunMetadata.key("upstream_tables")
ESTIMATED_BYTES = TableRunMetadata.key("estimated_bytes")
REBUILT = TableRunMetadata.key("rebuilt")
SCHEMA_CHANGES = TableRunMetadata.key("schema_changes")

# --- materialization metadata: a run over several partitions
RUN_PARTITIONS = MultiPartitionRunMetadata.key("run_partitions")
RUN_WINDOW_START = MultiPartitionRunMetadata.key("run_window_start")
RUN_WINDOW_END = MultiPartitionRunMetadata.key("run_window_end")
RUN_ROWS_READ = MultiPartitionRunMetadata.key("run_rows_read")
RUN_ROWS_INSERTED = MultiPartitionRunMetadata.key("run_rows_inserted")
RUN_ROWS_UPDATED = MultiPartitionRunMetadata.key("run_rows_updated")
RUN_ROWS_DELETED = MultiPartitionRunMetadata.key("run_rows_deleted")

# --- materialization metadata: replication
WATERMARK = ReplicationRunMetadata.key("watermark")
READ_FLOOR = ReplicationRunMetadata.key("read_floor")
PENDING_FLOOR = ReplicationRunMetadata.key("pending_floor")
FENCE = ReplicationRunMetadata.key("fence")
WATERMARK_BEFORE = ReplicationRunMetadata.key("watermark_before")
ROWS_INVALID = ReplicationRunMetadata.key("rows_invalid")
INVALID_ROWS = ReplicationRunMetadata.key("invalid_rows")
SOURCE = ReplicationRunMetadata.key("source")
SOURCE_QUERY = ReplicationRunMetadata.key("source_query")
QUARANTINE_TABLE = ReplicationRunMetadata.key("quarantine_table")
DOCUMENTS_READ = ReplicationRunMetadata.key("documents_read")
QUARANTINED_DOCUMENTS = ReplicationRunMetadata.key("quarantined_documents")
UNDECLARED_FIELDS = ReplicationRunMetadata.key("undeclared_fields")
UNDECLARED_FIELD_COUNT = ReplicationRunMetadata.key("undeclared_field_count")

# --- materialization metadata: key reconciliation of a replicated table
RECONCILED_AT = ReconcileMetadata.key("reconciled_at")
RUNS_SINCE_RECONCILE = ReconcileMetadata.key("runs_since_reconcile")
RECONCILE_KEYS_READ = ReconcileMetadata.key("reconcile_keys_read")
RECONCILE_ROWS_DELETED = ReconcileMetadata.key("reconcile_rows_deleted")
RECONCILE_SECONDS = ReconcileMetadata.key("reconcile_seconds")
RECONCILE_ERROR = ReconcileMetadata.key("reconcile_error")

# --- observation (checkpoint) and materialization metadata: chunked first loads
SNAPSHOT_ID = SnapshotMetadata.key("snapshot_id")
SNAPSHOT_CHUNKS = SnapshotMetadata.key("snapshot_chunks")
SNAPSHOT_ROWS = SnapshotMetadata.key("snapshot_rows")
SNAPSHOT_LAST_KEY = SnapshotMetadata.key("snapshot_last_key")
SNAPSHOT_WATERMARK = SnapshotMetadata.key("snapshot_watermark")
SNAPSHOT_FENCE = SnapshotMetadata.key("snapshot_fence")
SNAPSHOT_FLOOR_SAFE = SnapshotMetadata.key("snapshot_floor_safe")
SNAPSHOT_CODE_VERSION = SnapshotMetadata.key("snapshot_code_version")
SNAPSHOT_CHUNK_ROWS = SnapshotMetadata.key("snapshot_chunk_rows")
SNAPSHOT_RESUMED_CHUNKS = SnapshotMetadata.key("snapshot_resumed_chunks")

# --- materialization metadata: exports
ROWS_WRITTEN = ExportRunMetadata.key("rows_written")
ROWS_IN_SLICE = ExportRunMetadata.key("rows_in_slice")
BATCHES = ExportRunMetadata.key("batches")
WRITE_RETRIES = ExportRunMetadata.key("write_retries")
ROWS_PER_SECOND = ExportRunMetadata.key("rows_per_second")
WATERMARK_HELD = ExportRunMetadata.key("watermark_held")
WRITERS = ExportRunMetadata.key("writers")


def extra(name: str) -> str:
    """The key of an engine's extra result value (`WriteResult.extra`), e.g. `derive/soft_deleted_rows_read`.
    Engines name these freely, so they are the one kind of `derive/` key no set declares."""
    return f"{NAMESPACE}/{name}"


def event_time(column: str) -> str:
    """`derive/event_time/<column>`: on a replication materialization, what the rows it read carried in the
    declared event-time column `column` (`SourceTable.event_time`), as JSON:
    `{"rows": n, "min": iso, "max": iso, "granularity": "hour", "hours": [[start_iso, end_iso], ...]}`, the
    half-open UTC ranges the non-null values fall in, merged, widened to days or months past 1,000 ranges
    (`derive_assets/replication/event_time.py`). One key per column, so no set declares them."""
    return f"{NAMESPACE}/event_time/{column}"


# The two below build plain dicts from the constants (the keys still come from the sets): building a metadata set
# validates every field, ~130 us a call against ~1 us for the dict (measured December 2026), in every write.


def row_counts(result: WriteResult) -> dict[str, int]:
    """The four row counts every write reports, under their keys."""
    return {
        ROWS_READ: result.rows_read,
        ROWS_INSERTED: result.rows_inserted,
        ROWS_UPDATED: result.rows_updated,
        ROWS_DELETED: result.rows_deleted,
    }


def run_row_counts(result: WriteResult) -> dict[str, int]:
    """The four counts of a run over several partitions, under the `derive/run_...` keys."""
    return {
        RUN_ROWS_READ: result.rows_read,
        RUN_ROWS_INSERTED: result.rows_inserted,
        RUN_ROWS_UPDATED: result.rows_updated,
        RUN_ROWS_DELETED: result.rows_deleted,
    }
