"""How a BigQuery rebuild swaps its new table in (`resources.bigquery_swap`), against the emulator: which copy jobs
run for an unchanged and for a changed shape, and what a failure at each step leaves. The behaviour both
warehouses share (rows, layout, refusals, kills) is the contract suite's, `tests/contract/test_warehouse_rebuild_contract.py`.

Start the emulator with `make services`, then `eval "$(bash deployments/local/services.sh env)"`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from google.cloud import bigquery

from resources.bigquery_calls import Calls
from resources.bigquery_swap import same_shape
from resources.bigquery_warehouse import BigQueryWarehouse
from resources.schema import ColumnDef
from resources.warehouse import TargetTable, WarehouseError, WriteRequest

COLUMNS = (ColumnDef("day", "DATE", not_null=True), ColumnDef("n", "INT64"))
ROWS = "SELECT DATE '2026-01-01' AS day, 1 AS n UNION ALL SELECT DATE '2026-01-02', 2"


@pytest.fixture
def client(bigquery_client: bigquery.Client) -> bigquery.Client:
    """The emulator client of tests/integration/conftest.py, under this file's shorter name."""
    return bigquery_client


@pytest.fixture
def warehouse(bigquery_emulator: tuple[str, str]) -> BigQueryWarehouse:
    endpoint, project = bigquery_emulator
    return BigQueryWarehouse(project=project, api_endpoint=endpoint)


@pytest.fixture
def dataset(client: bigquery.Client) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    client.create_dataset(name)
    try:
        yield name
    finally:
        client.delete_dataset(name, delete_contents=True, not_found_ok=True)


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every copy job the warehouse runs: (source table, destination table, write disposition)."""
    seen: list[tuple[str, str, str]] = []
    original = Calls.copy_table

    def spy(self: Calls, source: str, destination: str, write_disposition: str) -> None:
        seen.append((source.rsplit(".", 1)[1], destination.rsplit(".", 1)[1], write_disposition))
        original(self, source, destination, write_disposition)

    monkeypatch.setattr(Calls, "copy_table", spy)
    return seen


def daily(dataset: str, **layout: object) -> TargetTable:
    return TargetTable(dataset, "daily", COLUMNS, **({"partition_key": "day", "cluster": ("n",)} | layout))  # type: ignore[arg-type]


def rebuild(dataset: str, **layout: object) -> WriteRequest:
    return WriteRequest(daily(dataset, **layout), ROWS, {}, "replace", rebuild=True)


def test_an_unchanged_shape_is_swapped_by_one_atomic_copy(warehouse, dataset, copies, client):
    warehouse.write(WriteRequest(daily(dataset), ROWS, {}, "replace"))
    warehouse.write(rebuild(dataset))
    assert len(copies) == 1
    source, destination, disposition = copies[0]
    assert (source.startswith("daily__derive_rebuild_"), destination, disposition) == (
        True,
        "daily",
        "WRITE_TRUNCATE",
    )
    assert sorted(t.table_id for t in client.list_tables(dataset)) == ["daily"]


def test_a_changed_layout_goes_through_a_backup_that_is_deleted_afterwards(
    warehouse, dataset, copies, client
):
    warehouse.write(WriteRequest(daily(dataset), ROWS, {}, "replace"))
    warehouse.write(rebuild(dataset, cluster=()))
    assert [(d, w) for _, d, w in copies][1:] == [("daily", "WRITE_EMPTY")]
    backup = copies[0][1]
    assert (copies[0][0], backup.startswith("daily__derive_old_"), copies[0][2]) == (
        "daily",
        True,
        "WRITE_EMPTY",
    )
    table = client.get_table(f"{client.project}.{dataset}.daily")
    assert (table.time_partitioning.field, table.clustering_fields) == ("day", None)
    assert sorted(t.table_id for t in client.list_tables(dataset)) == ["daily"]


def test_same_shape_compares_columns_modes_partitioning_and_clustering(client, dataset):
    def table(
        name: str, mode: str = "REQUIRED", field: str = "day", cluster: list[str] | None = None
    ) -> bigquery.Table:
        t = bigquery.Table(
            f"{client.project}.{dataset}.{name}",
            schema=[bigquery.SchemaField("day", "DATE", mode=mode), bigquery.SchemaField("n", "INTEGER")],
        )
        t.time_partitioning = bigquery.TimePartitioning(field=field)
        t.clustering_fields = cluster
        return t

    base = table("a")
    assert same_shape(base, table("b"))
    assert not same_shape(base, table("b", mode="NULLABLE"))
    assert not same_shape(base, table("b", cluster=["n"]))
    assert not same_shape(base, table("b", field="other"))


def test_a_swap_that_cannot_restore_names_the_backup(warehouse, dataset, client, monkeypatch):
    """Both the copy into place and the copy back fail: the message says where the old rows are."""
    warehouse.write(WriteRequest(daily(dataset), ROWS, {}, "replace"))
    original = Calls.copy_table

    def only_the_backup_copy_works(
        self: Calls, source: str, destination: str, write_disposition: str
    ) -> None:
        if "__derive_old_" in source or "__derive_rebuild_" in source:
            raise bigquery_error()
        original(self, source, destination, write_disposition)

    monkeypatch.setattr(Calls, "copy_table", only_the_backup_copy_works)
    with pytest.raises(
        WarehouseError,
        match=rf"^{dataset}\.daily: the rebuild could not copy .* old rows are in {dataset}\.daily__derive_old_[0-9a-f]{{8}}: copy it to {dataset}\.daily",
    ):
        warehouse.write(rebuild(dataset, cluster=()))
    backups = [t.table_id for t in client.list_tables(dataset) if "__derive_old_" in t.table_id]
    assert len(backups) == 1
    kept = list(client.query(f"SELECT day, n FROM `{dataset}.{backups[0]}` ORDER BY n").result())
    assert [tuple(r.values())[1] for r in kept] == [1, 2]


def bigquery_error() -> Exception:
    from google.api_core.exceptions import InternalServerError

    return InternalServerError("injected copy failure")
