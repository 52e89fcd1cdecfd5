"""Exports that delete: the rows that left an exported table leave the online store at the next export.

Each export keeps in the warehouse the keys it has put online, `_derive_exports.<export>__keys`: the online
primary key, the window column for a windowed export, and `_online` (false once the key was deleted online). A
run of the export

1. writes its rows online, recording the key of every row it hands to the store in a local Arrow file (keys only,
   so memory stays bounded), and merges those keys into the key set, even when the write failed part-way (a key
   that may be online is never forgotten);
2. computes in the warehouse, by an anti-join, the keys of the key set (of its window, for a windowed export)
   that the table no longer holds: `<export>__gone` (a `replace` table that lost rows, a merge with
   `delete_missing`, a reconciled source table, a plain `DELETE`: the keys simply are not there any more);
3. streams those keys in batches to `OnlineStore.delete`, and only once every one was deleted marks them
   `_online = false`. A failed delete fails the run and leaves the key set as it was: the next export finds the
   same keys gone and deletes them again (deletes are idempotent).

So a row that left the table is served online for at most one export cycle; the TTL stays a second line. A cursor
export writes only changed rows, but step 2 anti-joins its whole key set, so its deletes are found too; its key
set starts from every key of the table (the rows earlier exports wrote) the first time it runs with deletes. A
windowed export learns a window's keys when it exports that window (windows exported before this feature: once
they are exported again). Keys deleted online stay in the key set as `_online = false` tombstones, reset when the
key comes back.

The scratch tables (`__written…`, `__gone…`, one per window) are dropped after the run.
"""

from __future__ import annotations

import contextlib

from resources.export_keys import KEYS_DATASET, KeyRecorder, KeySet
from resources.reads import TableSlice
from resources.warehouse import Warehouse, WarehouseError

__all__ = [
    "KEYS_DATASET",
    "KeyRecorder",
    "KeySet",
    "drop_scratch",
    "find_gone",
    "mark_deleted",
    "record_written",
]


def record_written(warehouse: Warehouse, keys: KeySet, recorder: KeyRecorder | None) -> None:
    """Upsert the recorded keys into the key set as online (the first time, for a cursor export, after every
    key of the table: what earlier exports wrote)."""
    if keys.cursor and not warehouse.table_exists(keys.keys.ref):
        warehouse.write(keys.seed(warehouse.dialect))
    if recorder is None or recorder.rows == 0:
        return
    request = keys.written()
    warehouse.write(request, recorder.batches())
    try:
        exists = warehouse.table_exists(keys.keys.ref)
        warehouse.write(keys.upsert(request.target.ref, True, warehouse.dialect, exists))
    finally:
        drop_scratch(warehouse, request.target.ref)


def find_gone(warehouse: Warehouse, keys: KeySet) -> TableSlice | None:
    """Write the keys the table no longer holds (of this run's window) into a scratch table; None when there
    are none (or no key set yet)."""
    if not warehouse.table_exists(keys.keys.ref):
        return None
    result = warehouse.write(keys.gone(warehouse.dialect, warehouse.types))
    gone = keys.gone_slice()
    if result.rows_read == 0:
        drop_scratch(warehouse, gone.ref)
        return None
    return gone


def mark_deleted(warehouse: Warehouse, keys: KeySet, gone: TableSlice) -> None:
    """After every gone key was deleted online: mark them `_online = false` in the key set, drop the scratch."""
    try:
        warehouse.write(keys.upsert(gone.ref, False, warehouse.dialect, exists=True))
    finally:
        drop_scratch(warehouse, gone.ref)


def drop_scratch(warehouse: Warehouse, ref: str) -> None:
    """Drop a scratch table of this run."""
    # already gone, or never Derive's: the next run replaces it anyway
    with contextlib.suppress(WarehouseError):
        warehouse.drop_table(ref)
