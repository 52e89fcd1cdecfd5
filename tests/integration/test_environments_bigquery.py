"""Environments on BigQuery (the emulator, through the real client): `derive build --env` writes only `<env>__`
datasets, partitioned and clustered as production's; it reads unchanged upstreams from production and a changed one
from its own copy; production's tables, rows and markers stay exactly as they were; `derive plan --env` and
`derive diff --env` compare the copy with production in the warehouse.

The world lives in a BigQuery project of its own on the shared emulator.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import pytest
from embedded.lifecycle_world import DAILY, World, build_world, days_ago
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery


@pytest.fixture(scope="module")
def world(tmp_path_factory, bigquery_emulator: tuple[str, str]) -> Iterator[World]:
    endpoint, _ = bigquery_emulator
    project = f"derive-env-{uuid.uuid4().hex[:8]}"
    built = build_world(World(tmp_path_factory.mktemp("env_bq") / "world", (endpoint, project)))
    yield built
    with client_of(built) as client:
        for dataset in client.list_datasets():
            client.delete_dataset(dataset.dataset_id, delete_contents=True, not_found_ok=True)


def client_of(world: World) -> bigquery.Client:
    assert world.bigquery is not None
    endpoint, project = world.bigquery
    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )


def rows(world: World, sql: str) -> list[tuple]:
    with client_of(world) as client:
        return sorted(tuple(r.values()) for r in client.query(sql).result())


def datasets(world: World) -> set[str]:
    with client_of(world) as client:
        return {d.dataset_id for d in client.list_datasets()}


def production(world: World) -> dict[str, str]:
    """Every production table -> a digest of its description (Derive's marker), labels, schema and rows."""
    out = {}
    with client_of(world) as client:
        for dataset in client.list_datasets():
            if "__" in dataset.dataset_id:
                continue
            for item in client.list_tables(dataset.dataset_id):
                table = client.get_table(item)
                ref = f"{dataset.dataset_id}.{item.table_id}"
                data = sorted(
                    repr(tuple(r.values())) for r in client.query(f"SELECT * FROM `{ref}`").result()
                )
                schema = [(f.name, f.field_type, f.mode) for f in table.schema]
                text = "\n".join(
                    [table.description or "", repr(sorted(table.labels.items())), repr(schema), *data]
                )
                out[ref] = hashlib.sha256(text.encode()).hexdigest()
    return out


def test_an_environment_on_bigquery_writes_only_its_datasets_and_reads_what_is_current(world: World):
    before, before_datasets = production(world), datasets(world)

    built = world.derive("build", "--env", "alice", DAILY, "--last", "2")
    assert built.returncode == 0, built.stderr
    assert datasets(world) - before_datasets == {"alice__analytics"}
    query = "SELECT day, region, payers, payments, revenue FROM `{}` WHERE day >= DATE '{}'"
    copy = rows(world, query.format(f"alice__{DAILY}", days_ago(2)))
    assert copy and copy == rows(
        world, query.format(DAILY, days_ago(2))
    )  # production's upstreams, read as they are
    with client_of(world) as client:
        table = client.get_table(f"alice__{DAILY}")
        assert table.time_partitioning.field == "day" and table.clustering_fields == ["region"]
    same = world.derive("diff", DAILY, "--env", "alice")
    assert same.returncode == 0, same.stdout + same.stderr  # identical on the windows alice built

    # a changed upstream: built into the environment first, and read from there
    world.edit(
        "core/user_detail.yaml",
        "    p.region,\n",
        "    CASE WHEN a.user_id % 2 = 0 THEN 'eu' ELSE p.region END AS region,\n",
    )
    rebuilt = world.derive("build", "--env", "bob", DAILY, "--last", "2")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "bob__core.user_detail  [changed]" in rebuilt.stdout
    assert datasets(world) - before_datasets == {"alice__analytics", "bob__analytics", "bob__core"}
    assert rows(
        world, "SELECT count(*) FROM bob__core.user_detail WHERE MOD(user_id, 2) = 0 AND region <> 'eu'"
    ) == [(0,)]
    total = "SELECT day, sum(revenue) FROM `{}` WHERE day >= DATE '{}' GROUP BY day"
    assert rows(world, total.format(f"bob__{DAILY}", days_ago(2))) == rows(
        world, total.format(DAILY, days_ago(2))
    )
    assert rows(world, query.format(f"bob__{DAILY}", days_ago(2))) != copy

    planned = world.derive("plan", "--env", "bob")
    assert planned.returncode == 0, planned.stderr
    assert "== core.user_detail [changed] -> bob__core.user_detail" in planned.stdout
    assert f"== {DAILY} [built] -> bob__{DAILY}" in planned.stdout
    assert (
        "-- reads: core.user_detail (copy bob__core.user_detail), payments.payments (production)"
        in planned.stdout
    )
    different = world.derive("diff", DAILY, "--env", "bob")
    assert different.returncode == 1, different.stdout + different.stderr

    assert production(world) == before  # not a row, schema, label or marker of production changed
