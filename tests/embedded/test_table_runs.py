"""The Dagster side of a table run on the embedded engines (SQLite source -> DuckDB): per-partition events of a
single-run backfill, the run tag that rebuilds, code versions, and run failures that name the spec file first.

Each test writes a small project: a SQLite `shop.events` source and a daily merge table `bench.daily_events` (one
row per event, keyed by `id`, partitioned by `day`), so each day's numbers differ and can be told apart.
"""

import datetime as dt
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import yaml
from dagster import AssetExecutionContext, AssetKey, AssetRecordsFilter, DagsterInstance, Definitions
from support import events_source

from derive_assets import metadata_keys as K
from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import DeriveSettings

KEY = AssetKey(["bench", "daily_events"])
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
SOURCE = events_source()
TABLE: dict[str, Any] = {
    "name": "daily_events",
    "dataset": "bench",
    "owner": "team:shop",
    "strategy": {"type": "merge", "unique_key": ["id"]},
    "window": {"size": "1d", "start": DAYS[0]},
    "partition": {"key": "day"},
    "columns": [
        {"name": "id", "type": "INT64", "constraints": {"not_null": True}},
        {"name": "day", "type": "DATE", "constraints": {"not_null": True}},
        {"name": "kind", "type": "STRING", "constraints": {"accepted_values": ["click", "view"]}},
    ],
    "sql": "SELECT e.id, DATE(e.updated_at) AS day, e.kind FROM shop.events AS e\n"
    "WHERE e.updated_at >= @window_start AND e.updated_at < @window_end\n",
}


class Project:
    """The shop source (1, 2 and 3 events on the three days) and the daily table, replicated once."""

    def __init__(self, tmp_path: Path, table: dict[str, Any] | None = None) -> None:
        self.settings = DeriveSettings(specs_dir=tmp_path / "specs", home=tmp_path / "home")
        self.spec_file = self.settings.specs_dir / "bench" / "daily_events.yaml"
        self.shown = self.spec_file.relative_to(
            tmp_path
        )  # how runs name the file: from the specs dir's parent
        self.spec_file.parent.mkdir(parents=True)
        (self.settings.specs_dir / "sources").mkdir()
        (self.settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(SOURCE))
        self.spec_file.write_text(yaml.safe_dump(table or TABLE, sort_keys=False))
        self.settings.embedded_sources_dir.mkdir(parents=True)
        self.db = self.settings.embedded_sources_dir / "shop.db"
        with sqlite3.connect(self.db) as con:
            con.execute("CREATE TABLE events (id INTEGER, kind TEXT, updated_at TEXT)")
            rows = [
                (n * 10 + i, "click", f"{day} 0{i}:00:00") for n, day in enumerate(DAYS, 1) for i in range(n)
            ]
            con.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
        self.defs: Definitions = build_definitions(self.settings)
        self.instance = DagsterInstance.ephemeral()
        self.defs.resolve_job_def("replicate_shop").execute_in_process(
            instance=self.instance, run_config=QUIET
        )

    def run(self, first: str, last: str, ok: bool = True, tags: dict[str, str] | None = None) -> Any:
        result = materialize_keys(
            self.defs,
            [KEY],
            instance=self.instance,
            partition_range=(first, last),
            tags=tags,
            run_config=QUIET,
        )
        assert result.success is ok
        return result

    def duckdb(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.settings.duckdb_path)) as con:
            return con.execute(sql, list(params)).fetchall()

    def event_of(self, partition: str) -> dict[str, Any]:
        """The stored metadata of the partition's latest materialization, read back from the instance."""
        records = self.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=KEY, asset_partitions=[partition]), limit=1
        ).records
        assert records, f"no materialization of {partition}"
        materialization = records[0].asset_materialization
        assert materialization is not None and materialization.partition == partition
        return {k: v.value for k, v in materialization.metadata.items()}


def iso(day: str, days: int = 0) -> str:
    return (dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC) + dt.timedelta(days=days)).isoformat()


def test_a_single_run_backfill_records_each_partitions_own_numbers_and_the_sql_once(tmp_path):
    project = Project(tmp_path)
    # A row no query outputs, in day 2: the merge keeps it, so day 2 holds one more row than the run read.
    project.run(DAYS[1], DAYS[1])
    project.duckdb("INSERT INTO bench.daily_events VALUES (99, CAST(? AS DATE), 'view')", DAYS[1])

    result = project.run(DAYS[0], DAYS[2])

    events = result.get_asset_materialization_events()
    assert [e.step_materialization_data.materialization.partition for e in events] == DAYS
    for n, day in enumerate(DAYS, 1):
        meta = project.event_of(day)
        assert (meta[K.WINDOW_START], meta[K.WINDOW_END]) == (iso(day), iso(day, 1))
        assert meta[K.ROWS_READ] == n
        assert meta[K.PARTITION_ROW_COUNT] == n + (day == DAYS[1])
    with_sql = [
        e.step_materialization_data.materialization.partition
        for e in events
        if K.RENDERED_SQL in e.step_materialization_data.materialization.metadata
    ]
    assert with_sql == [DAYS[2]], "the rendered SQL must be recorded once per run, on the latest partition"
    for day in DAYS[:2]:
        assert not {K.RENDERED_SQL, K.UPSTREAM_TABLES, "dagster/column_lineage", K.RUN_ROWS_READ} & set(
            project.event_of(day)
        )

    latest = project.instance.get_latest_materialization_event(KEY)
    assert latest is not None and latest.asset_materialization is not None
    run_meta: dict[str, Any] = {k: v.value for k, v in latest.asset_materialization.metadata.items()}
    assert latest.asset_materialization.partition == DAYS[2]
    assert (run_meta[K.RUN_WINDOW_START], run_meta[K.RUN_WINDOW_END]) == (iso(DAYS[0]), iso(DAYS[2], 1))
    assert (run_meta[K.RUN_PARTITIONS], run_meta[K.RUN_ROWS_READ]) == (3, 6)
    assert run_meta["dagster/row_count"] == 7
    assert "$window_start" in run_meta[K.RENDERED_SQL]


def test_a_backfill_adds_its_partition_metadata_in_one_step(tmp_path, monkeypatch):
    """The public `add_asset_metadata(partition_key=...)` checks each key against all the run's keys (20 s for a
    2,500-day backfill): the factory must not call it once per partition, and the metadata must still land."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("add_asset_metadata called once per partition")

    monkeypatch.setattr(AssetExecutionContext, "add_asset_metadata", refuse)
    project = Project(tmp_path)
    project.run(DAYS[0], DAYS[2])
    assert [project.event_of(day)[K.ROWS_READ] for day in DAYS] == [1, 2, 3]


def test_a_one_partition_run_keeps_the_whole_runs_metadata(tmp_path):
    project = Project(tmp_path)
    project.run(DAYS[2], DAYS[2])
    meta = project.event_of(DAYS[2])
    assert (meta[K.WINDOW_START], meta[K.ROWS_READ], meta[K.ROWS_INSERTED]) == (iso(DAYS[2]), 3, 3)
    assert K.RENDERED_SQL in meta and K.RUN_PARTITIONS not in meta


def test_full_refresh_tag_rebuilds_the_table_over_the_runs_window(tmp_path):
    project = Project(tmp_path)
    project.run(DAYS[0], DAYS[2])
    project.duckdb("INSERT INTO bench.daily_events VALUES (99, CAST(? AS DATE), 'view')", DAYS[1])

    project.run(DAYS[0], DAYS[2], tags={K.FULL_REFRESH_TAG: "true"})

    assert project.duckdb("SELECT count(*) FROM bench.daily_events WHERE id = 99") == [(0,)]
    assert project.duckdb("SELECT count(*) FROM bench.daily_events") == [(6,)]
    assert project.event_of(DAYS[2])[K.REBUILT] is True
    assert K.REBUILT not in project.event_of(DAYS[0])


def test_delete_missing_in_the_spec_removes_the_windows_stale_keys(tmp_path):
    strategy = {"type": "merge", "unique_key": ["id", "day"], "delete_missing": True}
    project = Project(tmp_path, {**TABLE, "strategy": strategy})
    project.run(DAYS[0], DAYS[2])
    for day in (DAYS[1], DAYS[2]):  # a key no query outputs any more, in day 2 and day 3
        project.duckdb("INSERT INTO bench.daily_events VALUES (99, CAST(? AS DATE), 'view')", day)

    project.run(DAYS[1], DAYS[1])

    assert project.duckdb("SELECT day FROM bench.daily_events WHERE id = 99") == [(dt.date(2026, 3, 3),)]
    assert project.event_of(DAYS[1])[K.ROWS_DELETED] == 1


def test_a_run_that_adds_a_column_records_the_schema_change(tmp_path):
    project = Project(tmp_path)
    project.run(DAYS[0], DAYS[0])
    wider = {
        **TABLE,
        "columns": [*TABLE["columns"], {"name": "kind_upper", "type": "STRING"}],
        "sql": TABLE["sql"].replace("e.kind FROM", "e.kind, UPPER(e.kind) AS kind_upper FROM"),
    }
    project.spec_file.write_text(yaml.safe_dump(wider, sort_keys=False))
    project.defs = build_definitions(project.settings)

    project.run(DAYS[1], DAYS[1])

    changes = project.event_of(DAYS[1])[K.SCHEMA_CHANGES]
    assert len(changes) == 1 and changes[0].startswith("add column kind_upper STRING")
    assert K.SCHEMA_CHANGES not in project.event_of(DAYS[0])
    assert project.duckdb("SELECT day, kind_upper FROM bench.daily_events WHERE id = 10") == [
        (dt.date(2026, 3, 1), None)
    ]


def test_a_breaking_schema_change_fails_the_run_naming_the_spec_and_the_rebuild(tmp_path):
    project = Project(tmp_path)
    project.run(DAYS[0], DAYS[0])
    renamed = {
        **TABLE,
        "columns": [{**c, "name": "event_kind"} if c["name"] == "kind" else c for c in TABLE["columns"]],
        "sql": TABLE["sql"].replace("e.kind FROM", "e.kind AS event_kind FROM"),
    }
    project.spec_file.write_text(yaml.safe_dump(renamed, sort_keys=False))
    project.defs = build_definitions(project.settings)

    result = project.run(DAYS[1], DAYS[1], ok=False)

    (failure,) = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None and error.cause is None  # raised from None: nothing chained below the message
    assert error.message.startswith(
        f"dagster._core.definitions.events.Failure: {project.shown}: bench.daily_events: the spec no longer "
        "matches the existing table:"
    )
    assert "Run `derive rebuild bench.daily_events`" in error.message
    assert project.duckdb("SELECT count(*) FROM bench.daily_events") == [(1,)]  # nothing written


def test_an_unknown_full_refresh_value_fails_the_run_by_name(tmp_path):
    project = Project(tmp_path)
    result = project.run(DAYS[0], DAYS[0], ok=False, tags={K.FULL_REFRESH_TAG: "ture"})
    (failure,) = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None
    assert error.message.startswith(f"dagster._core.definitions.events.Failure: {project.shown}: run tag")
    assert "derive/full_refresh='ture' is neither true nor false" in error.message


def test_table_assets_carry_the_specs_code_version(tmp_path):
    project = Project(tmp_path)
    graph = project.defs.resolve_asset_graph()
    before = graph.get(KEY).code_version
    replication = graph.get(AssetKey(["shop", "events"])).code_version
    assert before and replication

    changed = {**TABLE, "sql": TABLE["sql"].replace("e.kind", "UPPER(e.kind) AS kind")}
    project.spec_file.write_text(yaml.safe_dump(changed, sort_keys=False))
    graph = build_definitions(project.settings).resolve_asset_graph()
    assert graph.get(KEY).code_version not in (None, before)
    assert graph.get(AssetKey(["shop", "events"])).code_version == replication


def materialize_cli(project: Project, partition: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "DERIVE_DUCKDB_PATH"},
        "DERIVE_SPECS_DIR": str(project.settings.specs_dir),
        "DERIVE_HOME": str(project.settings.home),
        "DAGSTER_HOME": str(project.settings.home / "dagster"),
    }
    (project.settings.home / "dagster").mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "derive_assets.definitions",
            "--select",
            "bench/daily_events",
            "--partition",
            partition,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def first_error(output: str) -> str:
    """The first error `dagster asset materialize` prints: an ERROR log line's message, or, for a step or run
    failure, the error line that follows it."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if " - ERROR - " not in line:
            continue
        if "STEP_FAILURE" in line or "RUN_FAILURE" in line:
            return next(rest for rest in lines[i + 1 :] if rest.strip())
        return line.rsplit(" - bench__daily_events - ", 1)[-1]
    raise AssertionError(f"no error in the output:\n{output[-3000:]}")


def test_duplicate_merge_keys_fail_the_cli_run_with_the_spec_file_first(tmp_path):
    # merged by day, but day 2 has two events: two rows for one key
    project = Project(tmp_path, {**TABLE, "strategy": {"type": "merge", "unique_key": ["day"]}})

    done = materialize_cli(project, DAYS[1])

    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert first_error(output).startswith(
        f"dagster._core.definitions.events.Failure: {project.shown}: bench.daily_events: the query returned "
        "several rows for 1 values of unique_key ['day'] (e.g. 2026-03-02)"
    ), output
    assert "Aggregate by the key or extend unique_key" in output
    assert "Traceback" not in output


def test_a_failed_blocking_check_is_logged_first_with_the_spec_file_and_the_offending_values(tmp_path):
    columns = [
        {**c, "constraints": {"accepted_values": ["view"]}} if c["name"] == "kind" else c
        for c in TABLE["columns"]
    ]
    project = Project(tmp_path, {**TABLE, "columns": columns})
    with sqlite3.connect(project.db) as con:  # day 3 holds 'click' x3 and one 'share'
        con.execute("INSERT INTO events VALUES (40, 'share', '2026-03-03 05:00:00')")
    project.defs.resolve_job_def("replicate_shop").execute_in_process(
        instance=project.instance, run_config=QUIET
    )

    done = materialize_cli(project, DAYS[2])

    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert first_error(output) == (
        f"{project.shown}: bench.daily_events: 1 blocking check failed: kind_accepted_values: 4 rows break "
        "`accepted_values` on kind (e.g. 'click', 'share'). The rows were written; tables downstream wait. Fix "
        "the query (or the data it reads) or the column's constraints in the spec, then run this table again."
    ), output
    assert "DagsterAssetCheckFailedError" in output  # Dagster still fails the step: downstream assets wait


def test_a_replication_that_breaks_a_load_rule_fails_naming_its_spec_file(tmp_path):
    project = Project(tmp_path)
    with sqlite3.connect(project.db) as con:  # a second row for id 10, changed after the watermark
        con.execute("INSERT INTO events VALUES (10, 'view', '2026-03-04 00:00:00')")
        con.execute("INSERT INTO events VALUES (10, 'click', '2026-03-04 00:00:01')")
    result = project.defs.resolve_job_def("replicate_shop").execute_in_process(
        instance=project.instance, run_config=QUIET, raise_on_error=False
    )
    (failure,) = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None
    assert error.message.startswith(
        f"dagster._core.definitions.events.Failure: {Path('specs/sources/shop.yaml')}: shop.events: the source "
        "sent several rows for 1 values of primary key ['id'] (e.g. 10)"
    )
