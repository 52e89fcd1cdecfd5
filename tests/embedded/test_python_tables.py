"""Python tables on DuckDB: a function's DataFrame written by the warehouse IO manager with the table's strategy.

The demo's `features.region_scores` is computed in pandas from one day's window of
`analytics.daily_payments_by_region` and merged by (day, region); the tests recompute it in plain Python from the
warehouse's own rows. Wrong outputs (duplicate keys, rows outside the window, a missing column, something that is
not a table) fail with the warehouse's errors and leave the table as it was.
"""

import datetime as dt
import re
import statistics
from decimal import Decimal

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from dagster import AssetIn, AssetKey, Definitions, asset
from support import QUIET, execute_assets, run_assets, run_job

from derive_assets.factory.build import build_definitions
from derive_assets.factory.python_assets import PythonTable, PythonTableError, python_table
from derive_assets.python_tables.features import region_scores, scores

SCORES = "features.region_scores"
UPSTREAM_JOBS = ("replicate_accounts", "replicate_profiles", "replicate_payments")
USER_DETAIL = AssetKey(["core", "user_detail"])
DAILY = AssetKey(["analytics", "daily_payments_by_region"])
CHECKED_SCORES = AssetKey(["features", "checked_scores"])


def day_ago(days: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).strftime("%Y-%m-%d")


def rows(settings, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def expected_scores(daily: list[tuple]) -> dict[tuple, tuple]:
    """(day, region) -> (payments, revenue, revenue_per_payer, revenue_share, score), from the daily rows
    (day, region, payments, payers, revenue), without pandas."""
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


def scores_table(settings) -> dict[tuple, tuple]:
    found = rows(
        settings,
        "SELECT day, region, payments, revenue, revenue_per_payer, revenue_share, score FROM features.region_scores",
    )
    return {(r[0], r[1]): tuple(r[2:]) for r in found}


def assert_scores_match(actual: dict[tuple, tuple], expected: dict[tuple, tuple]) -> None:
    assert set(actual) == set(expected)
    for key, (payments, revenue, per_payer, share, score) in expected.items():
        got = actual[key]
        assert got[:2] == (payments, revenue), key
        assert got[2:] == pytest.approx((per_payer, share, score), rel=1e-9, abs=1e-12), key


@pytest.fixture
def built(settings, instance):
    """The shipped graph with two days of analytics.daily_payments_by_region built."""
    defs = build_definitions(settings)
    for job in UPSTREAM_JOBS:
        run_job(defs, instance, job)
    run_assets(defs, instance, USER_DETAIL)
    for day in (day_ago(2), day_ago(3)):
        run_assets(defs, instance, DAILY, day)
    return defs


def daily_rows(settings, day: str) -> list[tuple]:
    return rows(
        settings,
        "SELECT day, region, payments, payers, revenue FROM analytics.daily_payments_by_region WHERE day = ?",
        [day],
    )


def test_region_scores_is_part_of_the_shipped_definitions(settings):
    defs = build_definitions(settings)
    node = defs.resolve_asset_graph().get(region_scores.key)
    assert node.parent_keys == {AssetKey(["analytics", "daily_payments_by_region"])}
    assert region_scores.key in defs.resolve_implicit_global_asset_job_def().asset_layer.selected_asset_keys


def test_region_scores_rows_are_right_and_a_rerun_changes_nothing(settings, instance, built):
    day, other = day_ago(2), day_ago(3)
    first = run_assets(built, instance, region_scores.key, day)["features/region_scores"]
    table = scores_table(settings)
    assert {k[0].isoformat() for k in table} == {day}  # only the run's window was read and written
    assert_scores_match(table, expected_scores(daily_rows(settings, day)))
    assert first["derive/rows_inserted"] == len(table) > 1
    assert first["derive/window_start"] == f"{day}T00:00:00+00:00"
    assert first["dagster/row_count"] == len(table)

    again = run_assets(built, instance, region_scores.key, day)["features/region_scores"]
    assert scores_table(settings) == table
    assert again["derive/rows_inserted"] == 0 and again["dagster/row_count"] == len(table)

    run_assets(built, instance, region_scores.key, other)
    both = scores_table(settings)
    assert {k: v for k, v in both.items() if k[0].isoformat() == day} == table
    assert_scores_match(both, expected_scores(daily_rows(settings, day) + daily_rows(settings, other)))


def test_region_scores_table_has_the_declared_types(settings, instance, built):
    run_assets(built, instance, region_scores.key, day_ago(2))
    types = dict(
        rows(
            settings,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'features' AND table_name = 'region_scores'",
        )
    )
    assert types == {
        "day": "DATE",
        "region": "VARCHAR",
        "payments": "BIGINT",
        "revenue": "DECIMAL(38,9)",
        "revenue_per_payer": "DOUBLE",
        "revenue_share": "DOUBLE",
        "score": "DOUBLE",
    }
    assert rows(settings, "SELECT typeof(revenue) FROM features.region_scores LIMIT 1") == [
        ("DECIMAL(38,9)",)
    ]
    assert all(
        isinstance(r[0], Decimal) for r in rows(settings, "SELECT revenue FROM features.region_scores")
    )


def declared_like_scores(name: str, fn) -> PythonTable:
    """A table declared like features.region_scores, into features.<name>, computed by `fn`."""
    spec = region_scores.spec.model_dump(exclude={"sql", "name", "schedule", "kind"})
    return python_table(name=name, inputs={"daily": "analytics.daily_payments_by_region"}, **spec)(fn)


def with_table(defs: Definitions, table: PythonTable) -> Definitions:
    return Definitions.merge(defs, Definitions(assets=[table.asset]))


def good(daily: pd.DataFrame) -> pd.DataFrame:
    return scores(daily)


def duplicated(daily: pd.DataFrame) -> pd.DataFrame:
    out = scores(daily)
    return pd.concat([out, out.head(1)])


def next_day(daily: pd.DataFrame) -> pd.DataFrame:
    out = scores(daily)
    out.loc[out.index[0], "day"] = out["day"].iloc[0] + dt.timedelta(days=1)
    return out


def no_score(daily: pd.DataFrame) -> pd.DataFrame:
    return scores(daily).drop(columns=["score"])


def extra_column(daily: pd.DataFrame) -> pd.DataFrame:
    return scores(daily).assign(debug_note="left in by mistake")


def not_a_table(daily: pd.DataFrame) -> list:
    return scores(daily).to_dict("records")


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (
            duplicated,
            r"features\.checked_scores: the query returned several rows for 1 values of unique_key "
            r"\['day', 'region'\] \(e\.g\. .*\); a merge needs one row per key\..* Nothing was written\.",
        ),
        (
            next_day,
            r"features\.checked_scores: the query returned 1 rows whose partition key 'day' is NULL or lies outside "
            r"the window \[.*\); a merge run may only write its own window .* Nothing was written\.",
        ),
        (no_score, r"features\.checked_scores: the asset's rows have no column \['score'\]"),
        (
            extra_column,
            r"features/checked_scores: the function returned columns its table does not declare: "
            r"\['debug_note'\] .* Nothing was written\.",
        ),
        (
            not_a_table,
            r"features/checked_scores: a Python asset on the warehouse IO manager returns a pandas DataFrame or a "
            r"pyarrow Table \(or None when it wrote its table itself\), got list\.",
        ),
    ],
    ids=["duplicate_keys", "row_outside_window", "missing_column", "extra_column", "not_a_table"],
)
def test_a_wrong_output_fails_clearly_and_changes_nothing(settings, instance, built, wrong, message):
    day = day_ago(2)
    run_assets(with_table(built, declared_like_scores("checked_scores", good)), instance, CHECKED_SCORES, day)
    before = rows(settings, "SELECT * FROM features.checked_scores ORDER BY ALL")
    assert before

    outcome = execute_assets(
        with_table(built, declared_like_scores("checked_scores", wrong)), instance, CHECKED_SCORES, day
    )
    assert not outcome.success
    assert re.search(message, outcome.errors), outcome.errors
    assert rows(settings, "SELECT * FROM features.checked_scores ORDER BY ALL") == before


def test_a_declaration_that_breaks_a_spec_rule_fails_when_it_is_made():
    spec = region_scores.spec.model_dump(exclude={"sql", "name", "schedule", "kind"})
    spec["strategy"] = {"type": "merge", "unique_key": ["day", "segment"]}
    with pytest.raises(
        PythonTableError,
        match=r"^python table features\.bad: strategy\.unique_key: \['segment'\] not declared in columns; "
        r"allowed: \['day', 'region', ",
    ):
        python_table(name="bad", **spec)
    spec = region_scores.spec.model_dump(exclude={"sql", "name", "schedule", "kind", "window"})
    with pytest.raises(
        PythonTableError,
        match=r"partition: a partitioned table needs a `window` \(the slice each run writes\)",
    ):
        python_table(name="bad", **spec)
    with pytest.raises(
        PythonTableError, match=r"python table features\.bad: `sql` is not a field of a Python table"
    ):
        python_table(name="bad", sql="SELECT 1", **spec)


def test_a_python_asset_downstream_reads_its_window_of_a_python_table_as_arrow(settings, instance, built):
    day, other = day_ago(2), day_ago(3)
    for partition in (day, other):
        run_assets(built, instance, region_scores.key, partition)
    seen = {}

    @asset(
        key=["ml", "score_snapshot"],
        ins={"scores": AssetIn(key=region_scores.key)},
        partitions_def=region_scores.asset.partitions_def,
        io_manager_key="warehouse_io_manager",
    )
    def score_snapshot(scores: pa.Table) -> None:
        seen["table"] = scores

    defs = Definitions.merge(built, Definitions(assets=[score_snapshot]))
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        partition_key=day,
        asset_selection=[AssetKey(["ml", "score_snapshot"])],
        run_config=QUIET,
    )
    assert result.success
    table = seen["table"]
    assert isinstance(table, pa.Table) and table.num_rows > 1
    assert {d.isoformat() for d in table.column("day").to_pylist()} == {day}
    assert (
        table.num_rows
        == rows(settings, "SELECT count(*) FROM features.region_scores WHERE day = ?", [day])[0][0]
    )


def test_a_python_asset_returning_rows_without_a_declared_table_fails_naming_the_fix(settings, instance):
    @asset(key=["ml", "undeclared"], io_manager_key="warehouse_io_manager")
    def undeclared() -> pd.DataFrame:
        return pd.DataFrame({"user_id": [1, 2]})

    defs = Definitions.merge(build_definitions(settings), Definitions(assets=[undeclared]))
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[AssetKey(["ml", "undeclared"])],
        run_config=QUIET,
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    messages = []
    error = failure.step_failure_data.error
    while error is not None:
        messages.append(error.message)
        error = error.cause
    assert any(
        re.match(
            r"resources\.io_manager\.PythonAssetError: ml/undeclared: a Python asset that returns rows declares the "
            r"table they go to: .*strategy \('derive/strategy': one of \['merge', 'append', 'replace'\], got None\)\. "
            r"Declare it with derive_assets\.factory\.python_assets\.python_table\(\.\.\.\)",
            m,
        )
        for m in messages
    ), messages
    assert not settings.duckdb_path.exists()  # the run wrote nothing: not even the warehouse file was created
