"""Scenarios beyond replication: a merge inside DuckDB, the export to CQL and point reads from the online stores
(definitions and the CLI: `benchmarks/scale.py`)."""

from __future__ import annotations

import shutil
import uuid
from typing import Any

from benchmarks import specs
from benchmarks.core import Context, clean_env, log, not_measured, ratio, record, remove, repeat, summarize
from benchmarks.measure import Sample, run_worker

CONCURRENCY = 64  # CassandraOnlineStore.concurrency's default: the raw path uses the same
BATCH, IN_FLIGHT = (
    50,
    8,
)  # CassandraOnlineStore.batch_rows / batches_in_flight defaults: the batched raw path's too
PROCESSES = 2  # writer processes of the multi-process raw path (2 cores; 3 measured no faster)
SLOW_ROWS = 100_000
TARGETS = {"merge": 1.5, "cql": 0.8, "lookup_ms": 5.0}


_env = clean_env


# ----------------------------------------------------------------------------------------------- merge


def merge(ctx: Context) -> None:
    """One day (~2 % of the rows) merged by key into a table of `rows` rows: Derive's `write` (merge
    WriteRequest) against the same change by hand. Every run starts from a copy of the same DuckDB file."""
    title = "merge one day (~2 % of rows) into the table"
    base = ctx.scratch("merge") / "base.duckdb"
    setup = run_worker("merge_setup", {"duckdb": str(base), "rows": ctx.rows}).extra
    log(f"merge: {ctx.rows:,}-row table, {setup['day_rows']:,} rows in the day")
    args = {"window_start": setup["window_start"]}

    def method(task: str, **extra: Any) -> Any:
        def run(i: int) -> Sample:
            copy = base.with_name(f"{task}-{extra.get('how', '')}-{i}.duckdb")
            shutil.copy(base, copy)
            try:
                return run_worker(task, {**args, **extra, "duckdb": str(copy)})
            finally:
                remove(copy)

        return run

    samples = repeat(
        ctx,
        {
            "derive_write": method("merge_derive"),
            "bare_delete_insert": method("merge_bare", how="delete_insert"),
            "bare_merge": method("merge_bare", how="merge"),
        },
    )
    labels = {
        "derive_write": "Derive DuckDBWarehouse.write (merge)",
        "bare_delete_insert": "bare DuckDB staged delete+insert",
        "bare_merge": "bare DuckDB MERGE INTO",
    }
    rows = setup["day_rows"]
    summary = {
        k: summarize(labels[k], "derive" if k.startswith("derive") else "plain", s, rows)
        for k, s in samples.items()
    }
    record(ctx, "merge", title, summary, table_rows=ctx.rows, rows=rows)
    if path := ctx.profile("merge_write"):
        method("merge_derive", profile=path)(99)
    best = min((k for k in summary if k != "derive_write"), key=lambda k: summary[k]["median_s"])
    value = summary["derive_write"]["median_s"] / summary[best]["median_s"]
    ratio(
        ctx,
        "merge",
        title,
        f"{summary['derive_write']['median_s']:.3f} s",
        f"{summary[best]['label']}: {summary[best]['median_s']:.3f} s",
        value,
        "x time",
        f"≤ {TARGETS['merge']}x",
        value <= TARGETS["merge"],
    )


# ----------------------------------------------------------------------------------------------- online


def _cassandra(ctx: Context) -> dict[str, Any] | None:
    if not ctx.urls.get("cassandra_hosts"):
        return None
    return {"hosts": ctx.urls["cassandra_hosts"].split(","), "port": int(ctx.urls["cassandra_port"])}


def _export_state(ctx: Context) -> dict[str, Any]:
    """A warehouse holding `bench_pg.orders` (export_rows rows) and a spec dir exporting it to a fresh keyspace."""
    if "export" not in ctx.state:
        home = ctx.scratch("home-export")
        keyspace = f"derive_bench_{uuid.uuid4().hex[:8]}"
        spec_dir = specs.export_specs(
            ctx.scratch("specs-export"), "bench_pg", "DERIVE_BENCH_PG_URL", keyspace
        )
        run_worker(
            "export_setup",
            {"duckdb": str(home / "warehouse.duckdb"), "rows": ctx.export_rows, "source": "bench_pg"},
        )
        ctx.state["export"] = {"home": home, "specs": spec_dir, "keyspace": keyspace}
        cassandra = _cassandra(ctx)
        if cassandra:
            ctx.cleanups.append(lambda: _drop_keyspace(cassandra, keyspace))
    return ctx.state["export"]


def _drop_keyspace(cassandra: dict[str, Any], keyspace: str) -> None:
    from cassandra.cluster import Cluster

    cluster = Cluster(cassandra["hosts"], port=cassandra["port"], protocol_version=5)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    finally:
        cluster.shutdown()


def _cassandra_env(cassandra: dict[str, Any]) -> dict[str, str]:
    return _env(
        DERIVE_CASSANDRA_HOSTS=",".join(cassandra["hosts"]), DERIVE_CASSANDRA_PORT=str(cassandra["port"])
    )


def cql_export(ctx: Context) -> None:
    title = "export rows to CQL (Cassandra 5)"
    cassandra = _cassandra(ctx)
    if cassandra is None:
        reason = "Cassandra is not configured (DERIVE_TEST_CASSANDRA_HOSTS/_PORT unset)"
        not_measured(ctx, "cql_export", title, reason)
        ratio(ctx, "cql_export", title, "—", "raw driver", None, "x", f"≥ {TARGETS['cql']}x", None, reason)
        return
    state = _export_state(ctx)
    derive_args = {
        "specs": str(state["specs"]),
        "home": str(state["home"]),
        "job": "online_job",
        "online_store": "cassandra",
        "persistent": False,
    }
    raw_args = {
        **cassandra,
        "keyspace": state["keyspace"],
        "table": "orders_raw",
        "duckdb": str(state["home"] / "warehouse.duckdb"),
        "source": "bench_pg",
        "concurrency": CONCURRENCY,
    }
    env = _cassandra_env(cassandra)
    # The row-by-row paths run ~5x slower than batches here: they write the first SLOW_ROWS rows only (rows/s
    # is what is compared), so a 1M-row run ends in minutes.
    slow = min(ctx.export_rows, SLOW_ROWS)
    batched_args = {
        **raw_args,
        "table": "orders_batched",
        "batch_rows": BATCH,
        "batches_in_flight": IN_FLIGHT,
    }
    process_args = {**raw_args, "table": "orders_procs", "processes": PROCESSES, "limit": slow}
    log(
        f"cql_export: {ctx.export_rows:,} rows, concurrency {CONCURRENCY}; batches of {BATCH} "
        f"({IN_FLIGHT} in flight); row-by-row paths on {slow:,} rows"
    )
    samples = repeat(
        ctx,
        {
            "derive_export": lambda i: run_worker("derive_job", derive_args, env),
            "raw_batched": lambda i: run_worker("cql_raw_batched", batched_args, env),
            "raw_driver": lambda i: run_worker("cql_raw", {**raw_args, "limit": slow}, env),
            "raw_processes": lambda i: run_worker("cql_raw_processes", process_args, env),
        },
    )
    if path := ctx.profile("export_cassandra"):
        run_worker("derive_job", {**derive_args, "profile": path}, env)
    summary = {
        "derive_export": summarize(
            "Derive export asset → Cassandra", "derive", samples["derive_export"], ctx.export_rows
        ),
        "raw_batched": summarize(
            f"cassandra-driver: replica-grouped unlogged batches of {BATCH}, {IN_FLIGHT} in flight",
            "plain",
            samples["raw_batched"],
            ctx.export_rows,
        ),
        "raw_driver": summarize(
            f"cassandra-driver prepared INSERT + execute_concurrent_with_args ({CONCURRENCY}), {slow:,} rows",
            "plain",
            samples["raw_driver"],
            slow,
        ),
        "raw_processes": summarize(
            f"{PROCESSES} writer processes, execute_concurrent_with_args ({CONCURRENCY // PROCESSES} each), "
            f"{slow:,} rows",
            "plain",
            samples["raw_processes"],
            slow,
        ),
    }
    record(ctx, "cql_export", title, summary, rows=ctx.export_rows)
    best = max((k for k in summary if k != "derive_export"), key=lambda k: summary[k]["rows_per_s"])
    value = summary["derive_export"]["rows_per_s"] / summary[best]["rows_per_s"]
    ratio(
        ctx,
        "cql_export",
        title,
        f"{summary['derive_export']['rows_per_s']:,} rows/s (write phase alone "
        f"{ctx.export_rows / summary['derive_export']['duration_seconds_median']:,.0f} rows/s)",
        f"best raw path ({summary[best]['label']}): {summary[best]['rows_per_s']:,} rows/s",
        value,
        "x",
        f"≥ {TARGETS['cql']}x",
        value >= TARGETS["cql"],
    )
    ctx.state["cassandra_exported"] = True


def online_reads(ctx: Context) -> None:
    """`OnlineReader.lookup` by random `id`s on the SQLite store and on Cassandra, after an export of the table."""
    title = "online point reads (OnlineReader.lookup)"
    state = _export_state(ctx)
    base = {"specs": str(state["specs"]), "home": str(state["home"]), "export": "orders_online"}
    lookup_args = {**base, "n": ctx.lookups, "warmup": 100, "max_id": ctx.export_rows}
    if not ctx.state.get("sqlite_exported"):
        log("online_reads: exporting to the SQLite store once (not counted)")
        run_worker("derive_job", {**base, "job": "online_job", "persistent": False}, _env())
        ctx.state["sqlite_exported"] = True
    stores: dict[str, Any] = {"sqlite": lambda i: run_worker("lookups", lookup_args, _env())}
    cassandra = _cassandra(ctx)
    if cassandra is not None:
        env = _cassandra_env(cassandra)
        if not ctx.state.get("cassandra_exported"):
            log("online_reads: exporting to Cassandra once (not counted)")
            run_worker(
                "derive_job",
                {**base, "job": "online_job", "online_store": "cassandra", "persistent": False},
                env,
            )
        cassandra_args = {**lookup_args, "online_store": "cassandra"}
        stores["cassandra"] = lambda i: run_worker("lookups", cassandra_args, env)
    log(f"online_reads: {ctx.lookups:,} lookups per run")
    samples = repeat(ctx, stores)
    summary = {
        store: summarize(f"OnlineReader.lookup on {store}", "derive", s, None) for store, s in samples.items()
    }
    record(ctx, "online_reads", title, summary, lookups=ctx.lookups)
    for store in ("sqlite", "cassandra"):
        rid = f"reads_{store}"
        if store not in summary:
            reason = "Cassandra is not configured"
            ratio(ctx, rid, f"{title}, {store}", "—", "—", None, "ms", "p99 < 5 ms", None, reason)
            continue
        s = summary[store]
        p50, p99 = s["p50_ms_median"], s["p99_ms_median"]
        ratio(
            ctx,
            rid,
            f"{title}, {store}",
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (first lookup {s['cold_ms_median']:.0f} ms)",
            "—",
            p99,
            "ms p99",
            f"goal p50 and p99 < {TARGETS['lookup_ms']:.0f} ms",
            p50 < TARGETS["lookup_ms"] and p99 < TARGETS["lookup_ms"],
        )
