"""Environments on DuckDB, through the operator's commands: `derive build --env` writes only `<env>__` datasets,
reads unchanged upstreams from production and changed ones from its own copy, leaves every production table, marker
and event byte-for-byte as it was, and keeps its watermarks apart from production's and other environments'."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from dagster import AssetKey
from embedded.lifecycle_world import DAILY, World, build_world, copy_world, days_ago

from derive_assets import metadata_keys as K
from derive_assets.demo.generate import apply_activity, embedded_urls
from derive_assets.settings import PROJECT_ROOT

PAYMENTS = "payments.payments"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> World:
    return build_world(World(tmp_path_factory.mktemp("environments") / "world"))


@pytest.fixture
def world(base: World, tmp_path) -> World:
    return copy_world(base, tmp_path / "world")


def schemas(world: World) -> set[str]:
    return {
        r[0]
        for r in world.query(
            "SELECT DISTINCT schema_name FROM duckdb_tables() WHERE database_name = current_database()"
        )
    }


def production(world: World) -> dict[str, str]:
    """Every production table -> a digest of its marker, its columns and all its rows (in a stable order)."""
    out = {}
    tables = world.query(
        "SELECT schema_name, table_name, coalesce(comment, '') FROM duckdb_tables() "
        "WHERE database_name = current_database() ORDER BY 1, 2"
    )
    for schema, name, comment in tables:
        if "__" in schema:
            continue
        columns = world.columns(f"{schema}.{name}")
        rows = sorted(repr(r) for r in world.query(f'SELECT * FROM "{schema}"."{name}"'))
        digest = hashlib.sha256("\n".join([comment, repr(columns), *rows]).encode()).hexdigest()
        out[f"{schema}.{name}"] = digest
    return out


def latest_events(world: World) -> dict[str, tuple[str, float]]:
    """Every production asset key -> the run and time of its latest materialization."""
    with world.instance() as instance:
        out = {}
        for key in instance.get_asset_keys():
            event = instance.get_latest_materialization_event(key)
            if "__" not in key.path[0] and event is not None:
                out[key.to_user_string()] = (event.run_id, event.timestamp)
        return out


def daily(world: World, ref: str, first: str, last: str) -> list[tuple]:
    return sorted(world.query(f"SELECT * FROM {ref} WHERE day BETWEEN DATE '{first}' AND DATE '{last}'"))


def rows_read(world: World, key: AssetKey) -> list[int]:
    """The rows each materialization of `key` read, oldest first."""
    from dagster import AssetRecordsFilter

    with world.instance() as instance:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key), limit=100, ascending=True
        )
        return [r.asset_materialization.metadata[K.ROWS_READ].value for r in records.records]  # type: ignore[union-attr]


def test_a_build_writes_only_its_datasets_reads_production_and_changes_nothing_there(world: World):
    before_tables, before_events = production(world), latest_events(world)
    before_schemas = schemas(world)

    built = world.derive("build", "--env", "alice", DAILY, "--last", "2")

    assert built.returncode == 0, built.stderr
    assert f"alice__{DAILY}  [selected]  2 window(s) {days_ago(2)} .. {days_ago(1)}" in built.stdout
    assert "alice__core" not in built.stdout  # core.user_detail is unchanged: read from production
    assert schemas(world) - before_schemas == {"alice__analytics"}
    # the spec is unchanged, and so is everything it reads: the copy holds production's rows, window for window
    copy = daily(world, f"alice__{DAILY}", days_ago(2), days_ago(1))
    assert copy and copy == daily(world, DAILY, days_ago(2), days_ago(1))
    assert production(world) == before_tables
    assert latest_events(world) == before_events
    with world.instance() as instance:
        done = instance.get_materialized_partitions(
            AssetKey(["alice__analytics", "daily_payments_by_region"])
        )
        assert done == {days_ago(2), days_ago(1)}
        runs = instance.get_runs()
        assert runs[0].tags[K.ENV_TAG] == "alice"


def test_a_changed_upstream_is_built_first_and_read_from_the_environment(world: World):
    world.edit(
        "core/user_detail.yaml",
        "    p.region,\n",
        "    CASE WHEN a.user_id % 2 = 0 THEN 'eu' ELSE p.region END AS region,\n",
    )
    before = production(world)

    built = world.derive("build", "--env", "bob", DAILY, "--last", "2")

    assert built.returncode == 0, built.stderr
    lines = built.stdout.splitlines()
    core = next(i for i, line in enumerate(lines) if "bob__core.user_detail  [changed]  all rows" in line)
    table = next(i for i, line in enumerate(lines) if f"bob__{DAILY}  [selected]" in line)
    assert core < table  # dependency order
    odd = world.query("SELECT count(*) FROM bob__core.user_detail WHERE user_id % 2 = 0 AND region <> 'eu'")
    assert odd == [(0,)]
    # the daily copy read bob's user_detail: per day the same revenue, moved between regions
    ours, theirs = (daily(world, ref, days_ago(2), days_ago(1)) for ref in (f"bob__{DAILY}", DAILY))
    assert ours != theirs
    total = "SELECT day, sum(revenue) FROM {} WHERE day >= DATE '{}' GROUP BY day ORDER BY day"
    assert world.query(total.format(f"bob__{DAILY}", days_ago(2))) == world.query(
        total.format(DAILY, days_ago(2))
    )
    eu = "SELECT sum(revenue) FROM {} WHERE region = 'eu' AND day >= DATE '{}'"
    assert (
        world.query(eu.format(f"bob__{DAILY}", days_ago(2)))[0][0]
        > world.query(eu.format(DAILY, days_ago(2)))[0][0]
    )
    assert production(world) == before


def test_a_table_whose_changed_upstream_has_no_copy_fails_naming_the_build_command(world: World):
    world.edit("core/user_detail.yaml", "    p.country,\n", "    upper(p.country) AS country,\n")

    refused = world.derive("rebuild", "--env", "carol", DAILY, "--yes")

    assert refused.returncode == 2
    assert (
        "carol__analytics.daily_payments_by_region reads core.user_detail, whose spec differs"
        in refused.stderr
    )
    assert "carol__core.user_detail, which does not exist" in refused.stderr
    assert f"`derive build --env carol {DAILY.replace('.', '/')}`" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not {s for s in schemas(world) if s.startswith("carol__")}  # nothing written


def test_environments_keep_their_own_watermarks(world: World):
    source_rows = world.query(f"SELECT count(*) FROM {PAYMENTS}")[0][0]
    prod_key, alice_key, bob_key = (
        AssetKey(["payments", "payments"]),
        AssetKey(["alice__payments", "payments"]),
        AssetKey(["bob__payments", "payments"]),
    )
    before = rows_read(world, prod_key)

    assert world.derive("build", "--env", "alice", "payments/payments").returncode == 0
    assert rows_read(world, alice_key) == [
        source_rows
    ]  # its first load: every row, not production's watermark
    changes = apply_activity(embedded_urls(world.settings.embedded_sources_dir))
    changed = changes["payments.payments.inserted"] + changes["payments.payments.updated"]
    assert changed > 0
    assert world.derive("build", "--env", "alice", "payments/payments").returncode == 0
    second = rows_read(world, alice_key)
    # only what changed since alice's watermark (and the rows of the cursor's overlap before it)
    assert len(second) == 2 and changed <= second[1] < source_rows
    assert world.derive("build", "--env", "bob", "payments/payments").returncode == 0
    assert rows_read(world, bob_key) == [
        source_rows + changes["payments.payments.inserted"]
    ]  # bob's first load

    assert rows_read(world, prod_key) == before  # production read nothing while the environments ran
    assert world.run("replicate_payments")
    # production's watermark stood where its last run left it, as alice's did: the same rows since
    assert rows_read(world, prod_key) == [*before, second[1]]
    count = world.query("SELECT count(*) FROM alice__payments.payments")[0][0]
    assert count == world.query(f"SELECT count(*) FROM {PAYMENTS}")[0][0]


def test_dagster_asset_materialize_builds_into_the_environment_derive_env_names(world: World):
    env = {**world.env(), "DERIVE_ENV": "dave"}
    before = production(world)
    done = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "dagster"),
            "asset",
            "materialize",
            "-m",
            "derive_assets.definitions",
            "--select",
            "dave__analytics/daily_payments_by_region",
            "--partition",
            days_ago(1),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert daily(world, f"dave__{DAILY}", days_ago(1), days_ago(1)) == daily(
        world, DAILY, days_ago(1), days_ago(1)
    )
    assert production(world) == before


def test_a_run_tag_never_turns_production_into_an_environment(world: World):
    from derive_assets.factory.build import build_definitions
    from derive_assets.factory.runs import materialize_keys

    before = production(world)
    with world.instance() as instance:
        result = materialize_keys(
            build_definitions(world.settings),
            [AssetKey(DAILY.split("."))],
            instance=instance,
            partition_key=days_ago(1),
            tags={K.ENV_TAG: "erin"},
        )
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error is not None
    assert (
        "tagged derive/env='erin', but this code location builds production; nothing was written"
        in error.message
    )
    assert "derive build <tables> --env erin" in error.message
    assert production(world) == before
