"""What runs inside each measured subprocess: `python -m benchmarks.workers <task> '<json args>'`.

Each task imports what it needs, times only the measured section with `time.perf_counter()` and prints one JSON
line with `seconds` and whatever else it counted. Setup tasks (`*_setup`) are run the same way but not timed.
Timing starts after imports and `build_definitions`, for Derive and the plain paths alike (imports and
definitions have scenarios of their own); it includes opening and closing every connection. That includes imports
made lazily: DuckDB's Python client imports pandas on the first query with bound parameters (about 0.2-0.3 s
here), so every worker imports pandas before its task, or a 0.4 s merge would be mostly an import.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def task(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    TASKS[fn.__name__] = fn
    return fn


@contextmanager
def profiled(path: str | None, show_all: bool = False) -> Iterator[None]:
    """With a path, profile the block with pyinstrument and write its text report there; `show_all` keeps the
    frames of libraries (Dagster's own, where it spends the time) instead of folding them."""
    if not path:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        Path(path).write_text(profiler.output_text(unicode=False, color=False, show_all=show_all))


def peak_rss_mb() -> float:
    """This process's peak resident set size (`VmHWM`: the high-water mark of its own address space)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status (the benchmark measures memory on Linux)")


# ----------------------------------------------------------------------------------------------- Derive runs


def _settings(a: dict[str, Any]) -> Any:
    from derive_assets.settings import DeriveSettings

    return DeriveSettings(
        specs_dir=Path(a["specs"]),
        home=Path(a["home"]),
        executor="in_process",
        online_store=a.get("online_store", "sqlite"),
    )


def _metadata(result: Any) -> dict[str, Any]:
    from dagster import MetadataValue

    found: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        for k, v in event.step_materialization_data.materialization.metadata.items():
            found[k] = v.value if isinstance(v, MetadataValue) else v
    return found


@task
def derive_job(a: dict[str, Any]) -> dict[str, Any]:
    """Run one Derive job (replication or export) with `execute_in_process` on the instance in DAGSTER_HOME."""
    from dagster import DagsterInstance

    from derive_assets.factory.build import build_definitions

    defs = build_definitions(_settings(a))
    job = defs.resolve_job_def(a["job"])
    instance = DagsterInstance.get() if a.get("persistent", True) else DagsterInstance.ephemeral()
    with profiled(a.get("profile")):
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, run_config=QUIET)
        seconds = time.perf_counter() - started
    meta = _metadata(result)
    keep = ("derive/duration_seconds", "derive/rows_read", "derive/rows_written", "dagster/row_count")
    return {"seconds": seconds, **{k.split("/")[1]: meta[k] for k in keep if k in meta}}


# ----------------------------------------------------------------------------------------------- plain paths


def _duckdb_from_reader(path: str, reader: Any) -> int:
    """The plain load: DuckDB scans the Arrow stream straight into a new table, in one transaction."""
    import duckdb

    con = duckdb.connect(path)
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("CREATE TABLE orders AS SELECT * FROM reader")
        row = con.execute("SELECT count(*) FROM orders").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


@task
def cx_duckdb(a: dict[str, Any]) -> dict[str, Any]:
    """connectorx `arrow_stream` (100k-row batches, as Derive reads) -> DuckDB."""
    import connectorx as cx

    started = time.perf_counter()
    reader = cx.read_sql(a["url"], a["query"], return_type="arrow_stream", batch_size=100_000)
    rows = _duckdb_from_reader(a["duckdb"], reader)
    return {"seconds": time.perf_counter() - started, "rows": rows}


class _CopyStream(io.RawIOBase):
    """A readable file over psycopg's COPY chunks, for pyarrow's streaming CSV reader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buf = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buf = bytes(chunk)
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n


@task
def pg_copy_duckdb(a: dict[str, Any]) -> dict[str, Any]:
    """psycopg `COPY … TO STDOUT (FORMAT csv)` -> pyarrow streaming CSV reader (declared types) -> DuckDB."""
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {
        "id": pa.int64(),
        "user_id": pa.int64(),
        "status": pa.string(),
        "amount": pa.decimal128(12, 2),
        "created_at": pa.timestamp("us", tz="UTC"),
        "updated_at": pa.timestamp("us", tz="UTC"),
    }
    started = time.perf_counter()
    with psycopg.connect(a["url"]) as conn:
        conn.execute("SET timezone = 'UTC'")
        copy_sql = f"COPY ({a['query']}) TO STDOUT (FORMAT csv)"
        with conn.cursor().copy(copy_sql) as copy:  # type: ignore[arg-type]
            stream = io.BufferedReader(_CopyStream(iter(copy)), buffer_size=1 << 20)
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(column_names=list(types), block_size=8 << 20),
                convert_options=pacsv.ConvertOptions(column_types=types),
            )
            rows = _duckdb_from_reader(a["duckdb"], reader)
    return {"seconds": time.perf_counter() - started, "rows": rows}


# ----------------------------------------------------------------------------------------------- merge


def _merge_target() -> Any:
    from benchmarks.specs import ORDER_COLUMNS
    from resources.schema import ColumnDef
    from resources.warehouse import TargetTable

    return TargetTable("bench", "orders_merged", tuple(ColumnDef(**c) for c in ORDER_COLUMNS))


MERGE_QUERY = (
    "SELECT id, user_id, 'delivered' AS status, amount + 1 AS amount, created_at, "
    "updated_at + INTERVAL 1 HOUR AS updated_at FROM bench.orders_src "
    "WHERE created_at >= $window_start AND created_at < $window_end"
)


@task
def merge_setup(a: dict[str, Any]) -> dict[str, Any]:
    """A DuckDB file with `bench.orders_src` (generated) and the merge target `bench.orders_merged` (a copy),
    both with the column types Derive declares. Returns one day's window from the middle of the data."""
    from resources.duckdb_warehouse import DuckDBWarehouse

    wh = DuckDBWarehouse(path=a["duckdb"])
    target = _merge_target()
    with wh.get_connection() as con:
        con.execute("CREATE SCHEMA bench")
        con.execute(wh.ddl_for(target))
        src = wh.ddl_for(target).replace('"orders_merged"', '"orders_src"')
        con.execute(src)
        con.execute(
            "INSERT INTO bench.orders_src SELECT i, hash(i) % 100000, "
            "['placed', 'shipped', 'delivered', 'cancelled'][1 + i % 4], (hash(i) % 10000000) / 100, "
            "TIMESTAMPTZ '2026-09-01 00:00:00+00' + to_microseconds(CAST(hash(i * 7) % $span AS BIGINT)), "
            "TIMESTAMPTZ '2026-09-01 00:00:00+00' + to_microseconds(CAST(hash(i * 7) % $span AS BIGINT)) "
            "  + INTERVAL 1 MINUTE FROM range(1, $n + 1) AS t(i)",
            {"n": a["rows"], "span": 50 * 86_400_000_000},
        )
        con.execute("INSERT INTO bench.orders_merged SELECT * FROM bench.orders_src")
        con.execute("CHECKPOINT")
        start = dt.datetime(2026, 9, 26, tzinfo=dt.UTC)
        params = {"window_start": start, "window_end": start + dt.timedelta(days=1)}
        day_rows = con.execute(f"SELECT count(*) FROM ({MERGE_QUERY})", params).fetchone()  # noqa: S608
    return {"seconds": 0, "window_start": start.isoformat(), "day_rows": day_rows[0] if day_rows else 0}


def _window(a: dict[str, Any]) -> dict[str, dt.datetime]:
    start = dt.datetime.fromisoformat(a["window_start"])
    return {"window_start": start, "window_end": start + dt.timedelta(days=1)}


@task
def merge_derive(a: dict[str, Any]) -> dict[str, Any]:
    """The DuckDB warehouse's `write` with a merge WriteRequest (what a merge spec's asset calls)."""
    from resources.duckdb_warehouse import DuckDBWarehouse
    from resources.warehouse import TimeWindow, WriteRequest

    params = _window(a)
    request = WriteRequest(
        _merge_target(), MERGE_QUERY, params, "merge", ("id",), TimeWindow(*params.values())
    )
    with profiled(a.get("profile")):
        started = time.perf_counter()
        result = DuckDBWarehouse(path=a["duckdb"]).write(request)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": result.rows_read, "rows_updated": result.rows_updated}


@task
def merge_bare(a: dict[str, Any]) -> dict[str, Any]:
    """The same change by hand: `delete+insert` (staged, one transaction) or one `MERGE INTO`."""
    import duckdb

    params = _window(a)
    started = time.perf_counter()
    con = duckdb.connect(a["duckdb"])
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.begin()
        if a["how"] == "merge":
            con.execute(
                f"MERGE INTO bench.orders_merged AS t USING ({MERGE_QUERY}) AS s ON t.id = s.id "
                "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
                params,
            )
        else:
            con.execute(f"CREATE TEMP TABLE s AS {MERGE_QUERY}", params)
            con.execute("DELETE FROM bench.orders_merged AS t USING s WHERE t.id = s.id")
            con.execute("INSERT INTO bench.orders_merged SELECT * FROM s")
        con.commit()
    finally:
        con.close()
    return {"seconds": time.perf_counter() - started}


# ----------------------------------------------------------------------------------------------- CLI at scale


@task
def scale_setup(a: dict[str, Any]) -> dict[str, Any]:
    """A DuckDB warehouse holding the generated project's replicated source tables (`shop.orders_<k>`, as the
    replication would leave them), so that a layer-1 table's partition can run without a source database."""
    from benchmarks.specs import ORDER_COLUMNS
    from resources.duckdb_warehouse import DuckDBWarehouse
    from resources.schema import ColumnDef
    from resources.warehouse import TargetTable

    wh = DuckDBWarehouse(path=a["duckdb"])
    columns = tuple(ColumnDef(**c) for c in ORDER_COLUMNS)
    with wh.get_connection() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS shop")
        for name in a["tables"]:
            con.execute(wh.ddl_for(TargetTable("shop", name, columns)))
            con.execute(
                f"INSERT INTO shop.{name} SELECT i, i % 97, "  # noqa: S608 - generated table names
                "['placed', 'shipped', 'delivered', 'cancelled'][1 + i % 4], i / 100, "
                "TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(i * 3600 * 1000000), "
                "TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(i * 3600 * 1000000) "
                "FROM range(1, 200) AS t(i)"
            )
        con.execute("CHECKPOINT")
    return {"seconds": 0}


if __name__ == "__main__":
    # Run as `-m`, this file is `__main__`; the registry that every task module fills is `benchmarks.workers`.
    import pandas  # noqa: F401  (see the module docstring: DuckDB would import it inside the timed section)

    from benchmarks import workers, workers_online  # noqa: F401  (workers_online registers its tasks)

    name, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({**workers.TASKS[name](args), "peak_rss_mb": peak_rss_mb()}, default=str))
