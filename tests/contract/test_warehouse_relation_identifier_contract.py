"""The `Warehouse.relation_identifier` contract, once for every warehouse: the name it gives a table is the
table's real, fully qualified name (a query by that name, through the engine's own client, reads the rows a
load wrote), it is computed without the warehouse (a resource pointed at nothing still answers), and it holds no
credential."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pytest
from contract_engines import WarehouseEngine, fresh_name

from resources.bigquery_warehouse import BigQueryWarehouse
from resources.duckdb_warehouse import DuckDBWarehouse, catalog_name
from resources.schema import ColumnDef
from resources.warehouse import LoadRequest, TargetTable, Warehouse

SECRET = "c2VydmljZS1hY2NvdW50LXNlY3JldA=="
USERS = TargetTable("", "users", (ColumnDef("user_id", "INT64", not_null=True), ColumnDef("name", "STRING")))


def quoted(engine: WarehouseEngine, identifier: str) -> str:
    """The identifier as the engine's SQL names a three-part table (each part quoted)."""
    parts = identifier.split(".")
    assert len(parts) == 3, identifier
    if engine.name == "bigquery":
        return "`" + "`.`".join(parts) + "`"
    return ".".join(f'"{p}"' for p in parts)


def test_the_identifier_names_the_table_a_load_wrote(warehouse_engine: WarehouseEngine) -> None:
    engine = warehouse_engine
    target = dataclasses.replace(USERS, dataset=engine.dataset, name=fresh_name("users"))
    rows = pa.RecordBatch.from_pylist(
        [{"user_id": 1, "name": "a"}, {"user_id": 2, "name": "b"}],
        pa.schema([("user_id", pa.int64()), ("name", pa.string())]),
    )
    warehouse: Warehouse = engine.warehouse
    warehouse.load(LoadRequest(target, ("user_id",), "user_id"), iter([rows]))

    identifier = warehouse.relation_identifier(target.ref)

    assert identifier.endswith(f".{target.ref}") and identifier.count(".") == 2
    assert engine.query(f"SELECT user_id, name FROM {quoted(engine, identifier)} ORDER BY user_id") == [
        (1, "a"),
        (2, "b"),
    ]


def test_the_catalog_part_is_the_engines_own(warehouse_engine: WarehouseEngine) -> None:
    """DuckDB: the name of the attached file as `current_database()` reports it; BigQuery: the project."""
    engine = warehouse_engine
    catalog = engine.warehouse.relation_identifier("d.t").split(".")[0]
    if engine.name == "bigquery":
        assert catalog == engine.client.project  # type: ignore[attr-defined]
    else:
        engine.execute("SELECT 1")  # creates the file, as the warehouse's first connection would
        assert engine.query("SELECT current_database()") == [(catalog,)]


@pytest.mark.parametrize(
    "warehouse",
    [
        pytest.param(lambda tmp: DuckDBWarehouse(path=str(tmp / "absent" / "wh.duckdb")), id="duckdb"),
        pytest.param(
            lambda tmp: BigQueryWarehouse(
                project="acme-data",
                api_endpoint="http://127.0.0.1:9",
                retry_deadline_seconds=0.1,
                gcp_credentials=SECRET,
            ),
            id="bigquery",
        ),
    ],
)
def test_the_identifier_needs_no_connection(warehouse, tmp_path: Path) -> None:
    """Definitions load without servers: a warehouse that could not be reached still names its tables, a DuckDB
    file is not created by asking, and the credentials stay out of the name."""
    resource = warehouse(tmp_path)
    expected = {"duckdb": "wh.analytics.orders", "bigquery": "acme-data.analytics.orders"}
    kind = "duckdb" if isinstance(resource, DuckDBWarehouse) else "bigquery"
    identifier = resource.relation_identifier("analytics.orders")
    assert identifier == expected[kind] and SECRET not in identifier
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    ("path", "catalog"),
    [
        ("wh.duckdb", "wh"),
        ("a.b.duckdb", "a"),
        (".hidden", "hidden"),
        ("noext", "noext"),
        ("with space.db", "with space"),
        ("main.duckdb", "main_db"),
        ("temp.duckdb", "temp_db"),
        ("system.duckdb", "system_db"),
        ("MAIN.db", "MAIN"),
    ],
)
def test_duckdb_catalog_name_is_what_duckdb_attaches_the_file_as(
    tmp_path: Path, path: str, catalog: str
) -> None:
    import duckdb

    file = tmp_path / path
    assert catalog_name(str(file)) == catalog
    with duckdb.connect(str(file)) as con:
        assert con.execute("SELECT current_database()").fetchone() == (catalog,)


def test_duckdb_in_memory_catalog() -> None:
    import duckdb

    with duckdb.connect(":memory:") as con:
        assert (catalog_name(":memory:"),) == con.execute("SELECT current_database()").fetchone()


def test_bigquery_without_a_project_names_the_setting() -> None:
    with pytest.raises(
        ValueError,
        match=r"no project, so the table analytics.orders .* set project= \(DERIVE_BIGQUERY_PROJECT",
    ):
        BigQueryWarehouse().relation_identifier("analytics.orders")
