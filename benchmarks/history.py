"""A year of history on a PostgreSQL-backed Dagster instance: what it costs the reads every run and tick make.

`python -m benchmarks.history [--days 365] [--extra-keys 2000] [--repeats 5] [--out FILE.json]`
(or `python -m benchmarks.run --only history`, a full year).

Discord's Dagster deployment records ~4,000 materializations a day. This fills a fresh PostgreSQL-backed instance
(a new database on the test server, dropped afterwards) with `--days` of that, through Dagster's own storage API
(`event_log_storage.store_event_batch`, one asset key per batch, as a step's events are stored), and measures
the same reads on three instances side by side, interleaved (empty, one day, full, empty, ...):

- `empty`: no event at all (the issue's baseline);
- `one_day`: only the last day of the same history, so every read finds the same latest events as on `full`;
- `full`: the whole history.

What is written, per day (`benchmarks/history_streams.py`, one `Stream` per key), with the metadata Derive's own
code builds (`CursorState.as_metadata`, `build_query`, `K.row_counts`, `sql_block`, `column_lineage`, the keys of
`derive_assets.metadata_keys`):

- the demo graph's 11 asset keys (`table_specs/`): each replicated table every 15 minutes, each unpartitioned
  table hourly, each daily-partitioned table (or export) twice a day: the day just ended and, late data, the
  day before;
- `--extra-keys` further keys modelled on the demo's specs, as other teams' tables in the same instance: 10 %
  replicated tables every 4 hours, 1.5 % hourly-partitioned tables each hour, the rest daily tables once a day.

With the defaults that is ~4,150 materializations a day, ~1.5 M a year. Runs are not written (their run ids are):
the measured reads never need a run row (the UI query looks each event's run up by id, which finds nothing).

Measured (each a median of `--repeats` rounds; the instances' rounds interleaved):

- `watermark_latest`: what a replication run reads first, `instance.get_latest_materialization_event(key)` and
  `CursorState.from_metadata` on it (`factory/replication_assets.py` `_stored_state`);
- `watermark_partition`: one partition's latest materialization of a daily table,
  `instance.fetch_materializations(AssetRecordsFilter(key, asset_partitions=[pk]), limit=1)`, for a partition
  in the middle of the history;
- `tick`: one evaluation of every demo asset's automation condition (`evaluate_automation_conditions`, what the
  default automation condition sensor evaluates each tick), from the previous round's cursor: a daemon's
  steady tick. The first evaluation (no cursor, asset status caches cold) is reported apart as `tick_first`;
- `asset_page`: the `RecentAssetEventsQuery` the UI's asset page sends (`benchmarks/history_asset_events.graphql`,
  copied from dagster-webserver 1.13's bundle, 100 events), through dagster_graphql against an in-process
  workspace of the demo definitions on a webserver-style instance, for a daily table; `asset_page_replication`:
  the same for a replicated table (96 events a day, so the one-day instance already fills the page);
- also reported: `late_data_partitions`, what the late-data sensor reads per windowed table each tick
  (`get_latest_storage_id_by_partition`), and both watermark reads on a pooled connection (`*_pooled`: the
  queries without a connection's setup, which dominates a run worker's read).

The SELECTs each read sends are captured and `EXPLAIN (ANALYZE, BUFFERS)`-ed on the full instance
(`explain_full` in the result): which index serves each, and how many rows and pages it touches.

Caveat: each key's events of a `history_streams.CHUNK_DAYS` chunk are stored together (one `store_event_batch`
call per key and chunk: a call costs ~40 ms of connection and schema look-ups here), so one key's events sit
closer together on disk than a live instance's, where every key's events interleave. The reads are index probes
served from memory at this size (3.3 GB for a year on a 24 GB machine); on a server whose event log outgrows its
memory, the asset page's 100 events cost up to 100 page reads instead of a few.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.core import Context, log, not_measured, ratio, record
from benchmarks.history_streams import demo_streams, extra_streams, generate, per_day

DEFAULT_DAYS = 365
DEFAULT_EXTRA_KEYS = 2000
TARGET = 2.0
"""Each read on the full instance within this many times its cost on the empty one (the issue's target)."""
QUERY_FILE = Path(__file__).with_name("history_asset_events.graphql")
MEASURED = ("watermark_latest", "watermark_partition", "tick", "asset_page", "asset_page_replication")
ALSO = ("tick_first", "late_data_partitions", "watermark_latest_pooled", "watermark_partition_pooled")
"""The reads the issue's 2x target is about (ALSO: reported beside them)."""
INSTANCES = ("empty", "one_day", "full")


def postgres_database(url: str) -> tuple[str, Callable[[], None]]:
    """A fresh database on the server of `url` (its SQLAlchemy URL for dagster-postgres) and its drop."""
    from benchmarks.bench_partition_events import _postgres_database

    return _postgres_database(url)


def open_instance(home: Path, postgres_url: str, webserver: bool = False) -> Any:
    """A Dagster instance in `home` whose storage is PostgreSQL at `postgres_url` (schema created).

    As a run worker or the daemon opens it (dagster-postgres's default: no pool, one connection per call), or
    `webserver`: as `dagster-webserver` does, `optimize_for_webserver` with its defaults (one pooled connection,
    a 15 s statement timeout). The generator writes through such a pooled instance too: a new connection per
    `store_event_batch` call would cost more than the batch."""
    import yaml
    from dagster import DagsterInstance
    from dagster_webserver.cli import (
        DEFAULT_DB_STATEMENT_TIMEOUT,
        DEFAULT_POOL_MAX_OVERFLOW,
        DEFAULT_POOL_RECYCLE,
    )

    home.mkdir(parents=True, exist_ok=True)
    config = {
        "storage": {"postgres": {"postgres_url": postgres_url}},
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    instance = DagsterInstance.from_config(str(home))
    if webserver:
        instance.optimize_for_webserver(
            DEFAULT_DB_STATEMENT_TIMEOUT, DEFAULT_POOL_RECYCLE, DEFAULT_POOL_MAX_OVERFLOW
        )
    return instance


def table_sizes(postgres_url: str) -> dict[str, Any]:
    """Rows and on-disk size of the event log's tables (what retention would shrink)."""
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT relname, n_live_tup, pg_total_relation_size(relid) FROM pg_stat_user_tables "
                    "WHERE relname IN ('event_logs', 'asset_event_tags', 'asset_keys')"
                )
            ).fetchall()
            events = conn.execute(sa.text("SELECT count(*) FROM event_logs")).scalar_one()
    finally:
        engine.dispose()
    return {
        "event_logs_rows": int(events),
        **{f"{name}_mb": round(size / 2**20, 1) for name, _, size in rows},
    }


@dataclass
class Targets:
    """What the reads are about: a replicated table, a daily table and one of its partitions."""

    replication_key: Any
    cursor_type: str
    partitioned_key: Any
    partition: str


def targets(defs: Any, project: Any, start: dt.datetime, end: dt.datetime) -> Targets:
    from dagster import AssetKey

    rt = project.replicated[0]
    graph = defs.resolve_asset_graph()
    daily = next(
        k
        for k in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
        if graph.get(k).partitions_def is not None
        and any(t.spec.ref.split(".") == k.path for t in project.tables)
    )
    pdef = graph.get(daily).partitions_def
    first = max(start, pdef.start)  # type: ignore[attr-defined]
    middle = first + (end - first) / 2
    return Targets(
        AssetKey(rt.ref.split(".")),
        rt.table.cursor_column.type,
        daily,
        (middle - dt.timedelta(days=1)).date().isoformat(),
    )


def read_watermark(instance: Any, t: Targets) -> Any:
    """A replication run's first read (`_stored_state` in factory/replication_assets.py): the stored cursor."""
    from derive_assets.replication.watermark import CursorState

    event = instance.get_latest_materialization_event(t.replication_key)
    materialization = event.asset_materialization if event else None
    if materialization is None:
        return CursorState()
    return CursorState.from_metadata(materialization.metadata, t.cursor_type)  # type: ignore[arg-type]


def read_partition(instance: Any, t: Targets) -> Any:
    """One partition's latest materialization (its window's watermark)."""
    from dagster import AssetRecordsFilter

    result = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=t.partitioned_key, asset_partitions=[t.partition]), limit=1
    )
    return result.records[0] if result.records else None


def read_built_partitions(instance: Any, t: Targets) -> dict[str, int]:
    """What the `derive_late_data` sensor reads for each windowed table every tick (`factory/late_data.py`): the
    latest materialization's storage id of every partition the table has."""
    from dagster import DagsterEventType

    return dict(
        instance.get_latest_storage_id_by_partition(t.partitioned_key, DagsterEventType.ASSET_MATERIALIZATION)
    )


def asset_page(context: Any, key: Any) -> dict[str, Any]:
    """The asset page's events query (100 events), as the UI sends it."""
    from dagster_graphql.test.utils import execute_dagster_graphql

    result = execute_dagster_graphql(
        context,
        QUERY_FILE.read_text(),
        {
            "assetKey": {"path": list(key.path)},
            "limit": 100,
            "eventTypeSelectors": ["MATERIALIZATION", "OBSERVATION", "FAILED_TO_MATERIALIZE"],
        },
    )
    asset = result.data["assetOrError"]
    return {"events": len(asset.get("assetEventHistory", {}).get("results", [])) if asset else 0}


@contextmanager
def workspace(instance: Any) -> Iterator[Any]:
    """An in-process workspace of the demo definitions (`derive_assets.definitions`) on `instance`."""
    from dagster._core.test_utils import in_process_test_workspace
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    origin = LoadableTargetOrigin(module_name="derive_assets.definitions", attribute="defs")
    with in_process_test_workspace(instance, origin) as context:
        yield context


@dataclass
class Side:
    """One instance under measurement: opened as a run worker opens it, and as the webserver does (with the
    workspace the GraphQL query runs in), and its automation cursor."""

    name: str
    instance: Any
    web: Any
    context: Any = None
    cursor: Any = None
    clock: dt.datetime | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    seen: dict[str, Any] = field(default_factory=dict)

    def timed(self, what: str, run: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = run()
        self.samples.setdefault(what, []).append(time.perf_counter() - started)
        return value


def measure_round(side: Side, defs: Any, t: Targets, first: bool) -> None:
    """One round of every read on one instance."""
    from dagster import evaluate_automation_conditions

    state = side.timed("watermark_latest", lambda: read_watermark(side.instance, t))
    side.seen["watermark"] = watermark_text(state)
    found = side.timed("watermark_partition", lambda: read_partition(side.instance, t))
    side.seen["partition_found"] = found is not None
    built = side.timed("late_data_partitions", lambda: read_built_partitions(side.instance, t))
    side.seen["late_data_partitions"] = len(built)
    side.timed("watermark_latest_pooled", lambda: read_watermark(side.web, t))
    side.timed("watermark_partition_pooled", lambda: read_partition(side.web, t))
    assert side.clock is not None
    result = side.timed(
        "tick_first" if first else "tick",
        lambda: evaluate_automation_conditions(
            defs=defs, instance=side.instance, evaluation_time=side.clock, cursor=side.cursor
        ),
    )
    side.cursor = result.cursor
    side.clock += dt.timedelta(seconds=30)
    side.seen["evaluated"] = len(result.results)
    side.seen["requested_first" if first else "requested"] = result.total_requested
    page = side.timed("asset_page", lambda: asset_page(side.context, t.partitioned_key))
    side.seen["page_events"] = page["events"]
    page = side.timed("asset_page_replication", lambda: asset_page(side.context, t.replication_key))
    side.seen["page_events_replication"] = page["events"]


WARM_UP = (
    "late_data_partitions",
    "watermark_latest",
    "watermark_partition",
    "watermark_latest_pooled",
    "watermark_partition_pooled",
    "asset_page",
    "asset_page_replication",
)


def measure(sides: Sequence[Side], defs: Any, t: Targets, repeats: int) -> None:
    """`repeats` + 1 rounds, the instances interleaved; the first round's tick (no cursor) is `tick_first`,
    and the first round's other reads are warm-up (not kept)."""
    for i in range(repeats + 1):
        for side in sides:
            measure_round(side, defs, t, first=i == 0)
            if i == 0:
                for what in WARM_UP:
                    side.samples[what].clear()
        log(
            f"history: round {i + 1}/{repeats + 1}: "
            + ", ".join(
                f"{s.name} tick {s.samples.get('tick', s.samples['tick_first'])[-1]:.3f} s" for s in sides
            )
        )


def watermark_text(state: Any) -> str | None:
    from derive_assets.replication import watermark

    return watermark.to_text(state.watermark)


def summary(side: Side) -> dict[str, Any]:
    out: dict[str, Any] = {"label": side.name, "kind": "instance", "seen": side.seen}
    for what, seconds in side.samples.items():
        if seconds:
            out[f"{what}_median_s"] = round(statistics.median(seconds), 5)
            out[f"{what}_min_s"] = round(min(seconds), 5)
            out[f"{what}_max_s"] = round(max(seconds), 5)
    return out


def explain(side: Side, t: Targets) -> dict[str, list[dict[str, Any]]]:
    """The SELECTs each read sends to the event log (captured from SQLAlchemy), each with its plan and time on
    this instance (`EXPLAIN (ANALYZE, BUFFERS)`): which index serves it, how many rows and pages it touches."""
    from sqlalchemy import event

    reads: dict[str, Callable[[], Any]] = {
        "watermark_latest": lambda: read_watermark(side.web, t),
        "watermark_partition": lambda: read_partition(side.web, t),
        "late_data_partitions": lambda: read_built_partitions(side.web, t),
        "asset_page": lambda: asset_page(side.context, t.partitioned_key),
    }
    storage = side.web.event_log_storage
    out: dict[str, list[dict[str, Any]]] = {}
    for what, run in reads.items():
        seen: list[tuple[str, Any]] = []

        def capture(
            conn: Any,
            cursor: Any,
            statement: str,
            parameters: Any,
            context: Any,
            many: bool,
            seen: list = seen,
        ) -> None:
            # Dagster's own schema look-ups (pg_catalog) cost the same on every instance: left out.
            if statement.lstrip().upper().startswith("SELECT") and "pg_catalog" not in statement and not many:
                seen.append((statement, parameters))

        event.listen(storage._engine, "before_cursor_execute", capture)
        try:
            run()
        finally:
            event.remove(storage._engine, "before_cursor_execute", capture)
        plans = []
        raw = storage._engine.raw_connection()
        try:
            cur = raw.cursor()
            for statement, parameters in seen:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                lines = [row[0] for row in cur.fetchall()]
                plans.append({"sql": " ".join(statement.split())[:400], "plan": lines})
        finally:
            raw.close()
        out[what] = plans
    return out


def _demo_definitions(work: Path) -> tuple[Any, Any]:
    from derive_assets.factory.build import build_definitions
    from derive_assets.settings import PROJECT_ROOT, DeriveSettings
    from derive_assets.specs.project import load_project

    specs, home = PROJECT_ROOT / "table_specs", work / "derive_home"
    os.environ["DERIVE_SPECS_DIR"], os.environ["DERIVE_HOME"] = str(specs), str(home)  # the workspace's load
    settings = DeriveSettings(specs_dir=specs, home=home, executor="in_process")
    return build_definitions(settings), load_project(specs, strict=True)


def fill(
    urls: dict[str, str],
    work: str,
    days: int,
    extra_keys: int,
    end: str,
    part: int = 0,
    parts: int = 1,
) -> dict[str, Any]:
    """Write every `parts`-th stream (from `part`) of the history into the `full` instance at `urls["full"]`,
    and its last day into `urls["one_day"]` as well; what was written. Runs in a process of its own when
    `parts` > 1 (the streams are rebuilt there: they are closures over the specs)."""
    stop = dt.datetime.fromisoformat(end)
    start, last_day = stop - dt.timedelta(days=days), stop - dt.timedelta(days=1)
    root = Path(work) / f"fill-{part}"
    defs, project = _demo_definitions(root)
    streams = [*demo_streams(defs, project), *extra_streams(project, extra_keys)][part::parts]
    full = open_instance(root / "full", urls["full"], webserver=True)
    one_day = open_instance(root / "one_day", urls["one_day"], webserver=True)
    try:
        before = generate([full], streams, start, last_day, seed=15 + part)
        # The last day goes to both instances, the same events (and so the same latest ones on both).
        after = generate([full, one_day], streams, last_day, stop, seed=115 + part)
    finally:
        full.dispose()
        one_day.dispose()
    kinds = {*before.by_kind, *after.by_kind}
    return {
        "events": before.events + after.events,
        "batches": before.batches + after.batches,
        "seconds": before.seconds + after.seconds,
        "by_kind": {k: before.by_kind.get(k, 0) + after.by_kind.get(k, 0) for k in kinds},
    }


def fill_in_parallel(
    urls: dict[str, str], work: Path, days: int, extra_keys: int, end: dt.datetime, parts: int
) -> dict[str, Any]:
    """`fill` in `parts` processes (one per core: serializing the events is most of the work)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    args = (urls, str(work), days, extra_keys, end.isoformat())
    started = time.perf_counter()
    if parts == 1:
        done = [fill(*args)]
    else:
        with ProcessPoolExecutor(parts, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(fill, *([a] * parts for a in args), range(parts), [parts] * parts))
    kinds = {k for d in done for k in d["by_kind"]}
    return {
        "events": sum(d["events"] for d in done),
        "batches": sum(d["batches"] for d in done),
        "seconds": time.perf_counter() - started,
        "by_kind": {k: sum(d["by_kind"].get(k, 0) for d in done) for k in sorted(kinds)},
        "processes": parts,
    }


def run_history(
    postgres_url: str,
    work: Path,
    days: int = DEFAULT_DAYS,
    extra_keys: int = DEFAULT_EXTRA_KEYS,
    repeats: int = 5,
    end: dt.datetime | None = None,
    keep: Callable[[str, Any], None] | None = None,
    parts: int = 2,
) -> dict[str, Any]:
    """Fill, measure and drop the three instances; the result (every number the report shows).

    `keep(name, instance)` is called with each instance before it is dropped (the tests look inside)."""
    end = end or dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(days=days)
    defs, project = _demo_definitions(work)
    demo, extra = demo_streams(defs, project), extra_streams(project, extra_keys)
    streams = [*demo, *extra]
    t = targets(defs, project, start, end)
    with ExitStack() as stack:
        sides = []
        urls = {}
        for name in INSTANCES:
            url, drop = postgres_database(postgres_url)
            stack.callback(drop)
            web = open_instance(work / f"home-{name}", url, webserver=True)
            stack.callback(web.dispose)
            instance = open_instance(work / f"home-{name}", url)
            stack.callback(instance.dispose)
            sides.append(Side(name, instance, web, clock=end + dt.timedelta(minutes=1)))
            urls[name] = url
        by_name = {s.name: s for s in sides}
        log(f"history: {len(streams):,} keys, {per_day(streams):,} materializations a day, {days} days")
        written = fill_in_parallel(urls, work, days, extra_keys, end, parts)
        for side in sides:
            side.context = stack.enter_context(workspace(side.web))
        measure(sides, defs, t, repeats)
        sizes = {name: table_sizes(url) for name, url in urls.items()}
        plans = explain(by_name["full"], t)
        if keep:
            for side in sides:
                keep(side.name, side.instance)
    return {
        "days": days,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "keys": len(streams),
        "demo_keys": len(demo),
        "per_day": per_day(streams),
        "events": written["events"],
        "events_by_kind": written["by_kind"],
        "store_event_batch_calls": written["batches"],
        "generate_seconds": round(written["seconds"], 1),
        "generate_processes": written["processes"],
        "events_per_second": round(written["events"] / max(written["seconds"], 1e-9)),
        "targets": {
            "replication": t.replication_key.to_user_string(),
            "partitioned": t.partitioned_key.to_user_string(),
            "partition": t.partition,
        },
        "sizes": sizes,
        "explain_full": plans,
        "instances": {s.name: summary(s) for s in sides},
        "repeats": repeats,
    }


def ratios(result: dict[str, Any]) -> list[dict[str, Any]]:
    """full/empty (and full/one day) of each measured read."""
    inst = result["instances"]
    rows = []
    for what in (*MEASURED, *ALSO):
        e, o, f = (inst[n].get(f"{what}_median_s") for n in INSTANCES)
        if not (e and f):
            continue
        rows.append(
            {
                "what": what,
                "empty_s": e,
                "one_day_s": o,
                "full_s": f,
                "full_over_empty": round(f / e, 3),
                "full_over_one_day": round(f / o, 3) if o else None,
            }
        )
    return rows


def methods(result: dict[str, Any], rss_mb: float) -> dict[str, dict[str, Any]]:
    """Each instance's reads as the report's method rows (label, median, range; the orchestrator's peak RSS)."""
    out = {}
    for name, inst in result["instances"].items():
        for what in (*MEASURED, *ALSO):
            if f"{what}_median_s" in inst:
                out[f"{name}_{what}"] = {
                    "label": f"{name} instance: {what}",
                    "kind": "derive",
                    "repeats": result["repeats"],
                    "median_s": inst[f"{what}_median_s"],
                    "min_s": inst[f"{what}_min_s"],
                    "max_s": inst[f"{what}_max_s"],
                    "peak_rss_mb": rss_mb,
                }
    return out


TITLES = {
    "watermark_latest": "watermark read: latest materialization of a replication asset",
    "watermark_partition": "watermark read: one partition's latest materialization",
    "tick": "automation sensor tick over the demo graph (steady, from the last cursor)",
    "tick_first": "first automation tick (no cursor, status caches cold)",
    "asset_page": "asset page GraphQL query (RecentAssetEventsQuery, 100 events) of a daily table",
    "asset_page_replication": "the same query for a replication asset (96 events a day)",
    "late_data_partitions": "late-data sensor's read per windowed table: every partition's latest storage id",
    "watermark_latest_pooled": "watermark read (latest), on a pooled connection: the query alone",
    "watermark_partition_pooled": "watermark read (one partition), on a pooled connection: the query alone",
}


def history(ctx: Context, days: int = DEFAULT_DAYS, extra_keys: int = DEFAULT_EXTRA_KEYS) -> None:
    """The benchmark runner's scenario: a year (`days`) of history, each read full against empty."""
    from benchmarks.workers import peak_rss_mb

    title = f"{days} days of history ({extra_keys + 11:,} keys), PostgreSQL instance"
    if not ctx.urls.get("postgres"):
        not_measured(ctx, "history", title, "no PostgreSQL URL (DERIVE_TEST_POSTGRES_URL)")
        return
    result = run_history(ctx.urls["postgres"], ctx.scratch("history"), days, extra_keys, ctx.repeats)
    record(ctx, "history", title, methods(result, peak_rss_mb()), **result)
    for row in ratios(result):
        ratio(
            ctx,
            f"history_{row['what']}",
            "history",
            f"full ({result['events']:,} events): {row['full_s'] * 1000:.1f} ms",
            f"empty: {row['empty_s'] * 1000:.1f} ms; one day: {row['one_day_s'] * 1000:.1f} ms",
            row["full_over_empty"],
            "x time",
            f"≤ {TARGET}x",
            row["full_over_empty"] <= TARGET,
            TITLES[row["what"]],
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks.core import remove
    from benchmarks.run import service_urls

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.history", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS)
    parser.add_argument("--extra-keys", type=int, default=DEFAULT_EXTRA_KEYS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    urls = service_urls()
    if "postgres" not in urls:
        raise SystemExit("no PostgreSQL URL: run `make services` (deployments/local/services.sh)")
    work = Path(tempfile.mkdtemp(prefix="derive-bench-history-"))
    try:
        result = run_history(urls["postgres"], work, args.days, args.extra_keys, args.repeats)
    finally:
        remove(work)
    result["ratios"] = ratios(result)
    text = json.dumps(result, indent=1, default=str)
    if args.out:
        args.out.write_text(text)
    for row in result["ratios"]:
        print(
            f"{row['what']}: empty {row['empty_s'] * 1000:.2f} ms, one day {row['one_day_s'] * 1000:.2f} ms, "
            f"full {row['full_s'] * 1000:.2f} ms: full/empty {row['full_over_empty']}x (target ≤ {TARGET}x)"
        )
    print(text, file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
