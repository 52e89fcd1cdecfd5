"""Replication scenarios: full loads from PostgreSQL and MariaDB, the dlt peer, incremental and no-change runs.

Derive runs the real Dagster job `replicate_<source>` with `execute_in_process` on a spec directory holding one
source table; its time is the wall time of that call. Every full load starts from an empty warehouse file and an
empty Dagster instance. The plain paths write the same rows into a new DuckDB file.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks import specs
from benchmarks.core import Context, dagster_home, log, not_measured, ratio, record, remove, repeat, summarize
from benchmarks.data import MariaDBSource, PostgresSource, orders, write_csv
from benchmarks.measure import REPO, Sample, run_json, run_worker

QUERY = "SELECT id, user_id, status, amount, created_at, updated_at FROM orders"
DLT_PYTHON = REPO / "benchmarks" / ".venv-dlt" / "bin" / "python"
PG_ENV, MY_ENV = "DERIVE_BENCH_PG_URL", "DERIVE_BENCH_MYSQL_URL"
TARGETS = {"full_pg": 0.8, "full_my": 0.7, "memory_mb": 600, "incremental": 0.15, "noop_s": 1.0, "dlt": 1.8}
"""Issue 14's targets: PostgreSQL ≥ 0.8x and MariaDB ≥ 0.7x connectorx → DuckDB, ≥ 1.8x dlt's best backend."""
DLT_BACKENDS = ("connectorx", "pyarrow")


def _csv(ctx: Context) -> Path:
    if "csv" not in ctx.state:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
        ctx.state["csv"] = write_csv(orders(1, ctx.rows, seed=1, now=now), ctx.work / "orders.csv")
    return ctx.state["csv"]


def postgres(ctx: Context) -> PostgresSource:
    if "pg" not in ctx.state:
        log(f"loading {ctx.rows:,} rows into a fresh PostgreSQL database (COPY)")
        source = PostgresSource(ctx.urls["postgres"])
        ctx.cleanups.append(source.drop)
        source.load(_csv(ctx))
        ctx.state["pg"] = source
    return ctx.state["pg"]


def mariadb(ctx: Context) -> MariaDBSource:
    if "my" not in ctx.state:
        log(f"loading {ctx.rows:,} rows into a fresh MariaDB database (LOAD DATA LOCAL INFILE)")
        source = MariaDBSource(ctx.urls["mysql"])
        ctx.cleanups.append(source.drop)
        source.load(_csv(ctx))
        ctx.state["my"] = source
    return ctx.state["my"]


def _derive_full(ctx: Context, name: str, source_type: str, env_var: str, url: str) -> Any:
    """A method: one full load by Derive into a new warehouse with a new instance; the last one is kept."""
    spec_dir = specs.replication_specs(ctx.scratch(f"specs-{name}"), name, source_type, env_var)

    def run(i: int) -> Sample:
        home = ctx.scratch(f"home-{name}")
        dh = dagster_home(home / "dagster_home")
        env = {**_base_env(), env_var: url, "DAGSTER_HOME": str(dh)}
        args = {"specs": str(spec_dir), "home": str(home), "job": f"replicate_{name}"}
        sample = run_worker("derive_job", args, env)
        previous = ctx.state.get(f"derive_home_{name}")
        if previous:
            remove(previous["home"])
        ctx.state[f"derive_home_{name}"] = {"home": home, "env": env, "args": args}
        return sample

    return run


def _plain(ctx: Context, task: str, url: str) -> Any:
    def run(i: int) -> Sample:
        target = ctx.work / f"{task}-{i}.duckdb"
        try:
            return run_worker(task, {"url": url, "query": QUERY, "duckdb": str(target)})
        finally:
            remove(target)

    return run


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("DERIVE_", "DAGSTER_HOME"))}


def _profile(ctx: Context, name: str, env_key: str) -> None:
    """One extra, uncounted full load under pyinstrument (with --profile)."""
    path = ctx.profile(f"replicate_{name}")
    kept = ctx.state.get(f"derive_home_{name}")
    if not path or not kept:
        return
    home = ctx.scratch(f"profile-{name}")
    env = {**kept["env"], "DAGSTER_HOME": str(dagster_home(home / "dagster_home"))}
    run_worker("derive_job", {**kept["args"], "home": str(home), "profile": path}, env)
    remove(home)
    log(f"  profile: {path}")


def full_load(
    ctx: Context, scenario: str, title: str, name: str, source_type: str, plain: dict[str, str]
) -> None:
    """Derive against the plain paths on the same source table; the ratio uses the fastest plain path."""
    source = postgres(ctx) if source_type == "postgres" else mariadb(ctx)
    env_var = PG_ENV if source_type == "postgres" else MY_ENV
    rows = source.count()
    log(f"{scenario}: {rows:,} rows, {ctx.repeats} repeats")
    methods = {"derive": _derive_full(ctx, name, source_type, env_var, source.url)}
    methods.update({label: _plain(ctx, task, source.url) for label, task in plain.items()})
    peers = _dlt_methods(ctx, source.url) if source_type == "postgres" else {}
    methods.update(peers)  # interleaved with Derive, A B C A B C: the dlt ratio comes from the same rounds
    samples = repeat(ctx, methods)
    peer_samples = {k: samples.pop(k) for k in peers}
    labels = {"derive": f"Derive `replicate_{name}` (execute_in_process)"}
    labels.update(
        {
            "connectorx": "connectorx arrow_stream → DuckDB",
            "psycopg_copy": "psycopg COPY csv → pyarrow → DuckDB",
        }
    )
    summary = {
        key: summarize(labels[key], "derive" if key == "derive" else "plain", s, rows)
        for key, s in samples.items()
    }
    record(ctx, scenario, title, summary, rows=rows)
    _profile(ctx, name, env_var)

    best = max((k for k in summary if k != "derive"), key=lambda k: summary[k]["rows_per_s"])
    value = summary["derive"]["rows_per_s"] / summary[best]["rows_per_s"]
    target = TARGETS["full_pg" if source_type == "postgres" else "full_my"]
    ratio(
        ctx,
        scenario,
        title,
        f"{summary['derive']['rows_per_s']:,} rows/s",
        f"{summary[best]['label']}: {summary[best]['rows_per_s']:,} rows/s",
        value,
        "x",
        f"≥ {target}x",
        value >= target,
    )
    ctx.state[f"full_{source_type}"] = summary["derive"]
    if peer_samples:
        ctx.state["dlt_rounds"] = (summary["derive"], peer_samples)


def pg_full(ctx: Context) -> None:
    plain = {"connectorx": "cx_duckdb", "psycopg_copy": "pg_copy_duckdb"}
    full_load(ctx, "pg_full", "full replication PostgreSQL → DuckDB", "bench_pg", "postgres", plain)


def mysql_full(ctx: Context) -> None:
    full_load(
        ctx,
        "mysql_full",
        "full replication MariaDB → DuckDB",
        "bench_my",
        "mysql",
        {"connectorx": "cx_duckdb"},
    )


def memory(ctx: Context) -> None:
    """Peak RSS of Derive's full loads at this run's scale (a ratio line only; measured by the full loads)."""
    loads = [(k, ctx.state[f"full_{k}"]) for k in ("postgres", "mysql") if f"full_{k}" in ctx.state]
    if not loads:
        return
    source, worst = max(loads, key=lambda kv: kv[1]["peak_rss_mb"])
    others = ", ".join(f"{k}: {s['peak_rss_mb']:.0f} MB" for k, s in loads)
    ratio(
        ctx,
        "memory",
        f"memory: full replication of {worst['rows']:,} rows",
        f"{worst['peak_rss_mb']:.0f} MB peak RSS ({source})",
        f"— ({others})",
        worst["peak_rss_mb"],
        "MB",
        f"≤ {TARGETS['memory_mb']} MB",
        worst["peak_rss_mb"] <= TARGETS["memory_mb"],
    )


def _full_pg_summary(ctx: Context) -> dict[str, Any]:
    """The Derive PostgreSQL full load of this run (measured now, once per repeat, if pg_full was not run)."""
    if "full_postgres" not in ctx.state:
        source = postgres(ctx)
        samples = repeat(ctx, {"derive": _derive_full(ctx, "bench_pg", "postgres", PG_ENV, source.url)})
        ctx.state["full_postgres"] = summarize(
            "Derive `replicate_bench_pg` full load", "derive", samples["derive"], source.count()
        )
    return ctx.state["full_postgres"]


def incremental(ctx: Context) -> None:
    """After the full load: rounds of 1 % updates + 1 % inserts, each followed by a measured run; then runs with
    no changes at all. Both reuse the last full load's warehouse and Dagster instance (its watermark)."""
    title = "incremental after 1 % updates + 1 % inserts"
    full = _full_pg_summary(ctx)
    kept = ctx.state["derive_home_bench_pg"]
    source = postgres(ctx)
    log(f"incremental: {ctx.repeats} rounds of 1 % updates + 1 % inserts on {source.count():,} rows")

    def changed(i: int) -> Sample:
        change = source.apply_changes(i + 1, 0.01, dt.datetime.now(dt.UTC))
        sample = run_worker("derive_job", kept["args"], kept["env"])
        sample.extra.update(change)
        return sample

    def unchanged(i: int) -> Sample:
        return run_worker("derive_job", kept["args"], kept["env"])

    inc = repeat(ctx, {"derive_incremental": changed})["derive_incremental"]
    noop = repeat(ctx, {"derive_noop": unchanged})["derive_noop"]
    if path := ctx.profile("replicate_bench_pg_incremental"):
        source.apply_changes(ctx.repeats + 1, 0.01, dt.datetime.now(dt.UTC))
        run_worker("derive_job", {**kept["args"], "profile": path}, kept["env"])
    inc_rows = round(statistics.median(s.extra.get("rows_read", 0) for s in inc))
    summary = {
        "derive_incremental": summarize(
            "Derive incremental run (1 % upd + 1 % ins)", "derive", inc, inc_rows
        ),
        "derive_noop": summarize("Derive run with no changes", "derive", noop, None),
    }
    record(ctx, "incremental", title, summary, full_load_median_s=full["median_s"])
    value = summary["derive_incremental"]["median_s"] / full["median_s"]
    ratio(
        ctx,
        "incremental",
        title,
        f"{summary['derive_incremental']['median_s']:.2f} s for {inc_rows:,} changed rows (inside the asset "
        f"{summary['derive_incremental']['duration_seconds_median']:.2f} s)",
        f"its full load: {full['median_s']:.2f} s (inside the asset {full['duration_seconds_median']:.2f} s)",
        value,
        "x full",
        f"≤ {TARGETS['incremental']}",
        value <= TARGETS["incremental"],
    )
    inside = summary["derive_noop"]["duration_seconds_median"]
    ratio(
        ctx,
        "noop",
        "incremental run with no changes",
        f"`derive/duration_seconds` {inside:.3f} s (whole execute_in_process "
        f"{summary['derive_noop']['median_s']:.2f} s)",
        "—",
        inside,
        "s",
        f"≤ {TARGETS['noop_s']:.0f} s",
        inside <= TARGETS["noop_s"],
    )


def _dlt_methods(ctx: Context, url: str) -> dict[str, Any]:
    """dlt `sql_database` -> DuckDB with each backend, from its own venv (none when the venv is missing)."""
    if not DLT_PYTHON.exists():
        return {}

    def method(backend: str) -> Any:
        def run(i: int) -> Sample:
            where = ctx.scratch(f"dlt-{backend}")
            args = {
                "url": url,
                "backend": backend,
                "duckdb": str(where / "dlt.duckdb"),
                "pipelines_dir": str(where / "pipelines"),
            }
            try:
                return run_json(
                    [str(DLT_PYTHON), str(REPO / "benchmarks" / "dlt_worker.py"), json.dumps(args)]
                )
            finally:
                remove(where)

        return run

    return {f"dlt_{backend}": method(backend) for backend in DLT_BACKENDS}


def dlt_peer(ctx: Context) -> None:
    """dlt `sql_database` (connectorx and pyarrow backends) -> DuckDB, from its own venv, on the PostgreSQL data,
    against Derive's full load from the same interleaved rounds (A B C A B C): those of `pg_full` when it ran,
    else rounds of Derive and both backends run here."""
    title = "dlt peer: PostgreSQL → DuckDB"
    target = f"≥ {TARGETS['dlt']}x"
    if not DLT_PYTHON.exists():
        reason = f"{DLT_PYTHON.relative_to(REPO)} does not exist (see benchmarks/README.md to create it)"
        not_measured(ctx, "dlt", title, reason)
        ratio(ctx, "dlt", title, "—", "best dlt backend", None, "x", target, None, reason)
        return
    source = postgres(ctx)
    rows = source.count()
    if "dlt_rounds" in ctx.state:
        derive, samples = ctx.state["dlt_rounds"]
    else:
        log(f"dlt: {rows:,} rows, interleaved with Derive")
        methods = {"derive": _derive_full(ctx, "bench_pg", "postgres", PG_ENV, source.url)}
        methods.update(_dlt_methods(ctx, source.url))
        samples = repeat(ctx, methods)
        derive = summarize("Derive `replicate_bench_pg` full load", "derive", samples.pop("derive"), rows)
        ctx.state.setdefault("full_postgres", derive)
    version = samples["dlt_connectorx"][0].extra.get("dlt", "?")
    summary = {
        k: summarize(f"dlt {version} sql_database, {k.split('_')[1]} backend", "peer", s, rows)
        for k, s in samples.items()
    }
    record(ctx, "dlt", title, {"derive": derive, **summary}, rows=rows, same_rounds=True)
    best = max(summary, key=lambda k: summary[k]["rows_per_s"])
    value = derive["rows_per_s"] / summary[best]["rows_per_s"]
    others = ", ".join(
        f"{summary[k]['label']}: {summary[k]['rows_per_s']:,} rows/s" for k in summary if k != best
    )
    ratio(
        ctx,
        "dlt",
        title,
        f"{derive['rows_per_s']:,} rows/s (same rounds)",
        f"{summary[best]['label']}: {summary[best]['rows_per_s']:,} rows/s ({others})",
        value,
        "x",
        target,
        value >= TARGETS["dlt"],
    )
