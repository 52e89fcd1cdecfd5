"""DuckDB, the embedded default warehouse: one file, no server.

Datasets are schemas, partition keys scope each run's delete/merge to its window, and cluster keys become the order
rows are written in (DuckDB's zone maps then skip row groups on those columns, the nearest thing it has to
BigQuery clustering).

The strategies are `resources.strategy`, written once for every engine; this module is DuckDB's primitives
(`DuckDBSession`: one connection, one transaction per run, temp staging tables, batches registered as views) and
its quirks (waiting for another process's file lock, `lock_holder`). Its `CAPABILITIES`: every strategy is a
delete + insert inside the run's transaction, DELETE reports its row count, inserts follow the cluster keys, and a
first load streams straight into the empty table.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb
from dagster import ConfigurableResource
from pydantic import Field

from resources import duckdb_schema, engine_sql, evolution, strategy
from resources.engine import BatchScreen, Capabilities, Origin, Staged
from resources.engine_sql import ident
from resources.lazy_import import lazy_module
from resources.reads import SliceReads
from resources.schema_diff import ExistingTable, SchemaChange, SchemaDiff
from resources.sql_text import DUCKDB_TYPES, cast_select, column_list, quote, table_name
from resources.warehouse import (
    DEFAULT_MAX_DELETE_PERCENT,
    DatasetNotEmpty,
    LoadRequest,
    TargetTable,
    WarehouseLocked,
    WarehouseUnavailable,
    WriteRequest,
    WriteResult,
)
from resources.warehouse_rules import declared_columns

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp
else:
    exp = lazy_module("sqlglot.expressions")


D = "duckdb"


class DuckDBWarehouse(SliceReads, ConfigurableResource):
    """The embedded warehouse: a DuckDB database file.

    Example:
        ```python
        Definitions(assets=..., resources={"warehouse": DuckDBWarehouse(path=".derive/warehouse.duckdb")})
        ```
    """

    path: str = Field(description="Path of the DuckDB database file; created with its directory if missing.")
    memory_limit: str = Field(default="2GB", description="DuckDB memory limit; larger work spills to disk.")
    load_memory_limit: str = Field(
        default="256MB",
        description=(
            "DuckDB's memory limit while a replication load runs (staging, its checks and the merge). DuckDB "
            "keeps the blocks a load writes cached up to its limit, so without this a load's memory grows with "
            "the table up to `memory_limit`; larger work spills to disk next to the database file."
        ),
    )
    lock_timeout_seconds: float = Field(
        default=120.0,
        description=(
            "How long to wait for another process's write lock on the file (one writer at a time) before the run "
            "fails with an error naming the process that holds it."
        ),
    )

    CAPABILITIES: ClassVar[Capabilities] = Capabilities(
        transactional_session=True,
        upsert="delete_insert",
        insert_overwrite="delete_insert",
        replace="delete_insert",
        dml_row_counts=True,
        cluster_by_insert_order=True,
        direct_first_load=True,
    )
    """Every run is one transaction: deletes and inserts are atomic together, a first load goes straight into
    the empty table, and a refused run's CREATE TABLE rolls back too."""

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
                    raise WarehouseUnavailable(
                        f"the DuckDB warehouse {self.path} cannot be opened: "
                        f"{str(exc).splitlines()[0].rstrip('!. ')}. Point DERIVE_DUCKDB_PATH (or DERIVE_HOME) "
                        "at a DuckDB file, or move that file away to start a new warehouse. Nothing was written."
                    ) from None
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
        if not Path(self.path).exists():
            return False  # not created by asking (planning writes nothing)
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

    def query(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a small read-only query (`Warehouse.query`); `$name` parameters."""
        return self._query_rows(sql, params)

    def row_count(self, ref: str) -> int:
        with self.get_connection() as con:
            return _scalar(con, f"SELECT count(*) FROM {table_name(ref, D)}")

    def relation_identifier(self, ref: str) -> str:
        """`<catalog>.<dataset>.<table>`: the catalog is the name DuckDB gives the attached file (`catalog_name`)."""
        return f"{catalog_name(self.path)}.{ref}"

    # ------------------------------------------------------------------------------------------- tables

    def describe(self, ref: str) -> ExistingTable | None:
        """The table's columns (in spec types) and Derive's marker; None when it does not exist (a missing
        database file is not created: planning writes nothing)."""
        if not Path(self.path).exists():
            return None
        with self.get_connection() as con:
            return duckdb_schema.describe(con, ref)

    def schema_diff(self, target: TargetTable) -> SchemaDiff | None:
        """How the spec differs from the existing table (None: no table yet)."""
        return evolution.schema_diff(self.describe(target.ref), target)

    def managed_tables(self, datasets: Iterable[str]) -> list[str]:
        """The tables in `datasets` that Derive created (they carry its marker)."""
        if not Path(self.path).exists():
            return []
        with self.get_connection() as con:
            return duckdb_schema.managed_tables(con, datasets)

    def drop_table(self, ref: str) -> None:
        """Drop a table Derive created; `WarehouseError` for one without its marker (nothing when missing)."""
        if not Path(self.path).exists():
            return
        with self.get_connection() as con, _transaction(con):
            existing = duckdb_schema.describe(con, ref)
            if existing is None:
                return
            evolution.refuse_unmarked(ref, existing)
            con.execute(f"DROP TABLE {table_name(ref, D)}")

    def datasets(self) -> list[str]:
        """The file's schemas but DuckDB's own (`main` and the catalogs'), sorted; none for a missing file."""
        if not Path(self.path).exists():
            return []
        with self.get_connection() as con:
            rows = con.execute(
                "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database() "
                "AND NOT internal ORDER BY schema_name"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def drop_dataset(self, name: str) -> None:
        """`DROP SCHEMA` of an empty schema; `DatasetNotEmpty` naming its tables and views otherwise."""
        if not Path(self.path).exists():
            return
        with self.get_connection() as con, _transaction(con):
            found = con.execute(
                "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database() "
                "AND NOT internal AND lower(schema_name) = lower($s)",
                {"s": name},
            ).fetchone()
            if found is None:
                return
            held = con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "AND NOT temporary AND lower(schema_name) = lower($s) UNION ALL "
                "SELECT view_name FROM duckdb_views() WHERE database_name = current_database() "
                "AND NOT internal AND NOT temporary AND lower(schema_name) = lower($s) ORDER BY 1",
                {"s": name},
            ).fetchall()
            if held:
                raise DatasetNotEmpty(str(found[0]), [f"{found[0]}.{r[0]}" for r in held])
            con.execute(f"DROP SCHEMA {quote(str(found[0]), D)}")

    def _query_rows(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        with self.get_connection() as con:
            return [tuple(r) for r in con.execute(sql, dict(params)).fetchall()]

    def _query_batches(
        self, sql: str, params: Mapping[str, Any], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        with self.get_connection() as con:
            yield from con.execute(sql, dict(params)).fetch_record_batch(batch_rows)

    def _query_arrow(self, sql: str, params: Mapping[str, Any]) -> pa.Table:
        with self.get_connection() as con:
            return con.execute(sql, dict(params)).fetch_arrow_table()

    # ------------------------------------------------------------------------------------------- writes

    def write(self, request: WriteRequest, batches: Iterable[pa.RecordBatch] | None = None) -> WriteResult:
        """Run a derived table's query (or stage a Python asset's batches) with its strategy, in one transaction."""
        return strategy.write(self, request, batches)

    def load(self, request: LoadRequest, batches: Iterable[pa.RecordBatch]) -> WriteResult:
        """Stream batches into staging (straight into the table on a first load), refuse NULL and duplicate
        primary keys and NULLs in `not_null` columns, then merge; a refusal rolls everything back. Runs under
        `load_memory_limit`, so its memory stays flat however large the extraction."""
        return strategy.load(_LoadEngine(self), request, batches)

    def reconcile(
        self,
        request: LoadRequest,
        key_batches: Iterable[pa.RecordBatch],
        max_delete_percent: float = DEFAULT_MAX_DELETE_PERCENT,
    ) -> WriteResult:
        """Stage every source key into a temp table, then delete the rows whose key is gone, in the run's one
        transaction (`resources.strategy.reconcile`): a failed key read rolls back with nothing deleted."""
        return strategy.reconcile(self, request, key_batches, max_delete_percent)

    def promote(self, staging: TargetTable, target: TargetTable) -> int:
        """Drop `target` (if any) and rename `staging` to it, in one transaction: atomic for every reader."""
        with self.session() as s:
            if s.exists(target):
                return s.swap(staging, target)
            s.execute(engine_sql.rename_table(staging.ref, target.name))
            return 0

    @contextmanager
    def session(self) -> Iterator[DuckDBSession]:
        """One connection and one transaction for a run; temp staging tables go with the connection."""
        with self.get_connection() as con, _transaction(con):
            yield DuckDBSession(con)


class DuckDBSession:
    """The strategy primitives on one DuckDB connection inside its run's transaction."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._cursor: duckdb.DuckDBPyConnection | None = None
        """A second cursor for `screen` while `stage_batches` streams (see `_screen`)."""
        self.dialect: str = D
        self.cast_types: Mapping[str, str] = DUCKDB_TYPES

    def prepare(self, target: TargetTable) -> bool:
        """Create the schema, and the table with Derive's marker when it does not exist yet."""
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(target.dataset, D)}")
        if duckdb_schema.describe(self.con, target.ref) is None:
            self.con.execute(_create_table_sql(target))
            self.mark(target)
        return True  # created inside the run's transaction: a refused run rolls the CREATE back

    def describe(self, ref: str) -> ExistingTable | None:
        return duckdb_schema.describe(self.con, ref)

    def evolve(self, target: TargetTable, changes: Sequence[SchemaChange]) -> None:
        for statement in duckdb_schema.evolve_sql(target, changes):
            self.con.execute(statement)

    def mark(self, target: TargetTable) -> None:
        self.con.execute(duckdb_schema.mark_sql(target))

    def create(self, target: TargetTable) -> None:
        raise AssertionError(f"{target.ref}: DuckDB creates the table in `prepare`")

    def stage_query(self, target: TargetTable, sql: str, params: Mapping[str, Any]) -> Staged:
        stg = _staging_name()
        casts = cast_select(target.columns, DUCKDB_TYPES, D)
        self.con.execute(
            f"CREATE TEMP TABLE {quote(stg, D)} AS SELECT {casts} FROM (\n{sql}\n)", dict(params)
        )
        return Staged(_relation(stg))

    def stage_batches(
        self,
        target: TargetTable,
        batches: Iterable[pa.RecordBatch],
        origin: Origin,
        into_target: bool = False,
        screen: BatchScreen | None = None,
    ) -> Staged:
        """The batches conformed to the declared types in Arrow (`resources.arrow_conform`: the exact casts,
        30x cheaper than DuckDB's rescale of a driver's DECIMAL(38, 10)), then inserted with the remaining casts
        by one `INSERT ... SELECT` over the whole stream (`resources.batch_stream`): into a temp staging table,
        or (a direct first load) into the target itself. `screen` passes each raw batch first, so a refusal
        counts the rows of the first bad batch, as before."""
        from resources import arrow_conform
        from resources.batch_stream import scan_in_thread

        casts = cast_select(target.columns, DUCKDB_TYPES, D)
        names = column_list([c.name for c in target.columns], D)
        stg = target.ref if into_target else _staging_name()
        dest = table_name(stg, D) if into_target else quote(stg, D)
        if not into_target:
            self.con.execute(
                f"CREATE TEMP TABLE {dest} AS SELECT {casts} FROM {_empty_source(target)} WHERE FALSE"
            )
        con, rows = self.con, 0  # `con` runs the INSERT on the stream's thread; `_screen` borrows `self.con`

        def prepared() -> Iterator[pa.RecordBatch]:
            nonlocal rows
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                declared_columns(batch, target, origin)
                if screen is not None:
                    self._screen(screen, batch)
                rows += batch.num_rows
                yield arrow_conform.conform(batch, target.columns, arrow_conform.DUCKDB_ARROW_TYPES)

        def insert(reader: pa.RecordBatchReader) -> None:
            con.register(_BATCH, reader)
            try:
                con.execute(f"INSERT INTO {dest} ({names}) SELECT {casts} FROM {_BATCH}")
            finally:
                con.unregister(_BATCH)

        try:
            scan_in_thread(insert, prepared())
        finally:
            if self._cursor is not None:
                self._cursor.close()
                self._cursor = None
        return Staged(_relation(stg), rows=rows, in_target=into_target)

    def _screen(self, screen: BatchScreen, batch: pa.RecordBatch) -> None:
        """`screen` over one raw batch, on a second cursor: the session's connection is busy with the INSERT
        of the batches before it (the screen's query reads only the batch, so the cursor's own transaction does
        not matter)."""
        if self._cursor is None:
            self._cursor = self.con.cursor()
        self._cursor.register(_BATCH, batch)
        busy, self.con = self.con, self._cursor
        try:
            screen(exp.table_(ident(_BATCH)))
        finally:
            self.con = busy
            self._cursor.unregister(_BATCH)

    def execute(self, statement: exp.Expr, params: Mapping[str, Any] | None = None) -> int | None:
        cursor = self.con.execute(statement.sql(D), dict(params or {}))
        if isinstance(statement, exp.Delete | exp.Insert | exp.Update | exp.Merge):
            row = cursor.fetchone()
            return int(row[0]) if row and row[0] is not None else 0
        return None

    def rows(self, query: exp.Expr, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.con.execute(query.sql(D), dict(params or {})).fetchall()]

    def script(self, statements: Sequence[exp.Expr]) -> None:
        for statement in statements:  # already inside the run's transaction
            self.execute(statement)

    def exists(self, target: TargetTable) -> bool:
        found = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $s AND table_name = $t",
            {"s": target.dataset, "t": target.name},
        ).fetchone()
        return bool(found and found[0])

    def swap(self, fresh: TargetTable, target: TargetTable) -> int:
        """Drop the old table and rename `fresh`, inside the run's transaction: atomic for every reader."""
        old_rows = _scalar(self.con, f"SELECT count(*) FROM {table_name(target.ref, D)}")
        self.execute(engine_sql.drop_table(target.ref))
        self.execute(engine_sql.rename_table(fresh.ref, target.name))
        return old_rows

    def discard(self, fresh: TargetTable) -> None:
        del fresh  # created inside the run's transaction, which rolls back with the failure


# ----------------------------------------------------------------------------------------------- helpers


class _LoadEngine:
    """The warehouse as `strategy.load` sees it: its sessions run under `load_memory_limit`."""

    CAPABILITIES: ClassVar[Capabilities] = DuckDBWarehouse.CAPABILITIES

    def __init__(self, warehouse: DuckDBWarehouse) -> None:
        self.warehouse = warehouse

    @contextmanager
    def session(self) -> Iterator[DuckDBSession]:
        """`DuckDBWarehouse.session` with the lower limit set outside the transaction (an aborted transaction
        refuses every statement but ROLLBACK)."""
        with (
            self.warehouse.get_connection() as con,
            _memory_limit(con, self.warehouse.load_memory_limit, self.warehouse.memory_limit),
            _transaction(con),
        ):
            yield DuckDBSession(con)


@contextmanager
def _memory_limit(con: duckdb.DuckDBPyConnection, limit: str, configured: str) -> Iterator[None]:
    """DuckDB's `memory_limit` (a setting of the whole database instance) lowered to `limit` for the block, then
    set back to `configured` (the resource's `memory_limit`, which every connection opens with). Never raised: a
    `configured` limit already below `limit` stays."""
    con.execute("SET memory_limit = ?", [limit])
    lowered = _bytes(_setting(con, "memory_limit"))
    con.execute("SET memory_limit = ?", [configured])
    if lowered < _bytes(_setting(con, "memory_limit")):
        con.execute("SET memory_limit = ?", [limit])
    try:
        yield
    finally:
        con.execute("SET memory_limit = ?", [configured])


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    row = con.execute("SELECT current_setting(?)", [name]).fetchone()
    return str(row[0]) if row else ""


_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}


def _bytes(size: str) -> float:
    """DuckDB's rendering of a size (`953.6 MiB`, `12 bytes`) in bytes; unknown forms count as unlimited."""
    number, _, unit = size.partition(" ")
    try:
        return float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        return float("inf")


_BATCH = "derive_batch"
"""The name a batch stream (or a batch, for `screen`) is registered under while it is read."""


def _staging_name() -> str:
    """Unique per run, so two runs of different windows of one table never share a staging table."""
    return f"derive_stg_{uuid.uuid4().hex[:12]}"


def _relation(ref: str) -> exp.Table:
    """A table (`dataset.name`) or a temp table (`name`) as a sqlglot relation."""
    if "." in ref:
        dataset, name = ref.split(".")
        return exp.table_(ident(name), db=ident(dataset))
    return exp.table_(ident(ref))


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


def _create_table_sql(target: TargetTable) -> str:
    cols = ",\n  ".join(
        f"{quote(c.name, D)} {DUCKDB_TYPES[c.type]}" + (" NOT NULL" if c.not_null else "")
        for c in target.columns
    )
    return f"CREATE TABLE IF NOT EXISTS {table_name(target.ref, D)} (\n  {cols}\n)"


def _empty_source(target: TargetTable) -> str:
    nulls = ", ".join(f"NULL AS {quote(c.name, D)}" for c in target.columns)
    return f"(SELECT {nulls})"


_BUILTIN_CATALOGS = ("main", "temp", "system")
"""Names DuckDB keeps for itself: a file with one of these names attaches as `<name>_db`."""


def catalog_name(path: str) -> str:
    """The catalog DuckDB gives a database file it opens: the file name up to its first dot (`wh.duckdb` ->
    `wh`, `.x.db` -> `x`), `<name>_db` for a name DuckDB keeps for itself, and `memory` for `:memory:` (DuckDB's
    `ExtractDatabaseName`; the contract suite checks it against `current_database()` of a real connection)."""
    if path in ("", ":memory:"):
        return "memory"
    stem = next((part for part in Path(path).name.split(".") if part), "memory")
    return f"{stem}_db" if stem in _BUILTIN_CATALOGS else stem


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def lock_holder(message: str) -> str | None:
    """`PID 1234, /usr/bin/python3` from DuckDB's lock error, or None when the message does not say."""
    found = _LOCK_HOLDER.search(message)
    return f"PID {found['pid']}, {found['program']}" if found else None
