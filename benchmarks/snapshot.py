"""Resumable first loads (`snapshot:`, `derive_assets/replication/snapshot.py`): a killed chunked load, resumed.

The source is a PostgreSQL database of its own holding `--rows` orders (ANALYZEd, so the row estimate says the
table is large). The spec reads it in chunks of a tenth of the table (`snapshot.chunk_rows = rows / 10`). Each
round measures, interleaved:

- `full`: a chunked first load into an empty warehouse (one connection per chunk, `parallel: 1`);
- `parallel2`: the same with `parallel: 2` (each chunk a key range read by two connectorx connections);
- `one_pass`: the same table with `chunk_rows` above its size: the unchunked first load, for the chunks' cost;
- `resume`: a chunked first load killed with SIGKILL once the event log holds the checkpoint of 60 % of the
  chunks, then run again (measured): the rerun reads the remaining 40 % and promotes the staging table.

Time is the job's wall time inside the worker; peak RSS the worker's high-water mark. Every table is checked to
equal the `full` one (count and a checksum over every column), so a resume that lost or doubled rows fails the
benchmark. The targets: rerun ≤ 0.5x `full`; peak RSS ≤ 600 MB.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import yaml

from benchmarks import specs
from benchmarks.core import Context, clean_env, dagster_home, log, ratio, record, remove, repeat, summarize
from benchmarks.data import PostgresSource
from benchmarks.measure import PYTHON, REPO, Sample, run_worker
from benchmarks.replication import _csv

NAME = "bench_snap"
ENV = "DERIVE_BENCH_SNAPSHOT_URL"
KILL_AT = 0.6
"""The share of chunks checkpointed when the first attempt of `resume` is killed."""
CHECKSUM = (
    "SELECT count(*), sum(hash(id, user_id, status, amount, created_at, updated_at) % 1000000007) "
    "FROM bench_snap.orders"
)
"""Count and checksum of every column of the replicated table (`NAME`.orders)."""


def _specs(dest: Path, chunk_rows: int, parallel: int = 1) -> Path:
    spec = specs.source_spec(NAME, "postgres", ENV)
    spec["tables"][0]["snapshot"] = {"chunk_rows": chunk_rows, "parallel": parallel}
    path = dest / "sources" / f"{NAME}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def _checksum(home: Path) -> tuple[int, int]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute(CHECKSUM).fetchone()
    assert row is not None
    return int(row[0]), int(row[1] or 0)


def _checkpointed_chunks(dagster_dir: Path) -> int:
    """The chunks the newest checkpoint in the instance's event log says are committed (0: none yet)."""
    from dagster import AssetKey, DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_dir))) as instance:
        records = instance.fetch_observations(AssetKey([NAME, "orders"]), limit=1).records
    if not records or records[0].asset_observation is None:
        return 0
    value = records[0].asset_observation.metadata.get("derive/snapshot_chunks")
    return int(getattr(value, "value", 0) or 0)


def _kill_part_way(args: dict[str, Any], env: dict[str, str], dagster_dir: Path, wanted: int) -> float:
    """Start the job, SIGKILL its process group once `wanted` chunks are checkpointed; seconds it ran."""
    argv = [PYTHON, "-m", "benchmarks.workers", "derive_job", json.dumps(args, default=str)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while proc.poll() is None:
            if (dagster_dir / "history").exists() and _checkpointed_chunks(dagster_dir) >= wanted:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return time.perf_counter() - started
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    raise RuntimeError(
        f"snapshot resume: the first attempt ended (exit {proc.returncode}) before it was killed"
    )


def snapshot(ctx: Context) -> None:
    title = f"resumable first load: killed at {KILL_AT:.0%} (SIGKILL), rerun"
    source = PostgresSource(ctx.urls["postgres"])
    ctx.cleanups.append(source.drop)
    log(f"snapshot: loading {ctx.rows:,} rows into a fresh PostgreSQL database (COPY)")
    source.load(_csv(ctx))
    with psycopg.connect(source.url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE orders")
    chunk_rows = max(1000, ctx.rows // 10)
    # Each chunk after the first reads the last key of the one before again: chunk_rows - 1 new rows.
    kill_after = max(1, round(KILL_AT * ctx.rows / (chunk_rows - 1)))
    spec_dirs = {
        "full": _specs(ctx.scratch("specs-snap"), chunk_rows),
        "parallel2": _specs(ctx.scratch("specs-snap-par"), chunk_rows, parallel=2),
        "one_pass": _specs(ctx.scratch("specs-snap-one"), ctx.rows * 10),
    }
    expected: dict[str, tuple[int, int]] = {}
    killed_after: list[float] = []

    def load(name: str) -> Any:
        def run(i: int) -> Sample:
            home = ctx.scratch(f"home-snap-{name}")
            env = clean_env(**{ENV: source.url, "DAGSTER_HOME": str(dagster_home(home / "dagster_home"))})
            args = {"specs": str(spec_dirs[name]), "home": str(home), "job": f"replicate_{NAME}"}
            try:
                sample = run_worker("derive_job", args, env)
                _check(name, home, expected)
                return sample
            finally:
                remove(home)

        return run

    def resumed(i: int) -> Sample:
        home = ctx.scratch("home-snap-resume")
        dh = dagster_home(home / "dagster_home")
        env = clean_env(**{ENV: source.url, "DAGSTER_HOME": str(dh)})
        args = {"specs": str(spec_dirs["full"]), "home": str(home), "job": f"replicate_{NAME}"}
        try:
            killed_after.append(round(_kill_part_way(args, env, dh, kill_after), 2))
            sample = run_worker("derive_job", args, env)
            _check("resume", home, expected)
            return sample
        finally:
            remove(home)

    methods = {name: load(name) for name in ("full", "parallel2", "one_pass")}
    samples = repeat(ctx, {**methods, "resume": resumed})
    labels = {
        "full": f"chunked first load, {chunk_rows:,}-row chunks, 1 connection",
        "parallel2": f"chunked first load, {chunk_rows:,}-row chunks, 2 connections per chunk",
        "one_pass": "unchunked first load (chunk_rows above the table's size)",
        "resume": f"rerun after a SIGKILL at {KILL_AT:.0%} of the chunks",
    }
    summary = {key: summarize(labels[key], "derive", s, ctx.rows) for key, s in samples.items()}
    count, check = expected["full"]
    record(
        ctx, "snapshot", title, summary, rows=ctx.rows, chunk_rows=chunk_rows, killed_after_s=killed_after,
        count=count, checksum=check,
    )  # fmt: skip
    _ratios(ctx, title, summary)


def _check(name: str, home: Path, expected: dict[str, tuple[int, int]]) -> None:
    """The table equals the first `full` load's (count and checksum); the first one sets what is expected."""
    found = _checksum(home)
    want = expected.setdefault("full", found)
    if found != want:
        raise RuntimeError(f"snapshot {name}: the table's (count, checksum) {found} differs from {want}")


def _ratios(ctx: Context, title: str, summary: dict[str, dict[str, Any]]) -> None:
    full, resume, par, one = (summary[k] for k in ("full", "resume", "parallel2", "one_pass"))
    ratio(
        ctx, "snapshot_resume", title, f"{resume['median_s']:.1f} s", f"full chunked load: {full['median_s']:.1f} s",
        resume["median_s"] / full["median_s"], "x", "≤ 0.5x", resume["median_s"] <= 0.5 * full["median_s"],
    )  # fmt: skip
    ratio(
        ctx, "snapshot_parallel", f"parallel extraction: {title}", f"2 connections: {par['median_s']:.1f} s",
        f"1 connection: {full['median_s']:.1f} s", full["median_s"] / par["median_s"], "x",
        "> 1x to pay (reported)", None if not par["median_s"] else full["median_s"] > par["median_s"],
    )  # fmt: skip
    ratio(
        ctx, "snapshot_chunks", f"chunking's cost: {title}", f"chunked: {full['median_s']:.1f} s",
        f"one pass: {one['median_s']:.1f} s", full["median_s"] / one["median_s"], "x", "(reported)", None,
    )  # fmt: skip
    peak = max(s["peak_rss_mb"] for s in summary.values())
    ratio(
        ctx, "snapshot_rss", f"memory: {title}", f"{peak:.0f} MB peak RSS", "600 MB bound", peak, "MB",
        "≤ 600 MB", peak <= 600,
    )  # fmt: skip
