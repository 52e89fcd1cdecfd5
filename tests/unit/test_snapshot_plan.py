"""Chunk planning of a snapshot (`replication/snapshot.py`) and its queries (`extract.build_chunk_query`): no
server; the reads themselves are tested on PostgreSQL and MariaDB in tests/integration/test_snapshot.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from derive_assets import lifecycle
from derive_assets import metadata_keys as K
from derive_assets.replication import snapshot
from derive_assets.replication.extract import (
    ChunkBounds,
    ChunkSeen,
    ExtractPlan,
    build_chunk_query,
    max_cursor_query,
    nth_key_query,
)
from derive_assets.specs.models import SnapshotSpec, SourceSpec, SourceTable
from resources.schema import ColumnDef
from resources.warehouse import TargetTable


def table(key: list[str] | None = None, **fields: Any) -> SourceTable:
    columns = [
        {"name": "id", "type": "INT64"},
        {"name": "region", "type": "STRING"},
        {"name": "amount", "type": "NUMERIC"},
        {"name": "updated_at", "type": "TIMESTAMP"},
    ]
    return SourceTable.model_validate(
        {"name": "orders", "primary_key": key or ["id"], "cursor": "updated_at", "columns": columns, **fields}
    )


def source(kind: str = "postgres", t: SourceTable | None = None) -> SourceSpec:
    return SourceSpec.model_validate(
        {
            "kind": "source",
            "name": "shop",
            "type": kind,
            "connection_env": "SHOP_URL",
            "owner": "team:shop",
            "tables": [(t or table()).model_dump()],
        }
    )


def plan(kind: str = "postgres", t: SourceTable | None = None) -> ExtractPlan:
    t = t or table()
    return ExtractPlan(source(kind, t), t, None)


# ------------------------------------------------------------------------------------------------ spec


def test_the_snapshot_defaults_keep_every_existing_spec_as_it_was() -> None:
    assert table().snapshot == SnapshotSpec(chunk_rows=1_000_000, parallel=1)
    assert "snapshot" not in table().model_dump(exclude_defaults=True)  # the code version does not change


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"chunk_rows": 999}, r"snapshot\.chunk_rows\n  Input should be greater than or equal to 1000"),
        ({"parallel": 0}, r"snapshot\.parallel\n  Input should be greater than or equal to 1"),
        ({"rows": 5}, r"snapshot\.rows\n  Extra inputs are not permitted"),
    ],
)
def test_a_bad_snapshot_option_names_its_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        table(snapshot=fields)


# ------------------------------------------------------------------------------------------------ planning


def test_which_tables_are_chunked() -> None:
    assert snapshot.unchunkable(source("postgres"), table()) is None
    assert snapshot.unchunkable(source("mysql"), table(["region", "id"])) is None
    assert snapshot.unchunkable(source("sqlite"), table()) == "sqlite sources are read in one pass"
    assert snapshot.unchunkable(source("mongodb"), table()) == "mongodb sources are read in one pass"
    assert snapshot.unchunkable(source("postgres"), table(["amount"])) == (
        "primary key column(s) ['amount'] are not INT64, STRING, DATE, DATETIME or TIMESTAMP"
    )


def test_a_first_load_is_chunked_only_beyond_chunk_rows() -> None:
    t = table(snapshot={"chunk_rows": 1000})
    assert not snapshot.wants_chunks(t, None)
    assert not snapshot.wants_chunks(t, 1000)
    assert snapshot.wants_chunks(t, 1001)


def test_only_a_single_int64_key_is_read_in_parallel_ranges() -> None:
    assert snapshot.parallel_key(table()) == "id"
    assert snapshot.parallel_key(table(["region"])) is None
    assert snapshot.parallel_key(table(["id", "region"])) is None


def test_keyset_chunks_start_at_the_last_key_and_end_short() -> None:
    assert snapshot.keyset_bounds(None, 1000) == ChunkBounds(start=None, limit=1000)
    assert snapshot.keyset_bounds((1999,), 1000) == ChunkBounds(start=(1999,), limit=1000)
    assert not snapshot.keyset_finished(1000, 1000)
    assert snapshot.keyset_finished(999, 1000)
    assert snapshot.keyset_finished(0, 1000)


def test_the_staging_table_is_the_targets_twin() -> None:
    target = TargetTable("shop", "orders", (ColumnDef("id", "INT64"),), unique_key=("id",), code_version="v1")
    staging = snapshot.staging_target(target)
    assert staging.ref == "shop.orders__snapshot"
    assert (staging.columns, staging.unique_key, staging.code_version) == (target.columns, ("id",), "v1")
    assert lifecycle.SNAPSHOT_SUFFIX == snapshot.SNAPSHOT_SUFFIX  # prune keeps a staging table to resume from


# ------------------------------------------------------------------------------------------------ checkpoints


def checkpoint(**fields: Any) -> snapshot.Checkpoint:
    base: dict[str, Any] = {
        "snapshot_id": "abc",
        "code_version": "v1",
        "chunk_rows": 1000,
        "watermark": "2026-01-01T00:00:00+00:00",
        "fence": "v:3/15",
        "floor_safe": True,
    }
    return snapshot.Checkpoint(**{**base, **fields})


@pytest.mark.parametrize(
    "key",
    [
        (1999,),
        ("eu-west", 12),
        (dt.datetime(2026, 1, 1, 3, 4, 5, 6, tzinfo=dt.UTC),),
        ("it's Zürich",),
    ],
)
def test_a_checkpoint_reads_back_what_it_recorded(key: tuple[Any, ...]) -> None:
    if isinstance(key[0], dt.datetime):
        t = table(["updated_at"])
    elif len(key) == 2:
        t = table(["region", "id"])
    else:
        t = table(["region"] if isinstance(key[0], str) else ["id"])
    recorded = checkpoint(chunks=2, rows=1999, last_key=key)
    assert snapshot.Checkpoint.from_metadata(recorded.as_metadata(), t) == recorded


def test_an_observation_that_is_no_checkpoint_is_ignored() -> None:
    assert snapshot.Checkpoint.from_metadata({K.ROWS_READ: 5}, table()) is None
    broken = {**checkpoint().as_metadata(), K.SNAPSHOT_LAST_KEY: '["not a number"]'}
    assert snapshot.Checkpoint.from_metadata(broken, table()) is None
    wrong_arity = {**checkpoint().as_metadata(), K.SNAPSHOT_LAST_KEY: '["1", "2"]'}
    assert snapshot.Checkpoint.from_metadata(wrong_arity, table()) is None


def test_a_checkpoint_counts_chunks_and_rows() -> None:
    after = checkpoint().after_chunk(1000, (1000,)).after_chunk(999, (1999,))
    assert (after.chunks, after.rows, after.last_key) == (2, 1999, (1999,))


def test_a_snapshot_resumes_only_with_the_same_spec_and_its_staging_table() -> None:
    cp = checkpoint(chunks=2, last_key=(1999,))
    assert snapshot.resumable(cp, "v1", 1000, staging_exists=True)
    assert not snapshot.resumable(cp, "v2", 1000, staging_exists=True)  # the spec changed
    assert not snapshot.resumable(cp, "v1", 2000, staging_exists=True)  # chunk_rows changed
    assert not snapshot.resumable(cp, "v1", 1000, staging_exists=False)  # the staging table was dropped
    assert not snapshot.resumable(None, "v1", 1000, staging_exists=True)


def test_the_final_watermark_is_the_one_taken_before_the_snapshot() -> None:
    t = table()
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert snapshot.final_state(checkpoint(), t, fenced=True).as_metadata() == {
        K.WATERMARK: at.isoformat(),
        K.READ_FLOOR: at.isoformat(),
        K.PENDING_FLOOR: None,
        K.FENCE: None,
    }
    # The fence did not clear before the first chunk: as after an unchunked first load, no read floor yet.
    unsafe = snapshot.final_state(checkpoint(floor_safe=False), t, fenced=True)
    assert (unsafe.watermark, unsafe.floor, unsafe.pending_floor, unsafe.fence) == (at, None, at, "v:3/15")
    unfenced = snapshot.final_state(checkpoint(floor_safe=False), t, fenced=False)
    assert (unfenced.watermark, unfenced.floor, unfenced.fence) == (at, at, None)


# ------------------------------------------------------------------------------------------------ queries


def test_a_first_keyset_chunk_reads_from_the_first_key() -> None:
    sql = build_chunk_query(plan(), ChunkBounds(limit=1000))
    assert sql == (
        'SELECT "id", "region", CAST("amount" AS TEXT) AS "amount", "updated_at" FROM "orders" '
        'WHERE NOT "orders"."id" IS NULL ORDER BY "orders"."id" LIMIT 1000'
    )


def test_a_composite_key_chunk_compares_rows() -> None:
    t = table(["region", "id"])
    sql = build_chunk_query(plan("mysql", t), ChunkBounds(start=("it's", 7), limit=1000))
    assert (
        "WHERE NOT `orders`.`region` IS NULL AND NOT `orders`.`id` IS NULL "
        "AND (`orders`.`region`, `orders`.`id`) >= ('it''s', 7) ORDER BY `orders`.`region`, `orders`.`id` "
        "LIMIT 1000"
    ) in sql


def test_a_time_key_is_compared_as_a_typed_utc_literal() -> None:
    t = table(["updated_at"])
    at = dt.datetime(2026, 1, 1, 3, tzinfo=dt.UTC)
    pg = build_chunk_query(plan("postgres", t), ChunkBounds(start=(at,), limit=1000))
    assert '"orders"."updated_at" >= \'2026-01-01 03:00:00+00:00\'' in pg
    my = build_chunk_query(plan("mysql", t), ChunkBounds(start=(at,), limit=1000), frozenset({"updated_at"}))
    assert "CONVERT_TZ('2026-01-01 03:00:00.000000', '+00:00', @@session.time_zone)" in my


def test_a_range_chunk_and_the_null_key_read() -> None:
    ranged = build_chunk_query(plan(), ChunkBounds(start=(1000,), through=(1999,)))
    assert '"orders"."id" >= 1000 AND "orders"."id" <= 1999 ORDER BY "orders"."id"' in ranged
    assert "LIMIT" not in ranged
    nulls = build_chunk_query(plan("postgres", table(["region", "id"])), ChunkBounds(null_keys=True))
    assert nulls.endswith('WHERE "orders"."region" IS NULL OR "orders"."id" IS NULL')


def test_the_key_a_chunk_ends_at_and_the_watermark_query() -> None:
    assert nth_key_query(plan(), (1000,), 999) == (
        'SELECT "orders"."id" FROM "orders" WHERE NOT "orders"."id" IS NULL AND "orders"."id" >= 1000 '
        'ORDER BY "orders"."id" LIMIT 1 OFFSET 999'
    )
    limit = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert max_cursor_query(plan(), frozenset(), limit) == (
        'SELECT MAX("updated_at") AS m FROM "orders" WHERE "updated_at" <= \'2026-01-02 00:00:00+00:00\''
    )


def test_a_chunk_remembers_its_last_key_before_the_guard() -> None:
    import pyarrow as pa

    seen = ChunkSeen()
    batches = [pa.record_batch({"id": [1, 2]}), pa.record_batch({"id": pa.array([], pa.int64())})]
    assert [b.num_rows for b in seen.tap(iter(batches), ["id"])] == [2, 0]
    assert (seen.rows, seen.last_key) == (2, (2,))
