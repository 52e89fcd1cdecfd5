"""Python tables on BigQuery (the emulator, through the real client): the demo's `features.region_scores`
computed in pandas from one day of `analytics.daily_payments_by_region` and merged by (day, region) into a
day-partitioned table clustered by region; a rerun changes nothing, and wrong outputs fail with the warehouse's
errors, leaving the table as it was."""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, Definitions
from google.cloud import bigquery
from support import execute_assets, run_assets, run_job

from derive_assets.demo.generate import embedded_urls, generate
from derive_assets.factory.build import build_definitions
from derive_assets.factory.python_assets import PythonTable, python_table
from derive_assets.python_tables.features import region_scores, scores
from derive_assets.settings import PROJECT_ROOT, DeriveSettings

DATASETS = ("accounts", "orders", "payments", "core", "analytics", "features")
UPSTREAM_JOBS = ("replicate_accounts", "replicate_profiles", "replicate_payments")
USER_DETAIL = AssetKey(["core", "user_detail"])
DAILY = AssetKey(["analytics", "daily_payments_by_region"])
CHECKED_SCORES = AssetKey(["features", "checked_scores"])


@pytest.fixture
def settings(
    tmp_path: Path, bigquery_emulator: tuple[str, str], bigquery_client: bigquery.Client, monkeypatch
) -> Iterator[DeriveSettings]:
    for name in ("DERIVE_ACCOUNTS_URL", "DERIVE_ORDERS_URL", "DERIVE_PAYMENTS_URL"):
        monkeypatch.delenv(name, raising=False)
    endpoint, project = bigquery_emulator
    settings = DeriveSettings(
        specs_dir=PROJECT_ROOT / "table_specs",
        home=tmp_path / "bq_home",
        warehouse="bigquery",
        bigquery_project=project,
        bigquery_endpoint=endpoint,
    )
    drop(bigquery_client)
    generate(embedded_urls(settings.embedded_sources_dir), users=300)
    yield settings
    drop(bigquery_client)


def drop(client: bigquery.Client) -> None:
    for dataset in DATASETS:
        client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def query(client: bigquery.Client, sql: str, **params: Any) -> list[tuple]:
    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter(k, "DATE", v) for k, v in params.items()]
    )
    return [tuple(row.values()) for row in client.query(sql, job_config=config).result()]


def day_ago(days: int) -> dt.date:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).date()


def expected_scores(daily: list[tuple]) -> dict[tuple, tuple]:
    """(day, region) -> (payments, revenue, revenue_per_payer, revenue_share, score), without pandas."""
    out = {}
    for day in {r[0] for r in daily}:
        regions = [r for r in daily if r[0] == day]
        per_payer = {r[1]: float(r[4]) / r[3] for r in regions}
        total = sum(float(r[4]) for r in regions)
        mean, spread = statistics.fmean(per_payer.values()), statistics.pstdev(per_payer.values())
        for _, region, payments, _, revenue in regions:
            score = (per_payer[region] - mean) / spread if spread > 0 else 0.0
            out[(day, region)] = (payments, revenue, per_payer[region], float(revenue) / total, score)
    return out


def scores_table(client: bigquery.Client, ref: str = "features.region_scores") -> dict[tuple, tuple]:
    found = query(
        client,
        f"SELECT day, region, payments, revenue, revenue_per_payer, revenue_share, score FROM `{ref}`",
    )
    return {(r[0], r[1]): tuple(r[2:]) for r in found}


def daily_rows(client: bigquery.Client, day: dt.date) -> list[tuple]:
    return query(
        client,
        "SELECT day, region, payments, payers, revenue FROM `analytics.daily_payments_by_region` "
        "WHERE day = @day",
        day=day,
    )


@pytest.fixture
def built(settings: DeriveSettings) -> Iterator[tuple[Definitions, DagsterInstance]]:
    defs = build_definitions(settings)
    with DagsterInstance.ephemeral() as instance:
        for job in UPSTREAM_JOBS:
            run_job(defs, instance, job)
        run_assets(defs, instance, USER_DETAIL)
        run_assets(defs, instance, DAILY, day_ago(2).isoformat())
        yield defs, instance


def test_region_scores_on_bigquery_are_right_partitioned_and_idempotent(built, bigquery_client):
    client = bigquery_client
    defs, instance = built
    day = day_ago(2)
    first = run_assets(defs, instance, region_scores.key, day.isoformat())["features/region_scores"]
    table = scores_table(client)
    expected = expected_scores(daily_rows(client, day))
    assert set(table) == set(expected) and len(table) > 1
    for key, (payments, revenue, per_payer, share, score) in expected.items():
        assert table[key][:2] == (payments, revenue), key
        assert table[key][2:] == pytest.approx((per_payer, share, score), rel=1e-9, abs=1e-12), key
    assert first["derive/rows_inserted"] == len(table)

    layout = client.get_table("features.region_scores")
    assert layout.time_partitioning is not None and layout.time_partitioning.field == "day"
    assert layout.clustering_fields == ["region"]
    legacy = {"INTEGER": "INT64", "FLOAT": "FLOAT64"}  # the API may answer with either name
    types = {f.name: legacy.get(f.field_type, f.field_type) for f in layout.schema}
    assert types == {
        "day": "DATE",
        "region": "STRING",
        "payments": "INT64",
        "revenue": "NUMERIC",
        "revenue_per_payer": "FLOAT64",
        "revenue_share": "FLOAT64",
        "score": "FLOAT64",
    }
    assert [f.mode for f in layout.schema][:2] == ["REQUIRED", "REQUIRED"]

    again = run_assets(defs, instance, region_scores.key, day.isoformat())["features/region_scores"]
    assert scores_table(client) == table
    assert again["derive/rows_inserted"] == 0 and again["dagster/row_count"] == len(table)


def declared_like_scores(fn) -> PythonTable:
    spec = region_scores.spec.model_dump(exclude={"sql", "name", "schedule", "kind"})
    return python_table(
        name="checked_scores", inputs={"daily": "analytics.daily_payments_by_region"}, **spec
    )(fn)


def good(daily: pd.DataFrame) -> pd.DataFrame:
    """`scores` itself, under an annotation Dagster can resolve here (`features.py` imports pandas only when
    it runs, so its own annotation is a string)."""
    return scores(daily)


def duplicated(daily: pd.DataFrame) -> pd.DataFrame:
    out = scores(daily)
    return pd.concat([out, out.head(1)])


def next_day(daily: pd.DataFrame) -> pd.DataFrame:
    out = scores(daily)
    out.loc[out.index[0], "day"] = out["day"].iloc[0] + dt.timedelta(days=1)
    return out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (
            duplicated,
            r"features\.checked_scores: the query returned several rows for 1 values of unique_key "
            r"\['day', 'region'\] .* Nothing was written\.",
        ),
        (
            next_day,
            r"features\.checked_scores: the query returned 1 rows whose partition key 'day' is NULL or lies "
            r"outside the window .* Nothing was written\.",
        ),
    ],
    ids=["duplicate_keys", "row_outside_window"],
)
def test_a_wrong_output_on_bigquery_fails_clearly_and_changes_nothing(built, bigquery_client, wrong, message):
    client = bigquery_client
    defs, instance = built
    day = day_ago(2).isoformat()

    def with_table(table: PythonTable) -> Definitions:
        return Definitions.merge(defs, Definitions(assets=[table.asset]))

    run_assets(with_table(declared_like_scores(good)), instance, CHECKED_SCORES, day)
    before = scores_table(client, "features.checked_scores")
    assert before
    outcome = execute_assets(with_table(declared_like_scores(wrong)), instance, CHECKED_SCORES, day)
    assert not outcome.success
    assert re.search(message, outcome.errors), outcome.errors
    assert scores_table(client, "features.checked_scores") == before
