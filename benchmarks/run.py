"""Run the Derive benchmarks: `.venv/bin/python -m benchmarks.run [--rows N] [--repeats R] [--only a,b] [--out DIR]`.

Creates the source data in fresh PostgreSQL and MariaDB databases on the test servers (127.0.0.1 only), measures
every scenario `--repeats` times, each run in a fresh subprocess, and writes `<date>.json`, `<date>.md` and
`<date>.png` under `--out`. The databases, keyspaces and scratch files it created are removed afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import bench_partition_events, history, reconcile, replication, report, scale, snapshot
from benchmarks import warehouse_and_online as other
from benchmarks.core import Context, log, remove
from benchmarks.data import check_local
from benchmarks.measure import REPO

SCENARIOS: dict[str, Callable[[Context], None]] = {
    # Order matters: dlt reads the PostgreSQL table before `incremental` changes it.
    "pg_full": replication.pg_full,
    "dlt": replication.dlt_peer,
    "incremental": replication.incremental,
    "mysql_full": replication.mysql_full,
    "merge": other.merge,
    "definitions": scale.definitions,
    "cli": scale.cli,
    "cql_export": other.cql_export,
    "online_reads": other.online_reads,
    "partition_events": bench_partition_events.partition_events,
    "reconcile": reconcile.reconcile,
    "snapshot": snapshot.snapshot,
    "history": lambda ctx: history.history(ctx, ctx.state.get("history_days", history.DEFAULT_DAYS)),
}
RATIO_ORDER = [
    "pg_full", "mysql_full", "memory", "incremental", "noop", "merge", "definitions_warm", "definitions_cold",
    "validate_loadable", "automation_tick", "cli", "cli_scale", "step_import", "step_rss", "cql_export",
    "reads_sqlite", "reads_cassandra", "dlt", "partition_events_sqlite", "partition_events_postgres",
    "reconcile_time", "reconcile_rss", "snapshot_resume", "snapshot_parallel", "snapshot_chunks", "snapshot_rss",
    "history_watermark_latest", "history_watermark_partition", "history_tick", "history_asset_page",
    "history_asset_page_replication", "history_tick_first", "history_late_data_partitions",
    "history_watermark_latest_pooled",
    "history_watermark_partition_pooled",
]  # fmt: skip
"""Ratio ids in report order; an id may end in `_<spec count>` (`definitions_warm_2500`)."""


def ratio_order(rid: str) -> tuple[int, int]:
    """Where a ratio goes in the report: by RATIO_ORDER, then by spec count (`definitions_warm_1000` first)."""
    base, _, count = rid.rpartition("_")
    if count.isdigit() and base in RATIO_ORDER:
        return RATIO_ORDER.index(base), int(count)
    return RATIO_ORDER.index(rid), 0


def spec_counts(text: str) -> tuple[int, ...]:
    """`--specs 1000,2500` -> (1000, 2500)."""
    try:
        counts = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--specs wants spec counts like 1000,2500, got {text!r}")
    return counts


NEEDS = {
    "pg_full": "postgres", "dlt": "postgres", "incremental": "postgres", "mysql_full": "mysql", "reconcile": "postgres",
    "snapshot": "postgres", "history": "postgres",
}  # fmt: skip


def service_urls() -> dict[str, str]:
    """The test servers' URLs from the environment, else from `deployments/local/services.sh env`."""
    names = {
        "postgres": "DERIVE_TEST_POSTGRES_URL",
        "mysql": "DERIVE_TEST_MYSQL_URL",
        "cassandra_hosts": "DERIVE_TEST_CASSANDRA_HOSTS",
        "cassandra_port": "DERIVE_TEST_CASSANDRA_PORT",
    }
    env = {var: os.environ[var] for var in names.values() if os.environ.get(var)}
    if len(env) < len(names):
        script = REPO / "deployments" / "local" / "services.sh"
        out = subprocess.run(["bash", str(script), "env"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env.setdefault(key, value.strip().strip("'\""))
    urls = {short: env[var] for short, var in names.items() if env.get(var)}
    for key in ("postgres", "mysql"):
        if key in urls:
            check_local(urls[key])
    hosts = urls.get("cassandra_hosts", "")
    if any(h not in ("127.0.0.1", "localhost", "::1") for h in hosts.split(",") if h):
        raise SystemExit(f"refusing to benchmark against Cassandra at {hosts}: only 127.0.0.1 may be loaded")
    return urls


def machine(urls: dict[str, str]) -> dict[str, Any]:
    import connectorx
    import dagster
    import duckdb

    meminfo = Path("/proc/meminfo").read_text().split()
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "memory_gib": int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20,
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "dagster": dagster.__version__,
        "connectorx": connectorx.__version__,
    }
    try:
        import psycopg

        with psycopg.connect(urls["postgres"], connect_timeout=5) as conn:
            info["postgres"] = "PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0].split()[0]  # type: ignore[index]
    except (KeyError, OSError, psycopg.Error):
        pass
    try:
        import pymysql

        from benchmarks.data import mysql_args

        with pymysql.connect(**mysql_args(urls["mysql"]), connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("SELECT version()")
            info["mariadb"] = "MariaDB " + cur.fetchone()[0].split("-")[0]  # type: ignore[index]
    except (KeyError, OSError, pymysql.Error):
        pass
    if urls.get("cassandra_hosts"):
        from cassandra.cluster import Cluster, NoHostAvailable

        cluster = Cluster(
            urls["cassandra_hosts"].split(","), port=int(urls["cassandra_port"]), protocol_version=5
        )
        try:
            row = cluster.connect().execute("SELECT release_version FROM system.local").one()
            info["cassandra"] = row.release_version
        except NoHostAvailable:
            pass
        finally:
            cluster.shutdown()
    return info


PRODUCT = ("derive_assets", "resources")


def code_version() -> dict[str, Any]:
    """The commit measured, the product code's tree ids (derive_assets/, resources/) and product files changed
    but not committed. Commits that touch only other files (docs, benchmarks) leave the tree ids as they are."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.rstrip()  # not strip(): a porcelain line starts with its status, " M path"

    changed = [line[3:] for line in git("status", "--porcelain", "--", *PRODUCT).splitlines()]
    trees = {path: git("rev-parse", "--short", f"HEAD:{path}") for path in PRODUCT}
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "product_trees": trees,
        "uncommitted_changes": changed,
    }


def _product(code: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(code["product_trees"].values()), tuple(code["uncommitted_changes"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="source table rows (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per method (default 3)")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios of: {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="output directory")
    parser.add_argument(
        "--export-rows",
        type=int,
        default=None,
        help="rows exported to CQL/SQLite (default min(rows, 100,000))",
    )
    parser.add_argument(
        "--lookups", type=int, default=2000, help="point reads per run and store (default 2,000)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also write pyinstrument profiles of Derive runs"
    )
    parser.add_argument(
        "--specs",
        type=spec_counts,
        default=(1000,),
        help="spec counts for the definitions scenario, e.g. 1000,2500 (default 1000)",
    )
    parser.add_argument(
        "--cli-specs",
        type=int,
        default=2500,
        help="specs in the large project of the cli scenario's one-asset run (default 2,500)",
    )
    parser.add_argument(
        "--history-days",
        type=int,
        default=365,
        help="days of simulated history in the history scenario (default 365: ~1.5 M events, about an hour)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (its path is logged)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")
    args.only = [s for s in SCENARIOS if s in chosen]
    args.export_rows = args.export_rows or min(args.rows, 100_000)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    urls = service_urls()
    missing = sorted({NEEDS[s] for s in args.only if s in NEEDS} - set(urls))
    if missing:
        raise SystemExit(f"no URL for {missing}: run `make services` (deployments/local/services.sh)")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="derive-bench-"))
    ctx = Context(
        rows=args.rows,
        repeats=args.repeats,
        export_rows=args.export_rows,
        lookups=args.lookups,
        work=work,
        urls=urls,
        profile_dir=(args.out / "profiles") if args.profile else None,
        specs=args.specs,
        cli_specs=args.cli_specs,
    )
    ctx.state["history_days"] = args.history_days
    if ctx.profile_dir:
        ctx.profile_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    code_before = code_version()
    try:
        for name in args.only:
            t0 = time.perf_counter()
            SCENARIOS[name](ctx)
            log(f"{name}: done in {time.perf_counter() - t0:.0f} s")
    finally:
        for cleanup in reversed(ctx.cleanups):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - cleanup must go on; the failure is only reported
                log(f"cleanup failed: {exc!r}")
        if args.keep:
            log(f"scratch kept: {work}")
        else:
            remove(work)
    replication.memory(ctx)
    ctx.ratios.sort(key=lambda r: ratio_order(r["id"]))
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    result = {
        "date": date,
        "rows": args.rows,
        "repeats": args.repeats,
        "export_rows": args.export_rows,
        "scenarios_run": args.only,
        "specs": list(args.specs),
        "cli_specs": args.cli_specs,
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": machine(urls),
        "code": code_before,
        "code_changed_during_run": _product(code_version()) != _product(code_before),
        "ratios": ctx.ratios,
        "scenarios": ctx.results,
    }
    report.write_json(result, args.out / f"{date}.json")
    (args.out / f"{date}.md").write_text(report.markdown(result))
    png = report.chart([result], args.out / f"{date}.png")
    log(
        f"wrote {args.out / f'{date}.json'}, {date}.md"
        + (f", {png.name}" if png else " (no chart: no matplotlib)")
    )
    print(report.markdown(result))
    return result


if __name__ == "__main__":
    main()
