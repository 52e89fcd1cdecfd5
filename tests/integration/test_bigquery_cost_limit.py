"""`max_bytes_billed` on the BigQuery emulator, through the real google-cloud-bigquery client.

What the emulator (bqemulator 1.4.0) does, measured here: a dry run always reports 0 bytes processed, and a query
job's `maximumBytesBilled` is accepted (echoed in the job it returns) but never enforced. So:

- the first test pins that behaviour and shows what Derive sends: the dry run before anything else, and the limit
  on the one job that runs the spec's SQL (the staging `CREATE TABLE ... AS`), no other;
- the refusal tests replace the emulator's 0 with a real-sized estimate (`QueryJob.total_bytes_processed` of dry-run
  jobs only; the dry run itself still goes to the emulator), then check on the emulator that nothing was written:
  same rows, same marker, no staging table, no dataset created, no job run but dry runs;
- BigQuery's own `bytesBilledLimitExceeded` refusal cannot happen on the emulator; `tests/unit/test_bytes_limit.py`
  maps the exception the client builds for it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from google.cloud import bigquery
from support import QUIET, outcome

from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import load_project
from resources.bigquery_calls import Calls
from resources.bigquery_sql import STAGING_PREFIX
from resources.bigquery_warehouse import BigQueryWarehouse
from resources.schema import ColumnDef
from resources.warehouse import BytesBilledLimitExceeded, TargetTable, TimeWindow, WriteRequest

DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
DAY2 = TimeWindow(dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC))
COLUMNS = (
    ColumnDef("day", "DATE", not_null=True),
    ColumnDef("region", "STRING"),
    ColumnDef("amount", "FLOAT64"),
)
EVENTS = [
    {"ts": "2026-01-01 10:00:00+00", "region": "eu", "amount": 10.5},
    {"ts": "2026-01-02 09:00:00+00", "region": "na", "amount": 1.25},
]
ESTIMATE = 5_000_000
"""What the patched dry runs report: a few MB, as BigQuery would for a real table."""


@pytest.fixture
def warehouse(bigquery_emulator: tuple[str, str]) -> BigQueryWarehouse:
    endpoint, project = bigquery_emulator
    return BigQueryWarehouse(project=project, api_endpoint=endpoint)


@pytest.fixture
def dataset(bigquery_client: bigquery.Client) -> Iterator[str]:
    """A new dataset with the source table `events`; deleted afterwards."""
    name = f"cost_{uuid.uuid4().hex[:10]}"
    bigquery_client.create_dataset(name)
    events = bigquery.Table(
        f"{bigquery_client.project}.{name}.events",
        schema=[
            bigquery.SchemaField("ts", "TIMESTAMP"),
            bigquery.SchemaField("region", "STRING"),
            bigquery.SchemaField("amount", "FLOAT64"),
        ],
    )
    bigquery_client.create_table(events)
    assert bigquery_client.insert_rows_json(events, EVENTS) == []
    try:
        yield name
    finally:
        bigquery_client.delete_dataset(name, delete_contents=True, not_found_ok=True)


class Job:
    """One query job a test saw the warehouse create: its SQL, and what the emulator's answer says of it."""

    def __init__(self, sql: str, job: bigquery.QueryJob) -> None:
        self.sql, self.dry_run, self.maximum_bytes_billed = sql, job.dry_run, job.maximum_bytes_billed


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> list[Job]:
    """Every query job the warehouse creates from now on, in order (read from the job the emulator returns)."""
    seen: list[Job] = []
    create = Calls.query

    def query(self: Calls, sql: str, config: bigquery.QueryJobConfig) -> bigquery.QueryJob:
        job = create(self, sql, config)
        seen.append(Job(sql, job))
        return job

    monkeypatch.setattr(Calls, "query", query)
    return seen


@pytest.fixture
def sized_dry_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dry runs report `ESTIMATE` bytes instead of the emulator's 0; other jobs are untouched."""
    real = bigquery.QueryJob.total_bytes_processed

    def total_bytes_processed(job: bigquery.QueryJob) -> int | None:
        return ESTIMATE if job.dry_run else real.fget(job)  # type: ignore[union-attr]

    monkeypatch.setattr(bigquery.QueryJob, "total_bytes_processed", property(total_bytes_processed))


def target(dataset: str, limit: int | None) -> TargetTable:
    return TargetTable(dataset, "daily", COLUMNS, partition_key="day", max_bytes_billed=limit)


def request(target: TargetTable, window: TimeWindow) -> WriteRequest:
    sql = (
        f"SELECT CAST(ts AS DATE) AS day, region, SUM(amount) AS amount FROM `{target.dataset}`.events "
        "WHERE ts >= @window_start AND ts < @window_end GROUP BY 1, 2"
    )
    return WriteRequest(target, sql, window.as_params(), "append", (), window)


def rows(client: bigquery.Client, dataset: str) -> list[tuple[Any, ...]]:
    found = client.query(f"SELECT day, region, amount FROM `{dataset}`.daily ORDER BY 1, 2").result()
    return [tuple(r.values()) for r in found]


def staging(client: bigquery.Client, dataset: str) -> list[str]:
    return [t.table_id for t in client.list_tables(dataset) if t.table_id.startswith(STAGING_PREFIX)]


def test_the_emulator_estimates_zero_and_ignores_the_job_limit(
    warehouse: BigQueryWarehouse, bigquery_client: bigquery.Client, dataset: str, jobs: list[Job]
) -> None:
    assert warehouse.estimate_bytes(f"SELECT * FROM `{dataset}`.events", {}) == 0  # the emulator's dry runs
    jobs.clear()

    result = warehouse.write(request(target(dataset, 1), DAY1))  # 0 <= 1: the dry run lets it through

    assert result.rows_inserted == 1
    assert rows(bigquery_client, dataset) == [
        (dt.date(2026, 1, 1), "eu", 10.5)
    ]  # 1 byte billed: not enforced
    assert jobs[0].dry_run and jobs[0].sql == request(target(dataset, 1), DAY1).sql
    limited = [j for j in jobs if j.maximum_bytes_billed is not None]
    assert [j.maximum_bytes_billed for j in limited] == [1]
    assert limited[0].sql.startswith(f"CREATE TABLE `{dataset}`.`{STAGING_PREFIX}daily_")
    assert "FROM `" + dataset + "`.events" in limited[0].sql  # the job that runs the spec's SQL


def test_without_a_limit_there_is_no_dry_run_and_no_job_limit(
    warehouse: BigQueryWarehouse, dataset: str, jobs: list[Job]
) -> None:
    warehouse.write(request(target(dataset, None), DAY1))
    assert jobs and not any(j.dry_run for j in jobs)
    assert all(j.maximum_bytes_billed is None for j in jobs)


@pytest.mark.usefixtures("sized_dry_runs")
def test_an_estimate_over_the_limit_writes_nothing(
    warehouse: BigQueryWarehouse, bigquery_client: bigquery.Client, dataset: str, jobs: list[Job]
) -> None:
    warehouse.write(request(target(dataset, ESTIMATE), DAY1))  # equal to the limit: allowed
    before = rows(bigquery_client, dataset)
    marker = bigquery_client.get_table(f"{bigquery_client.project}.{dataset}.daily").description
    assert before == [(dt.date(2026, 1, 1), "eu", 10.5)]
    jobs.clear()

    with pytest.raises(BytesBilledLimitExceeded) as caught:
        warehouse.write(request(target(dataset, ESTIMATE - 1), DAY2))

    error = caught.value
    assert (error.ref, error.estimate, error.limit, error.origin) == (
        f"{dataset}.daily",
        ESTIMATE,
        ESTIMATE - 1,
        "estimate",
    )
    assert f"{dataset}.daily: a dry run estimates that the query processes 5,000,000 bytes" in str(error)
    assert [j.dry_run for j in jobs] == [True]  # nothing but the dry run reached BigQuery
    assert rows(bigquery_client, dataset) == before
    assert bigquery_client.get_table(f"{bigquery_client.project}.{dataset}.daily").description == marker
    assert staging(bigquery_client, dataset) == []


@pytest.mark.usefixtures("sized_dry_runs")
def test_a_refused_first_run_creates_no_dataset(
    warehouse: BigQueryWarehouse, bigquery_client: bigquery.Client, dataset: str
) -> None:
    fresh = f"cost_new_{uuid.uuid4().hex[:8]}"
    limited = TargetTable(fresh, "daily", COLUMNS, partition_key="day", max_bytes_billed=1_000)
    sql = request(target(dataset, None), DAY1).sql  # reads the test's events, writes into `fresh`
    try:
        with pytest.raises(BytesBilledLimitExceeded):
            warehouse.write(WriteRequest(limited, sql, DAY1.as_params(), "append", (), DAY1))
        assert fresh not in [d.dataset_id for d in bigquery_client.list_datasets()]
    finally:
        bigquery_client.delete_dataset(fresh, delete_contents=True, not_found_ok=True)


@pytest.mark.usefixtures("sized_dry_runs")
def test_a_spec_over_its_limit_fails_its_run_and_records_nothing(
    tmp_path: Path, bigquery_emulator: tuple[str, str], bigquery_client: bigquery.Client, dataset: str
) -> None:
    """The whole path: spec field -> `table_target` -> the asset's write -> a failed step naming the limit."""
    endpoint, project = bigquery_emulator
    specs = tmp_path / "table_specs"
    specs.mkdir()
    base = {
        "dataset": dataset,
        "owner": "team:analytics",
        "strategy": "replace",
        "columns": [{"name": "n", "type": "INT64"}],
    }
    (specs / "small.yaml").write_text(yaml.safe_dump({**base, "name": "small", "sql": "SELECT 1 AS n"}))
    (specs / "big.yaml").write_text(
        yaml.safe_dump(
            {
                **base,
                "name": "big",
                "max_bytes_billed": 1_000,
                "sql": f"SELECT n + 1 AS n FROM {dataset}.small",
            }
        )
    )
    settings = DeriveSettings(
        specs_dir=specs,
        home=tmp_path / "home",
        warehouse="bigquery",
        bigquery_project=project,
        bigquery_endpoint=endpoint,
    )
    defs = build_definitions(settings, load_project(specs))
    small, big = AssetKey([dataset, "small"]), AssetKey([dataset, "big"])
    with DagsterInstance.ephemeral() as instance:
        first = materialize_keys(defs, [small], instance=instance, run_config=QUIET)
        assert first.success  # no limit: the same estimate does not matter
        ran = outcome(instance, materialize_keys(defs, [big], instance=instance, run_config=QUIET))

        assert not ran.success
        assert f"{dataset}.big: a dry run estimates that the query processes {ESTIMATE:,} bytes" in ran.errors
        assert "max_bytes_billed (1,000 bytes)" in ran.errors and "big.yaml" in ran.errors
        assert instance.get_latest_materialization_event(big) is None
    assert "big" not in [t.table_id for t in bigquery_client.list_tables(dataset)]
