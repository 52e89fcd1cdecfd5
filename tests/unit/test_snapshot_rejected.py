"""A snapshot adds each chunk's rejected rows once (`snapshot.add_rejected`): no server. The chunk boundary itself,
read twice from PostgreSQL and MariaDB, is tests/integration/test_snapshot_invalid_boundary.py."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pyarrow as pa
import pytest

from derive_assets.replication.row_guard import RowGuard
from derive_assets.replication.snapshot import add_rejected
from derive_assets.specs.models import SourceSpec, SourceTable

NULL_CURSOR = "a NULL cursor 'updated_at'"


def guard(on_invalid: str = "quarantine") -> RowGuard:
    columns = [{"name": "id", "type": "INT64"}, {"name": "updated_at", "type": "TIMESTAMP"}]
    table = {
        "name": "t",
        "primary_key": ["id"],
        "cursor": "updated_at",
        "columns": columns,
        "on_invalid": on_invalid,
    }
    spec = {"kind": "source", "name": "s", "type": "postgres", "connection_env": "S_URL", "owner": "team:s"}
    source = SourceSpec.model_validate({**spec, "tables": [table]})
    return RowGuard(source, SourceTable.model_validate(table))


def chunk(g: RowGuard, ids: list[int | None], cursors: list[dt.datetime | None]) -> None:
    """One chunk through a fresh guard state, as `Snapshot._chunk` runs it."""
    g.counts.clear()
    g.quarantined.clear()
    list(g.guarded([pa.record_batch({"id": pa.array(ids, pa.int64()), "updated_at": pa.array(cursors)})]))


T = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_a_row_rejected_by_two_chunks_counts_once() -> None:
    g, invalid, quarantined, rejected = guard(), Counter[str](), [], set[str]()
    chunk(g, [1, 2, 3], [T, T, None])  # 3 ends the chunk
    add_rejected(g, invalid, quarantined, rejected)
    chunk(g, [3, 4, 5], [None, None, T])  # 3 again (the boundary), 4 new
    add_rejected(g, invalid, quarantined, rejected)
    assert invalid == Counter({NULL_CURSOR: 2})
    assert [q["_id"] for q in quarantined] == ['{"id": 3}', '{"id": 4}']


def test_rows_without_a_key_are_each_counted() -> None:
    g, invalid, quarantined, rejected = guard(), Counter[str](), [], set[str]()
    chunk(g, [None, None], [T, T])  # the same document twice: the same `row:<hash>` id
    add_rejected(g, invalid, quarantined, rejected)
    assert sum(invalid.values()) == 2 and len(quarantined) == 2
    assert quarantined[0]["_id"] == quarantined[1]["_id"] and quarantined[0]["_id"].startswith("row:")


def test_on_invalid_fail_raises_in_the_chunk_and_adds_nothing() -> None:
    g, invalid, quarantined, rejected = guard("fail"), Counter[str](), [], set[str]()
    chunk(g, [1], [T])
    add_rejected(g, invalid, quarantined, rejected)
    assert not invalid and not quarantined
    with pytest.raises(ValueError, match="1 invalid rows"):
        chunk(g, [2], [None])
