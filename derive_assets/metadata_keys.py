"""Every `derive/...` metadata and tag key the factory, replication and export write, in one place.

The strings are an interface: the event log keeps them (watermarks are read back from old materializations), the
UI shows them, and the IO manager reads a table's layout from its definition metadata. Never rename one.

Plain constants (Dagster's `NamespacedMetadataSet` is not public API in dagster 1.13, and it drops keys whose value
is None, which the window keys of an unpartitioned run are); `row_counts` gives the four counts every write reports.
The keys the IO manager reads from an asset's definition are defined beside it (`resources.io_manager`, which may
not import this package) and re-exported here.

Example:
    ```python
    from derive_assets import metadata_keys as K

    MaterializeResult(metadata={K.WINDOW_START: "2024-03-01T00:00:00+00:00", **K.row_counts(result)})
    ```
"""

from __future__ import annotations

from resources import io_manager
from resources.warehouse import WriteResult

NAMESPACE = "derive"

# --- definition metadata the IO manager reads (defined in resources.io_manager)
PARTITION_KEY: str = io_manager.PARTITION_KEY_METADATA
PARTITION_KEY_TYPE: str = io_manager.PARTITION_KEY_TYPE_METADATA
STRATEGY: str = io_manager.STRATEGY_METADATA
UNIQUE_KEY: str = io_manager.UNIQUE_KEY_METADATA
CLUSTER: str = io_manager.CLUSTER_METADATA
PARTITION_GRANULARITY: str = io_manager.PARTITION_GRANULARITY_METADATA
PARTITION_EXPIRATION_DAYS: str = io_manager.PARTITION_EXPIRATION_METADATA
REQUIRE_PARTITION_FILTER: str = io_manager.REQUIRE_PARTITION_FILTER_METADATA

# --- tags
LAYER = "derive/layer"
"""Tag: the asset's layer (`source`, `core`, `derived`, `online`)."""
FULL_REFRESH_TAG = "derive/full_refresh"
"""Run tag: `true` on a run of a table asset rebuilds the table from scratch over the run's whole window (a new
table swapped in atomically; `derive rebuild` sets it)."""

# --- definition metadata
SPEC_FILE = "derive/spec_file"
SQL = "derive/sql"
READS = "derive/reads"
PRIMARY_KEY = "derive/primary_key"
CURSOR = "derive/cursor"
ONLINE_TABLE = "derive/online_table"
"""Definition: `keyspace.table`; materialization: `<store kind>: keyspace.table`."""

# --- failure metadata
ERROR = "derive/error"
"""On a failed run: the class of the error (`DuplicateKeys`, `BreakingSchemaChange`, ...)."""

# --- materialization metadata: every write
WINDOW_START = "derive/window_start"
WINDOW_END = "derive/window_end"
ROWS_READ = "derive/rows_read"
ROWS_INSERTED = "derive/rows_inserted"
ROWS_UPDATED = "derive/rows_updated"
ROWS_DELETED = "derive/rows_deleted"
DURATION_SECONDS = "derive/duration_seconds"

# --- materialization metadata: core/derived tables
RENDERED_SQL = "derive/rendered_sql"
UPSTREAM_TABLES = "derive/upstream_tables"
ESTIMATED_BYTES = "derive/estimated_bytes"
REBUILT = "derive/rebuilt"
"""True when the run rebuilt the table from scratch (run tag `derive/full_refresh=true`)."""
SCHEMA_CHANGES = "derive/schema_changes"
"""The additive schema changes the run applied to the existing table, one line each."""
PARTITION_ROW_COUNT = "dagster/partition_row_count"
"""Rows of the table in this event's partition after the run (Dagster's own key)."""

# --- materialization metadata: a run over several partitions (a single-run backfill). Each partition's event
# carries its own WINDOW_START, WINDOW_END, ROWS_READ and PARTITION_ROW_COUNT; the run's totals, SQL and lineage
# are recorded once, on the latest partition's event, under these keys and the ones above.
RUN_PARTITIONS = "derive/run_partitions"
RUN_WINDOW_START = "derive/run_window_start"
RUN_WINDOW_END = "derive/run_window_end"
RUN_ROWS_READ = "derive/run_rows_read"
RUN_ROWS_INSERTED = "derive/run_rows_inserted"
RUN_ROWS_UPDATED = "derive/run_rows_updated"
RUN_ROWS_DELETED = "derive/run_rows_deleted"

# --- materialization metadata: replication
WATERMARK = "derive/watermark"
"""The largest cursor value replicated (or exported) so far; read back by the next run."""
READ_FLOOR = "derive/read_floor"
PENDING_FLOOR = "derive/pending_floor"
FENCE = "derive/fence"
WATERMARK_BEFORE = "derive/watermark_before"
ROWS_INVALID = "derive/rows_invalid"
INVALID_ROWS = "derive/invalid_rows"
SOURCE = "derive/source"
SOURCE_QUERY = "derive/source_query"
QUARANTINE_TABLE = "derive/quarantine_table"
DOCUMENTS_READ = "derive/documents_read"
QUARANTINED_DOCUMENTS = "derive/quarantined_documents"
UNDECLARED_FIELDS = "derive/undeclared_fields"
UNDECLARED_FIELD_COUNT = "derive/undeclared_field_count"

# --- materialization metadata: exports
ROWS_WRITTEN = "derive/rows_written"
ROWS_IN_SLICE = "derive/rows_in_slice"
BATCHES = "derive/batches"
WRITE_RETRIES = "derive/write_retries"
ROWS_PER_SECOND = "derive/rows_per_second"
WATERMARK_HELD = "derive/watermark_held"
"""True when the export's verification failed and the old watermark was kept."""


def extra(name: str) -> str:
    """The key of an engine's extra result value (`WriteResult.extra`), e.g. `derive/soft_deleted_rows_read`."""
    return f"{NAMESPACE}/{name}"


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
