"""Chunked, resumable first loads (`replication/snapshot.py`) from real PostgreSQL and MariaDB servers into DuckDB.

Each test builds its own `shop` source (a table `items` with an INT64 key, a table `pairs` with a composite
STRING + INT64 key) in a fresh database, with `snapshot.chunk_rows: 1000`, so a few thousand rows make several
chunks. A crash is a fault raised from inside the chunk loop (the first read of the third chunk), which fails the
Dagster step exactly as a lost process would leave the event log: the first two chunks committed and checkpointed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
import support
import yaml
from dagster import AssetKey, DagsterInstance

from derive_assets import metadata_keys as K
from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.replication import snapshot
from derive_assets.settings import DeriveSettings

ENV = "DERIVE_IT_SNAPSHOT_SHOP_URL"
SERVERS = {"postgres": "postgres_url", "mysql": "mysql_url"}
ITEMS, PAIRS = AssetKey(["shop", "items"]), AssetKey(["shop", "pairs"])
CREATE = {
    "postgres": [
        "CREATE TABLE items (id bigint PRIMARY KEY, name text, amount numeric(12,2), updated_at timestamp)",
        "CREATE TABLE pairs (region varchar(20), n int, note text, updated_at timestamp, PRIMARY KEY (region, n))",
    ],
    "mysql": [
        "CREATE TABLE items (id bigint PRIMARY KEY, name text, amount decimal(12,2), updated_at DATETIME(6))",
        "CREATE TABLE pairs (region varchar(20), n int, note text, updated_at DATETIME(6), PRIMARY KEY (region, n))",
    ],
}
ITEM_ROWS = 4_500
REGIONS = ("eu-north", "eu-west", "us-east", "Zürich")
PAIRS_PER_REGION = 900
START = dt.datetime(2026, 1, 1)
BEFORE = "2026-01-01T01:15:00.000504+00:00"
"""The newest `items.updated_at` of `fill()` (row 4500): the watermark a snapshot takes before it begins."""


def item(i: int) -> tuple[Any, ...]:
    name = None if i % 97 == 0 else f"item {i} ✓"
    return (i, name, Decimal(i * 137 % 100_000) / 100, START + dt.timedelta(seconds=i, microseconds=i % 999))


class Shop:
    """A spec project replicating `shop` into DuckDB on one Dagster instance; `source` runs SQL at the source."""

    def __init__(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, kind: str, run: Callable[..., Any]
    ) -> None:
        self.tmp_path, self.url, self.kind, self.source = tmp_path, url, kind, run
        monkeypatch.setenv(ENV, url)
        self.instance = DagsterInstance.ephemeral()
        self.settings = self.project("project", chunk_rows=1000)

    def project(self, name: str, **snap: Any) -> DeriveSettings:
        settings = DeriveSettings(
            specs_dir=self.tmp_path / name / "specs", home=self.tmp_path / name / "home"
        )
        (settings.specs_dir / "sources").mkdir(parents=True, exist_ok=True)
        columns = [
            {"name": "id", "type": "INT64"},
            {"name": "name", "type": "STRING"},
            {"name": "amount", "type": "NUMERIC"},
            {"name": "updated_at", "type": "TIMESTAMP"},
        ]
        pair_columns = [
            {"name": "region", "type": "STRING"},
            {"name": "n", "type": "INT64"},
            {"name": "note", "type": "STRING"},
            {"name": "updated_at", "type": "TIMESTAMP"},
        ]
        common = {"cursor": "updated_at", "snapshot": snap, "on_invalid": "quarantine"}
        spec = {
            "kind": "source",
            "name": "shop",
            "type": self.kind,
            "connection_env": ENV,
            "owner": "team:shop",
            "tables": [
                {"name": "items", "primary_key": ["id"], "columns": columns, **common},
                {"name": "pairs", "primary_key": ["region", "n"], "columns": pair_columns, **common},
            ],
        }
        (settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
        self.defs = build_definitions(settings)
        return settings

    def fill(self) -> None:
        for statement in CREATE[self.kind]:
            self.source(statement)
        self.source("INSERT INTO items VALUES (%s, %s, %s, %s)", [item(i) for i in range(1, ITEM_ROWS + 1)])
        pairs = [
            (r, n, f"{r}/{n}", START + dt.timedelta(minutes=n))
            for r in REGIONS
            for n in range(PAIRS_PER_REGION)
        ]
        self.source("INSERT INTO pairs VALUES (%s, %s, %s, %s)", pairs)
        # The row estimates that make a first load chunked (a table without statistics is read in one pass).
        for table in ("items", "pairs"):
            self.source(f"ANALYZE {table}" if self.kind == "postgres" else f"ANALYZE TABLE {table}")

    def replicate(
        self, key: AssetKey = ITEMS, ok: bool = True, tags: dict[str, str] | None = None
    ) -> dict[str, Any]:
        result = materialize_keys(
            self.defs, [key], instance=self.instance, tags=tags, run_config=support.QUIET
        )
        assert result.success is ok, support.outcome(self.instance, result).errors
        return support.materializations(result).get(key.to_user_string(), {})

    def warehouse(self, sql: str, settings: DeriveSettings | None = None) -> list[tuple[Any, ...]]:
        path = (settings or self.settings).duckdb_path
        with duckdb.connect(str(path), read_only=True) as con:
            return [tuple(r) for r in con.execute(sql).fetchall()]

    def tables(self) -> list[str]:
        return [r[0] for r in self.warehouse("SELECT table_name FROM information_schema.tables ORDER BY 1")]

    def checkpoints(self, key: AssetKey = ITEMS) -> list[dict[str, Any]]:
        records = self.instance.fetch_observations(key, limit=100).records
        return [
            {k: v.value for k, v in r.asset_observation.metadata.items()}
            for r in records
            if r.asset_observation is not None
        ]


def rows(shop: Shop, table: str, settings: DeriveSettings | None = None) -> list[tuple[Any, ...]]:
    order = "id" if table == "items" else "region, n"
    return shop.warehouse(f"SELECT * FROM shop.{table} ORDER BY {order}", settings)


def checksum(values: list[tuple[Any, ...]]) -> str:
    return hashlib.sha256(repr(values).encode()).hexdigest()


def source_items(shop: Shop) -> list[tuple[Any, ...]]:
    found = shop.source("SELECT id, name, amount, updated_at FROM items ORDER BY id")
    return [(i, n, a, u.replace(tzinfo=dt.UTC) if u.tzinfo is None else u) for i, n, a, u in found]


@pytest.fixture(params=sorted(SERVERS))
def shop(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mysql_connect: Any
) -> Iterator[Shop]:
    kind = request.param
    url = request.getfixturevalue(SERVERS[kind])
    if kind == "postgres":
        con: Any = psycopg.connect(url, autocommit=True)
        con.execute("SET timezone = 'UTC'")
    else:
        con = mysql_connect(url)
        con.cursor().execute("SET time_zone = '+00:00'")

    def run(sql: str, params: list[tuple[Any, ...]] | None = None) -> list[tuple[Any, ...]]:
        cursor = con.cursor()
        if params is not None:
            cursor.executemany(sql, params)
            return []
        cursor.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []

    try:
        yield Shop(tmp_path, monkeypatch, url, kind, run)
    finally:
        con.close()


class Crash(Exception):
    """The fault a test injects into the chunk loop (not transient: the chunk's load does not retry it)."""


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Records the SQL of every chunk read (`reads["sql"]`); raises `Crash` at the read `reads["crash_at"]`
    (1-based, counted from the last reset of `reads["sql"]`), and calls `reads["before"](n)` before read n."""
    state: dict[str, Any] = {"sql": [], "crash_at": None, "before": None}
    real = snapshot.read_chunk

    def recording(url: str, plan: Any, sql: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        state["sql"].append(sql)
        n = len(state["sql"])
        if state["before"] is not None:
            state["before"](n)
        if n == state["crash_at"]:
            raise Crash(f"injected crash at chunk read {n}")
        yield from real(url, plan, sql, *args, **kwargs)

    monkeypatch.setattr(snapshot, "read_chunk", recording)
    return state


def open_late_insert(shop: Shop, mysql_connect: Any) -> Any:
    """A connection whose transaction holds an uncommitted row (id 9001) with a cursor 1 h 15 min behind the
    watermark `fill()` leaves; commit or close it."""
    if shop.kind == "postgres":
        late: Any = psycopg.connect(shop.url)  # not autocommit: the INSERT stays open
        late.execute("SET timezone = 'UTC'")
        cursor = late.cursor()
    else:
        late = mysql_connect(shop.url)
        late.autocommit(False)
        cursor = late.cursor()
        cursor.execute("SET time_zone = '+00:00'")
    cursor.execute("INSERT INTO items VALUES (9001, 'late', 1.00, '2026-01-01 00:00:10')")
    return late


# ------------------------------------------------------------------------------------------------ tests


def test_a_chunked_first_load_equals_an_unchunked_one(shop: Shop, reads: dict[str, Any]) -> None:
    shop.fill()
    chunked = {key: shop.replicate(key) for key in (ITEMS, PAIRS)}
    one_pass = shop.project("one_pass", chunk_rows=1_000_000)
    plain = {key: shop.replicate(key) for key in (ITEMS, PAIRS)}
    for key, table, total in ((ITEMS, "items", ITEM_ROWS), (PAIRS, "pairs", len(REGIONS) * PAIRS_PER_REGION)):
        assert chunked[key][K.SNAPSHOT_CHUNKS] == total // 1000 + 1  # full chunks, then the rest
        assert K.SNAPSHOT_CHUNKS not in plain[key]  # read in one pass, as before
        got, want = rows(shop, table), rows(shop, table, one_pass)
        assert len(got) == total and checksum(got) == checksum(want) and got == want
        assert chunked[key][K.ROW_COUNT] == plain[key][K.ROW_COUNT] == total
        assert chunked[key][K.ROWS_INSERTED] == total
        assert chunked[key][K.WATERMARK] == plain[key][K.WATERMARK]
    assert rows(shop, "items") == source_items(shop)
    assert "items__snapshot" not in shop.tables() and "pairs__snapshot" not in shop.tables()
    # Composite keys are read by row comparison, each chunk from the last one's last key.
    assert any('("pairs"."region", "pairs"."n") >=' in s.replace("`", '"') for s in reads["sql"])


def test_a_killed_chunked_load_resumes_at_the_next_chunk_and_ends_equal(
    shop: Shop, reads: dict[str, Any]
) -> None:
    shop.fill()
    reads["crash_at"] = 3
    shop.replicate(ok=False)
    # The target is untouched (never created); two chunks are committed to the staging table and checkpointed.
    assert "items" not in shop.tables()
    # Each chunk starts at the last one's last key (read again): ids 1-1000, then 1000-1999.
    assert shop.warehouse("SELECT count(*), max(id) FROM shop.items__snapshot") == [(1999, 1999)]
    latest = shop.checkpoints()[0]
    checkpoint = (latest[K.SNAPSHOT_CHUNKS], latest[K.SNAPSHOT_ROWS], latest[K.SNAPSHOT_LAST_KEY])
    assert checkpoint == (2, 1999, '["1999"]')
    assert shop.instance.get_latest_materialization_event(ITEMS) is None  # no watermark either

    reads.update(sql=[], crash_at=None)
    run = shop.replicate()
    assert run[K.SNAPSHOT_RESUMED_CHUNKS] == 2 and run[K.SNAPSHOT_CHUNKS] == 5
    # The resumed run read from key 2000 on: the first two chunks were not read again.
    first = reads["sql"][0].replace("`", '"')
    assert '"items"."id" >= 1999' in first
    assert not any(">=" not in s and "IS NULL" not in s for s in reads["sql"])
    assert len(reads["sql"]) == 4  # chunks 3, 4 and 5, then the NULL-key read
    assert rows(shop, "items") == source_items(shop)
    assert run[K.WATERMARK] == BEFORE  # the newest source row before the snapshot began
    assert "items__snapshot" not in shop.tables()


def test_a_spec_change_between_the_crash_and_the_resume_starts_over(
    shop: Shop, reads: dict[str, Any]
) -> None:
    shop.fill()
    reads["crash_at"] = 3
    shop.replicate(ok=False)
    shop.settings = shop.project("project", chunk_rows=1500)  # same warehouse, another chunk size
    reads.update(sql=[], crash_at=None)
    run = shop.replicate()
    assert run[K.SNAPSHOT_RESUMED_CHUNKS] == 0 and run[K.SNAPSHOT_CHUNKS] == 4
    assert ">=" not in reads["sql"][0]  # from the first key
    assert rows(shop, "items") == source_items(shop)


def test_rows_changed_during_the_snapshot_are_caught_by_the_next_run(
    shop: Shop, reads: dict[str, Any]
) -> None:
    shop.fill()
    late = "2026-06-01 00:00:00"

    def change(n: int) -> None:
        if n == 3:  # chunks 1 and 2 are committed: change a row in each, and add one at the end
            shop.source(f"UPDATE items SET name = 'changed', updated_at = '{late}' WHERE id IN (5, 1500)")
            shop.source(f"INSERT INTO items VALUES (9000, 'new', 1.00, '{late}')")

    reads["before"] = change
    first = shop.replicate()
    assert first[K.WATERMARK] == BEFORE  # taken before the snapshot began, not the changed rows' cursor
    names = dict(shop.warehouse("SELECT id, name FROM shop.items WHERE id IN (5, 1500, 9000)"))
    assert names == {
        5: "item 5 ✓",
        1500: "item 1500 ✓",
        9000: "new",
    }  # chunks 1-2 were read before the change
    reads["before"] = None
    second = shop.replicate()
    assert K.SNAPSHOT_CHUNKS not in second  # an incremental run
    assert rows(shop, "items") == source_items(shop)
    assert second[K.WATERMARK] == "2026-06-01T00:00:00+00:00"


def test_a_rebuild_replaces_the_table_only_when_every_chunk_is_in(shop: Shop, reads: dict[str, Any]) -> None:
    shop.fill()
    shop.replicate()
    before = rows(shop, "items")
    shop.source("DELETE FROM items WHERE id > 4000")  # gone at the source: only a rebuild removes them
    reads.update(sql=[], crash_at=3)
    shop.replicate(ok=False, tags={K.FULL_REFRESH_TAG: "true"})
    assert rows(shop, "items") == before  # untouched until the promotion
    reads.update(sql=[], crash_at=None)
    run = shop.replicate(tags={K.FULL_REFRESH_TAG: "true"})
    assert run[K.SNAPSHOT_RESUMED_CHUNKS] == 2
    assert rows(shop, "items") == source_items(shop) and len(source_items(shop)) == 4000
    assert (run[K.ROW_COUNT], run[K.ROWS_DELETED]) == (4000, ITEM_ROWS)


def test_invalid_rows_in_a_later_chunk_are_quarantined(shop: Shop, reads: dict[str, Any]) -> None:
    shop.fill()
    shop.source("UPDATE items SET updated_at = NULL WHERE id IN (2500, 4400)")
    run = shop.replicate()
    assert run[K.ROWS_INVALID] == 2 and run[K.SNAPSHOT_CHUNKS] == 5
    quarantined = shop.warehouse("SELECT _id FROM shop.items__quarantine ORDER BY 1")
    assert len(quarantined) == 2
    assert shop.warehouse("SELECT count(*) FROM shop.items") == [(ITEM_ROWS - 2,)]


def test_parallel_range_chunks_equal_a_keyset_load(shop: Shop, reads: dict[str, Any]) -> None:
    shop.fill()
    shop.settings = shop.project("parallel", chunk_rows=1000, parallel=2)
    run = shop.replicate()
    assert run[K.SNAPSHOT_CHUNKS] == 5
    assert any("<=" in s for s in reads["sql"])  # key ranges, each read by two connections
    assert rows(shop, "items") == source_items(shop)


def test_a_transaction_open_when_the_snapshot_began_cannot_lose_its_row(
    shop: Shop, reads: dict[str, Any], monkeypatch: pytest.MonkeyPatch, mysql_connect: Any
) -> None:
    """A transaction open at the start holds a row whose cursor lies below the snapshot's watermark: past the
    (shortened) wait the snapshot goes on without a read floor, so the next run reads every row and gets it."""
    shop.fill()
    monkeypatch.setattr(snapshot, "FENCE_WAIT_SECONDS", 0.5)
    late = open_late_insert(shop, mysql_connect)
    try:
        first = shop.replicate()
        assert first[K.WATERMARK] == BEFORE and first[K.READ_FLOOR] is None  # no floor: the fence held
        assert shop.warehouse("SELECT count(*) FROM shop.items WHERE id = 9001") == [(0,)]
        late.commit()
    finally:
        late.close()
    shop.replicate()
    assert rows(shop, "items") == source_items(shop)  # 9001 arrived, 4 h behind the watermark


def test_a_one_pass_first_load_takes_its_read_floor_before_the_read(
    shop: Shop, reads: dict[str, Any]
) -> None:
    """A table below `chunk_rows` is read in one pass; with no transaction open before the read, the largest
    cursor value taken then is the next run's floor, so the second run does not read every row once more."""
    shop.fill()
    shop.settings = shop.project("one_pass", chunk_rows=1_000_000)
    first = shop.replicate()
    assert K.SNAPSHOT_CHUNKS not in first and reads["sql"] == []  # read in one pass, not in chunks
    assert first[K.READ_FLOOR] == BEFORE
    shop.source("UPDATE items SET name = 'changed', updated_at = '2026-01-01 02:00:00' WHERE id = 7")
    second = shop.replicate()
    # The overlap (600 s) re-reads the rows of the last ten minutes before the floor, not all 4,500.
    assert second[K.ROWS_READ] < ITEM_ROWS // 2, second[K.ROWS_READ]
    assert rows(shop, "items") == source_items(shop)


def test_a_one_pass_first_load_with_a_transaction_open_keeps_no_floor(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, mysql_connect: Any
) -> None:
    """A transaction open before the read and still open after the (shortened) wait: no floor, the next run
    reads every row again and gets the row it commits late, 1 h 15 min behind the watermark."""
    shop.fill()
    shop.settings = shop.project("one_pass", chunk_rows=1_000_000)
    monkeypatch.setattr(snapshot, "ONE_PASS_FENCE_WAIT_SECONDS", 0.5)
    late = open_late_insert(shop, mysql_connect)
    try:
        first = shop.replicate()
        assert first[K.READ_FLOOR] is None
        late.commit()
    finally:
        late.close()
    shop.replicate()
    assert rows(shop, "items") == source_items(shop)
