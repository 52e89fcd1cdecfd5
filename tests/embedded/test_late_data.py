"""Late data on the embedded engines (SQLite source -> DuckDB): a wave of late rows spread over hundreds of past
days re-runs exactly those days, as one backfill, and leaves the table as a from-scratch build would.

The project: a SQLite `shop.events` source whose `happened_at` is a declared event time, and a daily merge table
`bench.daily_events` counting the events of each day (`e.happened_at >= @window_start AND ... < @window_end`),
with `lookback: 2`, built over ~500 days. The sensor is evaluated with Dagster's `build_sensor_context` on a real
(ephemeral) instance; its backfill is split into runs by Dagster's own `build_run_requests_with_backfill_policies`
(what the backfill daemon calls) and each run is executed in process.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import yaml
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    SensorResult,
    build_sensor_context,
)
from dagster._core.definitions.automation_tick_evaluation_context import (
    build_run_requests_with_backfill_policies,
)
from dagster._core.execution.backfill import PartitionBackfill
from support import QUIET, events_source, run_assets, run_job

from derive_assets import metadata_keys as K
from derive_assets.factory.build import build_definitions
from derive_assets.factory.late_data import SENSOR_NAME, late_keys
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import DeriveSettings

KEY = AssetKey(["bench", "daily_events"])
DOUBLED = AssetKey(["bench", "daily_doubled"])
SOURCE_KEY = AssetKey(["shop", "events"])
TODAY = dt.datetime.now(dt.UTC).date()
FIRST = TODAY - dt.timedelta(days=500)
LAST = TODAY - dt.timedelta(days=1)  # the latest complete window
LOOKBACK = 2
LATE = TODAY.isoformat() + " 00:30:00"  # the late rows' cursor: beyond the watermark (the first rows' latest)

SOURCE = events_source()
SOURCE["tables"][0]["columns"].insert(2, {"name": "happened_at", "type": "TIMESTAMP"})
SOURCE["tables"][0]["event_time"] = ["happened_at"]
TABLE: dict[str, Any] = {
    "name": "daily_events",
    "dataset": "bench",
    "owner": "team:shop",
    "strategy": {"type": "merge", "unique_key": ["day"]},
    "window": {"size": "1d", "start": FIRST.isoformat()},
    "lookback": LOOKBACK,
    "schedule": "30 0 * * *",
    "partition": {"key": "day"},
    "columns": [{"name": "day", "type": "DATE"}, {"name": "events", "type": "INT64"}],
    "sql": "SELECT DATE(e.happened_at) AS day, COUNT(*) AS events FROM shop.events AS e\n"
    "WHERE e.happened_at >= @window_start AND e.happened_at < @window_end\nGROUP BY day\n",
}


DOWNSTREAM: dict[str, Any] = {
    "name": "daily_doubled",
    "dataset": "bench",
    "owner": "team:shop",
    "strategy": {"type": "merge", "unique_key": ["day"]},
    "window": {"size": "1d", "start": FIRST.isoformat()},
    "partition": {"key": "day"},
    "columns": [{"name": "day", "type": "DATE"}, {"name": "doubled", "type": "INT64"}],
    "sql": "SELECT d.day, d.events * 2 AS doubled FROM bench.daily_events AS d\n"
    "WHERE d.day >= DATE(@window_start) AND d.day < DATE(@window_end)\n",
}
"""A windowed table downstream of the daily one: its windows of late days are stale too."""


def day(n: int) -> str:
    return (FIRST + dt.timedelta(days=n)).isoformat()


class Project:
    def __init__(self, tmp_path: Path) -> None:
        self.settings = DeriveSettings(specs_dir=tmp_path / "specs", home=tmp_path / "home")
        (self.settings.specs_dir / "sources").mkdir(parents=True)
        (self.settings.specs_dir / "bench").mkdir()
        (self.settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(SOURCE))
        (self.settings.specs_dir / "bench" / "daily_events.yaml").write_text(yaml.safe_dump(TABLE))
        (self.settings.specs_dir / "bench" / "daily_doubled.yaml").write_text(yaml.safe_dump(DOWNSTREAM))
        self.settings.embedded_sources_dir.mkdir(parents=True)
        self.db = self.settings.embedded_sources_dir / "shop.db"
        with sqlite3.connect(self.db) as con:
            con.execute("CREATE TABLE events (id INTEGER, kind TEXT, happened_at TEXT, updated_at TEXT)")
        self.next_id = 1
        self.defs: Definitions = build_definitions(self.settings)
        self.instance = DagsterInstance.ephemeral()
        self.cursor: str | None = None

    def insert(self, days: list[str], updated_at: str | None = None, at: str = "12:00:00") -> None:
        """One event on each of `days` at `at`, last changed at `updated_at` (default: when it happened, so
        that a replication's overlap re-reads only the last few minutes' rows)."""
        rows = [
            (self.next_id + i, "click", f"{d} {at}", updated_at or f"{d} {at}") for i, d in enumerate(days)
        ]
        self.next_id += len(rows)
        with sqlite3.connect(self.db) as con:
            con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)

    def replicate(self) -> dict[str, Any]:
        return run_job(self.defs, self.instance, "replicate_shop")["shop/events"]

    def tick(self) -> SensorResult:
        sensor = self.defs.get_sensor_def(SENSOR_NAME)
        context = build_sensor_context(instance=self.instance, definitions=self.defs, cursor=self.cursor)
        result = sensor(context)
        assert isinstance(result, SensorResult)
        self.cursor = result.cursor
        return result

    def built(self, key: AssetKey = KEY) -> dict[str, int]:
        return dict(
            self.instance.get_latest_storage_id_by_partition(key, DagsterEventType.ASSET_MATERIALIZATION)
        )

    def duckdb(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.settings.duckdb_path)) as con:
            return con.execute(sql).fetchall()


def test_a_wave_of_late_rows_reruns_exactly_its_days_as_one_backfill(tmp_path: Path) -> None:
    project = Project(tmp_path)
    all_days = [day(n) for n in range((LAST - FIRST).days + 1)]
    project.insert(all_days)
    first = project.replicate()
    assert first[K.event_time("happened_at")]["rows"] == len(all_days)
    run_assets(project.defs, project.instance, [KEY, DOUBLED], partition_range=(all_days[0], all_days[-1]))

    # The first replication touched every day, but every day was built after it: nothing is late.
    quiet = project.tick()
    assert quiet.run_requests == [] and "no late rows" in str(quiet.skip_reason)

    # The wave: 8 clusters of 1..30 days spread over 490 days, some days twice, plus rows the sensor must leave
    # to others: in the windows `lookback` covers, before the window start, and in today's unfinished window.
    rng = random.Random(13)
    starts = sorted(rng.sample(range(0, (LAST - FIRST).days - LOOKBACK - 30), 8))
    late = sorted({day(s + i) for s in starts for i in range(rng.randint(1, 30))})
    covered = [(LAST - dt.timedelta(days=i)).isoformat() for i in range(LOOKBACK + 1)]
    project.insert([*late, *late[::5], *covered, "1995-03-01", TODAY.isoformat()], LATE, at="23:59:59")
    project.insert([late[0]], LATE, at="00:00:00")  # the first second of a day: that day, not the one before
    second = project.replicate()
    recorded = second[K.event_time("happened_at")]
    assert recorded["min"] == "1995-03-01T23:59:59+00:00" and recorded["granularity"] == "hour"
    before, doubled_before = project.built(), project.built(DOUBLED)

    result = project.tick()

    requests = result.run_requests or []
    assert len(requests) == 1, "one backfill"
    request = requests[0]
    assert request.asset_graph_subset is not None and request.asset_selection is None
    # The late days, and the same days of the windowed table downstream (its condition covers only its latest).
    assert late_keys([request]) == {"bench/daily_events": late, "bench/daily_doubled": late}
    replicated = project.instance.fetch_materializations(SOURCE_KEY, limit=1).records[0].storage_id
    assert request.tags[K.LATE_DATA_TAG] == f"shop/events#{replicated}"
    assert json.loads(project.cursor or "{}") == {"shop/events": replicated}, (
        "the next tick reads on from there"
    )
    assert len(late) > 100 and (dt.date.fromisoformat(late[-1]) - dt.date.fromisoformat(late[0])).days > 300

    # The request is a backfill the instance takes as the sensor daemon submits it (`_submit_backfill_request`).
    backfill = PartitionBackfill.from_asset_graph_subset(
        backfill_id="late",
        asset_graph_subset=request.asset_graph_subset,
        dynamic_partitions_store=project.instance,
        backfill_timestamp=0.0,
        tags=request.tags,
        title=None,
        description=None,
        run_config=None,
    )
    project.instance.add_backfill(backfill)
    assert project.instance.get_backfill("late") is not None

    # What the backfill daemon launches: with the single-run policy, one run per contiguous range of days.
    graph = project.defs.resolve_asset_graph()
    partitions = list(request.asset_graph_subset.iterate_asset_partitions())
    runs = build_run_requests_with_backfill_policies(partitions, graph, project.instance)
    ranges = [(r.tags[K.RANGE_START_TAG], r.tags[K.RANGE_END_TAG]) for r in runs]
    assert len(runs) <= 8 and sorted(ranges) == ranges
    assert {frozenset(r.asset_selection or []) for r in runs} == {frozenset({KEY, DOUBLED})}
    for start, end in ranges:
        materialize_keys(
            project.defs,
            [KEY, DOUBLED],
            instance=project.instance,
            partition_range=(start, end),
            tags=request.tags,
            run_config=QUIET,
        )

    after = project.built()
    changed = sorted(k for k in after if after[k] != before.get(k))
    assert changed == late, "exactly the late days were materialized again"
    doubled_after = project.built(DOUBLED)
    assert sorted(k for k in doubled_after if doubled_after[k] != doubled_before.get(k)) == late
    from_scratch = project.duckdb(
        "SELECT CAST(happened_at AS DATE) AS day, COUNT(*) FROM shop.events "
        f"WHERE happened_at >= TIMESTAMP '{FIRST} 00:00:00+00' AND happened_at < TIMESTAMP '{TODAY} 00:00:00+00' "
        "GROUP BY 1 ORDER BY 1"
    )
    table = project.duckdb("SELECT day, events FROM bench.daily_events ORDER BY day")
    stale = set(covered)
    # The days `lookback` covers are the automation condition's to re-run; all others equal a fresh build.
    assert [r for r in table if str(r[0]) not in stale] == [r for r in from_scratch if str(r[0]) not in stale]
    assert [r for r in table if str(r[0]) in stale] != [r for r in from_scratch if str(r[0]) in stale]

    doubled = project.duckdb("SELECT day, doubled / 2 FROM bench.daily_doubled ORDER BY day")
    assert doubled == table, "the downstream table follows its late days too"

    # The next tick has no new replication: nothing more is requested.
    assert project.tick().run_requests == []


def test_a_window_rebuilt_after_the_replication_is_not_requested(tmp_path: Path) -> None:
    project = Project(tmp_path)
    days = [day(n) for n in range(10)]
    project.insert(days)
    project.replicate()
    run_assets(project.defs, project.instance, KEY, partition_range=(days[0], days[-1]))
    project.insert([days[3], days[6]], LATE)
    project.replicate()
    run_assets(project.defs, project.instance, KEY, partition=days[6])  # someone rebuilt day 6 already

    result = project.tick()

    # Day 6 already read its late row. Day 9 is requested too: its (unchanged) row is the watermark's, which the
    # cursor overlap (600 s before the watermark) reads again; the rows read are what is recorded, a superset.
    assert late_keys(result.run_requests or []) == {"bench/daily_events": [days[3], days[9]]}


def test_a_retried_replication_records_only_the_last_attempts_rows(tmp_path: Path, monkeypatch: Any) -> None:
    """The source connection drops after the first attempt has streamed every batch: the retry reads them all
    again, and the recorded event times are that attempt's, not both attempts' together."""
    from resources.duckdb_warehouse import DuckDBWarehouse

    monkeypatch.setenv("DERIVE_SOURCE_RETRY_BACKOFF_SECONDS", "0")
    project = Project(tmp_path)
    project.insert([day(0), day(1), day(1)])
    load = DuckDBWarehouse.load
    attempts: list[int] = []

    def dropping_once(self: Any, request: Any, batches: Any) -> Any:
        if request.target.name == "events" and not attempts:
            attempts.append(sum(b.num_rows for b in batches))  # the whole stream, then the connection drops
            raise ConnectionResetError("server closed the connection unexpectedly")
        return load(self, request, batches)

    monkeypatch.setattr(DuckDBWarehouse, "load", dropping_once)
    recorded = project.replicate()[K.event_time("happened_at")]
    assert attempts == [3]
    assert recorded["rows"] == 3
    assert recorded["hours"] == [
        [f"{day(0)}T12:00:00+00:00", f"{day(0)}T13:00:00+00:00"],
        [f"{day(1)}T12:00:00+00:00", f"{day(1)}T13:00:00+00:00"],
    ]
