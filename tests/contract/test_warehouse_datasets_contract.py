"""`Warehouse.datasets` and `Warehouse.drop_dataset` (what `derive env drop` cleans up with) on every engine: the
datasets a load wrote into are listed, a dataset is dropped only once it is empty, and a table Derive did not
create keeps its dataset."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from contract_engines import WarehouseEngine, fresh_name

from resources.duckdb_warehouse import DuckDBWarehouse
from resources.schema import ColumnDef
from resources.warehouse import DatasetNotEmpty, LoadRequest, TargetTable

COLUMNS = (ColumnDef("id", "INT64", not_null=True), ColumnDef("note", "STRING"))


def load(engine: WarehouseEngine, dataset: str, name: str) -> TargetTable:
    target = TargetTable(dataset, name, COLUMNS, unique_key=("id",))
    rows = pa.record_batch({"id": pa.array([1, 2], pa.int64()), "note": pa.array(["a", "b"])})
    engine.warehouse.load(LoadRequest(target, ("id",), "id"), [rows])
    return target


def test_a_dataset_with_a_table_is_listed_and_dropped_only_once_empty(
    warehouse_engine: WarehouseEngine,
) -> None:
    engine = warehouse_engine
    target = load(engine, engine.dataset, "items")
    assert engine.dataset in engine.warehouse.datasets()

    with pytest.raises(DatasetNotEmpty, match=rf"{engine.dataset} still holds 1 table\(s\) \({target.ref}\)"):
        engine.warehouse.drop_dataset(engine.dataset)
    assert engine.warehouse.table_exists(target.ref)

    engine.warehouse.drop_table(target.ref)
    engine.warehouse.drop_dataset(engine.dataset)
    assert engine.dataset not in engine.warehouse.datasets()
    engine.warehouse.drop_dataset(engine.dataset)  # gone already: nothing to do


def test_datasets_are_sorted_and_each_listed_once(warehouse_engine: WarehouseEngine) -> None:
    engine = warehouse_engine
    other = f"{engine.dataset}_b"
    try:
        load(engine, other, "one")
        load(engine, engine.dataset, "one")
        load(engine, engine.dataset, "two")
        mine = [d for d in engine.warehouse.datasets() if d in (engine.dataset, other)]
        assert mine == [engine.dataset, other]
    finally:
        for name in ("one", "two"):
            engine.warehouse.drop_table(f"{engine.dataset}.{name}")
        engine.warehouse.drop_table(f"{other}.one")
        engine.warehouse.drop_dataset(other)


def test_a_table_derive_did_not_create_keeps_its_dataset(warehouse_engine: WarehouseEngine) -> None:
    engine = warehouse_engine
    theirs = engine.create_source(fresh_name("theirs"), [("id", "INT64")], [{"id": 1}])
    with pytest.raises(DatasetNotEmpty, match=theirs):
        engine.warehouse.drop_dataset(engine.dataset)
    assert engine.dataset in engine.warehouse.datasets()
    assert engine.query(f"SELECT id FROM {theirs}") == [(1,)]


def test_a_missing_duckdb_file_has_no_datasets_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "wh.duckdb"
    warehouse = DuckDBWarehouse(path=str(path))
    assert warehouse.datasets() == []
    warehouse.drop_dataset("anything")
    assert not path.exists()
