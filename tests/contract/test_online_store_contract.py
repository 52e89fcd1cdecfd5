"""The `OnlineStore` contract, once for every online store: tables created and checked, every column type written
and read back by key, upserts, clustering order and key prefixes, counts, TTL expiry (and rows whose TTL has not
passed staying), and rows with a NULL key refused by name."""

from __future__ import annotations

import datetime as dt
import math
import time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from contract_engines import OnlineEngine

from resources.online_store import OnlineStoreError, OnlineTable, OnlineWriteError
from resources.schema import ColumnDef

TYPES = {
    "id": "INT64",
    "ts": "TIMESTAMP",
    "wall": "DATETIME",
    "day": "DATE",
    "amount": "NUMERIC",
    "ratio": "FLOAT64",
    "flag": "BOOL",
    "doc": "JSON",
    "blob": "BYTES",
    "name": "STRING",
}
ARROW = pa.schema(
    [
        ("id", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("wall", pa.timestamp("us")),
        ("day", pa.date32()),
        ("amount", pa.decimal128(38, 9)),
        ("ratio", pa.float64()),
        ("flag", pa.bool_()),
        ("doc", pa.string()),
        ("blob", pa.binary()),
        ("name", pa.string()),
    ]
)
# Every type, with values that tell the columns apart (a value in the wrong column cannot pass as another's),
# timestamps on whole milliseconds (the coarsest store precision: Cassandra), a pre-1970 one, NaN and NULLs.
ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "ts": dt.datetime(2026, 11, 30, 9, 0, 0, 123000, tzinfo=dt.UTC),
        "wall": dt.datetime(2026, 11, 30, 9, 0, 0, 999000),
        "day": dt.date(2026, 11, 30),
        "amount": Decimal("12.340000000"),
        "ratio": 0.1,
        "flag": True,
        "doc": '{"b": [1, 2.5], "a": "é"}',
        "blob": b"\x00\xffbytes",
        "name": "Zoë 🚀",
    },
    {
        "id": 2,
        "ts": dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC),
        "wall": dt.datetime(1900, 1, 1, 0, 0, 0, 1000),
        "day": dt.date(1900, 1, 1),
        "amount": Decimal("-99999999999999999999999999999.000000001"),
        "ratio": math.nan,
        "flag": False,
        "doc": "[]",
        "blob": b"",
        "name": "",
    },
    {
        "id": 3,
        "ts": None,
        "wall": None,
        "day": None,
        "amount": None,
        "ratio": math.inf,
        "flag": None,
        "doc": None,
        "blob": None,
        "name": None,
    },
]

EVENT_ARROW = pa.schema([("user_id", pa.int64()), ("seq", pa.int64()), ("payload", pa.string())])


def typed(engine: OnlineEngine, ttl: int | None = None) -> OnlineTable:
    return OnlineTable(
        keyspace=engine.keyspace,
        name="typed",
        partition_key=("id",),
        clustering=(),
        columns=tuple(ColumnDef(n, t) for n, t in TYPES.items()),  # type: ignore[arg-type]
        ttl_seconds=ttl,
    )


def events(engine: OnlineEngine, ttl: int | None = None) -> OnlineTable:
    return OnlineTable(
        keyspace=engine.keyspace,
        name="events",
        partition_key=("user_id",),
        clustering=("seq",),
        columns=(ColumnDef("user_id", "INT64"), ColumnDef("seq", "INT64"), ColumnDef("payload", "STRING")),
        ttl_seconds=ttl,
    )


def event_batch(*rows: tuple[int | None, int, str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [dict(zip(EVENT_ARROW.names, r, strict=True)) for r in rows], EVENT_ARROW
    )


def same(a: Any, b: Any) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


# ----------------------------------------------------------------------------------------------- tables


def test_ensure_table_creates_an_empty_table_and_may_run_again(online_engine):
    store, table = online_engine.store, events(online_engine)
    store.ensure_table(table)
    store.ensure_table(table)
    assert store.count(table) == 0
    assert store.lookup(table, [1]) == []


def test_an_existing_table_of_another_layout_is_refused_not_altered(online_engine):
    store, table = online_engine.store, events(online_engine)
    store.ensure_table(table)
    store.write(table, [event_batch((1, 1, "a"))])
    other = OnlineTable(
        table.keyspace,
        table.name,
        table.partition_key,
        table.clustering,
        (*table.columns, ColumnDef("extra", "STRING")),
    )
    with pytest.raises(OnlineStoreError, match=rf"^{table.ref}: the existing .*table"):
        store.ensure_table(other)
    assert store.lookup(table, [1]) == [{"user_id": 1, "seq": 1, "payload": "a"}]


# ----------------------------------------------------------------------------------------------- values


def test_every_type_is_read_back_by_key_as_written(online_engine):
    store, table = online_engine.store, typed(online_engine)
    store.ensure_table(table)
    result = store.write(
        table, [pa.RecordBatch.from_pylist(ROWS[:2], ARROW), pa.RecordBatch.from_pylist(ROWS[2:], ARROW)]
    )
    assert (result.rows_written, result.batches) == (3, 2)
    for expected in ROWS:
        [row] = store.lookup(table, [expected["id"]])
        assert list(row) == list(TYPES)
        differing = {c: (row[c], v) for c, v in expected.items() if not same(row[c], v)}
        assert differing == {}, f"id {expected['id']}"


def test_timestamps_keep_the_stores_precision(online_engine):
    """Finer values are truncated to the store's `timestamp_precision` (rounding down, also before 1970)."""
    store, table = online_engine.store, typed(online_engine)
    store.ensure_table(table)
    fine = {
        **ROWS[2],
        "ts": dt.datetime(1969, 12, 31, 23, 59, 59, 999501, tzinfo=dt.UTC),
        "wall": dt.datetime(2026, 1, 1, 0, 0, 0, 1),
    }
    store.write(table, [pa.RecordBatch.from_pylist([fine], ARROW)])
    [row] = store.lookup(table, [3])
    step = store.timestamp_precision
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert row["ts"] == epoch + (fine["ts"] - epoch) // step * step
    assert (
        row["wall"].replace(tzinfo=None)
        == dt.datetime(2026, 1, 1) + (fine["wall"] - dt.datetime(2026, 1, 1)) // step * step
    )


def test_writes_are_upserts_by_primary_key(online_engine):
    store, table = online_engine.store, events(online_engine)
    store.ensure_table(table)
    store.write(table, [event_batch((1, 1, "a"), (1, 2, "b"), (2, 1, "c"))])
    again = store.write(table, [event_batch((1, 2, "B"), (2, 1, "c"))])
    assert again.rows_written == 2
    assert store.count(table) == 3
    assert store.lookup(table, [1, 2]) == [{"user_id": 1, "seq": 2, "payload": "B"}]
    assert store.lookup(table, [2]) == [{"user_id": 2, "seq": 1, "payload": "c"}]


def test_a_lookup_by_partition_key_returns_the_partition_in_clustering_order(online_engine):
    store, table = online_engine.store, events(online_engine)
    store.ensure_table(table)
    store.write(table, [event_batch((7, 3, "c"), (7, 1, "a"), (8, 1, "x")), event_batch((7, 2, "b"))])
    assert [r["payload"] for r in store.lookup(table, [7])] == ["a", "b", "c"]
    assert store.lookup(table, [7, 2]) == [{"user_id": 7, "seq": 2, "payload": "b"}]
    assert store.lookup(table, [9]) == []
    with pytest.raises(OnlineStoreError, match=r"a lookup needs the partition key \['user_id'\]"):
        store.lookup(table, [])
    with pytest.raises(OnlineStoreError, match=r"got 3 value\(s\)"):
        store.lookup(table, [7, 1, 1])


def test_count_counts_live_rows(online_engine):
    store, table = online_engine.store, events(online_engine)
    store.ensure_table(table)
    rows = [(u, s, f"{u}-{s}") for u in range(12) for s in range(5)]
    result = store.write(table, [event_batch(*rows[:25]), event_batch(*rows[25:])])
    assert (result.rows_written, result.batches) == (60, 2)
    assert store.count(table) == 60


# ----------------------------------------------------------------------------------------------- TTL


def test_rows_expire_after_their_ttl(online_engine):
    store, table = online_engine.store, events(online_engine, ttl=1)
    store.ensure_table(table)
    written = time.monotonic()
    store.write(table, [event_batch((1, 1, "a"), (2, 1, "b"))])
    while store.count(table) or store.lookup(table, [1]):
        assert time.monotonic() - written < 30, "rows written with ttl_seconds=1 did not expire within 30 s"
        time.sleep(0.25)
    assert store.lookup(table, [2]) == []


def test_rows_whose_ttl_has_not_passed_survive_later_writes(online_engine):
    """A store that purges expired rows on write must purge only those."""
    store, table = online_engine.store, events(online_engine, ttl=3600)
    store.ensure_table(table)
    store.write(table, [event_batch((1, 1, "a"), (2, 1, "b"))])
    store.write(table, [event_batch((3, 1, "c"))])
    store.write(table, [event_batch((4, 1, "d"))])
    assert store.count(table) == 4
    assert [r["payload"] for u in (1, 2, 3, 4) for r in store.lookup(table, [u])] == ["a", "b", "c", "d"]


def test_rows_without_a_ttl_never_expire_and_survive_writes_with_one(online_engine):
    store = online_engine.store
    store.ensure_table(events(online_engine))
    store.write(events(online_engine), [event_batch((1, 1, "kept"))])
    store.write(events(online_engine, ttl=3600), [event_batch((2, 1, "b"))])
    assert store.count(events(online_engine)) == 2
    assert store.lookup(events(online_engine), [1]) == [{"user_id": 1, "seq": 1, "payload": "kept"}]


# ----------------------------------------------------------------------------------------------- refusals


def test_a_row_with_a_null_key_is_refused_naming_it(online_engine):
    store, table = online_engine.store, events(online_engine)
    store.ensure_table(table)
    store.write(table, [event_batch((1, 1, "a"))])
    with pytest.raises(
        OnlineWriteError,
        match=r"refused 1 row\(s\) of a batch, first the row with key \{'user_id': None, 'seq': 5\}",
    ) as caught:
        store.write(table, [event_batch((None, 5, "x"))])
    assert caught.value.transient is False
    assert caught.value.rows_written == 0
    assert "is not retried" in str(caught.value)
    assert store.count(table) == 1
