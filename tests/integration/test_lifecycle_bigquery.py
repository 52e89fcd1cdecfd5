"""A table's life on BigQuery (the emulator, through the real client), through the operator's commands: add a
column (the run adds it, keeping partitioning and clustering; `derive plan` names the windows to backfill), rename a
column (`derive plan` and the run refuse; `derive rebuild` rebuilds it), delete a spec (`derive plan` lists the
orphan, `derive prune` drops it and never a table Derive did not create).

The world lives in a BigQuery project of its own on the shared emulator, so other tests' datasets of the same
names are never touched.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from embedded.lifecycle_world import DAILY, World, build_world, days_ago
from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

DATASETS = ("accounts", "orders", "payments", "profiles", "core", "analytics", "features")


@pytest.fixture(scope="module")
def world(tmp_path_factory, bigquery_emulator: tuple[str, str]) -> Iterator[World]:
    endpoint, _ = bigquery_emulator
    project = f"derive-lifecycle-{uuid.uuid4().hex[:8]}"
    built = build_world(World(tmp_path_factory.mktemp("lifecycle_bq") / "world", (endpoint, project)))
    yield built
    with client_of(built) as client:
        for dataset in DATASETS:
            client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def client_of(world: World) -> bigquery.Client:
    assert world.bigquery is not None
    endpoint, project = world.bigquery
    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )


def table(world: World, ref: str) -> bigquery.Table:
    with client_of(world) as client:
        return client.get_table(ref)


def rows(world: World, sql: str) -> list[tuple]:
    with client_of(world) as client:
        return [tuple(r.values()) for r in client.query(sql).result()]


def section(text: str, header: str) -> str:
    start = text.index(f"== {header}")
    end = text.find("\n== ", start + 1)
    return text[start : end if end != -1 else None]


def test_add_a_column_then_rename_one_refused_then_rebuild(world: World):
    # Add a column: the plan says what the run will do; the run adds it in place.
    world.add_avg_amount()
    planned = world.derive("plan", DAILY)
    assert planned.returncode == 0, planned.stderr
    daily = section(planned.stdout, DAILY)
    assert "-- will: add column avg_amount NUMERIC (old rows hold NULL)" in daily
    assert f"-- backfill: 2 window(s) {days_ago(2)} .. {days_ago(1)}" in daily
    assert "PARTITION BY `day`" in daily and "CLUSTER BY `region`" in daily
    assert world.materialize(DAILY, (days_ago(1), days_ago(1)))
    added = table(world, DAILY)
    assert [f.name for f in added.schema][-1] == "avg_amount"
    assert added.time_partitioning.field == "day" and added.clustering_fields == ["region"]
    nulls = rows(world, f"SELECT DISTINCT CAST(day AS STRING) FROM {DAILY} WHERE avg_amount IS NULL")
    assert nulls == [(days_ago(2),)]  # the old window holds NULL until it runs again

    # Rename a column: refused by the plan and by the run, before anything is written.
    before = sorted(rows(world, f"SELECT day, region, payers FROM {DAILY}"))
    world.rename_payers()
    refused = world.derive("plan", DAILY)
    assert (
        "-- will: refuse before writing: rebuild needed (column payers INT64 is in the table but not in "
        in (section(refused.stdout, DAILY))
    )
    assert not world.materialize(DAILY, (days_ago(1), days_ago(1)))
    assert sorted(rows(world, f"SELECT day, region, payers FROM {DAILY}")) == before

    # Rebuild: one run over every window, swapped in with the spec's layout.
    rebuilt = world.derive("rebuild", DAILY, "--yes")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.startswith(f"rebuilt {DAILY}: ")
    after = table(world, DAILY)
    assert [f.name for f in after.schema] == [
        "day",
        "region",
        "payments",
        "distinct_payers",
        "revenue",
        "avg_amount",
    ]
    assert after.time_partitioning.field == "day" and after.clustering_fields == ["region"]
    renamed = sorted(
        rows(world, f"SELECT day, region, distinct_payers FROM {DAILY} WHERE day >= '{days_ago(2)}'")
    )
    assert renamed == before  # the same values under the new name
    days = rows(world, f"SELECT DISTINCT CAST(day AS STRING) FROM {DAILY} ORDER BY 1")
    assert days == [
        (days_ago(3),),
        (days_ago(2),),
        (days_ago(1),),
    ]  # the whole range, the never-run window too
    assert rows(world, f"SELECT count(*) FROM {DAILY} WHERE avg_amount IS NULL") == [(0,)]
    assert world.materialize(DAILY, (days_ago(1), days_ago(1)))  # the next ordinary run goes through


def test_a_deleted_spec_is_an_orphan_that_prune_drops_and_a_hand_made_table_is_never_touched(world: World):
    with client_of(world) as client:
        client.query("CREATE TABLE analytics.hand_made (x INT64)").result()
    (world.specs / "analytics" / "top_spenders.yaml").unlink()

    planned = world.derive("plan", "core/*")
    assert planned.returncode == 0, planned.stderr
    orphans = section(planned.stdout, "orphaned tables")
    assert "  analytics.top_spenders" in orphans and "hand_made" not in planned.stdout

    pruned = world.derive("prune", "--yes")
    assert pruned.returncode == 0, pruned.stderr
    assert "dropped analytics.top_spenders" in pruned.stdout and "hand_made" not in pruned.stdout
    with pytest.raises(NotFound):
        table(world, "analytics.top_spenders")
    assert table(world, "analytics.hand_made").num_rows == 0
    assert world.derive("prune", "--yes").stdout.startswith("no orphaned tables")
