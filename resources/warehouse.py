"""The warehouse interface the asset factory talks to; DuckDB and BigQuery implement it.

The factory never writes SQL against a specific engine: it hands a warehouse a target table (from a spec), a query
in the warehouse's dialect with bound parameters, and a strategy. Each implementation makes the change in one
transaction, so a failed run leaves the target as it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from resources.schema import ColumnDef

if TYPE_CHECKING:  # resources.reads and resources.schema_diff import this module
    import pyarrow as pa

    from resources.reads import CheckQuery, SqlCheckQuery, TableSlice
    from resources.schema_diff import ExistingTable, SchemaDiff


class WarehouseError(RuntimeError):
    """A run's data broke a rule of its strategy, or a table's layout differs from its spec; nothing was written."""


class EstimateUnavailable(WarehouseError):
    """The warehouse could not estimate a query (e.g. a table it reads does not exist yet)."""


DEFAULT_MAX_DELETE_PERCENT = 50.0
"""A key reconciliation deletes at most this share of a table unless told otherwise (`ReconcileSpec`)."""


@dataclass(frozen=True)
class TargetTable:
    """What a warehouse needs to know about a table it writes: name, declared columns, layout."""

    dataset: str
    name: str
    columns: tuple[ColumnDef, ...]
    cluster: tuple[str, ...] = ()
    partition_key: str | None = None
    partition_granularity: str = "day"
    """hour | day | month | year: BigQuery's time-partitioning unit (DuckDB ignores it)."""
    partition_expiration_days: int | None = None
    require_partition_filter: bool = False
    unique_key: tuple[str, ...] = ()
    """The merge key (a replicated table's primary key); recorded in Derive's marker on the table, so a later
    run can tell a changed key (`resources.schema_diff`). Empty: no key, or the caller did not say."""
    code_version: str | None = None
    """The spec version writing the table (Dagster's asset `code_version`); recorded in the marker on each
    successful write."""
    max_bytes_billed: int | None = None
    """The most bytes one query of a write may process (the spec's `max_bytes_billed`): BigQuery refuses a write
    whose dry-run estimate exceeds it (`BytesBilledLimitExceeded`) and gives each query job that runs the spec's SQL
    this `maximum_bytes_billed`; DuckDB ignores it. Never part of the code version."""

    @property
    def ref(self) -> str:
        return f"{self.dataset}.{self.name}"

    def column(self, name: str) -> ColumnDef:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class TimeWindow:
    start: dt.datetime
    end: dt.datetime

    def as_params(self) -> dict[str, dt.datetime]:
        return {"window_start": self.start, "window_end": self.end}


@dataclass(frozen=True)
class WriteRequest:
    """One run of a core/derived table over one window: its query (already in the warehouse's dialect), or, with
    `sql=None`, the rows a Python asset returned, handed to `Warehouse.write` as Arrow batches."""

    target: TargetTable
    sql: str | None
    params: Mapping[str, Any]
    strategy: Literal["merge", "append", "replace"]
    unique_key: tuple[str, ...] = ()
    window: TimeWindow | None = None
    rebuild: bool = False
    """Build the table from scratch into a new table with the spec's layout, then swap it in (`resources.rebuild`);
    a failed rebuild leaves the old table as it was. The result says `extra["rebuilt"] = True`."""
    delete_missing: bool = False
    """merge only: also delete the target rows inside the window (the whole table for a run without a window)
    whose `unique_key` the run no longer outputs; counted in `rows_deleted`."""
    partitions: tuple[TimeWindow, ...] = ()
    """The per-partition windows of a multi-partition run (their union is `window`): the result then carries
    `WriteResult.by_partition`, in this order."""


@dataclass(frozen=True)
class LoadRequest:
    """Changed source rows to merge into a replicated table by primary key."""

    target: TargetTable
    primary_key: tuple[str, ...]
    cursor: str
    soft_delete_column: str | None = None


@dataclass(frozen=True)
class PartitionCounts:
    """One partition's numbers within a multi-partition run (`WriteRequest.partitions`)."""

    window: TimeWindow
    rows_read: int
    """Staged rows whose partition key falls in this window."""
    row_count: int
    """Target rows in this window after the write (Dagster's `dagster/partition_row_count`)."""


@dataclass
class WriteResult:
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    rows_read: int = 0
    """Rows the query returned (derived) or the source sent (replication)."""
    max_cursor: Any = None
    """Replication only: the largest cursor value among the rows read."""
    extra: dict[str, Any] = field(default_factory=dict)
    by_partition: list[PartitionCounts] = field(default_factory=list)
    """Per-partition counts, in the order of `WriteRequest.partitions` (empty without partitions, or when the
    target has no partition key)."""
    row_count: int | None = None
    """`Warehouse.load` only: the target's rows after the load, counted in the load's own session (so a
    replication run needs no second connection for `dagster/row_count`); None where nothing counted them."""


class Warehouse(Protocol):
    """What the factory needs from a warehouse. Implementations are Dagster `ConfigurableResource`s."""

    @property
    def dialect(self) -> str:
        """The sqlglot dialect the warehouse speaks, e.g. `duckdb` or `bigquery`."""
        ...

    @property
    def kind(self) -> str:
        """Dagster kind tag shown in the UI."""
        ...

    @property
    def types(self) -> dict[str, str]:
        """Spec (BigQuery) column type -> this warehouse's type."""
        ...

    def table_exists(self, ref: str) -> bool: ...

    def ddl_for(self, target: TargetTable) -> str:
        """The CREATE TABLE statement that the warehouse runs (or would run) for a target."""
        ...

    def estimate_bytes(self, sql: str, params: Mapping[str, Any]) -> int | None:
        """Bytes a query would process (a dry run), or None where the warehouse cannot tell."""
        ...

    def query(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of one read-only query (in the warehouse's `dialect`, values bound as `params`), as tuples.

        For small results only (counts, sums, a few sample rows: `derive diff`), never for reading a table: the
        whole result comes back into memory. Nothing checks that the query only reads; callers send SELECTs."""
        ...

    def write(self, request: WriteRequest, batches: Iterable[pa.RecordBatch] | None = None) -> WriteResult:
        """Run a core/derived table's query for one window with its strategy, in one transaction.

        With `request.sql=None` the rows are `batches` (a Python asset's output): staged, cast to the declared
        types, then written with the same strategy, rules and errors. With a query, `batches` must be None."""
        ...

    def load(self, request: LoadRequest, batches: Iterable[pa.RecordBatch]) -> WriteResult:
        """Stream source batches into staging, then merge them by primary key, in one transaction."""
        ...

    def reconcile(
        self,
        request: LoadRequest,
        key_batches: Iterable[pa.RecordBatch],
        max_delete_percent: float = DEFAULT_MAX_DELETE_PERCENT,
    ) -> WriteResult:
        """Stage every primary key the source has (`key_batches`: the key columns only, bounded memory), then,
        only once every key was read, delete the target rows whose key was not staged, in one transaction
        (`resources.strategy.reconcile`). `rows_read` = keys staged, `rows_deleted` = rows deleted. A key stream
        that raises deletes nothing; more than `max_delete_percent` % of the rows to delete raises
        `ReconcileRefused` and deletes nothing."""
        ...

    def promote(self, staging: TargetTable, target: TargetTable) -> int:
        """Put the filled table `staging` (same dataset, same spec) in the place of `target` in one atomic step
        (a chunked first load's `<table>__snapshot`); `staging` is gone afterwards. Returns the rows `target`
        held before (0 when it did not exist)."""
        ...

    def count_violations(self, check: CheckQuery) -> int:
        """How many rows (values, for `unique`) break one column check (`resources.reads.SliceReads`)."""
        ...

    def count_sql_violations(self, check: SqlCheckQuery) -> int:
        """How many rows a custom check's query returns (`resources.reads.SliceReads`)."""
        ...

    def read_slice(self, s: TableSlice) -> pa.Table:
        """A slice of a table (columns, window, cursor range) as one Arrow table."""
        ...

    def iter_slice(self, s: TableSlice, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """A slice as Arrow batches of at most `batch_rows` rows: bounded memory."""
        ...

    def count_slice(self, s: TableSlice) -> int:
        """How many rows a slice holds."""
        ...

    def max_in_slice(self, s: TableSlice, column: str) -> Any:
        """The largest value of `column` in a slice, or None."""
        ...

    def row_count(self, ref: str) -> int: ...

    def relation_identifier(self, ref: str) -> str:
        """The table's fully qualified name in the warehouse (`dataset.name` -> BigQuery
        `project.dataset.name`, DuckDB `catalog.dataset.name`), as Dagster's `dagster/table_name` shows it and
        catalogs match on it. Computed from the configuration alone: no connection, so definitions load without
        the warehouse; never holds a credential."""
        ...

    def describe(self, ref: str) -> ExistingTable | None:
        """The table's columns (types in the spec vocabulary) and Derive's marker; None when it does not exist."""
        ...

    def schema_diff(self, target: TargetTable) -> SchemaDiff | None:
        """How a spec differs from its existing table (`resources.schema_diff`); None when there is no table.
        Every `write`/`load` makes the same comparison first: additive changes are applied and reported as
        `WriteResult.extra["schema_changes"]`, breaking ones raise `BreakingSchemaChange` before any write."""
        ...

    def managed_tables(self, datasets: Iterable[str]) -> list[str]:
        """`dataset.name` of every table in `datasets` that carries Derive's marker (staging tables excluded)."""
        ...

    def drop_table(self, ref: str) -> None:
        """Drop a table Derive created; refuses (`WarehouseError`) one without Derive's marker."""
        ...

    def datasets(self) -> list[str]:
        """Every dataset of the warehouse (DuckDB: the schemas of the file; BigQuery: the project's datasets),
        sorted; empty when the warehouse holds none (a DuckDB file that does not exist is not created)."""
        ...

    def drop_dataset(self, name: str) -> None:
        """Drop an empty dataset (nothing when it does not exist); refuses (`DatasetNotEmpty`) one that still
        holds a table or view."""
        ...


# ----------------------------------------------------------------------------------------------- errors
# One class per broken rule, with the values as fields (the dlt style): callers and tests can tell the cases apart
# without parsing messages, and every message names the table, what was found and the fix.


def _samples(samples: Sequence[tuple[Any, ...]]) -> str:
    return ", ".join(str(s[0]) if len(s) == 1 else str(tuple(s)) for s in samples)


class OutOfWindowRows(WarehouseError):
    """A windowed run's query returned rows whose partition key is NULL or outside the run's window."""

    def __init__(
        self,
        ref: str,
        count: int,
        window: TimeWindow,
        key: str,
        strategy: str,
        unique_key: Sequence[str] = (),
    ) -> None:
        self.ref, self.count, self.window, self.key, self.strategy = ref, count, window, key, strategy
        self.unique_key = tuple(unique_key)
        if strategy == "append":
            why = "a rerun replaces only that window, so it would add those rows again"
        elif key in self.unique_key:
            why = (
                f"a merge by a key that holds '{key}' replaces old rows only inside the window, so those rows "
                "would be inserted next to the rows they should replace"
            )
        else:
            why = "each run owns only its window's partition"
        article = "an" if strategy[:1] in "aeiou" else "a"
        super().__init__(
            f"{ref}: the query returned {count} rows whose partition key '{key}' is NULL or lies outside the "
            f"window [{window.start.isoformat()}, {window.end.isoformat()}); {article} {strategy} run may only "
            f"write its own window ({why}). Filter the query with @window_start/@window_end on the column it "
            f"outputs as '{key}'. Nothing was written."
        )


class NullKeys(WarehouseError):
    """Rows with a NULL in a key column: a merge's `unique_key` (the query) or a load's primary key (the source)."""

    def __init__(
        self, ref: str, key: Sequence[str], count: int, role: Literal["unique_key", "primary_key"]
    ) -> None:
        self.ref, self.key, self.count, self.role = ref, tuple(key), count, role
        if role == "unique_key":
            message = (
                f"{ref}: the query returned {count} rows with a NULL in unique_key {list(key)}; a merge key "
                "must identify each row. Filter those rows out or choose other key columns. Nothing was written."
            )
        else:
            message = (
                f"{ref}: the source sent {count} rows with a NULL in primary key {list(key)}; a row whose key is "
                "NULL can never be matched, so each load would add it again. Filter or quarantine those rows "
                "before the load, or declare a primary_key whose columns are never NULL in the source. Nothing "
                "was written."
            )
        super().__init__(message)


class DuplicateKeys(WarehouseError):
    """Several rows for one key in a single run: a merge's query output, or one extraction from a source."""

    def __init__(
        self,
        ref: str,
        key: Sequence[str],
        count: int,
        samples: Sequence[tuple[Any, ...]],
        role: Literal["unique_key", "primary_key"],
    ) -> None:
        self.ref, self.key, self.count, self.samples, self.role = ref, tuple(key), count, tuple(samples), role
        shown = f" (e.g. {_samples(samples)})" if samples else ""
        if role == "unique_key":
            message = (
                f"{ref}: the query returned several rows for {count} values of unique_key {list(key)}{shown}; a "
                "merge needs one row per key. Aggregate by the key or extend unique_key. Nothing was written."
            )
        else:
            message = (
                f"{ref}: the source sent several rows for {count} values of primary key {list(key)}{shown} in "
                "one extraction, so the key is not unique in the source and a load would keep only one of them "
                "(or all of them, on a first load). Declare a primary_key that is unique in the source. Nothing "
                "was written."
            )
        super().__init__(message)


class NullsInRequiredColumns(WarehouseError):
    """NULLs in columns the spec declares `not_null` (the table's columns are REQUIRED / NOT NULL)."""

    def __init__(self, ref: str, nulls: Mapping[str, int], origin: Literal["query", "source"]) -> None:
        self.ref, self.nulls, self.origin = ref, dict(nulls), origin
        who = "the query returned" if origin == "query" else "the source sent"
        super().__init__(
            f"{ref}: {who} NULL in not_null columns (rows per column: {self.nulls}); the table declares them "
            "REQUIRED. Fill or filter those rows, or drop `not_null` from the spec's constraints. Nothing was "
            "written."
        )


class MissingColumns(WarehouseError):
    """Staged rows (a source's batches, a Python asset's output, a query's result) lack declared columns."""

    def __init__(
        self,
        ref: str,
        missing: Sequence[str],
        found: Sequence[str],
        origin: Literal["source", "rows", "query"],
    ) -> None:
        self.ref, self.missing, self.found, self.origin = ref, list(missing), list(found), origin
        if origin == "source":
            message = (
                f"{ref}: the source sent no column {self.missing} (it sent {self.found}); declare only columns "
                "the source table has. Nothing was written."
            )
        elif origin == "rows":
            message = (
                f"{ref}: the asset's rows have no column {self.missing} (they have {self.found}); every declared "
                "column must be in the returned table. Add them or remove them from the spec's columns. Nothing "
                "was written."
            )
        else:
            message = (
                f"{ref}: the query returns no column {self.missing} (it returns {self.found}); every declared "
                "column must be in the query's output. Add them to the SELECT or remove them from the spec's "
                "columns. Nothing was written."
            )
        super().__init__(message)


class ReconcileRefused(WarehouseError):
    """A key reconciliation would delete more of the table than its `max_delete_percent` allows."""

    def __init__(
        self, ref: str, would_delete: int, rows: int, keys_read: int, max_delete_percent: float
    ) -> None:
        self.ref, self.would_delete, self.rows = ref, would_delete, rows
        self.keys_read, self.max_delete_percent = keys_read, max_delete_percent
        share = 100.0 * would_delete / rows if rows else 0.0
        super().__init__(
            f"{ref}: the key reconciliation would delete {would_delete:,} of its {rows:,} rows ({share:.1f} %; the "
            f"source sent {keys_read:,} keys), more than reconcile.max_delete_percent ({max_delete_percent:g} %) "
            "allows, so it deleted nothing. If the source table really lost those rows, raise "
            "reconcile.max_delete_percent in the spec (100: no limit) for one run; otherwise check that the "
            "source URL points at the right database and the table is complete."
        )


class DatasetNotEmpty(WarehouseError):
    """`drop_dataset` of a dataset that still holds tables: nothing was dropped."""

    def __init__(self, dataset: str, tables: Sequence[str]) -> None:
        self.dataset, self.tables = dataset, tuple(tables)
        shown = ", ".join(self.tables[:10]) + (", ..." if len(self.tables) > 10 else "")
        super().__init__(
            f"dataset {dataset} still holds {len(self.tables)} table(s) ({shown}), so it was not dropped; drop "
            "those tables first (Derive drops only the tables it created), or keep the dataset."
        )


def _size(n: int) -> str:
    """`12,345,678,901 bytes (11.5 GiB)`: exact bytes, and a binary size to read at a glance."""
    units = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    value, unit = float(n), ""
    for u in units:
        if value < 1024:
            break
        value, unit = value / 1024, u
    return f"{n:,} bytes ({value:.1f} {unit})" if unit else f"{n:,} bytes"


class BytesBilledLimitExceeded(WarehouseError):
    """A write's query would process more bytes than the spec's `max_bytes_billed` allows: the dry run's estimate
    (`origin="estimate"`), or BigQuery's own refusal of the job (`origin="bigquery"`, `bytesBilledLimitExceeded`;
    `estimate` is then the bytes BigQuery said it needs, None when it named none). Nothing was written or billed."""

    def __init__(
        self, ref: str, estimate: int | None, limit: int, origin: Literal["estimate", "bigquery"]
    ) -> None:
        self.ref, self.estimate, self.limit, self.origin = ref, estimate, limit, origin
        if origin == "estimate":
            found = f"a dry run estimates that the query processes {_size(estimate or 0)}"
        elif estimate is not None:
            found = f"BigQuery refused the query job: it would bill at least {_size(estimate)}"
        else:
            found = "BigQuery refused the query job: it would bill more"
        super().__init__(
            f"{ref}: {found}, more than the spec's max_bytes_billed ({_size(limit)}), so the query did not run: "
            "nothing was written and nothing billed. If the cost is expected, raise max_bytes_billed in the spec; "
            "otherwise make the run read less: a shorter window (or fewer windows per run), a filter on the "
            "partition column of the tables it reads (@window_start/@window_end), or fewer columns."
        )


class WarehouseUnavailable(WarehouseError):
    """The warehouse could not be used at all (locked, unreachable); the run's data broke no rule."""


class WarehouseLocked(WarehouseUnavailable):
    """Another process held the DuckDB file's write lock for longer than `lock_timeout_seconds`."""

    def __init__(self, path: str, holder: str | None, waited_seconds: float, timeout_seconds: float) -> None:
        self.path, self.holder = path, holder
        self.waited_seconds, self.timeout_seconds = waited_seconds, timeout_seconds
        by = f"another process ({holder})" if holder else "another process"
        super().__init__(
            f"DuckDB warehouse {path} is locked by {by}: waited {waited_seconds:.1f} s "
            f"(lock_timeout_seconds={timeout_seconds:g}). One process writes a DuckDB file at a time; wait for "
            "that run to finish (or stop that process), or raise the DuckDB warehouse's `lock_timeout_seconds`. "
            "Nothing was written."
        )


class WarehouseUnreachable(WarehouseUnavailable):
    """The BigQuery API did not answer within the resource's timeouts (every transient error was retried)."""

    def __init__(self, endpoint: str, waited_seconds: float, cause: str) -> None:
        self.endpoint, self.waited_seconds, self.cause = endpoint, waited_seconds, cause
        super().__init__(
            f"The BigQuery endpoint {endpoint} could not be reached within {waited_seconds:g} s (last error: "
            f"{cause}). Check that the endpoint is up and that DERIVE_BIGQUERY_ENDPOINT names it "
            "(unset it to use Google's API); if it is only slow, raise the BigQuery warehouse's "
            "`timeout_seconds` / `retry_deadline_seconds` (DERIVE_BIGQUERY_TIMEOUT_SECONDS, "
            "DERIVE_BIGQUERY_RETRY_DEADLINE_SECONDS). Every write is idempotent per window: rerunning is safe."
        )
