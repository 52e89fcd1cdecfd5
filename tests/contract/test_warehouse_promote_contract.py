"""`Warehouse.promote` (a chunked first load's last step, `replication/snapshot.py`) on every engine: the staging
table takes the target's place, missing or not, and is gone afterwards; the target keeps the spec's layout and
Derive's marker."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pyarrow as pa
from contract_engines import WarehouseEngine

from resources.schema import ColumnDef
from resources.warehouse import LoadRequest, TargetTable

COLUMNS = (ColumnDef("id", "INT64", not_null=True), ColumnDef("note", "STRING"), ColumnDef("at", "TIMESTAMP"))
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def batch(ids: range, note: str) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array(list(ids), pa.int64()),
            "note": pa.array([f"{note} {i}" for i in ids]),
            "at": pa.array([T0 + dt.timedelta(seconds=i) for i in ids], pa.timestamp("us", tz="UTC")),
        }
    )


def targets(engine: WarehouseEngine) -> tuple[TargetTable, TargetTable]:
    target = TargetTable(engine.dataset, "items", COLUMNS, unique_key=("id",), code_version="v1")
    return target, dataclasses.replace(target, name="items__snapshot")


def fill(engine: WarehouseEngine, staging: TargetTable, note: str) -> None:
    """Two chunks merged by key into the staging table (the second re-reads the first one's last key)."""
    request = LoadRequest(staging, ("id",), "at")
    engine.warehouse.load(request, [batch(range(1, 4), note)])
    engine.warehouse.load(request, [batch(range(3, 6), note)])


def test_promote_into_a_missing_target(warehouse_engine: WarehouseEngine) -> None:
    engine = warehouse_engine
    target, staging = targets(engine)
    fill(engine, staging, "new")
    assert engine.warehouse.promote(staging, target) == 0
    assert engine.rows(target.ref, ["id", "note"]) == [(i, f"new {i}") for i in range(1, 6)]
    assert not engine.warehouse.table_exists(staging.ref)
    existing = engine.warehouse.describe(target.ref)
    assert existing is not None and existing.layout is not None and existing.layout.code_version == "v1"


def test_promote_replaces_an_existing_target_and_returns_its_rows(warehouse_engine: WarehouseEngine) -> None:
    engine = warehouse_engine
    target, staging = targets(engine)
    engine.warehouse.load(LoadRequest(target, ("id",), "at"), [batch(range(1, 10), "old")])
    fill(engine, staging, "new")
    assert engine.warehouse.promote(staging, target) == 9
    assert engine.rows(target.ref, ["id", "note"]) == [(i, f"new {i}") for i in range(1, 6)]
    assert not engine.warehouse.table_exists(staging.ref)
