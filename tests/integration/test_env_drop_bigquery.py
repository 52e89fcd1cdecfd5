"""`derive env drop`'s cleanup on the BigQuery emulator (real client, real datasets): an environment's Derive
tables and emptied datasets go; a table Derive did not create keeps its dataset; production and another
environment are untouched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pyarrow as pa
import pytest
from google.cloud import bigquery

from derive_assets.env_cleanup import drop_environment, environment, environments
from resources.bigquery_warehouse import BigQueryWarehouse
from resources.schema import ColumnDef
from resources.warehouse import LoadRequest, TargetTable

pytestmark = pytest.mark.integration

COLUMNS = (ColumnDef("id", "INT64", not_null=True), ColumnDef("note", "STRING"))


@pytest.fixture
def names(bigquery_client: bigquery.Client) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    env, other = f"it{tag}", f"it{tag}b"
    found = {
        "env": env,
        "other": other,
        "production": f"prod{tag}",
        "analytics": f"{env}__analytics",
        "sales": f"{env}__sales",
        "other_analytics": f"{other}__analytics",
    }
    try:
        yield found
    finally:
        for key in ("production", "analytics", "sales", "other_analytics"):
            bigquery_client.delete_dataset(found[key], delete_contents=True, not_found_ok=True)


def load(warehouse: BigQueryWarehouse, ref: str, rows: int) -> None:
    dataset, name = ref.split(".")
    batch = pa.record_batch({"id": pa.array(range(rows), pa.int64()), "note": pa.array(["x"] * rows)})
    warehouse.load(LoadRequest(TargetTable(dataset, name, COLUMNS), ("id",), "id"), [batch])


def test_drop_removes_only_the_environments_derive_tables_and_emptied_datasets(
    bigquery_emulator: tuple[str, str], bigquery_client: bigquery.Client, names: dict[str, str]
) -> None:
    endpoint, project = bigquery_emulator
    warehouse = BigQueryWarehouse(project=project, api_endpoint=endpoint)
    load(warehouse, f"{names['production']}.t", 3)
    load(warehouse, f"{names['analytics']}.t", 2)
    load(warehouse, f"{names['sales']}.t", 1)
    load(warehouse, f"{names['other_analytics']}.t", 4)
    handmade = f"{names['analytics']}.handmade"
    bigquery_client.create_table(
        bigquery.Table(f"{project}.{handmade}", schema=[bigquery.SchemaField("x", "INT64")])
    )

    listed = {e.name: e for e in environments(warehouse, None, count_rows=False)}  # the emulator is shared
    assert listed[names["env"]].tables == (f"{names['analytics']}.t", f"{names['sales']}.t")
    assert listed[names["env"]].datasets == (names["analytics"], names["sales"])
    assert names["other"] in listed and names["production"] not in listed
    assert environment(warehouse, None, names["env"], count_rows=True).rows == 3

    result = drop_environment(warehouse, None, environment(warehouse, None, names["env"]), say=lambda _: None)

    assert result.dropped_tables == [f"{names['analytics']}.t", f"{names['sales']}.t"]
    assert result.dropped_datasets == [names["sales"]]
    assert result.kept == {names["analytics"]: (handmade,)}
    datasets = set(warehouse.datasets())
    assert names["sales"] not in datasets and names["analytics"] in datasets
    assert warehouse.table_exists(handmade) and not warehouse.table_exists(f"{names['analytics']}.t")
    assert warehouse.row_count(f"{names['production']}.t") == 3
    assert warehouse.row_count(f"{names['other_analytics']}.t") == 4
