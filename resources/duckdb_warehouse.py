"""DuckDB, the embedded default warehouse: one file, no server.

Datasets are schemas, partition keys scope each run's delete/merge to its window, and cluster keys become the order
rows are written in (DuckDB's zone maps then skip row groups on those columns, the nearest thing it has to
BigQuery clustering).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from dagster import ConfigurableResource
from pydantic import Field

from resources.sql_text import DUCKDB_TYPES, cast_select, column_list, key_join, quote, select_sql, table_name
from resources.warehouse import LoadRequest, TargetTable, WarehouseError, WriteRequest, WriteResult

D = "duckdb"


class DuckDBWarehouse(ConfigurableResource):
    """The embedded warehouse: a DuckDB database file.

    Example:
        ```python
        Definitions(assets=..., resources={"warehouse": DuckDBWarehouse(path=".derive/warehouse.duckdb")})
        ```
    """

    path: str = Field(description="Path of the DuckDB database file; created with its directory if missing.")
    memory_limit: str = Field(default="2GB", description="DuckDB memory limit; larger work spills to disk.")
    lock_timeout_seconds: float = Field(
        default=120.0,
        description="How long to wait for another process's write lock on the file (one writer at a time).",
    )

    @property
    def dialect(self) -> str:
        return D

    @property
    def kind(self) -> str:
        return "duckdb"

    @property
    def types(self) -> dict[str, str]:
        return DUCKDB_TYPES

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection in UTC; waits while another process holds the file's lock."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(self.path, config=self._config())
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def _config(self) -> dict[str, Any]:
        # Never download extensions at run time (offline machines, reproducible runs): a query that needs one fails.
        return {
            "memory_limit": self.memory_limit,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }

    # ------------------------------------------------------------------------------------------- reads

    def table_exists(self, ref: str) -> bool:
        dataset, name = ref.split(".")
        with self.get_connection() as con:
            row = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = $s AND table_name = $t",
                {"s": dataset, "t": name},
            ).fetchone()
        return bool(row and row[0])

    def ddl_for(self, target: TargetTable) -> str:
        """DuckDB has no partitioning or clustering DDL; cluster keys become the insert order instead."""
        return _create_table_sql(target)

    def estimate_bytes(self, sql: str, params: Mapping[str, Any]) -> int | None:
        return None  # DuckDB has no dry run; local scans cost nothing to estimate

    def row_count(self, ref: str) -> int:
        with self.get_connection() as con:
            return _scalar(con, f"SELECT count(*) FROM {table_name(ref, D)}")

    def count_violations(self, sql: str, params: Mapping[str, Any]) -> int:
        with self.get_connection() as con:
            return _scalar(con, sql, params)

    def scalar(self, sql: str, params: Mapping[str, Any]) -> Any:
        with self.get_connection() as con:
            row = con.execute(sql, dict(params)).fetchone()
        return row[0] if row else None

    def read_arrow(self, ref: str, where_sql: str | None, params: Mapping[str, Any]) -> pa.Table:
        sql = select_sql(ref, None, where_sql, D)
        with self.get_connection() as con:
            return con.execute(sql, dict(params)).fetch_arrow_table()

    def iter_batches(
        self,
        ref: str,
        columns: Sequence[str],
        where_sql: str | None,
        params: Mapping[str, Any],
        batch_rows: int,
    ) -> Iterator[pa.RecordBatch]:
        sql = select_sql(ref, columns, where_sql, D)
        with self.get_connection() as con:
            reader = con.execute(sql, dict(params)).fetch_record_batch(batch_rows)
            yield from reader

    # ------------------------------------------------------------------------------------------- writes

    def write(self, request: WriteRequest) -> WriteResult:
        target = request.target
        stg = _staging_name()
        with self.get_connection() as con, _transaction(con):
            _ensure_table(con, target)
            con.execute(f"CREATE TEMP TABLE {stg} AS SELECT * FROM (\n{request.sql}\n)", dict(request.params))
            result = WriteResult(rows_read=_scalar(con, f"SELECT count(*) FROM {stg}"))
            tbl = table_name(target.ref, D)
            if request.strategy == "merge":
                _check_keys(con, stg, request.unique_key, target.ref)
                window_filter, params = _window_filter(request, prefix="t.")
                result.rows_updated = _scalar(
                    con,
                    f"DELETE FROM {tbl} AS t USING {stg} AS s WHERE {key_join(request.unique_key, 't', 's', D)}"
                    + window_filter,
                    params,
                )
            elif request.strategy == "append":
                _check_in_window(con, stg, request)
                window_filter, params = _window_filter(request, prefix="")
                result.rows_deleted = _scalar(con, f"DELETE FROM {tbl} WHERE TRUE" + window_filter, params)
            else:  # replace: the table becomes exactly the query's output
                result.rows_deleted = _scalar(con, f"DELETE FROM {tbl}")
            result.rows_inserted = _insert_from(con, target, stg) - result.rows_updated
            con.execute(f"DROP TABLE {stg}")
        return result

    def load(self, request: LoadRequest, batches: Iterable[pa.RecordBatch]) -> WriteResult:
        target = request.target
        stg = _staging_name()
        casts = cast_select(target.columns, DUCKDB_TYPES, D)
        tbl = table_name(target.ref, D)
        names = column_list([c.name for c in target.columns], D)
        with self.get_connection() as con, _transaction(con):
            _ensure_table(con, target)
            # A first load has nothing to merge with: rows go straight into the table, no staging copy.
            first_load = _scalar(con, f"SELECT count(*) FROM (SELECT 1 FROM {tbl} LIMIT 1)") == 0
            dest = tbl if first_load else stg
            if not first_load:
                con.execute(
                    f"CREATE TEMP TABLE {stg} AS SELECT {casts} FROM {_empty_source(target)} WHERE FALSE"
                )
            rows_read = 0
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                con.register("derive_batch", batch)
                con.execute(f"INSERT INTO {dest} ({names}) SELECT {casts} FROM derive_batch")
                con.unregister("derive_batch")
                rows_read += batch.num_rows
            result = WriteResult(rows_read=rows_read)
            if first_load:
                result = self._finish_first_load(con, request, result)
            else:
                if rows_read:
                    result = self._merge_staged(con, request, stg, result)
                con.execute(f"DROP TABLE {stg}")
        return result

    def _finish_first_load(
        self, con: duckdb.DuckDBPyConnection, request: LoadRequest, result: WriteResult
    ) -> WriteResult:
        """Rows were inserted directly: take the watermark, then drop the rows the source marked deleted."""
        tbl = table_name(request.target.ref, D)
        row = con.execute(f"SELECT max({quote(request.cursor, D)}) FROM {tbl}").fetchone()
        result.max_cursor = row[0] if row else None
        flagged = 0
        flag = self._soft_delete_condition(request)
        if flag:
            flagged = _scalar(con, f"DELETE FROM {tbl} WHERE {flag}")
            result.extra["soft_deleted_rows_read"] = flagged
        result.rows_inserted = result.rows_read - flagged
        return result

    @staticmethod
    def _soft_delete_condition(request: LoadRequest) -> str | None:
        """SQL (on alias-free column) that is true for rows the source marked deleted."""
        if not request.soft_delete_column:
            return None
        col = quote(request.soft_delete_column, D)
        if request.target.column(request.soft_delete_column).type == "BOOL":
            return f"{col} IS TRUE"
        return f"{col} IS NOT NULL"

    def _merge_staged(
        self, con: duckdb.DuckDBPyConnection, request: LoadRequest, stg: str, result: WriteResult
    ) -> WriteResult:
        target, keys = request.target, request.primary_key
        tbl = table_name(target.ref, D)
        # A row may appear twice when it changed again while we read (or with an overlap): keep the newest.
        cursor = quote(request.cursor, D)
        con.execute(
            f"DELETE FROM {stg} WHERE rowid NOT IN (SELECT arg_max(rowid, {cursor}) FROM {stg} "
            f"GROUP BY {column_list(keys, D)})"
        )
        result.max_cursor = con.execute(f"SELECT max({cursor}) FROM {stg}").fetchone()[0]  # type: ignore[index]
        flag = self._soft_delete_condition(request)
        existing = _scalar(
            con, f"SELECT count(*) FROM {stg} AS s JOIN {tbl} AS t ON {key_join(keys, 't', 's', D)}"
        )
        deleted = 0
        if flag:
            deleted = _scalar(
                con,
                f"SELECT count(*) FROM {stg} AS s JOIN {tbl} AS t ON {key_join(keys, 't', 's', D)} WHERE s.{flag}",
            )
            result.extra["soft_deleted_rows_read"] = _scalar(
                con, f"SELECT count(*) FROM {stg} AS s WHERE s.{flag}"
            )
        con.execute(f"DELETE FROM {tbl} AS t USING {stg} AS s WHERE {key_join(keys, 't', 's', D)}")
        if flag:
            con.execute(f"DELETE FROM {stg} AS s WHERE s.{flag}")
        inserted = _insert_from(con, target, stg)
        result.rows_deleted = deleted
        result.rows_updated = existing - deleted
        result.rows_inserted = inserted - result.rows_updated
        return result


# ----------------------------------------------------------------------------------------------- helpers


def _staging_name() -> str:
    """Unique per run, so two runs of different windows of one table never share a staging table."""
    return quote(f"derive_stg_{uuid.uuid4().hex[:12]}", D)


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.begin()
    try:
        yield
    except BaseException:
        con.rollback()
        raise
    con.commit()


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None) -> int:
    row = con.execute(sql, dict(params or {})).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _ensure_table(con: duckdb.DuckDBPyConnection, target: TargetTable) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(target.dataset, D)}")
    con.execute(_create_table_sql(target))


def _create_table_sql(target: TargetTable) -> str:
    cols = ",\n  ".join(
        f"{quote(c.name, D)} {DUCKDB_TYPES[c.type]}" + (" NOT NULL" if c.constraints.not_null else "")
        for c in target.columns
    )
    return f"CREATE TABLE IF NOT EXISTS {table_name(target.ref, D)} (\n  {cols}\n)"


def _empty_source(target: TargetTable) -> str:
    nulls = ", ".join(f"NULL AS {quote(c.name, D)}" for c in target.columns)
    return f"(SELECT {nulls})"


def _insert_from(con: duckdb.DuckDBPyConnection, target: TargetTable, stg: str) -> int:
    order = f" ORDER BY {column_list(target.cluster, D)}" if target.cluster else ""
    names = column_list([c.name for c in target.columns], D)
    return _scalar(
        con,
        f"INSERT INTO {table_name(target.ref, D)} ({names}) "
        f"SELECT {cast_select(target.columns, DUCKDB_TYPES, D)} FROM {stg}{order}",
    )


def _window_filter(request: WriteRequest, prefix: str) -> tuple[str, dict[str, Any]]:
    """Restrict the target to the window's partitions, when that cannot change which rows match.

    For append the window's slice is exactly what a run owns. For merge it is only safe when the partition key is
    part of the unique key (a key can then only live in its own window's partition).
    """
    key = request.target.partition_key
    if key is None or request.window is None:
        return "", {}
    if request.strategy == "merge" and key not in request.unique_key:
        return "", {}
    col = prefix + quote(key, D)
    sql_type = DUCKDB_TYPES[request.target.column(key).type]
    return (
        f" AND {col} >= CAST($window_start AS {sql_type}) AND {col} < CAST($window_end AS {sql_type})",
        request.window.as_params(),
    )


def _check_keys(con: duckdb.DuckDBPyConnection, stg: str, keys: tuple[str, ...], ref: str) -> None:
    cols = column_list(keys, D)
    nulls = " OR ".join(f"{quote(k, D)} IS NULL" for k in keys)
    null_rows = _scalar(con, f"SELECT count(*) FROM {stg} WHERE {nulls}")
    if null_rows:
        raise WarehouseError(
            f"{ref}: the query returned {null_rows} rows with a NULL in unique_key {list(keys)}; a merge key "
            "must identify each row. Filter those rows out or choose other key columns. Nothing was written."
        )
    dupes = _scalar(
        con, f"SELECT count(*) FROM (SELECT {cols} FROM {stg} GROUP BY {cols} HAVING count(*) > 1)"
    )
    if dupes:
        raise WarehouseError(
            f"{ref}: the query returned several rows for {dupes} values of unique_key {list(keys)}; a merge needs "
            "one row per key. Aggregate by the key or extend unique_key. Nothing was written."
        )


def _check_in_window(con: duckdb.DuckDBPyConnection, stg: str, request: WriteRequest) -> None:
    filter_sql, params = _window_filter(request, prefix="")
    if not filter_sql:
        return
    outside = _scalar(con, f"SELECT count(*) FROM {stg} WHERE NOT (TRUE{filter_sql})", params)
    if outside:
        key = request.target.partition_key
        raise WarehouseError(
            f"{request.target.ref}: the query returned {outside} rows whose partition key '{key}' lies outside "
            f"the window [{request.window.start if request.window else ''}, "
            f"{request.window.end if request.window else ''}); an append run may only write its own window. "
            "Filter the query with @window_start/@window_end. Nothing was written."
        )
