"""Measured tasks of the online side: the plain CQL write path, and point reads through `OnlineReader`.

The Derive export itself runs as the `derive_job` task (benchmarks/workers.py) on the export's job.

Table and keyspace names in SQL/CQL text come from the harness itself (never from input), hence the S608 noqa's.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.workers import _settings, task

BATCH_ROWS = 10_000  # what the export asset streams per batch (derive_assets/factory/export_assets.py)


@task
def export_setup(a: dict[str, Any]) -> dict[str, Any]:
    """The warehouse table to export: `<source>.orders` with `rows` generated rows and Derive's column types."""
    from benchmarks.specs import ORDER_COLUMNS
    from resources.duckdb_warehouse import DuckDBWarehouse
    from resources.schema import ColumnDef
    from resources.warehouse import TargetTable

    wh = DuckDBWarehouse(path=a["duckdb"])
    target = TargetTable(a["source"], "orders", tuple(ColumnDef(**c) for c in ORDER_COLUMNS))
    with wh.get_connection() as con:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{a["source"]}"')
        con.execute(wh.ddl_for(target))
        con.execute(
            f'INSERT INTO "{a["source"]}".orders SELECT i, hash(i) % 100000, '  # noqa: S608
            "['placed', 'shipped', 'delivered', 'cancelled'][1 + i % 4], (hash(i) % 10000000) / 100, "
            "TIMESTAMPTZ '2026-09-01 00:00:00+00' + to_microseconds(i * 1000), "
            "TIMESTAMPTZ '2026-09-01 00:00:00+00' + to_microseconds(i * 1000 + 60000000) "
            "FROM range(1, $n + 1) AS t(i)",
            {"n": a["rows"]},
        )
    return {"seconds": 0}


def _cluster(a: dict[str, Any]) -> Any:
    """A Cluster configured like `CassandraOnlineStore.session()`: token- and DC-aware, protocol v5."""
    from cassandra.cluster import Cluster
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    policy = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=""))
    return Cluster(a["hosts"], port=a["port"], load_balancing_policy=policy, protocol_version=5)


@task
def cql_raw(a: dict[str, Any]) -> dict[str, Any]:
    """The plain path: read the table in 10k-row Arrow batches from DuckDB, write each batch with one prepared
    `INSERT … USING TTL ?` and `execute_concurrent_with_args` at the same concurrency as the store (`limit`: the
    first rows only)."""
    from cassandra.concurrent import execute_concurrent_with_args

    _raw_table(a)
    started = time.perf_counter()
    cluster = _cluster(a)
    rows_written = 0
    try:
        session = cluster.connect()
        statement = _insert(session, a)
        for rows in _read_rows(a):
            execute_concurrent_with_args(session, statement, rows, concurrency=a["concurrency"])
            rows_written += len(rows)
    finally:
        cluster.shutdown()
    return {"seconds": time.perf_counter() - started, "rows_written": rows_written}


def _raw_table(a: dict[str, Any]) -> None:
    """Create the raw paths' keyspace and table (not timed: Derive's exists after its first run too)."""
    ks, table = a["keyspace"], a["table"]
    setup = _cluster(a)
    try:
        s = setup.connect()
        s.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        s.execute(
            f"CREATE TABLE IF NOT EXISTS {ks}.{table} (id bigint, user_id bigint, status text, amount decimal, "
            "created_at timestamp, updated_at timestamp, PRIMARY KEY ((id)))"
        )
    finally:
        setup.shutdown()


def _insert(session: Any, a: dict[str, Any]) -> Any:
    from cassandra import ConsistencyLevel

    statement = session.prepare(
        f"INSERT INTO {a['keyspace']}.{a['table']} (id, user_id, status, amount, created_at, updated_at) "  # noqa: S608
        "VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"
    )
    statement.consistency_level = ConsistencyLevel.LOCAL_ONE
    return statement


def _read_rows(a: dict[str, Any], share: tuple[int, int] | None = None) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows in 10k-row Arrow batches, as driver tuples (TTL 0 last); `share` (k, n): ids with
    `id % n = k` only."""
    import duckdb

    con = duckdb.connect(a["duckdb"], read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        sql = f'SELECT id, user_id, status, amount, created_at, updated_at FROM "{a["source"]}".orders'  # noqa: S608
        if a.get("limit"):
            sql += f" WHERE id <= {int(a['limit'])}"
        if share:
            sql += (" AND " if a.get("limit") else " WHERE ") + f"id % {int(share[1])} = {int(share[0])}"
        for batch in con.execute(sql).fetch_record_batch(BATCH_ROWS):
            columns = [column.to_pylist() for column in batch.columns]
            yield [(*values, 0) for values in zip(*columns, strict=True)]
    finally:
        con.close()


@task
def cql_raw_batched(a: dict[str, Any]) -> dict[str, Any]:
    """The best raw path measured here: unlogged batches of rows grouped by the replica owning their partition
    (`cluster.metadata.get_replicas`), at most `batch_rows` rows and ~4 kB of values per batch,
    `execute_concurrent` with `batches_in_flight` batches in flight, one process."""
    from cassandra import ConsistencyLevel
    from cassandra.concurrent import execute_concurrent
    from cassandra.query import BatchStatement, BatchType

    _raw_table(a)
    started = time.perf_counter()
    cluster = _cluster(a)
    rows_written = 0
    try:
        session = cluster.connect()
        statement = _insert(session, a)
        for rows in _read_rows(a):
            groups: dict[Any, list[Any]] = {}
            batches: list[tuple[Any, tuple[()]]] = []
            for row in rows:
                bound = statement.bind(row)
                replicas = cluster.metadata.get_replicas(a["keyspace"], bound.routing_key)
                members = groups.setdefault(replicas[0] if replicas else None, [])
                members.append(bound)
                if (
                    len(members) >= a["batch_rows"]
                    or sum(len(v) for b in members for v in b.values if v) > 4000
                ):
                    batch = BatchStatement(
                        batch_type=BatchType.UNLOGGED, consistency_level=ConsistencyLevel.LOCAL_ONE
                    )
                    for b in members:
                        batch.add(b)
                    batches.append((batch, ()))
                    members.clear()
            for members in groups.values():
                if members:
                    batch = BatchStatement(
                        batch_type=BatchType.UNLOGGED, consistency_level=ConsistencyLevel.LOCAL_ONE
                    )
                    for b in members:
                        batch.add(b)
                    batches.append((batch, ()))
            for ok, error in execute_concurrent(session, batches, concurrency=a["batches_in_flight"]):
                if not ok:
                    raise error
            rows_written += len(rows)
    finally:
        cluster.shutdown()
    return {"seconds": time.perf_counter() - started, "rows_written": rows_written}


def _writer_process(a: dict[str, Any], k: int, n: int, out: Any) -> None:
    from cassandra.concurrent import execute_concurrent_with_args

    cluster = _cluster(a)
    written = 0
    try:
        session = cluster.connect()
        statement = _insert(session, a)
        for rows in _read_rows(a, (k, n)):
            execute_concurrent_with_args(session, statement, rows, concurrency=a["concurrency"] // n)
            written += len(rows)
    finally:
        cluster.shutdown()
    out.put(written)


@task
def cql_raw_processes(a: dict[str, Any]) -> dict[str, Any]:
    """`processes` writer processes (spawned), each with its own Cluster/Session and its share of the ids
    (`id % n`), each running `execute_concurrent_with_args` at `concurrency / n`: the driver's multi-process
    advice."""
    import multiprocessing

    _raw_table(a)
    n = a["processes"]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    started = time.perf_counter()
    procs = [ctx.Process(target=_writer_process, args=(a, k, n, out)) for k in range(n)]
    for p in procs:
        p.start()
    written = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a writer process exited with {p.exitcode}")
    return {"seconds": time.perf_counter() - started, "rows_written": written}


@task
def lookups(a: dict[str, Any]) -> dict[str, Any]:
    """`OnlineReader.lookup` of random keys, one at a time, each timed: p50/p99 in milliseconds. The first
    lookup (connection, prepared statement) is reported apart as `cold_ms`; `warmup` more are not counted."""
    from derive_assets.factory.build import build_online_store
    from derive_assets.online import OnlineReader
    from derive_assets.specs.project import load_project

    settings = _settings(a)
    reader = OnlineReader(load_project(Path(a["specs"])), build_online_store(settings))
    rng = random.Random(7)
    keys = [rng.randint(1, a["max_id"]) for _ in range(a["n"] + a["warmup"] + 1)]
    started = time.perf_counter()
    assert reader.lookup(a["export"], keys[0]), f"key {keys[0]} not found"
    cold = time.perf_counter() - started
    for key in keys[1 : a["warmup"] + 1]:
        reader.lookup(a["export"], key)
    latencies = []
    missing = 0
    started = time.perf_counter()
    for key in keys[a["warmup"] + 1 :]:
        t0 = time.perf_counter()
        found = reader.lookup(a["export"], key)
        latencies.append((time.perf_counter() - t0) * 1000)
        missing += not found
    seconds = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "seconds": seconds,
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(cuts[98], 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
        "cold_ms": round(cold * 1000, 2),
        "lookups": len(latencies),
        "missing": missing,
    }
