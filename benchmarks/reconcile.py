"""Key reconciliation (`reconcile:`, hard deletes without a flag column) against a full reload, in the same run.

The source is a PostgreSQL database of its own (the other scenarios' `orders` stay untouched) holding `--rows`
orders. One unmeasured first load fills a warehouse; then 1 % of the source rows are deleted. Each round then
measures, interleaved: `reconcile`, a Derive run of `replicate_bench_rec` on a copy of that warehouse and Dagster
instance (an incremental read that finds nothing, then the reconciliation: every key read, staged, and the 1 %
deleted), and `full_reload`, a Derive first load of the same table into an empty warehouse (what `derive rebuild`
would do to get rid of the deleted rows without `reconcile`). Time is the job's wall time inside the worker; peak
RSS is the worker's high-water mark. After each reconcile round the warehouse is checked to equal the source
(count), so a reconciliation that deleted too few or too many rows fails the benchmark.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import yaml

from benchmarks import specs
from benchmarks.core import Context, clean_env, dagster_home, log, ratio, record, remove, repeat, summarize
from benchmarks.data import PostgresSource
from benchmarks.measure import Sample, run_worker
from benchmarks.replication import _csv, _derive_full

NAME = "bench_rec"
ENV = "DERIVE_BENCH_RECONCILE_URL"
DELETED_MODULUS = 100
"""Rows whose id is a multiple of this are deleted at the source: 1 %."""


def _specs(dest: Path) -> Path:
    """The benchmark's `orders` source spec with a reconciliation on every run."""
    spec = specs.source_spec(NAME, "postgres", ENV)
    spec["tables"][0]["reconcile"] = {"every_runs": 1}
    path = dest / "sources" / f"{NAME}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def _warehouse_rows(home: Path) -> int:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM bench_rec.orders").fetchone()
    return int(row[0]) if row else 0


def reconcile(ctx: Context) -> None:
    title = f"key reconciliation, {100 / DELETED_MODULUS:g} % deleted, against a full reload"
    source = PostgresSource(ctx.urls["postgres"])
    ctx.cleanups.append(source.drop)
    log(f"reconcile: loading {ctx.rows:,} rows into a fresh PostgreSQL database (COPY)")
    source.load(_csv(ctx))
    spec_dir = _specs(ctx.scratch("specs-reconcile"))
    base = ctx.scratch("home-reconcile-base")
    args = {"specs": str(spec_dir), "home": str(base), "job": f"replicate_{NAME}"}
    env = clean_env(**{ENV: source.url, "DAGSTER_HOME": str(dagster_home(base / "dagster_home"))})
    first = run_worker("derive_job", args, env)
    log(f"reconcile: first load (not measured) {first.seconds:.1f} s, {_warehouse_rows(base):,} rows")
    with psycopg.connect(source.url, autocommit=True) as conn:
        deleted = conn.execute("DELETE FROM orders WHERE id %% %s = 0", [DELETED_MODULUS]).rowcount
        conn.execute("VACUUM ANALYZE orders")
    rows = source.count()
    log(f"reconcile: deleted {deleted:,} source rows; {rows:,} remain, {ctx.repeats} repeats")

    def reconciled(i: int) -> Sample:
        home = ctx.work / f"home-reconcile-{i}"
        shutil.copytree(base, home)
        try:
            run_env = {**env, "DAGSTER_HOME": str(home / "dagster_home")}
            sample = run_worker("derive_job", {**args, "home": str(home)}, run_env)
            left = _warehouse_rows(home)
            if left != rows:
                raise RuntimeError(
                    f"reconcile round {i + 1}: the warehouse holds {left:,} rows, the source {rows:,}"
                )
            return sample
        finally:
            remove(home)

    samples = repeat(
        ctx, {"reconcile": reconciled, "full_reload": _derive_full(ctx, NAME, "postgres", ENV, source.url)}
    )
    remove(base)
    labels = {
        "reconcile": f"Derive `replicate_{NAME}` with `reconcile` ({rows + deleted:,} keys, {deleted:,} deleted)",
        "full_reload": f"Derive `replicate_{NAME}` first load ({rows:,} rows)",
    }
    summary = {key: summarize(labels[key], "derive", s, rows) for key, s in samples.items()}
    record(ctx, "reconcile", title, summary, rows=rows, deleted=deleted)
    _ratios(ctx, title, summary)


def _ratios(ctx: Context, title: str, summary: dict[str, dict[str, Any]]) -> None:
    rec, full = summary["reconcile"], summary["full_reload"]
    ratio(
        ctx,
        "reconcile_time",
        title,
        f"{rec['median_s']:.1f} s",
        f"full reload: {full['median_s']:.1f} s",
        rec["median_s"] / full["median_s"],
        "x",
        "< 1x (reported)",
        rec["median_s"] < full["median_s"],
    )
    ratio(
        ctx,
        "reconcile_rss",
        f"memory: {title}",
        f"{rec['peak_rss_mb']:.0f} MB peak RSS",
        f"full reload: {full['peak_rss_mb']:.0f} MB",
        rec["peak_rss_mb"],
        "MB",
        "≤ 600 MB",
        rec["peak_rss_mb"] <= 600,
    )
