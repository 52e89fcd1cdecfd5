"""Column checks through Dagster on the embedded engines: a windowed table's checks judge the run's window only
(a bad row in another window neither fails nor passes them), and a failed check names its rule and column."""

import datetime as dt

import duckdb
from dagster import AssetKey, DagsterInstance, Definitions
from support import QUIET, run_assets, run_job

from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import DeriveSettings

TABLE = AssetKey(["analytics", "daily_payments_by_region"])


def day(days_ago: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).strftime("%Y-%m-%d")


def checks(
    defs: Definitions, instance: DagsterInstance, partition: str
) -> dict[str, tuple[bool, str | None]]:
    result = materialize_keys(defs, [TABLE], instance=instance, partition_key=partition, run_config=QUIET)
    return {
        c.check_name: (c.passed, c.description)
        for c in result.get_asset_check_evaluations()
        if c.asset_key == TABLE
    }


def test_checks_of_a_windowed_table_judge_the_runs_window_only(settings: DeriveSettings, instance):
    defs = build_definitions(settings)
    for job in ("replicate_accounts", "replicate_profiles", "replicate_payments"):
        run_job(defs, instance, job)
    run_assets(defs, instance, "core/user_detail")
    assert checks(defs, instance, day(3))["region_accepted_values"] == (True, None)
    with duckdb.connect(
        str(settings.duckdb_path)
    ) as con:  # a region no spec accepts, in the window of day(3)
        con.execute(
            "INSERT INTO analytics.daily_payments_by_region VALUES (CAST(? AS DATE), 'mars', 1, 1, 1.0)",
            [day(3)],
        )

    other = checks(defs, instance, day(2))
    assert other["region_accepted_values"] == (True, None), "a row outside the run's window failed its check"
    assert other["region_not_null"] == (True, None)

    # the merge replaces the window's keys it computes; (day(3), 'mars') is not one of them, so it stays and fails
    same = checks(defs, instance, day(3))
    assert same["region_accepted_values"] == (False, "1 rows break `accepted_values` on region")
