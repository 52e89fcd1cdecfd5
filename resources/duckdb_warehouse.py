"""DuckDB, the embedded default warehouse: one file, no server.

Datasets are schemas, partition keys scope each run's delete/merge to its window, and cluster keys become the order
rows are written in (DuckDB's zone maps then skip row groups on those columns, the nearest thing it has to
BigQuery clustering).
"""

from __future__ import annotations

import re
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
from resources.warehouse import LoadRequest, TargetTable, WarehouseLocked, WriteRequest, WriteResult
from resources.warehouse_rules import (
    check_row_source,
    declared_columns,
    duplicate_keys_sql,
    load_counts,
    named,
    profile_sql,
    refuse_duplicates,
    refuse_load,
    refuse_write,
    window_condition,
    window_scoped,
    write_counts,
    write_params,
)

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
        description=(
            "How long to wait for another process's write lock on the file (one writer at a time) before the run "
            "fails with an error naming the process that holds it."
        ),
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
        """A connection in UTC; waits while another process holds the file's lock, for up to
        `lock_timeout_seconds`, then raises `WarehouseLocked` naming that process."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(self.path, config=self._config())
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                waited = time.monotonic() - started
                if waited >= self.lock_timeout_seconds:
                    holder = lock_holder(str(exc))
                    raise WarehouseLocked(self.path, holder, waited, self.lock_timeout_seconds) from None
                time.sleep(min(delay, self.lock_timeout_seconds - waited))
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

    def write(self, request: WriteRequest, batches: Iterable[pa.RecordBatch] | None = None) -> WriteResult:
        target = request.target
        check_row_source(request, batches)
        stg = _staging_name()
        with self.get_connection() as con, _transaction(con):
            _ensure_table(con, target)
            if request.sql is None:
                _stage_batches(con, target, stg, batches or ())
            else:
                con.execute(
                    f"CREATE TEMP TABLE {stg} AS SELECT * FROM (\n{request.sql}\n)", dict(request.params)
                )
            result = WriteResult(rows_read=_checked(con, request, stg))
            tbl = table_name(target.ref, D)
            if request.strategy == "merge":
                window_filter, params = _window_filter(request, prefix="t.")
                result.rows_updated = _scalar(
                    con,
                    f"DELETE FROM {tbl} AS t USING {stg} AS s WHERE {key_join(request.unique_key, 't', 's', D)}"
                    + window_filter,
                    params,
                )
            elif request.strategy == "append":
                window_filter, params = _window_filter(request, prefix="")
                result.rows_deleted = _scalar(con, f"DELETE FROM {tbl} WHERE TRUE" + window_filter, params)
            else:  # replace: the table becomes exactly the query's output
                result.rows_deleted = _scalar(con, f"DELETE FROM {tbl}")
            result.rows_inserted = _insert_from(con, target, stg) - result.rows_updated
            con.execute(f"DROP TABLE {stg}")
        return result

    def load(self, request: LoadRequest, batches: Iterable[pa.RecordBatch]) -> WriteResult:
        """Stream batches into staging (straight into the table on a first load), refuse NULL and duplicate
        primary keys and NULLs in `not_null` columns, then merge; a refusal rolls everything back.

        NULLs are counted per batch, before it is inserted (the table's NOT NULL would otherwise stop the insert
        with a bare constraint error), so a refusal counts the rows of the first batch that had them.
        """
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
            counts = load_counts(target, request.primary_key, D)
            batch_profile = profile_sql("derive_batch", counts, D, first=())
            rows_read = 0
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                con.register("derive_batch", batch)
                refuse_load(target, request.primary_key, named(counts, _row(con, batch_profile)))
                con.execute(f"INSERT INTO {dest} ({names}) SELECT {casts} FROM derive_batch")
                con.unregister("derive_batch")
                rows_read += batch.num_rows
            duplicates = con.execute(duplicate_keys_sql(dest, request.primary_key, D)).fetchall()
            refuse_duplicates(target.ref, request.primary_key, duplicates, "primary_key")
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
        cursor = quote(request.cursor, D)  # staging holds one row per key: `load` refused duplicates
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
        f"{quote(c.name, D)} {DUCKDB_TYPES[c.type]}" + (" NOT NULL" if c.not_null else "")
        for c in target.columns
    )
    return f"CREATE TABLE IF NOT EXISTS {table_name(target.ref, D)} (\n  {cols}\n)"


def _empty_source(target: TargetTable) -> str:
    nulls = ", ".join(f"NULL AS {quote(c.name, D)}" for c in target.columns)
    return f"(SELECT {nulls})"


def _stage_batches(
    con: duckdb.DuckDBPyConnection, target: TargetTable, stg: str, batches: Iterable[pa.RecordBatch]
) -> None:
    """A temp staging table of the declared columns and types, filled batch by batch (cast on the way in)."""
    casts = cast_select(target.columns, DUCKDB_TYPES, D)
    names = column_list([c.name for c in target.columns], D)
    con.execute(f"CREATE TEMP TABLE {stg} AS SELECT {casts} FROM {_empty_source(target)} WHERE FALSE")
    for batch in batches:
        if batch.num_rows == 0:
            continue
        declared_columns(batch, target, "rows")
        con.register("derive_batch", batch)
        con.execute(f"INSERT INTO {stg} ({names}) SELECT {casts} FROM derive_batch")
        con.unregister("derive_batch")


def _insert_from(con: duckdb.DuckDBPyConnection, target: TargetTable, stg: str) -> int:
    order = f" ORDER BY {column_list(target.cluster, D)}" if target.cluster else ""
    names = column_list([c.name for c in target.columns], D)
    return _scalar(
        con,
        f"INSERT INTO {table_name(target.ref, D)} ({names}) "
        f"SELECT {cast_select(target.columns, DUCKDB_TYPES, D)} FROM {stg}{order}",
    )


def _window_filter(request: WriteRequest, prefix: str) -> tuple[str, dict[str, Any]]:
    """` AND <the window>` on the target, when the strategy may restrict its delete to the window."""
    if not window_scoped(request) or request.window is None:
        return "", {}
    return f" AND {window_condition(request.target, DUCKDB_TYPES, D, prefix)}", request.window.as_params()


def _checked(con: duckdb.DuckDBPyConnection, request: WriteRequest, stg: str) -> int:
    """Profile the staged rows in one scan and refuse what breaks a rule (`warehouse_rules`); the row count."""
    counts = write_counts(request, DUCKDB_TYPES, D)
    row = _row(con, profile_sql(stg, counts, D), write_params(request))
    refuse_write(request, named(counts, row[1:]))
    if request.strategy == "merge":
        duplicates = con.execute(duplicate_keys_sql(stg, request.unique_key, D)).fetchall()
        refuse_duplicates(request.target.ref, request.unique_key, duplicates, "unique_key")
    return int(row[0])


def _row(
    con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None
) -> tuple[Any, ...]:
    row = con.execute(sql, dict(params or {})).fetchone()
    return tuple(row) if row else ()


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def lock_holder(message: str) -> str | None:
    """`PID 1234, /usr/bin/python3` from DuckDB's lock error, or None when the message does not say."""
    found = _LOCK_HOLDER.search(message)
    return f"PID {found['pid']}, {found['program']}" if found else None
