"""BigQuery, the production warehouse: every write is SQL that BigQuery runs; rows never pass through Python.

The strategies are `resources.strategy` (written once for every engine); this module is BigQuery's primitives
(`BigQuerySession`) and quirks, and its `CAPABILITIES` say how it carries each strategy out: a `MERGE` for merge
and load, `MERGE ... ON FALSE` for append, a transaction script for replace, counts by queries, and the target
created through the API only after the checks passed.

A run first materializes its query (or a Python asset's batches, or a load's batches: one Parquet file, one load
job) into a staging table named uniquely per run (`_derive_stg_<table>_<uuid12>`
in the target's dataset, expiring after a day in case a process dies, dropped in `finally`), checks it, and
then changes the target with one atomic statement:

- `merge`: one `MERGE` by `unique_key`. When the partition key is part of the key, the `ON` clause also
  restricts the target to the window (`T.key >= CAST(@window_start AS <type>) AND ...`), so BigQuery prunes
  partitions.
- `append`: one `MERGE ... ON FALSE` whose `WHEN NOT MATCHED BY SOURCE AND <window>` deletes the window's rows
  and whose `WHEN NOT MATCHED` inserts the run's rows: a window-scoped delete + insert in one statement (the
  insert-overwrite pattern). A `BEGIN TRANSACTION; DELETE ...; INSERT ...; COMMIT` script would do the same,
  but the emulator does not pass query parameters into scripts (see "Emulator gaps").
- `replace`: `BEGIN TRANSACTION; DELETE FROM t WHERE TRUE; INSERT INTO t SELECT ...; COMMIT TRANSACTION;`.
  `CREATE OR REPLACE TABLE ... AS` is BigQuery's usual way, but the emulator does not record partitioning or
  clustering from DDL; emptying and refilling the API-created table keeps its partitioning, clustering and
  REQUIRED modes on both.

Before any of that, one profile query and one `GROUP BY` over the staged rows apply the rules of
`resources.warehouse_rules` (the same statements DuckDB runs): no NULL or duplicate keys, no row outside a windowed run's
window, no NULL in a `not_null` column. A load stages its Parquet file, refuses NULL or duplicate primary keys the
same way, and creates a missing target only after the checks passed, so a refused run never touched the target.

Every statement casts to the declared types. The target is created through the API (see `bigquery_ddl`) after
the checks passed, with Derive's marker; an existing table is compared with the spec first (`resources.evolution`):
additive changes are applied after the checks passed (`resources.bigquery_schema`), breaking ones and a
partitioning or clustering that differs from the spec are reported, never altered. A failed run leaves the target's rows unchanged (a table created by that run stays, empty).

Counting: row counts come from queries run just before the statement (`rows_updated` of a merge is the number
of target rows whose key the staging table holds, like DuckDB's delete + insert), not from DML statistics,
because scripts report none and the emulator has no `dml_stats`. A concurrent writer to the same window could
make the counts (never the data) slightly off.

Timeouts: every API call, job and upload goes through `resources.bigquery_calls` with the resource's
`timeout_seconds` (per request) and `retry_deadline_seconds` (all retries of one call). Only transient errors are
retried; an endpoint that does not answer in time fails the run with `WarehouseUnreachable` naming the endpoint
and `DERIVE_BIGQUERY_ENDPOINT`, instead of the client's default ten minutes.

Emulator gaps (bqemulator 1.4.0; where real BigQuery differs, tests check the generated SQL or API objects):
- Query parameters are not passed into multi-statement scripts ("Values were not provided for ...
  parameters"), and `@@row_count` does not parse: hence `append` as one `MERGE` and counts by separate
  queries.
- `CAST(x AS NUMERIC)` becomes DECIMAL(18, 3) (rounds to 3 places, overflows beyond 15 digits): casts say
  `NUMERIC(38, 9)`, the same type on BigQuery. Tables created by SQL DDL get DECIMAL(18, 3) columns too; the
  API-created NUMERIC columns are DECIMAL(38, 9).
- REQUIRED columns are not enforced on INSERT: every run counts NULLs in `not_null` columns itself and refuses
  them with `NullsInRequiredColumns` (BigQuery would refuse the statement anyway, with a vaguer error).
- `require_partition_filter` is neither kept nor enforced; table expiration (`expiration_timestamp` in CTAS
  OPTIONS, `Table.expires`) is accepted but not kept; dry runs report 0 bytes and a job's `maximumBytesBilled` is
  accepted but not enforced (`max_bytes_billed` never refuses a run there); `PARSE_JSON(...)` columns of a
  CTAS are reported as STRING; `MERGE ... INSERT ROW` does not parse (column lists are written out);
  `load_table_from_dataframe` and other small multipart uploads fail (`size=None` makes the upload resumable).
- A copy job with WRITE_TRUNCATE onto an existing table keeps the destination's schema and layout (it copies the
  rows by position), and copies neither description nor labels: a rebuild's swap copies with WRITE_TRUNCATE only
  when the two tables have the same shape, and sets them again (`resources.bigquery_swap`).
- Schema changes: an API schema update (`update_table`) reaches the metadata but not the query engine, and
  `ALTER COLUMN SET DATA TYPE` the stored values but not the metadata; `resources.bigquery_schema` sends both,
  the extra one a no-op on BigQuery. `list_tables` returns no labels: Derive's marker is read from the description.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from dagster import ConfigurableResource
from dagster_gcp import BigQueryResource
from google.api_core.exceptions import GoogleAPICallError, NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from pydantic import Field
from sqlglot import exp

from resources import bigquery_ddl, bigquery_schema, bigquery_swap, bytes_limit, evolution, strategy
from resources.bigquery_calls import UNREACHABLE_ERRORS, CallPolicy, Calls, describe_cause, describe_endpoint
from resources.bigquery_ddl import BIGQUERY_TYPES, CAST_TYPES, check_layout, standard_type, table_for
from resources.bigquery_parquet import write_parquet
from resources.bigquery_sql import B, script, source_query, staging_name
from resources.engine import BatchScreen, Capabilities, Origin, Staged
from resources.engine_sql import table
from resources.reads import SliceReads
from resources.schema_diff import ExistingTable, SchemaChange, SchemaDiff
from resources.sql_text import table_name
from resources.warehouse import (
    DEFAULT_MAX_DELETE_PERCENT,
    DatasetNotEmpty,
    EstimateUnavailable,
    LoadRequest,
    MissingColumns,
    TargetTable,
    WarehouseUnreachable,
    WriteRequest,
    WriteResult,
)

_STAGING_OPTIONS = "OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY))"

QueryParameter = bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter


class BigQueryWarehouse(SliceReads, ConfigurableResource):
    """The production warehouse: BigQuery (or, with `api_endpoint`, the bqemulator used by the tests).

    Clients come from dagster-gcp's `BigQueryResource` (project, location, credentials), composed rather than
    subclassed: assets get this warehouse, and the resource only makes Google clients.

    Example:
        ```python
        warehouse = BigQueryWarehouse(project="acme-data", location="EU", retry_deadline_seconds=300)
        Definitions(assets=..., resources={"warehouse": warehouse})
        ```
    """

    project: str | None = Field(
        default=None,
        description="Project the client acts for; defaults to the one inferred from the environment.",
    )
    location: str | None = Field(default=None, description="Default location for jobs, datasets and tables.")
    gcp_credentials: str | None = Field(
        default=None,
        description="Base64 service-account JSON, as dagster-gcp's `BigQueryResource` takes it (optional).",
    )
    api_endpoint: str | None = Field(
        default=None,
        description=(
            "Base URL of a BigQuery-compatible API to use instead of Google's, e.g. the emulator at "
            "`http://127.0.0.1:9050`. When set, requests are sent without credentials."
        ),
    )
    timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Longest wait for one HTTP request to the BigQuery API (`DERIVE_BIGQUERY_TIMEOUT_SECONDS`). A query "
            "job may run longer: waiting for it is many short requests."
        ),
    )
    retry_deadline_seconds: float = Field(
        default=120.0,
        gt=0,
        description=(
            "How long one API call keeps retrying transient errors (connection refused, timeouts, HTTP 429 and "
            "5xx, rate limits) before the run fails with an error naming the endpoint "
            "(`DERIVE_BIGQUERY_RETRY_DEADLINE_SECONDS`). Other errors are never retried."
        ),
    )

    CAPABILITIES: ClassVar[Capabilities] = Capabilities(
        transactional_session=False,
        upsert="merge",
        insert_overwrite="merge_on_false",  # the emulator passes no query parameters into scripts
        replace="script",
        dml_row_counts=False,  # scripts report none and the emulator has no `dml_stats`
        cluster_by_insert_order=False,  # BigQuery clusters the table itself
        direct_first_load=False,
    )

    @property
    def dialect(self) -> str:
        return B

    @property
    def kind(self) -> str:
        return "bigquery"

    @property
    def types(self) -> dict[str, str]:
        return BIGQUERY_TYPES

    @property
    def policy(self) -> CallPolicy:
        return CallPolicy(self.timeout_seconds, self.retry_deadline_seconds)

    def google(self) -> BigQueryResource:
        """dagster-gcp's resource for Google's API: it makes the clients (and sets up `gcp_credentials`)."""
        return BigQueryResource(
            project=self.project, location=self.location, gcp_credentials=self.gcp_credentials
        )

    @contextmanager
    def get_client(self) -> Iterator[bigquery.Client]:
        """A client for `project`; anonymous and pointed at `api_endpoint` when that is set. A transport failure
        inside the block (retries exhausted) becomes `WarehouseUnreachable`."""
        try:
            if self.api_endpoint is None:
                with self.google().get_client() as client:
                    yield client
                return
            client = bigquery.Client(
                project=self.project,
                location=self.location,
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": self.api_endpoint},
            )
            try:
                yield client
            finally:
                client.close()
        except UNREACHABLE_ERRORS as exc:
            endpoint = describe_endpoint(self.api_endpoint)
            raise WarehouseUnreachable(endpoint, self.retry_deadline_seconds, describe_cause(exc)) from None

    @contextmanager
    def calls(self) -> Iterator[Calls]:
        """The client with this resource's timeouts bound to every call."""
        with self.get_client() as client:
            yield Calls(client, self.policy)

    # ------------------------------------------------------------------------------------------- reads

    def table_exists(self, ref: str) -> bool:
        with self.calls() as calls:
            try:
                calls.get_table(f"{calls.project}.{ref}")
            except NotFound:
                return False
        return True

    def row_count(self, ref: str) -> int:
        with self.calls() as calls:
            return _scalar(calls, f"SELECT count(*) FROM {table_name(ref, B)}")

    def relation_identifier(self, ref: str) -> str:
        """`<project>.<dataset>.<table>`, the project every call of this resource names (datasets get no prefix).

        Needs `project`: the client infers a missing one from credentials or the GCE metadata server, a request
        that loading definitions must not make (`DERIVE_WAREHOUSE=bigquery` requires `DERIVE_BIGQUERY_PROJECT`)."""
        if not self.project:
            raise ValueError(
                f"BigQueryWarehouse has no project, so the table {ref} has no fully qualified name: set project= "
                "(DERIVE_BIGQUERY_PROJECT, the GCP project id)."
            )
        return f"{self.project}.{ref}"

    # ------------------------------------------------------------------------------------------- tables

    def describe(self, ref: str) -> ExistingTable | None:
        """The table's columns (in spec types) and Derive's marker; None when it does not exist."""
        with self.calls() as calls:
            return bigquery_schema.describe(calls, ref)

    def schema_diff(self, target: TargetTable) -> SchemaDiff | None:
        """How the spec differs from the existing table (None: no table yet)."""
        return evolution.schema_diff(self.describe(target.ref), target)

    def managed_tables(self, datasets: Iterable[str]) -> list[str]:
        """The tables in `datasets` that Derive created (they carry its marker); staging tables are skipped."""
        with self.calls() as calls:
            return bigquery_schema.managed_tables(calls, list(datasets))

    def drop_table(self, ref: str) -> None:
        """Drop a table Derive created; `WarehouseError` for one without its marker (nothing when missing)."""
        with self.calls() as calls:
            existing = bigquery_schema.describe(calls, ref)
            if existing is None:
                return
            evolution.refuse_unmarked(ref, existing)
            calls.delete_table(f"{calls.project}.{ref}")

    def datasets(self) -> list[str]:
        """The project's datasets, sorted."""
        with self.calls() as calls:
            listed = calls.client.list_datasets(calls.project, **calls.policy.kwargs)
            return sorted(str(d.dataset_id) for d in listed)

    def drop_dataset(self, name: str) -> None:
        """Delete an empty dataset (never its contents: BigQuery itself refuses a non-empty one without
        `delete_contents`); `DatasetNotEmpty` naming its tables otherwise, nothing when it does not exist."""
        with self.calls() as calls:
            try:
                held = sorted(
                    f"{name}.{t.table_id}" for t in calls.client.list_tables(name, **calls.policy.kwargs)
                )
            except NotFound:
                return
            if held:
                raise DatasetNotEmpty(name, held)
            calls.client.delete_dataset(
                f"{calls.project}.{name}", delete_contents=False, not_found_ok=True, **calls.policy.kwargs
            )

    def _query_rows(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        with self.calls() as calls:
            return _rows(calls, sql, params)

    def _query_batches(
        self, sql: str, params: Mapping[str, Any], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """Pages of the result as Arrow record batches (the client fetches page by page)."""
        with self.calls() as calls:
            rows = calls.rows(sql, _config(params), page_size=batch_rows)
            for page in rows.to_arrow_iterable():
                yield from (
                    page.to_batches(max_chunksize=batch_rows) if isinstance(page, pa.Table) else [page]
                )

    def _query_arrow(self, sql: str, params: Mapping[str, Any]) -> pa.Table:
        with self.calls() as calls:
            rows = calls.rows(sql, _config(params))
            # The Storage Read API is faster on BigQuery; the emulator's is not reachable through this client.
            return rows.to_arrow(create_bqstorage_client=self.api_endpoint is None)

    def query(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a small read-only query (`Warehouse.query`): `@name` parameters typed by
        `query_parameters`, one query job with the resource's timeouts."""
        return self._query_rows(sql, params)

    def estimate_bytes(self, sql: str, params: Mapping[str, Any]) -> int | None:
        """Bytes the query would scan, from a dry run (free; the emulator always says 0)."""
        with self.calls() as calls:
            config = _config(params)
            config.dry_run = True
            config.use_query_cache = False
            try:
                job = calls.query(sql, config)
            except GoogleAPICallError as exc:  # e.g. NotFound: a table the query reads does not exist yet
                raise EstimateUnavailable(f"dry run failed: {exc.message}") from exc
            scanned = job.total_bytes_processed
        return None if scanned is None else int(scanned)

    def ddl_for(self, target: TargetTable) -> str:
        """The `CREATE TABLE` text with the spec's columns, partitioning, clustering and options."""
        return bigquery_ddl.ddl_for(target)

    # ------------------------------------------------------------------------------------------- writes

    def write(self, request: WriteRequest, batches: Iterable[pa.RecordBatch] | None = None) -> WriteResult:
        """Run a derived table's query (or stage a Python asset's batches) with its strategy.

        With `target.max_bytes_billed`, a dry run first estimates the query, and an estimate above the limit raises
        `BytesBilledLimitExceeded` before anything is written (no dataset, no staging table); a query the dry run
        cannot estimate still runs under the job's `maximum_bytes_billed` (`BigQuerySession.stage_query`)."""
        if request.sql is not None and request.target.max_bytes_billed is not None:
            try:
                estimate = self.estimate_bytes(request.sql, request.params)
            except EstimateUnavailable:
                estimate = None
            bytes_limit.refuse_estimate(request.target, estimate)
        return strategy.write(self, request, batches)

    def load(self, request: LoadRequest, batches: Iterable[pa.RecordBatch]) -> WriteResult:
        """Stage the batches (one Parquet file, one load job), refuse NULL or duplicate primary keys and NULLs in
        `not_null` columns, then create the target if missing and `MERGE` into it: a refused load leaves the
        target as it was (and creates none)."""
        return strategy.load(self, request, batches)

    def reconcile(
        self,
        request: LoadRequest,
        key_batches: Iterable[pa.RecordBatch],
        max_delete_percent: float = DEFAULT_MAX_DELETE_PERCENT,
    ) -> WriteResult:
        """Stage every source key (one Parquet file, one load job), then delete the rows whose key is gone with
        one DELETE (atomic on its own; `resources.strategy.reconcile`): a failed key read deletes nothing."""
        return strategy.reconcile(self, request, key_batches, max_delete_percent)

    def promote(self, staging: TargetTable, target: TargetTable) -> int:
        """A copy job puts `staging` in `target`'s place (`resources.bigquery_swap` when `target` exists; into a
        missing one, with WRITE_EMPTY: atomic, no bytes scanned), then `staging` is deleted and `target` marked."""
        with self.session() as s:
            if s.exists(target):
                replaced = s.swap(staging, target)
            else:
                project = s.calls.project
                s.calls.copy_table(f"{project}.{staging.ref}", f"{project}.{target.ref}", "WRITE_EMPTY")
                s.calls.delete_table(f"{project}.{staging.ref}")
                replaced = 0
            s.mark(target)  # a copy keeps no description (the emulator's), where Derive's marker lives
            return replaced

    @contextmanager
    def session(self) -> Iterator[BigQuerySession]:
        """A client with this resource's timeouts; every staging table of the run is deleted on the way out."""
        with self.calls() as calls:
            session = BigQuerySession(calls, self.location)
            try:
                yield session
            finally:
                session.drop_staging()


class BigQuerySession:
    """The strategy primitives over one BigQuery client. Each statement is atomic on its own (no session
    transaction); staging tables live in the target's dataset and expire after a day in case a process dies."""

    def __init__(self, calls: Calls, location: str | None) -> None:
        self.calls, self.location = calls, location
        self.dialect: str = B
        self.cast_types: Mapping[str, str] = CAST_TYPES
        self.staging: list[str] = []
        self.described: dict[str, bigquery.Table] = {}
        """Tables `describe` fetched, which `prepare` (called right after it by the strategy layer) checks
        instead of fetching them again: one `get_table` per run, not two."""

    def prepare(self, target: TargetTable) -> bool:
        """Create the dataset if missing; True when the table exists (its layout checked against the spec)."""
        dataset = bigquery.Dataset(f"{self.calls.project}.{target.dataset}")
        if self.location:
            dataset.location = self.location
        self.calls.create_dataset(dataset)
        existing = self.described.pop(target.ref, None)
        if existing is None:
            try:
                existing = self.calls.get_table(f"{self.calls.project}.{target.ref}")
            except NotFound:
                bigquery_ddl.time_partitioning(target)  # an impossible layout fails before any work
                return False
        check_layout(target, existing)
        return True

    def create(self, target: TargetTable) -> None:
        created = self.calls.create_table(table_for(target, self.calls.project), exists_ok=True)
        check_layout(target, created)  # another run may have created it first

    def _new_staging(self, target: TargetTable) -> tuple[str, str, exp.Table]:
        name = staging_name(target)
        ref = f"{self.calls.project}.{target.dataset}.{name}"
        self.staging.append(ref)
        return name, ref, table(f"{target.dataset}.{name}")

    def stage_query(self, target: TargetTable, sql: str, params: Mapping[str, Any]) -> Staged:
        """The spec's query into a staging table: the one job of a write that runs the spec's SQL, so the one
        that carries `target.max_bytes_billed` (a refusal for it raises `BytesBilledLimitExceeded`)."""
        name, ref, stg = self._new_staging(target)
        config = _config(params)
        if target.max_bytes_billed is not None:  # the client would send None as the string "None"
            config.maximum_bytes_billed = target.max_bytes_billed
        try:
            self.calls.rows(
                f"CREATE TABLE {stg.sql(B)} {_STAGING_OPTIONS} AS SELECT * FROM (\n{sql}\n)", config
            )
        except GoogleAPICallError as exc:
            refused = bytes_limit.billing_refusal(target, exc.errors, exc.message or "")
            if refused is not None:
                raise refused from None
            raise
        return Staged(source_query(target, stg, _staged_types(self.calls, ref, target)), name=name)

    def stage_batches(
        self,
        target: TargetTable,
        batches: Iterable[pa.RecordBatch],
        origin: Origin,
        into_target: bool = False,
        screen: BatchScreen | None = None,
    ) -> Staged:
        """One Parquet file (streamed, bounded memory), one load job into a staging table of its wire types
        (none when there are no rows: the staging table stays empty)."""
        if into_target:
            raise NotImplementedError("BigQuery stages every load (CAPABILITIES.direct_first_load is False)")
        del screen  # every batch goes into one file and one load job; the strategy profiles the staged rows
        name, ref, stg = self._new_staging(target)
        with tempfile.TemporaryDirectory(prefix="derive-stage-") as tmp:
            path = Path(tmp) / f"{name}.parquet"
            rows, staged = write_parquet(batches, target, path, origin)
            self._load_file(path if rows else None, ref, staged)
        return Staged(source_query(target, stg, staged), rows=rows, name=name)

    def _load_file(self, path: Path | None, stg_ref: str, staged: Mapping[str, str]) -> None:
        """A new staging table of the wire schema (expires in a day), filled by one load job of the file."""
        schema = [bigquery.SchemaField(name, bq_type) for name, bq_type in staged.items()]
        staging = bigquery.Table(stg_ref, schema=schema)
        staging.expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        self.calls.create_table(staging)
        if path is None:
            return
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            schema=schema,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        )
        self.calls.load_parquet(path, stg_ref, config)

    def execute(self, statement: exp.Expr, params: Mapping[str, Any] | None = None) -> int | None:
        _run(self.calls, statement.sql(B), params)
        return None  # no DML counts: `CAPABILITIES.dml_row_counts` is False

    def rows(self, query: exp.Expr, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return _rows(self.calls, query.sql(B), params)

    def script(self, statements: Sequence[exp.Expr]) -> None:
        """`BEGIN TRANSACTION; ...; COMMIT TRANSACTION;` (the emulator binds no parameters in scripts)."""
        _run(self.calls, script(statements))

    def exists(self, target: TargetTable) -> bool:
        try:
            self.calls.get_table(f"{self.calls.project}.{target.ref}")
        except NotFound:
            return False
        return True

    def swap(self, fresh: TargetTable, target: TargetTable) -> int:
        """Copy jobs: atomic when only the rows changed, else through a backup (`resources.bigquery_swap`)."""
        old_rows = bigquery_swap.swap(self.calls, fresh, target)
        self.calls.delete_table(f"{self.calls.project}.{fresh.ref}")
        return old_rows

    def discard(self, fresh: TargetTable) -> None:
        self.calls.delete_table(f"{self.calls.project}.{fresh.ref}")

    def describe(self, ref: str) -> ExistingTable | None:
        try:
            table = self.calls.get_table(f"{self.calls.project}.{ref}")
        except NotFound:
            return None
        self.described[ref] = table
        return bigquery_schema.existing_table(ref, table)

    def evolve(self, target: TargetTable, changes: Sequence[SchemaChange]) -> None:
        """Through the API and `ALTER COLUMN SET DATA TYPE`, keeping partitioning and clustering
        (`resources.bigquery_schema`)."""
        bigquery_schema.evolve(self.calls, target, changes, lambda sql: _run(self.calls, sql))

    def mark(self, target: TargetTable) -> None:
        bigquery_schema.mark(self.calls, target)

    def drop_staging(self) -> None:
        for ref in self.staging:
            self.calls.delete_table(ref)
        self.staging.clear()


def query_parameters(params: Mapping[str, Any]) -> list[QueryParameter]:
    """Typed BigQuery parameters: aware datetime -> TIMESTAMP, naive -> DATETIME, date -> DATE, bool -> BOOL,
    int -> INT64, float -> FLOAT64, Decimal -> NUMERIC, str -> STRING, bytes -> BYTES; lists become arrays."""
    result: list[QueryParameter] = []
    for name, value in params.items():
        if isinstance(value, list | tuple):
            first = next((v for v in value if v is not None), None)
            result.append(bigquery.ArrayQueryParameter(name, _param_type(name, first), list(value)))
        else:
            result.append(bigquery.ScalarQueryParameter(name, _param_type(name, value), value))
    return result


def _param_type(name: str, value: Any) -> str:
    if value is None:
        return "STRING"  # an untyped NULL: compare it through CAST(@name AS <type>) where the type matters
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, Decimal):
        return "NUMERIC"
    if isinstance(value, dt.datetime):
        return "DATETIME" if value.tzinfo is None or value.utcoffset() is None else "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, bytes):
        return "BYTES"
    raise TypeError(
        f"query parameter @{name} has the value {value!r} of type {type(value).__name__}; allowed: datetime, "
        "date, bool, int, float, Decimal, str, bytes, None, or a list of one of those"
    )


# ----------------------------------------------------------------------------------------------- helpers


def _config(params: Mapping[str, Any] | None) -> bigquery.QueryJobConfig:
    return bigquery.QueryJobConfig(query_parameters=query_parameters(params or {}))


def _run(calls: Calls, sql: str, params: Mapping[str, Any] | None = None) -> None:
    calls.rows(sql, _config(params))


def _rows(calls: Calls, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in calls.rows(sql, _config(params))]


def _row(calls: Calls, sql: str, params: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    rows = _rows(calls, sql, params)
    return rows[0] if rows else ()


def _scalar(calls: Calls, sql: str, params: Mapping[str, Any] | None = None) -> int:
    row = _row(calls, sql, params)
    return int(row[0]) if row and row[0] is not None else 0


def _staged_types(calls: Calls, stg_ref: str, target: TargetTable) -> dict[str, str]:
    """Declared column -> type of the staging column the query produced; all declared columns must be there."""
    staged = {f.name.lower(): standard_type(f.field_type) for f in calls.get_table(stg_ref).schema}
    missing = [c.name for c in target.columns if c.name.lower() not in staged]
    if missing:
        raise MissingColumns(target.ref, missing, sorted(staged), "query")
    return {c.name: staged[c.name.lower()] for c in target.columns}
