"""`features.region_scores`: each region's day scored against the other regions of that day, computed in pandas.

Read from `analytics.daily_payments_by_region` (one run reads one day's window of it), written by merge on
(day, region) into a table partitioned by day and clustered by region: a rerun of a day replaces that day's rows.
"""
# No `from __future__ import annotations`: Dagster inspects the function's annotations.

from typing import TYPE_CHECKING

from derive_assets.factory.python_assets import python_table

if TYPE_CHECKING:  # pandas only in the step that computes the scores (~0.5 s of every process's import)
    import pandas as pd

COLUMNS = ["day", "region", "payments", "revenue", "revenue_per_payer", "revenue_share", "score"]


@python_table(
    name="region_scores",
    dataset="features",
    owner="team-ml@example.com",
    description="Per day and region: revenue per payer, share of the day's revenue, and a score (the revenue "
    "per payer as a z-score among that day's regions; 0 when the regions do not differ).",
    columns=[
        {"name": "day", "type": "DATE", "constraints": {"not_null": True}},
        {"name": "region", "type": "STRING", "constraints": {"not_null": True}},
        {"name": "payments", "type": "INT64"},
        {"name": "revenue", "type": "NUMERIC"},
        {"name": "revenue_per_payer", "type": "FLOAT64"},
        {"name": "revenue_share", "type": "FLOAT64", "description": "Region's share of the day's revenue."},
        {"name": "score", "type": "FLOAT64"},
    ],
    strategy={"type": "merge", "unique_key": ["day", "region"]},
    # No schedule: a window runs as soon as that window of analytics.daily_payments_by_region materialized.
    window={"size": "1d", "start": "2026-01-01"},
    partition={"key": "day", "granularity": "day"},
    cluster=["region"],
    inputs={"daily": "analytics.daily_payments_by_region"},
)
def region_scores(daily):
    # A DataFrame in and out, unannotated: Dagster resolves a `pd.DataFrame` annotation when the definitions load,
    # which would import pandas in every step process.
    return scores(daily)


def scores(daily: "pd.DataFrame") -> "pd.DataFrame":
    """The scores of the rows of `analytics.daily_payments_by_region` in `daily` (any number of days)."""
    revenue = daily["revenue"].map(float, na_action="ignore").astype("float64")
    per_payer = revenue / daily["payers"]
    by_day = per_payer.groupby(daily["day"])
    spread = by_day.transform(lambda s: s.std(ddof=0))
    frame = daily.assign(
        revenue_per_payer=per_payer,
        revenue_share=revenue / revenue.groupby(daily["day"]).transform("sum"),
        score=((per_payer - by_day.transform("mean")) / spread).where(spread > 0, 0.0),
    )
    return frame.loc[:, COLUMNS]
