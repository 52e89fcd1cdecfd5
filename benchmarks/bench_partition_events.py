"""A single-run backfill of many daily windows: Derive's step against what Dagster alone needs to record them.

`python -m benchmarks.bench_partition_events [--windows 2500] [--repeats 1] [--instances sqlite,postgres]`
(or `python -m benchmarks.run --only partition_events`, 2,500 windows).

Derive: one daily merge table over a tiny SQLite source (one event per day, so the write itself is a fraction of
a second), run as one backfill over `windows` partitions with `execute_in_process` on a fresh Dagster instance.
The floor: a no-op `@asset` with the same partitions definition and `BackfillPolicy.single_run()`, returning an
empty `MaterializeResult`, over the same range on the same kind of instance. Both record one materialization per
partition and one "planned" event per partition before the run; the floor is what those cost on that instance.

Each run is a fresh process with a fresh instance: a SQLite one in a scratch `DAGSTER_HOME`, and a PostgreSQL one
(a new database `bench_<random>` on the test server, dropped afterwards) when a PostgreSQL URL is configured.
Reported per run: the whole `execute_in_process`, the step (STEP_START to STEP_SUCCESS in the event log), the
phase before it (mostly the per-partition planned events), and the size of the stored materialization events.
"""

# No `from __future__ import annotations`: Dagster reads the no-op asset's return annotation (`MaterializeResult`:
# no IO manager call per partition) at definition time.

import argparse
import datetime as dt
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from benchmarks.core import Context, dagster_home, log, not_measured, ratio, record, remove, repeat, summarize
from benchmarks.measure import PYTHON, Sample, run_json

DEFAULT_WINDOWS = 2500
INSTANCES = ("sqlite", "postgres")
TARGET = 2.0
"""Derive's step time at most this many times the floor's (the issue's target)."""
KEY = ["bench", "daily_events"]
JOB = "bench_job"  # the dataset job (factory/jobs.py): the `bench` dataset holds only the measured table
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


# ----------------------------------------------------------------------------------------------- the project


def write_project(root: Path, windows: int) -> dict[str, str]:
    """A SQLite `shop.events` source (one event a day) and the daily table over it; the window starts
    `windows` + 2 days ago, so the first `windows` partitions are complete."""
    start = dt.date.today() - dt.timedelta(days=windows + 2)
    specs, home = root / "specs", root / "home"
    (specs / "sources").mkdir(parents=True)
    (specs / "bench").mkdir()
    source = {
        "kind": "source",
        "name": "shop",
        "type": "sqlite",
        "connection_env": "DERIVE_BENCH_SHOP_URL_UNSET",
        "owner": "team-bench@example.com",
        "tables": [
            {
                "name": "events",
                "primary_key": ["id"],
                "cursor": "updated_at",
                "columns": [
                    {"name": "id", "type": "INT64"},
                    {"name": "kind", "type": "STRING"},
                    {"name": "updated_at", "type": "TIMESTAMP"},
                ],
            }
        ],
    }
    table = {
        "name": "daily_events",
        "dataset": "bench",
        "owner": "team-bench@example.com",
        "strategy": {"type": "merge", "unique_key": ["day", "kind"]},
        "window": {"size": "1d", "start": start.isoformat()},
        "partition": {"key": "day"},
        "columns": [
            {"name": "day", "type": "DATE"},
            {"name": "kind", "type": "STRING"},
            {"name": "events", "type": "INT64"},
        ],
        "sql": "SELECT DATE(e.updated_at) AS day, e.kind, COUNT(*) AS events FROM shop.events AS e\n"
        "WHERE e.updated_at >= @window_start AND e.updated_at < @window_end\nGROUP BY day, kind\n",
    }
    (specs / "sources" / "shop.yaml").write_text(yaml.safe_dump(source, sort_keys=False))
    (specs / "bench" / "daily_events.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    sources = home / "sources"
    sources.mkdir(parents=True)
    with sqlite3.connect(sources / "shop.db") as con:
        con.execute("CREATE TABLE events (id INTEGER, kind TEXT, updated_at TEXT)")
        con.executemany(
            "INSERT INTO events VALUES (?, 'click', ?)",
            [(i, f"{start + dt.timedelta(days=i)} 12:00:00") for i in range(windows)],
        )
    return {"specs": str(specs), "home": str(home)}


# ----------------------------------------------------------------------------------------------- the worker


def _instance(a: dict[str, Any]) -> Any:
    """A fresh instance in `a["dagster_home"]`: SQLite storage, or PostgreSQL at `a["postgres_url"]`."""
    import os

    from dagster import DagsterInstance

    home = dagster_home(Path(a["dagster_home"]))
    if a.get("postgres_url"):
        config = yaml.safe_load((home / "dagster.yaml").read_text())
        config["storage"] = {"postgres": {"postgres_url": a["postgres_url"]}}
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()


def _floor_job(partitions_def: Any) -> Any:
    """The no-op asset: same key, partitions and backfill policy as Derive's table, nothing inside."""
    import warnings

    from dagster import BackfillPolicy, BetaWarning, Definitions, MaterializeResult, asset, define_asset_job

    warnings.filterwarnings("ignore", category=BetaWarning)

    @asset(key=KEY, partitions_def=partitions_def, backfill_policy=BackfillPolicy.single_run())
    def noop() -> MaterializeResult:
        return MaterializeResult()

    defs = Definitions(assets=[noop], jobs=[define_asset_job(JOB, selection=[noop])])
    return defs.resolve_job_def(JOB)


def _phases(instance: Any, run_id: str) -> dict[str, Any]:
    """Step time and the time before it, from the run's stored events; the stored materializations' size."""
    from dagster import DagsterEventType
    from dagster._serdes import serialize_value  # the stored form of an event: what each one costs to write

    logs = instance.all_logs(run_id)
    times = {}
    for record_ in logs:
        event = record_.dagster_event
        if event is not None and event.event_type in (
            DagsterEventType.STEP_START,
            DagsterEventType.STEP_SUCCESS,
        ):
            times[event.event_type] = record_.timestamp
    planned = [
        r.timestamp
        for r in logs
        if r.dagster_event and r.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ]
    materializations = [
        r
        for r in logs
        if r.dagster_event and r.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION
    ]
    sizes = [len(serialize_value(r)) for r in materializations]
    return {
        "step_seconds": times[DagsterEventType.STEP_SUCCESS] - times[DagsterEventType.STEP_START],
        "planned_events": len(planned),
        "planned_seconds": (planned[-1] - planned[0]) if len(planned) > 1 else 0.0,
        "materializations": len(materializations),
        "event_bytes_mean": round(sum(sizes) / len(sizes)) if sizes else 0,
        "event_bytes_max": max(sizes, default=0),
    }


def worker(a: dict[str, Any]) -> dict[str, Any]:
    """One measured backfill (`a["side"]`: `derive` or `floor`) in this process; timing starts after imports,
    definitions and (Derive) the untimed replication of the source."""
    import pandas  # noqa: F401  (DuckDB imports it on the first parametrized query: keep it out of the timer)

    from benchmarks.workers import QUIET, profiled
    from derive_assets.factory.build import build_definitions
    from derive_assets.settings import DeriveSettings

    settings = DeriveSettings(specs_dir=Path(a["specs"]), home=Path(a["home"]), executor="in_process")
    defs = build_definitions(settings)
    instance = _instance(a)
    table_job = defs.resolve_job_def(JOB)
    partitions_def = table_job.partitions_def
    assert partitions_def is not None
    keys = partitions_def.get_partition_keys()[: a["windows"]]
    tags = {RANGE_START: keys[0], RANGE_END: keys[-1]}
    if a["side"] == "derive":
        defs.resolve_job_def("replicate_shop").execute_in_process(instance=instance, run_config=QUIET)
        job = table_job
    else:
        job = _floor_job(partitions_def)
    with profiled(a.get("profile")):
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, run_config=QUIET, tags=tags)
        seconds = time.perf_counter() - started
    assert result.success
    return {"seconds": seconds, "windows": len(keys), **_phases(instance, result.run_id)}


# ----------------------------------------------------------------------------------------------- the scenario


def _postgres_database(url: str) -> tuple[str, Any]:
    """A fresh database on the server of `url`: its URL, and a function that drops it."""
    import psycopg
    from psycopg import sql

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    base, _, _ = url.rpartition("/")
    # dagster-postgres is written for psycopg2; SQLAlchemy 2.1 picks psycopg 3 for a bare `postgresql://`.
    _, _, rest = base.partition("://")
    return f"postgresql+psycopg2://{rest}/{name}", drop


def _instances(ctx: Context, wanted: tuple[str, ...]) -> dict[str, str | None]:
    """The instance kinds to measure, each with why it is not measured (None: measured)."""
    kinds: dict[str, str | None] = {}
    if "sqlite" in wanted:
        kinds["sqlite"] = None
    if "postgres" in wanted:
        try:
            import dagster_postgres  # noqa: F401
        except ImportError:
            kinds["postgres"] = "dagster-postgres is not installed"
        else:
            configured = ctx.urls.get("postgres")
            kinds["postgres"] = None if configured else "no PostgreSQL URL (DERIVE_TEST_POSTGRES_URL)"
    return kinds


def _run(ctx: Context, project: dict[str, str], side: str, kind: str, windows: int, i: int) -> Sample:
    scratch = ctx.scratch(f"events-{kind}-{side}-{i}")
    home = scratch / "home"  # a fresh warehouse and instance; the same source file
    home.mkdir()
    (home / "sources").symlink_to(Path(project["home"]) / "sources")
    args: dict[str, Any] = {
        "side": side,
        "windows": windows,
        "specs": project["specs"],
        "home": str(home),
        "dagster_home": str(scratch / "dagster_home"),
    }
    if i == 0 and ctx.profile_dir:
        args["profile"] = ctx.profile(f"partition_events_{kind}_{side}")
    drop = None
    if kind == "postgres":
        args["postgres_url"], drop = _postgres_database(ctx.urls["postgres"])
    try:
        return run_json([PYTHON, "-m", "benchmarks.bench_partition_events", "worker", json.dumps(args)])
    finally:
        if drop:
            drop()
        remove(scratch)


def partition_events(
    ctx: Context, windows: int = DEFAULT_WINDOWS, instances: tuple[str, ...] = INSTANCES
) -> None:
    """The benchmark runner's scenario: Derive's backfill step against the floor, per instance kind."""
    project = write_project(ctx.scratch("events-project"), windows)
    for kind, missing in _instances(ctx, instances).items():
        scenario = f"partition_events_{kind}"
        title = f"single-run backfill of {windows:,} daily windows, {kind} instance"
        if missing:
            not_measured(ctx, scenario, title, missing)
            ratio(ctx, scenario, title, "not measured", missing, None, "x step time", f"≤ {TARGET}x", None)
            continue
        log(f"{scenario}: {windows:,} windows")
        samples = repeat(
            ctx,
            {
                "derive": lambda i, k=kind: _run(ctx, project, "derive", k, windows, i),
                "floor": lambda i, k=kind: _run(ctx, project, "floor", k, windows, i),
            },
        )
        summary = {
            "derive": summarize(
                f"Derive table asset, {windows:,} partitions", "derive", samples["derive"], None
            ),
            "floor": summarize(f"no-op asset, {windows:,} partitions", "plain", samples["floor"], None),
        }
        record(ctx, scenario, title, summary, windows=windows)
        d, f = summary["derive"], summary["floor"]
        value = d["step_seconds_median"] / f["step_seconds_median"]
        ratio(
            ctx,
            scenario,
            title,
            f"step {d['step_seconds_median']:.1f} s (whole run {d['median_s']:.1f} s, planned events "
            f"{d['planned_seconds_median']:.1f} s; {d['event_bytes_mean_median']:,.0f} B per event)",
            f"no-op asset: step {f['step_seconds_median']:.1f} s (whole run {f['median_s']:.1f} s; "
            f"{f['event_bytes_mean_median']:,.0f} B per event)",
            value,
            "x step time",
            f"≤ {TARGET}x",
            value <= TARGET,
        )


def main(argv: list[str] | None = None) -> None:
    from benchmarks.run import service_urls

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_partition_events", description=__doc__)
    parser.add_argument("--windows", type=int, default=DEFAULT_WINDOWS)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--instances", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument(
        "--profile", type=Path, default=None, help="write pyinstrument profiles to this directory"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="derive-bench-events-"))
    urls = service_urls() if "postgres" in args.instances else {}
    ctx = Context(rows=0, repeats=args.repeats, export_rows=0, lookups=0, work=work, urls=urls)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        ctx.profile_dir = args.profile
    instances = tuple(k.strip() for k in args.instances.split(",") if k.strip())
    unknown = sorted(set(instances) - set(INSTANCES))
    if unknown:
        parser.error(f"unknown instances {unknown}; choose from {list(INSTANCES)}")
    try:
        partition_events(ctx, args.windows, instances)
    finally:
        remove(work)
    for r in ctx.ratios:
        print(
            f"{r['scenario']}: {r['derive']} | {r['compared_with']} | {r['value']} {r['unit']} ({r['target']})"
        )
    print(json.dumps(ctx.results, indent=1, default=str))


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        from benchmarks.workers import peak_rss_mb

        print(json.dumps({**worker(json.loads(sys.argv[2])), "peak_rss_mb": peak_rss_mb()}, default=str))
    else:
        main()
