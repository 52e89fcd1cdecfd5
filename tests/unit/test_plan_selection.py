"""`derive plan` selections resolved by Dagster over a small graph, and what Derive counts as owning a table."""

from __future__ import annotations

import pytest
from dagster import AssetKey, Definitions, asset

from derive_assets.lifecycle import datasets, normalize_ref, owned
from derive_assets.selection import SelectionError, select
from derive_assets.settings import PROJECT_ROOT
from derive_assets.specs.project import load_project


@asset(key=["core", "users"])
def users() -> None: ...


@asset(key=["analytics", "daily"], deps=[AssetKey(["core", "users"])])
def daily() -> None: ...


@asset(key=["analytics", "weekly"], deps=[AssetKey(["analytics", "daily"])])
def weekly() -> None: ...


@asset(key=["online", "daily_online"], deps=[AssetKey(["analytics", "weekly"])])
def daily_online() -> None: ...


GRAPH = Definitions(assets=[users, daily, weekly, daily_online]).resolve_asset_graph()


def chosen(*texts: str) -> list[str]:
    return sorted(k.to_user_string() for k in select(texts, GRAPH, GRAPH.get_all_asset_keys()))


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ((), ["analytics/daily", "analytics/weekly", "core/users", "online/daily_online"]),
        (("analytics/*",), ["analytics/daily", "analytics/weekly"]),
        (("analytics.daily",), ["analytics/daily"]),
        (("analytics/daily",), ["analytics/daily"]),
        (("+analytics/daily",), ["analytics/daily", "core/users"]),
        (("+online/daily_online",), ["analytics/weekly", "online/daily_online"]),
        (("analytics/daily+",), ["analytics/daily", "analytics/weekly"]),
        (("analytics/daily++",), ["analytics/daily", "analytics/weekly", "online/daily_online"]),
        (("++analytics.weekly",), ["analytics/daily", "analytics/weekly", "core/users"]),
        (("*/daily*",), ["analytics/daily", "online/daily_online"]),
        (("core/users", "online/*"), ["core/users", "online/daily_online"]),
        (('key:"analytics/*" and not key:"analytics/weekly"',), ["analytics/daily"]),
    ],
)
def test_selections_select_what_dagster_selects(texts: tuple[str, ...], expected: list[str]):
    assert chosen(*texts) == expected


def test_a_selection_of_nothing_names_the_nearest_keys():
    with pytest.raises(
        SelectionError, match=r"^'analytics\.dialy' selects no asset; did you mean analytics/daily[,?]"
    ):
        chosen("analytics.dialy")


def test_a_selection_that_is_not_valid_syntax_says_what_to_write():
    with pytest.raises(
        SelectionError, match=r"^'key:\(' is not an asset selection \(.*\); use a key such as "
    ):
        chosen("key:(")


def test_refs_are_accepted_as_keys_or_refs():
    assert normalize_ref("analytics/daily") == normalize_ref(" analytics.daily ") == "analytics.daily"


def test_a_project_owns_its_tables_replicated_tables_their_quarantines_and_python_tables():
    project = load_project(PROJECT_ROOT / "table_specs")
    mine = owned(project)
    assert {"analytics.daily_payments_by_region", "accounts.auth", "features.region_scores"} <= mine
    assert "profiles.profile__quarantine" in mine
    assert "analytics.hand_made" not in mine
    assert datasets(project) == {
        "accounts",
        "orders",
        "payments",
        "profiles",
        "core",
        "analytics",
        "features",
    }


def test_the_backfill_of_an_added_column_covers_the_materialized_windows():
    import datetime as dt

    from dagster import AssetMaterialization, DagsterInstance, DailyPartitionsDefinition

    from derive_assets.plan import backfill_range

    partitions = DailyPartitionsDefinition(start_date="2026-03-01", timezone="UTC")
    now = dt.datetime(2026, 3, 11, 1, tzinfo=dt.UTC)  # ten complete windows, 03-01 .. 03-10
    key = AssetKey(["analytics", "daily"])
    with DagsterInstance.ephemeral() as instance:
        assert backfill_range(partitions, key, instance, now) is None  # nothing written yet: nothing to fill
        for day in ("2026-03-04", "2026-03-06"):
            instance.report_runless_asset_event(AssetMaterialization(key, partition=day))
        fill = backfill_range(partitions, key, instance, now)
    assert fill is not None and (fill.first, fill.last, fill.count) == ("2026-03-04", "2026-03-06", 2)
    no_instance = backfill_range(partitions, key, None, now)  # no event log: up to the last complete window
    assert no_instance is not None and (no_instance.last, no_instance.count) == ("2026-03-10", 10)


def test_a_bounded_window_plans_and_rebuilds_only_its_range():
    import datetime as dt

    from derive_assets.factory.windows import partitions_for
    from derive_assets.plan import partition_keys, window_before
    from derive_assets.specs.models import Window

    window = Window(size="1d", start=dt.date(1992, 1, 1), end=dt.date(1992, 1, 11))
    now = dt.datetime(2026, 3, 11, tzinfo=dt.UTC)
    partitions_def = partitions_for(window)
    assert partitions_def is not None
    keys = partition_keys(partitions_def, now)
    assert (len(keys), keys[0], keys[-1]) == (10, "1992-01-01", "1992-01-10")
    last = window_before(window, now)
    assert last is not None and last.end == dt.datetime(1992, 1, 11, tzinfo=dt.UTC)
