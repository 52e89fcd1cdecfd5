"""`materialize_keys`: assets run by key through the implicit asset job, in one Definitions that mixes partitions
definitions (as Derive's does), one partition or a range in one run, and nothing but the selected assets."""

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    HourlyPartitionsDefinition,
    asset,
)

from derive_assets.factory.runs import RANGE_END, RANGE_START, materialize_keys

DAILY = DailyPartitionsDefinition(start_date="2026-03-01")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@asset(key=["shop", "orders"])
def orders() -> None: ...


@asset(key=["bench", "daily"], deps=[orders], partitions_def=DAILY)
def daily() -> None: ...


@asset(
    key=["bench", "hourly"],
    deps=[orders],
    partitions_def=HourlyPartitionsDefinition(start_date="2026-03-01-00:00"),
)
def hourly() -> None: ...


DEFS = Definitions(assets=[orders, daily, hourly])


def materialized(result) -> dict[str, list[str | None]]:
    found: dict[str, list[str | None]] = {}
    for event in result.get_asset_materialization_events():
        found.setdefault(event.asset_key.to_user_string(), []).append(event.partition)
    return found


def test_selected_assets_only_one_partition_or_one_range_per_run():
    with DagsterInstance.ephemeral() as instance:
        whole = materialize_keys(DEFS, [AssetKey(["shop", "orders"])], instance=instance, run_config=QUIET)
        assert whole.success and materialized(whole) == {"shop/orders": [None]}

        one = materialize_keys(
            DEFS, [AssetKey(["bench", "daily"])], instance=instance, partition_key="2026-03-02"
        )
        assert one.success and materialized(one) == {"bench/daily": ["2026-03-02"]}

        many = materialize_keys(
            DEFS,
            [AssetKey(["bench", "daily"])],
            instance=instance,
            partition_range=("2026-03-02", "2026-03-04"),
            tags={"team": "shop"},
        )
        assert many.success
        assert materialized(many) == {"bench/daily": ["2026-03-02", "2026-03-03", "2026-03-04"]}
        run = instance.get_run_by_id(many.run_id)
        assert run is not None
        assert {k: run.tags[k] for k in (RANGE_START, RANGE_END, "team")} == {
            RANGE_START: "2026-03-02",
            RANGE_END: "2026-03-04",
            "team": "shop",
        }


def test_a_failing_asset_fails_the_run_without_raising_unless_asked():
    @asset(key=["bench", "broken"])
    def broken() -> None:
        raise RuntimeError("bench.broken: the query failed")

    defs = Definitions(assets=[orders, daily, broken])
    with DagsterInstance.ephemeral() as instance:
        result = materialize_keys(defs, [AssetKey(["bench", "broken"])], instance=instance, run_config=QUIET)
        assert not result.success
        with pytest.raises(RuntimeError, match=r"^bench\.broken: the query failed$"):
            materialize_keys(
                defs,
                [AssetKey(["bench", "broken"])],
                instance=instance,
                run_config=QUIET,
                raise_on_error=True,
            )


def test_a_call_that_names_nothing_or_two_partition_scopes_is_refused():
    with DagsterInstance.ephemeral() as instance:
        with pytest.raises(
            ValueError, match=r"^materialize_keys: no asset key given; name at least one asset"
        ):
            materialize_keys(DEFS, [], instance=instance)
        with pytest.raises(
            ValueError,
            match=r"^materialize_keys: give either partition_key or partition_range, not both "
            r"\(got '2026-03-02' and \('2026-03-02', '2026-03-03'\)\)\.$",
        ):
            materialize_keys(
                DEFS,
                [AssetKey(["bench", "daily"])],
                instance=instance,
                partition_key="2026-03-02",
                partition_range=("2026-03-02", "2026-03-03"),
            )
