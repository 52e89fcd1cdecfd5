"""BigQuery, the production warehouse: every write is SQL that BigQuery runs; rows never pass through Python.

A run first materializes its query into a staging table named uniquely per run (`_derive_stg_<table>_<uuid12>`
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

Every statement casts to the declared types. The target is created through the API (see `bigquery_ddl`) after
the checks passed; an existing table whose partitioning or clustering differs from the spec is reported, never
altered. A failed run leaves the target's rows unchanged (a table created by that run stays, empty).

Counting: row counts come from queries run just before the statement (`rows_updated` of a merge is the number
of target rows whose key the staging table holds, like DuckDB's delete + insert), not from DML statistics,
because scripts report none and the emulator has no `dml_stats`. A concurrent writer to the same window could
make the counts (never the data) slightly off.

Emulator gaps (bqemulator 1.4.0; where real BigQuery differs, tests check the generated SQL or API objects):
- Query parameters are not passed into multi-statement scripts ("Values were not provided for ...
  parameters"), and `@@row_count` does not parse: hence `append` as one `MERGE` and counts by separate
  queries.
- `CAST(x AS NUMERIC)` becomes DECIMAL(18, 3) (rounds to 3 places, overflows beyond 15 digits): casts say
  `NUMERIC(38, 9)`, the same type on BigQuery. Tables created by SQL DDL get DECIMAL(18, 3) columns too; the
  API-created NUMERIC columns are DECIMAL(38, 9).
- REQUIRED columns are not enforced on INSERT: every run counts NULLs in `not_null` columns itself and refuses
  them with a `WarehouseError` (BigQuery would refuse the statement anyway, with a vaguer error).
- `require_partition_filter` is neither kept nor enforced; table expiration (`expiration_timestamp` in CTAS
  OPTIONS, `Table.expires`) is accepted but not kept; dry runs report 0 bytes; `PARSE_JSON(...)` columns of a
  CTAS are reported as STRING; `MERGE ... INSERT ROW` does not parse (column lists are written out);
  `load_table_from_dataframe` and other small multipart uploads fail (`size=None` makes the upload resumable).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster_gcp import BigQueryResource
from google.api_core.exceptions import GoogleAPICallError, NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from pydantic import Field

from resources import bigquery_ddl
from resources.bigquery_ddl import BIGQUERY_TYPES, check_layout, standard_type, table_for
from resources.bigquery_parquet import write_parquet
from resources.bigquery_sql import (
    B,
    append_sql,
    load_merge_sql,
    merge_sql,
    replace_sql,
    soft_delete_condition,
    source_select,
    staging_name,
    window_condition,
    window_scoped,
)
from resources.sql_text import column_list, key_join, quote, select_sql, table_name
from resources.warehouse import (
    EstimateUnavailable,
    LoadRequest,
    TargetTable,
    WarehouseError,
    WriteRequest,
    WriteResult,
)

_STAGING_OPTIONS = "OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY))"

QueryParameter = bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter


class BigQueryWarehouse(BigQueryResource):
    """The production warehouse: BigQuery (or, with `api_endpoint`, the bqemulator used by the tests).

    Example:
        ```python
        warehouse = BigQueryWarehouse(project="acme-data", location="EU")
        Definitions(assets=..., resources={"warehouse": warehouse})
        ```
    """

    api_endpoint: str | None = Field(
        default=None,
        description=(
            "Base URL of a BigQuery-compatible API to use instead of Google's, e.g. the emulator at "
            "`http://127.0.0.1:9050`. When set, requests are sent without credentials."
        ),
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

    def get_object_to_set_on_execution_context(self) -> Any:
        """Assets get the warehouse itself (the parent class would hand them a bare client)."""
        return self

    @contextmanager
    def get_client(self) -> Iterator[bigquery.Client]:
        """A client for `project`; anonymous and pointed at `api_endpoint` when that is set."""
        if self.api_endpoint is None:
            with super().get_client() as client:
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

    # ------------------------------------------------------------------------------------------- reads

    def table_exists(self, ref: str) -> bool:
        with self.get_client() as client:
            try:
                client.get_table(f"{client.project}.{ref}")
            except NotFound:
                return False
        return True

    def row_count(self, ref: str) -> int:
        with self.get_client() as client:
            return _scalar(client, f"SELECT count(*) FROM {table_name(ref, B)}")

    def count_violations(self, sql: str, params: Mapping[str, Any]) -> int:
        with self.get_client() as client:
            return _scalar(client, sql, params)

    def scalar(self, sql: str, params: Mapping[str, Any]) -> Any:
        with self.get_client() as client:
            rows = list(client.query(sql, job_config=_config(params)).result())
        return rows[0][0] if rows else None

    def read_arrow(self, ref: str, where_sql: str | None, params: Mapping[str, Any]) -> pa.Table:
        sql = select_sql(ref, None, where_sql, B)
        with self.get_client() as client:
            job = client.query(sql, job_config=_config(params))
            # The Storage Read API is faster on BigQuery; the emulator's is not reachable through this client.
            return job.to_arrow(create_bqstorage_client=self.api_endpoint is None)

    def iter_batches(
        self,
        ref: str,
        columns: Sequence[str],
        where_sql: str | None,
        params: Mapping[str, Any],
        batch_rows: int,
    ) -> Iterator[pa.RecordBatch]:
        """Pages of the result as Arrow record batches (the client fetches page by page)."""
        sql = select_sql(ref, columns, where_sql, B)
        with self.get_client() as client:
            rows = client.query(sql, job_config=_config(params)).result(page_size=batch_rows)
            for table in rows.to_arrow_iterable():
                yield from (
                    table.to_batches(max_chunksize=batch_rows) if isinstance(table, pa.Table) else [table]
                )

    def estimate_bytes(self, sql: str, params: Mapping[str, Any]) -> int | None:
        """Bytes the query would scan, from a dry run (free; the emulator always says 0)."""
        with self.get_client() as client:
            config = _config(params)
            config.dry_run = True
            config.use_query_cache = False
            try:
                job = client.query(sql, job_config=config)
            except GoogleAPICallError as exc:  # e.g. NotFound: a table the query reads does not exist yet
                raise EstimateUnavailable(f"dry run failed: {exc.message}") from exc
            scanned = job.total_bytes_processed
        return None if scanned is None else int(scanned)

    def ddl_for(self, target: TargetTable) -> str:
        """The `CREATE TABLE` text with the spec's columns, partitioning, clustering and options."""
        return bigquery_ddl.ddl_for(target)

    # ------------------------------------------------------------------------------------------- writes

    def write(self, request: WriteRequest) -> WriteResult:
        target = request.target
        stg_name = staging_name(target)
        with self.get_client() as client:
            stg_ref = f"{client.project}.{target.dataset}.{stg_name}"
            exists = self._prepare(client, target)
            try:
                stg = table_name(f"{target.dataset}.{stg_name}", B)
                create = f"CREATE TABLE {stg} {_STAGING_OPTIONS} AS SELECT * FROM (\n{request.sql}\n)"
                _run(client, create, request.params)
                source = source_select(target, stg, _staged_types(client, stg_ref, target))
                result = self._checked(client, request, source)
                result.extra["staging_table"] = stg_name
                if not exists:
                    self._create(client, target)
                self._apply(client, request, source, result, exists)
            finally:
                client.delete_table(stg_ref, not_found_ok=True)
        return result

    def _checked(self, client: bigquery.Client, request: WriteRequest, source: str) -> WriteResult:
        """Profile the staged rows in one query; refuse NULL or duplicate keys, rows outside the window and
        NULLs in `not_null` columns."""
        target, keys = request.target, request.unique_key
        scoped = window_scoped(request)
        checks = ["count(*)"]
        if request.strategy == "merge":
            checks.append("COUNTIF(" + " OR ".join(f"{quote(k, B)} IS NULL" for k in keys) + ")")
        if request.strategy == "append" and scoped:
            checks.append(f"COUNTIF(NOT ({window_condition(target, '')}))")
        not_null = [c.name for c in target.columns if c.constraints.not_null]
        checks += [f"COUNTIF({quote(c, B)} IS NULL)" for c in not_null]
        params = request.window.as_params() if scoped and request.window else {}
        row = _row(client, f"SELECT {', '.join(checks)} FROM ({source})", params)
        counts = [int(v or 0) for v in row]
        result = WriteResult(rows_read=counts.pop(0))
        if request.strategy == "merge":
            _check_keys(client, source, keys, target.ref, null_rows=counts.pop(0))
        if request.strategy == "append" and scoped:
            _refuse_outside_window(request, outside=counts.pop(0))
        _refuse_nulls(target.ref, dict(zip(not_null, counts, strict=True)), "the query returned")
        return result

    def _apply(
        self, client: bigquery.Client, request: WriteRequest, source: str, result: WriteResult, exists: bool
    ) -> None:
        target = request.target
        tbl = table_name(target.ref, B)
        scoped = window_scoped(request)
        params = request.window.as_params() if scoped and request.window else {}
        if request.strategy == "merge":
            keys = request.unique_key
            if exists:
                on = key_join(keys, "T", "S", B) + (
                    f" AND {window_condition(target, 'T.')}" if scoped else ""
                )
                result.rows_updated = _scalar(
                    client, f"SELECT count(*) FROM {tbl} AS T JOIN ({source}) AS S ON {on}", params
                )
            _run(client, merge_sql(target, keys, source, scoped), params)
        elif request.strategy == "append":
            if exists:
                where = window_condition(target, "") if scoped else "TRUE"
                result.rows_deleted = _scalar(client, f"SELECT count(*) FROM {tbl} WHERE {where}", params)
            _run(client, append_sql(target, source, scoped), params)
        else:
            if exists:
                result.rows_deleted = _scalar(client, f"SELECT count(*) FROM {tbl}")
            _run(client, replace_sql(target, source))
        result.rows_inserted = result.rows_read - result.rows_updated

    def load(self, request: LoadRequest, batches: Iterable[pa.RecordBatch]) -> WriteResult:
        target = request.target
        stg_name = staging_name(target)
        with self.get_client() as client:
            stg_ref = f"{client.project}.{target.dataset}.{stg_name}"
            exists = self._prepare(client, target)
            try:
                with tempfile.TemporaryDirectory(prefix="derive-load-") as tmp:
                    path = Path(tmp) / f"{stg_name}.parquet"
                    rows_read, staged = write_parquet(batches, target, path)
                    if not exists:
                        self._create(client, target)
                    result = WriteResult(rows_read=rows_read, extra={"staging_table": stg_name})
                    if not rows_read:
                        return result
                    self._load_file(client, path, stg_ref, staged)
                stg = table_name(f"{target.dataset}.{stg_name}", B)
                self._merge_staged(client, request, stg, staged, result)
            finally:
                client.delete_table(stg_ref, not_found_ok=True)
        return result

    def _load_file(
        self, client: bigquery.Client, path: Path, stg_ref: str, staged: Mapping[str, str]
    ) -> None:
        """One load job of the Parquet file into a new staging table of the wire schema (expires in a day)."""
        schema = [bigquery.SchemaField(name, bq_type) for name, bq_type in staged.items()]
        staging = bigquery.Table(stg_ref, schema=schema)
        staging.expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        client.create_table(staging)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            schema=schema,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        )
        with path.open("rb") as fh:
            # size=None: a resumable upload, which streams the file (and the only kind the emulator accepts).
            client.load_table_from_file(fh, stg_ref, size=None, job_config=config).result()

    def _merge_staged(
        self,
        client: bigquery.Client,
        request: LoadRequest,
        stg: str,
        staged: Mapping[str, str],
        result: WriteResult,
    ) -> None:
        """Newest row per key (by cursor, then stream position), soft deletes, one MERGE; counts as DuckDB."""
        target, keys = request.target, request.primary_key
        source = source_select(target, stg, staged, newest_per_key=(keys, request.cursor))
        flag = soft_delete_condition(request, "S.")
        flagged = flag or "FALSE"
        not_null = [c.name for c in target.columns if c.constraints.not_null]
        profile = [f"MAX({quote(request.cursor, B)})", f"COUNTIF({flagged})", f"COUNTIF(NOT ({flagged}))"]
        profile += [f"COUNTIF(NOT ({flagged}) AND S.{quote(c, B)} IS NULL)" for c in not_null]
        row = list(_row(client, f"SELECT {', '.join(profile)} FROM ({source}) AS S"))
        result.max_cursor = row[0]
        soft_deleted, kept = int(row[1] or 0), int(row[2] or 0)
        _refuse_nulls(
            target.ref, dict(zip(not_null, (int(v or 0) for v in row[3:]), strict=True)), "the source sent"
        )
        existing, deleted = (
            int(v or 0)
            for v in _row(
                client,
                f"SELECT count(*), COUNTIF({flagged}) FROM ({source}) AS S "
                f"JOIN {table_name(target.ref, B)} AS T ON {key_join(keys, 'T', 'S', B)}",
            )
        )
        if flag:
            result.extra["soft_deleted_rows_read"] = soft_deleted
        _run(client, load_merge_sql(target, keys, source, flag))
        result.rows_deleted = deleted
        result.rows_updated = existing - deleted
        result.rows_inserted = kept - result.rows_updated

    # ------------------------------------------------------------------------------------------- tables

    def _prepare(self, client: bigquery.Client, target: TargetTable) -> bool:
        """Create the dataset if missing; True when the table exists (its layout checked against the spec)."""
        dataset = bigquery.Dataset(f"{client.project}.{target.dataset}")
        if self.location:
            dataset.location = self.location
        client.create_dataset(dataset, exists_ok=True)
        try:
            table = client.get_table(f"{client.project}.{target.ref}")
        except NotFound:
            bigquery_ddl.time_partitioning(target)  # an impossible layout fails before any work
            return False
        check_layout(target, table)
        return True

    def _create(self, client: bigquery.Client, target: TargetTable) -> None:
        table = client.create_table(table_for(target, client.project), exists_ok=True)
        check_layout(target, table)  # another run may have created it first


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


def _run(client: bigquery.Client, sql: str, params: Mapping[str, Any] | None = None) -> bigquery.QueryJob:
    job = client.query(sql, job_config=_config(params))
    job.result()
    return job


def _row(client: bigquery.Client, sql: str, params: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    rows = list(client.query(sql, job_config=_config(params)).result())
    return tuple(rows[0].values()) if rows else ()


def _scalar(client: bigquery.Client, sql: str, params: Mapping[str, Any] | None = None) -> int:
    row = _row(client, sql, params)
    return int(row[0]) if row and row[0] is not None else 0


def _staged_types(client: bigquery.Client, stg_ref: str, target: TargetTable) -> dict[str, str]:
    """Declared column -> type of the staging column the query produced; all declared columns must be there."""
    staged = {f.name.lower(): standard_type(f.field_type) for f in client.get_table(stg_ref).schema}
    missing = [c.name for c in target.columns if c.name.lower() not in staged]
    if missing:
        raise WarehouseError(
            f"{target.ref}: the query returns no column {missing} (it returns {sorted(staged)}); every declared "
            "column must be in the query's output. Add them to the SELECT or remove them from the spec's "
            "columns. Nothing was written."
        )
    return {c.name: staged[c.name.lower()] for c in target.columns}


def _check_keys(
    client: bigquery.Client, source: str, keys: tuple[str, ...], ref: str, null_rows: int
) -> None:
    if null_rows:
        raise WarehouseError(
            f"{ref}: the query returned {null_rows} rows with a NULL in unique_key {list(keys)}; a merge key "
            "must identify each row. Filter those rows out or choose other key columns. Nothing was written."
        )
    cols = column_list(keys, B)
    dupes = _scalar(
        client, f"SELECT count(*) FROM (SELECT {cols} FROM ({source}) GROUP BY {cols} HAVING count(*) > 1)"
    )
    if dupes:
        raise WarehouseError(
            f"{ref}: the query returned several rows for {dupes} values of unique_key {list(keys)}; a merge needs "
            "one row per key. Aggregate by the key or extend unique_key. Nothing was written."
        )


def _refuse_outside_window(request: WriteRequest, outside: int) -> None:
    if not outside:
        return
    key = request.target.partition_key
    window = request.window
    raise WarehouseError(
        f"{request.target.ref}: the query returned {outside} rows whose partition key '{key}' lies outside "
        f"the window [{window.start if window else ''}, {window.end if window else ''}); an append run may only "
        "write its own window. Filter the query with @window_start/@window_end. Nothing was written."
    )


def _refuse_nulls(ref: str, nulls: Mapping[str, int], who: str) -> None:
    found = {column: n for column, n in nulls.items() if n}
    if found:
        raise WarehouseError(
            f"{ref}: {who} NULL in not_null columns (rows per column: {found}); the table declares them REQUIRED. "
            "Fill or filter those rows, or drop `not_null` from the spec's constraints. Nothing was written."
        )
