"""`backfill: {max_partitions_per_run: N}` through Dagster's own backfill logic, then the runs it asks for, executed.

A backfill of the ten windows of a daily table is handed to Dagster's asset backfill iteration
(`execute_asset_backfill_iteration_inner`, what the backfill daemon runs each tick, without its side effects): it
turns the table's `BackfillPolicy` into run requests. With N=3 that is four runs (3 + 3 + 3 + 1 windows), without
`backfill` one run of all ten. Each run request is then executed as the daemon would launch it (one run over its
partition range), and the table must hold exactly what ten one-window runs give.
"""

import datetime as dt
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, Definitions, RunRequest
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._core.execution.asset_backfill import AssetBackfillData, execute_asset_backfill_iteration_inner
from support import QUIET, events_source

from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import DeriveSettings

KEY = AssetKey(["bench", "daily_events"])
FIRST = dt.date(2026, 3, 1)
DAYS = [(FIRST + dt.timedelta(days=n)).isoformat() for n in range(10)]
TABLE: dict[str, Any] = {
    "name": "daily_events",
    "dataset": "bench",
    "owner": "team:shop",
    "strategy": {"type": "merge", "unique_key": ["id"]},
    "window": {"size": "1d", "start": DAYS[0], "end": (FIRST + dt.timedelta(days=10)).isoformat()},
    "partition": {"key": "day"},
    "columns": [
        {"name": "id", "type": "INT64", "constraints": {"not_null": True}},
        {"name": "day", "type": "DATE"},
        {"name": "kind", "type": "STRING"},
    ],
    "sql": "SELECT e.id, DATE(e.updated_at) AS day, e.kind FROM shop.events AS e\n"
    "WHERE e.updated_at >= @window_start AND e.updated_at < @window_end\n",
}


class Project:
    """The SQLite source `shop.events` (day n holds n + 1 events), replicated once, and the daily table."""

    def __init__(self, root: Path, backfill: dict[str, int] | None) -> None:
        self.settings = DeriveSettings(specs_dir=root / "specs", home=root / "home")
        (self.settings.specs_dir / "sources").mkdir(parents=True)
        (self.settings.specs_dir / "bench").mkdir()
        (self.settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(events_source()))
        spec = {**TABLE, **({"backfill": backfill} if backfill else {})}
        (self.settings.specs_dir / "bench" / "daily_events.yaml").write_text(yaml.safe_dump(spec))
        self.settings.embedded_sources_dir.mkdir(parents=True)
        with sqlite3.connect(self.settings.embedded_sources_dir / "shop.db") as con:
            con.execute("CREATE TABLE events (id INTEGER, kind TEXT, updated_at TEXT)")
            rows = [
                (n * 100 + i, "click" if i % 2 else "view", f"{day} {i:02d}:30:00")
                for n, day in enumerate(DAYS)
                for i in range(n + 1)
            ]
            con.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
        self.defs: Definitions = build_definitions(self.settings)
        self.instance = DagsterInstance.ephemeral()
        replicated = self.defs.resolve_job_def("replicate_shop").execute_in_process(
            instance=self.instance, run_config=QUIET
        )
        assert replicated.success

    def backfill_run_requests(self) -> list[RunRequest]:
        """The runs Dagster's asset backfill asks for, for a backfill of every window of the table."""
        graph = self.defs.resolve_asset_graph()
        started = time.time()
        data = AssetBackfillData.from_asset_partitions(
            asset_graph=graph,
            partition_names=DAYS,
            asset_selection=[KEY],
            dynamic_partitions_store=self.instance,
            backfill_start_timestamp=started,
            all_partitions=False,
        )
        view = AssetGraphView.for_test(self.defs, self.instance)
        result = execute_asset_backfill_iteration_inner(
            "backfill", data, view, started, logging.getLogger(__name__), None
        )
        return list(result.run_requests)

    def run(self, first: str, last: str) -> None:
        result = materialize_keys(
            self.defs, [KEY], instance=self.instance, partition_range=(first, last), run_config=QUIET
        )
        assert result.success

    def table_runs(self) -> int:
        return sum(1 for run in self.instance.get_runs() if KEY in (run.asset_selection or ()))

    def rows(self) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.settings.duckdb_path)) as con:
            return con.execute("SELECT id, day, kind FROM bench.daily_events ORDER BY id").fetchall()


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    """The table after ten one-window runs."""
    project = Project(tmp_path_factory.mktemp("serial"), backfill=None)
    for day in DAYS:
        project.run(day, day)
    rows = project.rows()
    assert len(rows) == sum(range(1, 11))
    return rows


@pytest.mark.parametrize(
    ("backfill", "ranges"),
    [
        (
            {"max_partitions_per_run": 3},
            [(DAYS[0], DAYS[2]), (DAYS[3], DAYS[5]), (DAYS[6], DAYS[8]), (DAYS[9], DAYS[9])],
        ),
        ({"max_partitions_per_run": 10}, [(DAYS[0], DAYS[9])]),
        (None, [(DAYS[0], DAYS[9])]),
    ],
    ids=["multi_run-3", "multi_run-10", "single_run"],
)
def test_a_backfill_of_ten_windows_runs_as_the_policy_says_and_gives_the_serial_table(
    tmp_path: Path,
    serial: list[tuple[Any, ...]],
    backfill: dict[str, int] | None,
    ranges: list[tuple[str, str]],
) -> None:
    project = Project(tmp_path, backfill)

    requests = project.backfill_run_requests()

    assert [
        (r.partition_key_range.start, r.partition_key_range.end) for r in requests if r.partition_key_range
    ] == (ranges)
    assert all(r.asset_selection == [KEY] for r in requests)
    for request in requests:
        assert request.partition_key_range is not None
        project.run(request.partition_key_range.start, request.partition_key_range.end)
    assert project.table_runs() == len(ranges)
    assert project.rows() == serial
