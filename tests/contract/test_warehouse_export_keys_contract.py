"""The export key-set contract (`resources/export_keys.py`, run by `factory/export_deletes.py`), once for every
warehouse: the keys an export put online are kept in `_derive_exports.<export>__keys`; an anti-join in the
warehouse finds exactly the keys the table no longer holds (of the run's window, for a windowed export); marking
them deleted makes them tombstones (`_online = false`) that a later export finds no more, and a key that comes back
is online again. The scratch tables are dropped after each step.

The DuckDB half also runs end to end in tests/embedded/test_export_deletes_sqlite.py; this suite is what runs the
same statements on the BigQuery emulator (issue 14 left them untested there). Each test uses an export name of
its own: `_derive_exports` is one dataset shared by every export (and every test on the emulator).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from contract_engines import WarehouseEngine, fresh_name

from derive_assets.factory.export_deletes import find_gone, mark_deleted, record_written
from resources.export_keys import KEYS_DATASET, ONLINE, KeyRecorder, KeySet
from resources.reads import TableSlice, WindowBound
from resources.schema import ColumnDef
from resources.warehouse import TimeWindow

UTC = dt.UTC
DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 2, tzinfo=UTC))
DAY2 = TimeWindow(dt.datetime(2026, 1, 2, tzinfo=UTC), dt.datetime(2026, 1, 3, tzinfo=UTC))
D1, D2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)

USER_ID = ColumnDef("user_id", "INT64")
USERS = [("user_id", "INT64"), ("name", "STRING")]
DAY, REGION = ColumnDef("day", "DATE"), ColumnDef("region", "STRING")
DAILY = [("day", "DATE"), ("region", "STRING"), ("amount", "FLOAT64")]


@pytest.fixture
def export(warehouse_engine: WarehouseEngine) -> Iterator[str]:
    """An export name of this test; its key set and scratch tables are dropped afterwards."""
    name = fresh_name("x")
    yield name
    warehouse = warehouse_engine.warehouse
    for ref in warehouse.managed_tables([KEYS_DATASET]):
        if ref.split(".")[1].startswith(f"{name}__"):
            with contextlib.suppress(Exception):  # cleanup only: a table already gone is fine
                warehouse.drop_table(ref)


def export_rows(engine: WarehouseEngine, keys: KeySet, columns: tuple[str, ...]) -> None:
    """What an export run does with its rows (the run's window of them): hand them to the store (here: nowhere)
    while recording their keys, then merge the keys into the key set."""
    window = None
    if keys.window is not None and keys.window_column is not None:
        window = WindowBound(keys.window_column.name, keys.window_column.type, keys.window)
    rows = engine.warehouse.iter_slice(TableSlice(keys.table_ref, columns, window), 2)
    recorder = KeyRecorder(keys.names)
    try:
        for _ in recorder.tee(rows):
            pass
        record_written(engine.warehouse, keys, recorder)
    finally:
        recorder.close()


def key_set(engine: WarehouseEngine, keys: KeySet) -> list[tuple[Any, ...]]:
    return engine.rows(keys.keys.ref, [*keys.names, ONLINE])


def gone_keys(engine: WarehouseEngine, keys: KeySet) -> list[tuple[Any, ...]] | None:
    """The keys `find_gone` writes to its scratch table (None: it found none and wrote none), sorted."""
    gone = find_gone(engine.warehouse, keys)
    if gone is None:
        return None
    return sorted(tuple(r.values()) for r in engine.warehouse.read_slice(gone).to_pylist())


def scratch_left(engine: WarehouseEngine, keys: KeySet) -> list[str]:
    return [
        ref
        for ref in (keys.scratch("written").ref, keys.scratch("gone").ref)
        if engine.warehouse.table_exists(ref)
    ]


def test_the_key_set_finds_exactly_the_keys_that_left_the_table(
    warehouse_engine: WarehouseEngine, export: str
) -> None:
    engine = warehouse_engine
    users = engine.create_source("users", USERS, [{"user_id": i, "name": f"u{i}"} for i in range(1, 6)])
    keys = KeySet(export=export, table_ref=users, key_columns=(USER_ID,))

    export_rows(engine, keys, ("user_id", "name"))
    assert key_set(engine, keys) == [(i, True) for i in range(1, 6)]
    assert gone_keys(engine, keys) is None  # nothing left the table
    assert scratch_left(engine, keys) == []

    engine.execute(f"DELETE FROM {users} WHERE user_id IN (2, 4)")  # a reconciled hard delete
    gone = find_gone(engine.warehouse, keys)
    assert gone is not None
    assert sorted(r["user_id"] for r in engine.warehouse.read_slice(gone).to_pylist()) == [2, 4]
    mark_deleted(engine.warehouse, keys, gone)
    assert key_set(engine, keys) == [(1, True), (2, False), (3, True), (4, False), (5, True)]
    assert gone_keys(engine, keys) is None  # tombstones are not deleted again
    assert scratch_left(engine, keys) == []

    engine.execute(f"INSERT INTO {users} (user_id, name) VALUES (2, 'back')")  # the key comes back
    export_rows(engine, keys, ("user_id", "name"))
    assert key_set(engine, keys) == [(1, True), (2, True), (3, True), (4, False), (5, True)]


def test_a_windowed_key_set_finds_and_marks_only_its_windows_keys(
    warehouse_engine: WarehouseEngine, export: str
) -> None:
    engine = warehouse_engine
    rows = [{"day": d, "region": r, "amount": 1.0} for d in (D1, D2) for r in ("eu", "na")]
    daily = engine.create_source("daily", DAILY, rows)

    def window_keys(window: TimeWindow) -> KeySet:
        return KeySet(export, daily, (DAY, REGION), window_column=DAY, window=window)

    for window in (DAY1, DAY2):
        export_rows(engine, window_keys(window), ("day", "region", "amount"))
    everything = [(d, r, True) for d in (D1, D2) for r in ("eu", "na")]
    assert key_set(engine, window_keys(DAY1)) == everything
    if engine.name == "bigquery":  # windows touch disjoint partitions of the key set
        assert engine.partitioning(window_keys(DAY1).keys.ref) == "DAY:day"

    engine.execute(f"DELETE FROM {daily} WHERE region = 'na'")  # both days lose 'na'
    assert gone_keys(engine, window_keys(DAY2)) == [(D2, "na")]  # its own window's key only
    day1 = window_keys(DAY1)
    gone = find_gone(engine.warehouse, day1)
    assert gone is not None
    mark_deleted(engine.warehouse, day1, gone)
    assert key_set(engine, day1) == [(D1, "eu", True), (D1, "na", False), (D2, "eu", True), (D2, "na", True)]
    assert gone_keys(engine, day1) is None
    assert gone_keys(engine, window_keys(DAY2)) == [(D2, "na")]  # day 2 still has it to delete
    assert scratch_left(engine, day1) == [] and scratch_left(engine, window_keys(DAY2)) == [
        window_keys(DAY2).scratch("gone").ref
    ]  # `gone_keys` leaves day 2's scratch table, as a failed delete would; the next run replaces it


def test_a_cursor_export_starts_its_key_set_from_every_key_of_the_table(
    warehouse_engine: WarehouseEngine, export: str
) -> None:
    engine = warehouse_engine
    users = engine.create_source("users", USERS, [{"user_id": i, "name": f"u{i}"} for i in (1, 2, 3)])
    keys = KeySet(export=export, table_ref=users, key_columns=(USER_ID,), cursor=True)

    record_written(engine.warehouse, keys, None)  # no row changed: the first run with deletes still seeds
    assert key_set(engine, keys) == [(1, True), (2, True), (3, True)]
    engine.execute(f"DELETE FROM {users} WHERE user_id = 3")
    assert gone_keys(engine, keys) == [(3,)]
