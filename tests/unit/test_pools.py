"""Pools and policies on the assets: every asset has its pool, each pool's limit comes from its spec, each windowed
asset's backfill policy from its `backfill`, and the spec fields are validated.

The instance side (limits written, a full pool holding a step back) is `tests/embedded/test_pools_instance.py`.
"""

from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetKey, AssetsDefinition, BackfillPolicy, Backoff, Jitter
from pydantic import ValidationError
from support import events_source

from derive_assets.factory.build import build_definitions
from derive_assets.factory.policies import step_retry_policy
from derive_assets.factory.pools import (
    WINDOWS_IN_PARALLEL,
    parallel_windows,
    pool_limits,
    source_pool,
    table_pool,
)
from derive_assets.factory.python_assets import python_table
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.models import SourceSpec, TableSpec
from derive_assets.specs.project import load_project

COLUMNS = [
    {"name": "id", "type": "INT64"},
    {"name": "day", "type": "DATE"},
    {"name": "at", "type": "TIMESTAMP"},
]


def table(**fields: Any) -> TableSpec:
    spec: dict[str, Any] = {
        "name": "t",
        "dataset": "d",
        "owner": "team:x",
        "columns": COLUMNS,
        "strategy": {"type": "merge", "unique_key": ["id"]},
        "sql": "SELECT 1",
        **fields,
    }
    return TableSpec.model_validate(spec)


DAILY = {"window": {"size": "1d", "start": "2026-01-01"}}


def assets_by_key(defs: Any) -> dict[AssetKey, AssetsDefinition]:
    return {key: a for a in defs.assets if isinstance(a, AssetsDefinition) for key in a.keys}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("home")
    settings = DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=home, cache_dir=None)
    return settings, build_definitions(settings)


def test_every_asset_of_the_shipped_specs_has_its_pool(shipped):
    settings, defs = shipped
    project = load_project(settings.specs_dir)
    assets = assets_by_key(defs)
    expected = {
        AssetKey([rt.source.target_dataset, rt.table.name]): source_pool(rt.source.name)
        for rt in project.replicated
    }
    expected |= {AssetKey(t.spec.ref.split(".")): table_pool(t.spec.ref) for t in project.tables}
    expected |= {
        AssetKey(["online", e.spec.name]): table_pool(f"online.{e.spec.name}") for e in project.exports
    }
    expected[AssetKey(["features", "region_scores"])] = table_pool("features.region_scores")
    derive_assets = {k: a for k, a in assets.items() if k.path[0] != "derive_errors"}
    assert set(derive_assets) == set(expected)
    for key, asset in derive_assets.items():
        assert asset.op.pool == expected[key], key
    assert set(expected.values()) == set(pool_limits(project))


def test_the_shipped_pools_have_the_limits_their_specs_give(shipped):
    settings, _ = shipped
    limits = pool_limits(load_project(settings.specs_dir))
    assert limits[source_pool("payments")] == 1  # the default: one extraction at a time
    # append, daily windows on a day-partitioned table: two windows may run at once
    assert limits[table_pool("analytics.daily_payments_by_region")] == WINDOWS_IN_PARALLEL
    # merge keyed by (day, region) on a day-partitioned table: a key belongs to one window
    assert limits[table_pool("features.region_scores")] == WINDOWS_IN_PARALLEL
    assert limits[table_pool("core.user_detail")] == 1  # no window: the run rewrites the whole table
    # exports follow their table: per-window exports of daily_payments_by_region, a cursor export of user_detail
    assert limits[table_pool("online.region_payments_online")] == WINDOWS_IN_PARALLEL
    assert limits[table_pool("online.user_profile_online")] == 1


@pytest.mark.parametrize(
    ("fields", "parallel"),
    [
        ({}, False),  # no window
        ({"strategy": "replace"}, False),
        ({**DAILY, "partition": {"key": "day"}, "strategy": "append"}, True),
        (
            {
                **DAILY,
                "partition": {"key": "day"},
                "strategy": {"type": "merge", "unique_key": ["id", "day"]},
            },
            True,
        ),
        # a key may move from one window to another: two windows could merge the same row
        ({**DAILY, "partition": {"key": "day"}}, False),
        ({**DAILY}, False),  # merge without partition
        # hourly windows on a day-partitioned table share their day's partition
        (
            {
                "window": {"size": "1h", "start": "2026-01-01"},
                "partition": {"key": "at"},
                "strategy": "append",
            },
            False,
        ),
        (
            {
                "window": {"size": "1h", "start": "2026-01-01"},
                "partition": {"key": "at", "granularity": "hour"},
                "strategy": "append",
            },
            True,
        ),
        # weekly windows on a month-partitioned table: two weeks of one month share its partition
        (
            {
                "window": {"size": "1w", "start": "2026-01-04"},
                "partition": {"key": "day", "granularity": "month"},
                "strategy": "append",
            },
            False,
        ),
        (
            {
                "window": {"size": "1mo", "start": "2026-01-01"},
                "partition": {"key": "day", "granularity": "month"},
                "strategy": "append",
            },
            True,
        ),
    ],
)
def test_windows_run_in_parallel_only_where_they_write_disjoint_rows_and_partitions(fields, parallel):
    assert parallel_windows(table(**fields)) is parallel


def spec_project(tmp_path: Path, table_fields: dict[str, Any], **source_fields: Any) -> DeriveSettings:
    settings = DeriveSettings(specs_dir=tmp_path / "specs", home=tmp_path / "home", cache_dir=None)
    (settings.specs_dir / "sources").mkdir(parents=True)
    (settings.specs_dir / "bench").mkdir()
    (settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(events_source(**source_fields)))
    spec = {
        "name": "daily",
        "dataset": "bench",
        "owner": "team:shop",
        "strategy": {"type": "merge", "unique_key": ["id"]},
        "columns": [{"name": "id", "type": "INT64"}, {"name": "day", "type": "DATE"}],
        "sql": "SELECT e.id, DATE(e.updated_at) AS day FROM shop.events AS e\n"
        "WHERE e.updated_at >= @window_start AND e.updated_at < @window_end",
        **table_fields,
    }
    (settings.specs_dir / "bench" / "daily.yaml").write_text(yaml.safe_dump(spec))
    return settings


def test_max_concurrent_extractions_is_the_source_pools_limit(tmp_path):
    settings = spec_project(tmp_path, DAILY, max_concurrent_extractions=3)
    assert pool_limits(load_project(settings.specs_dir))[source_pool("shop")] == 3
    assert SourceSpec.model_validate(events_source()).max_concurrent_extractions == 1


def test_max_concurrent_extractions_below_one_is_refused():
    with pytest.raises(
        ValidationError, match=r"max_concurrent_extractions\n  Input should be greater than or equal to 1"
    ):
        SourceSpec.model_validate(events_source(max_concurrent_extractions=0))


def test_the_backfill_policy_follows_the_spec_on_tables_python_tables_and_exports(tmp_path):
    settings = spec_project(tmp_path, {**DAILY, "backfill": {"max_partitions_per_run": 7}})
    export = {
        "kind": "export",
        "name": "daily_online",
        "table": "bench.daily",
        "owner": "team:shop",
        "keyspace": "ks",
        "partition_key": ["id"],
    }
    (settings.specs_dir / "exports").mkdir()
    (settings.specs_dir / "exports" / "daily_online.yaml").write_text(yaml.safe_dump(export))
    assets = assets_by_key(build_definitions(settings))
    assert assets[AssetKey(["bench", "daily"])].backfill_policy == BackfillPolicy.multi_run(7)
    assert assets[AssetKey(["online", "daily_online"])].backfill_policy == BackfillPolicy.multi_run(7)
    assert assets[AssetKey(["shop", "events"])].backfill_policy is None  # not partitioned

    @python_table(
        name="scores",
        dataset="bench",
        owner="team:shop",
        columns=[{"name": "day", "type": "DATE"}],
        strategy={"type": "merge", "unique_key": ["day"]},
        **DAILY,
        backfill={"max_partitions_per_run": 5},
        inputs={"daily": "bench.daily"},
    )
    def scores(daily):
        return daily

    assert scores.asset.backfill_policy == BackfillPolicy.multi_run(5)


def test_without_backfill_a_windowed_table_is_one_run_and_an_unwindowed_one_has_no_policy(shipped):
    _, defs = shipped
    assets = assets_by_key(defs)
    assert (
        assets[AssetKey(["analytics", "daily_payments_by_region"])].backfill_policy
        == BackfillPolicy.single_run()
    )
    assert assets[AssetKey(["features", "region_scores"])].backfill_policy == BackfillPolicy.single_run()
    assert assets[AssetKey(["core", "user_detail"])].backfill_policy is None


def test_backfill_without_a_window_is_refused_naming_the_field_and_the_fix():
    with pytest.raises(
        ValidationError,
        match=r"backfill: max_partitions_per_run=3 splits a range of windows into runs, but this table has no "
        r"`window` \(each run rebuilds it whole\); add a `window`, or remove `backfill`",
    ):
        table(backfill={"max_partitions_per_run": 3})


@pytest.mark.parametrize("value", [0, -1, 100_001])
def test_max_partitions_per_run_out_of_range_is_refused(value):
    with pytest.raises(ValidationError, match=r"backfill\.max_partitions_per_run\n  Input should be"):
        table(**DAILY, backfill={"max_partitions_per_run": value})


def test_steps_are_not_retried_by_default_and_retried_with_exponential_backoff_when_configured(monkeypatch):
    monkeypatch.delenv("DERIVE_STEP_RETRIES", raising=False)
    assert step_retry_policy() is None
    monkeypatch.setenv("DERIVE_STEP_RETRIES", "2")
    policy = step_retry_policy()
    assert policy is not None
    assert (policy.max_retries, policy.delay, policy.backoff, policy.jitter) == (
        2,
        30,
        Backoff.EXPONENTIAL,
        Jitter.PLUS_MINUS,
    )


@pytest.mark.parametrize("value", ["two", "-1", "11"])
def test_a_bad_step_retries_setting_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("DERIVE_STEP_RETRIES", value)
    with pytest.raises(ValueError, match=r"^DERIVE_STEP_RETRIES='.*' is not a whole number from 0 to 10"):
        step_retry_policy()


def test_the_step_retry_policy_is_on_every_asset_when_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVE_STEP_RETRIES", "3")
    defs = build_definitions(spec_project(tmp_path, DAILY))
    for key, asset in assets_by_key(defs).items():
        policy = asset.op.retry_policy
        assert policy is not None and policy.max_retries == 3, key
