"""Hard deletes without a flag column (`reconcile:`), on the real servers, through Dagster runs.

Each scenario replicates small tables of a real PostgreSQL or MariaDB database (a MongoDB collection on FerretDB)
into a DuckDB file, deletes rows at the source, and checks that the reconciliation deletes exactly those keys (a
composite key too), counts them in `derive/rows_deleted`, runs when due (every N runs, after a cron tick), deletes
nothing when the key read fails part-way (a real query error in the middle of the key scan) or when the guard
refuses, and keeps the run's load in both cases. One scenario runs `Warehouse.reconcile` on the BigQuery emulator.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pymongo
import pytest
import sqlalchemy as sa
import yaml
from dagster import AssetKey, AssetMaterialization, DagsterInstance

from derive_assets import metadata_keys as K
from derive_assets.demo.connections import sqlalchemy_url
from derive_assets.factory.build import build_definitions
from derive_assets.replication import reconcile, retry
from derive_assets.settings import DeriveSettings
from resources.bigquery_warehouse import BigQueryWarehouse
from resources.duckdb_warehouse import DuckDBWarehouse
from resources.schema import ColumnDef
from resources.warehouse import LoadRequest, ReconcileRefused, TargetTable

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
ITEMS = 2000
URL_ENV = "DERIVE_IT_SHOP_URL"


def shop_spec(source_type: str, items: dict[str, Any], lines: dict[str, Any]) -> dict[str, Any]:
    exact = {"cursor_overlap": 0, "wait_for_open_transactions": False}
    return {
        "kind": "source",
        "name": "shop",
        "type": source_type,
        "connection_env": URL_ENV,
        "owner": "team:shop",
        "tables": [
            {
                "name": "items",
                "primary_key": ["id"],
                "cursor": "updated_at",
                "reconcile": items,
                **exact,
                "columns": [
                    {"name": "id", "type": "INT64"},
                    {"name": "name", "type": "STRING"},
                    {"name": "updated_at", "type": "TIMESTAMP"},
                ],
            },
            {
                "name": "order_lines",
                "primary_key": ["order_no", "line_no"],
                "cursor": "updated_at",
                "reconcile": lines,
                **exact,
                "columns": [
                    {"name": "order_no", "type": "STRING"},
                    {"name": "line_no", "type": "INT64"},
                    {"name": "qty", "type": "INT64"},
                    {"name": "updated_at", "type": "TIMESTAMP"},
                ],
            },
        ],
    }


class Shop:
    """A spec project replicating `items` and `order_lines` from a real server, with one Dagster instance."""

    def __init__(
        self, tmp_path: Path, url: str, source_type: str, items: dict[str, Any], lines: dict[str, Any]
    ):
        self.url, self.source_type, self.tmp_path = url, source_type, tmp_path
        self.engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
        self.instance = DagsterInstance.ephemeral()
        self.use(items, lines)
        self.sql("CREATE TABLE items_data (id BIGINT PRIMARY KEY, name VARCHAR(40), updated_at TIMESTAMP(6))")
        self.sql("CREATE VIEW items AS SELECT id, name, updated_at FROM items_data")
        self.sql(
            "CREATE TABLE order_lines (order_no VARCHAR(10), line_no BIGINT, qty BIGINT, updated_at TIMESTAMP(6), "
            "PRIMARY KEY (order_no, line_no))"
        )
        rows = [
            {"i": i, "n": f"item {i}", "t": self.time(T0 + dt.timedelta(seconds=i))}
            for i in range(1, ITEMS + 1)
        ]
        self.sql("INSERT INTO items_data VALUES (:i, :n, :t)", rows)
        lines = [
            {"o": o, "l": line, "q": line * 10, "t": self.time(T0)}
            for o in ("A", "B", "C")
            for line in (1, 2, 3)
        ]
        self.sql("INSERT INTO order_lines VALUES (:o, :l, :q, :t)", lines)

    def use(self, items: dict[str, Any], lines: dict[str, Any]) -> None:
        """(Re)build the definitions with these `reconcile:` options (same warehouse, same instance)."""
        specs = self.tmp_path / f"specs_{uuid.uuid4().hex[:6]}"
        (specs / "sources").mkdir(parents=True)
        spec = shop_spec(self.source_type, items, lines)
        (specs / "sources" / "shop.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        self.settings = DeriveSettings(specs_dir=specs, home=self.tmp_path / "home")
        self.defs = build_definitions(self.settings)

    def time(self, moment: dt.datetime) -> dt.datetime:
        return moment.replace(tzinfo=None)  # TIMESTAMP columns of both servers hold naive UTC here

    def sql(self, text: str, params: Any = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(text), params or {})

    def run(self) -> dict[str, dict[str, Any]]:
        """One `replicate_shop` run (it must succeed); the metadata of each table's materialization."""
        result = self.defs.resolve_job_def("replicate_shop").execute_in_process(
            instance=self.instance, run_config=QUIET, raise_on_error=False
        )
        assert result.success, [str(e.event_specific_data) for e in result.all_events if e.is_failure]
        self.logs = "\n".join(r.user_message or "" for r in self.instance.all_logs(result.run_id))
        found = {}
        for event in result.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            found[materialization.asset_key.path[-1]] = {
                k: getattr(v, "value", v) for k, v in materialization.metadata.items()
            }
        return found

    def keys(self, table: str) -> list[tuple[Any, ...]]:
        columns = "id" if table == "items" else "order_no, line_no"
        with duckdb.connect(str(self.settings.duckdb_path), read_only=True) as con:
            return [
                tuple(r) for r in con.execute(f"SELECT {columns} FROM shop.{table} ORDER BY ALL").fetchall()
            ]

    def source_keys(self, table: str) -> list[tuple[Any, ...]]:
        columns = "id" if table == "items" else "order_no, line_no"
        with self.engine.connect() as conn:
            return [
                tuple(r) for r in conn.execute(sa.text(f"SELECT {columns} FROM {table} ORDER BY {columns}"))
            ]

    def touch(self, item: int) -> None:
        """Change one item (so the next run's load reads it), one hour after everything else."""
        self.sql(
            "UPDATE items_data SET name = 'changed', updated_at = :t WHERE id = :i",
            {"i": item, "t": self.time(T0 + dt.timedelta(hours=1, seconds=item))},
        )

    def backdate_reconciliation(self, table: str, days: int) -> None:
        """Record the table's last materialization again, with its last reconciliation `days` days earlier: the
        event log as it would be that many days later (the rest of the metadata, watermark included, unchanged)."""
        key = AssetKey(["shop", table])
        event = self.instance.get_latest_materialization_event(key)
        assert event is not None and event.asset_materialization is not None
        metadata = dict(event.asset_materialization.metadata)
        at = dt.datetime.fromisoformat(metadata[K.RECONCILED_AT].value) - dt.timedelta(days=days)  # type: ignore[union-attr]
        metadata[K.RECONCILED_AT] = at.isoformat()
        self.instance.report_runless_asset_event(AssetMaterialization(key, metadata=metadata))


@pytest.fixture(params=["postgres", "mysql"])
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    url = request.getfixturevalue("postgres_url" if request.param == "postgres" else "mysql_url")
    monkeypatch.setenv(URL_ENV, url)
    return url, request.param


def test_deletes_exactly_the_removed_keys_composite_key_too(tmp_path, server):
    shop = Shop(tmp_path, *server, items={"every_runs": 1}, lines={"every_runs": 1})
    first = shop.run()
    # A first load reads every key: it counts as a reconciliation (nothing to delete, no key scan).
    assert first["items"][K.RUNS_SINCE_RECONCILE] == 0 and K.RECONCILE_KEYS_READ not in first["items"]
    assert len(shop.keys("items")) == ITEMS

    shop.sql("DELETE FROM items_data WHERE id IN (5, 77, 1500)")
    shop.sql(
        "DELETE FROM order_lines WHERE (order_no = 'A' AND line_no = 2) OR (order_no = 'C' AND line_no = 3)"
    )
    shop.touch(6)
    second = shop.run()

    items, lines = second["items"], second["order_lines"]
    assert shop.keys("items") == shop.source_keys("items") and len(shop.keys("items")) == ITEMS - 3
    assert (items[K.RECONCILE_KEYS_READ], items[K.RECONCILE_ROWS_DELETED]) == (ITEMS - 3, 3)
    assert (items[K.ROWS_READ], items[K.ROWS_UPDATED], items[K.ROWS_DELETED]) == (1, 1, 3)
    assert items[K.ROW_COUNT] == ITEMS - 3
    # (A, 1) and (B, 2) remain: the delete matches both key columns, never one of them.
    assert shop.keys("order_lines") == shop.source_keys("order_lines") == [
        ("A", 1), ("A", 3), ("B", 1), ("B", 2), ("B", 3), ("C", 1), ("C", 2),
    ]  # fmt: skip
    assert (lines[K.ROWS_DELETED], lines[K.RECONCILE_ROWS_DELETED], lines[K.ROW_COUNT]) == (2, 2, 7)
    assert "deleted 3 rows whose key the source no longer has" in shop.logs
    assert "shop.items: reconciling keys: 1,997 rows" in shop.logs  # the progress line of the key read


def test_due_every_n_runs(tmp_path, server):
    shop = Shop(tmp_path, *server, items={"every_runs": 3}, lines={"every_runs": 3})
    shop.run()
    shop.sql("DELETE FROM items_data WHERE id = 10")

    second = shop.run()["items"]
    assert (second[K.RUNS_SINCE_RECONCILE], second[K.ROWS_DELETED]) == (1, 0)
    assert K.RECONCILE_KEYS_READ not in second and (10,) in shop.keys("items")
    third = shop.run()["items"]
    assert (third[K.RUNS_SINCE_RECONCILE], second[K.RUNS_SINCE_RECONCILE] + 1) == (2, 2)
    assert (10,) in shop.keys("items")
    fourth = shop.run()["items"]  # the third run since the first load's reconciliation
    assert (fourth[K.RUNS_SINCE_RECONCILE], fourth[K.ROWS_DELETED], fourth[K.RECONCILE_KEYS_READ]) == (
        0, 1, ITEMS - 1,
    )  # fmt: skip
    assert (10,) not in shop.keys("items")
    assert fourth[K.RECONCILED_AT] > third[K.RECONCILED_AT]


def test_due_on_the_first_run_after_a_cron_tick(tmp_path, server):
    shop = Shop(tmp_path, *server, items={"schedule": "0 3 * * *"}, lines={"schedule": "0 3 * * *"})
    shop.run()
    shop.sql("DELETE FROM items_data WHERE id = 20")
    second = shop.run()["items"]  # no 03:00 has passed since the first load a moment ago
    assert (second[K.ROWS_DELETED], second[K.RUNS_SINCE_RECONCILE]) == (0, 1) and (20,) in shop.keys("items")

    shop.backdate_reconciliation("items", days=1)  # a day later: one 03:00 tick has passed
    third = shop.run()["items"]
    assert (third[K.ROWS_DELETED], third[K.RUNS_SINCE_RECONCILE]) == (1, 0) and (20,) not in shop.keys(
        "items"
    )
    shop.sql("DELETE FROM items_data WHERE id = 21")
    assert shop.run()["items"][K.ROWS_DELETED] == 0  # reconciled a moment ago: the next tick is still ahead


def _fail_key_scan_at(shop: Shop, item: int) -> None:
    """Replace the `items` view by one whose `id` fails to compute for one row (a real query error at the
    server, in the middle of a scan of every key); reads of other rows (the incremental load) still work."""
    shop.sql("DROP VIEW items")
    if shop.source_type == "postgres":
        shop.sql(
            f"CREATE VIEW items AS SELECT CASE WHEN id = {item} THEN id / (id - id) ELSE id END AS id, name, "
            "updated_at FROM items_data"
        )
    else:
        shop.sql(
            "CREATE FUNCTION derive_boom(x BIGINT) RETURNS BIGINT DETERMINISTIC BEGIN "
            f"IF x = {item} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'derive test: key read failed'; "
            "END IF; RETURN x; END"
        )
        shop.sql("CREATE VIEW items AS SELECT derive_boom(id) AS id, name, updated_at FROM items_data")


def test_a_key_read_that_fails_part_way_deletes_nothing_and_keeps_the_load(tmp_path, server, monkeypatch):
    monkeypatch.setattr(reconcile, "KEY_BATCH_ROWS", 100)  # keys arrive in many batches before the failure
    shop = Shop(tmp_path, *server, items={"every_runs": 1}, lines={"every_runs": 1})
    shop.run()
    shop.sql("DELETE FROM items_data WHERE id IN (3, 4)")
    shop.touch(7)
    _fail_key_scan_at(shop, 1800)

    failed = shop.run()["items"]
    assert (3,) in shop.keys("items") and (4,) in shop.keys("items")
    assert (failed[K.ROWS_READ], failed[K.ROWS_UPDATED], failed[K.ROWS_DELETED]) == (1, 1, 0)  # the load kept
    assert failed[K.WATERMARK].startswith("2026-11-01T01:00:07")
    assert (
        "the key reconciliation deleted nothing: reading the source's keys failed"
        in failed[K.RECONCILE_ERROR]
    )
    assert (failed[K.RUNS_SINCE_RECONCILE], K.RECONCILE_ROWS_DELETED in failed) == (1, False)
    # The failure came part-way: keys had streamed into staging before it (the progress line's final count).
    staged = int(shop.logs.split("shop.items: reconciling keys: ")[1].split(" rows")[0].replace(",", ""))
    assert 100 <= staged < ITEMS - 2, staged
    assert "the key reconciliation deleted nothing" in shop.logs

    shop.sql("DROP VIEW items")
    shop.sql("CREATE VIEW items AS SELECT id, name, updated_at FROM items_data")
    healed = shop.run()["items"]  # the next run is due again
    assert (healed[K.RECONCILE_ROWS_DELETED], K.RECONCILE_ERROR in healed) == (2, False)
    assert shop.keys("items") == shop.source_keys("items")


def test_a_connection_dropped_in_every_key_read_deletes_nothing(tmp_path, postgres_url, monkeypatch):
    """A real drop: the view ends its own server backend when the key scan reaches one row (SQLSTATE 57P01, a
    transient error), on every attempt; the retries run out, nothing is deleted, and the load is kept."""
    monkeypatch.setenv(URL_ENV, postgres_url)
    monkeypatch.setenv(retry.ATTEMPTS_ENV, "2")
    monkeypatch.setenv(retry.BACKOFF_ENV, "0.1")
    monkeypatch.setattr(reconcile, "KEY_BATCH_ROWS", 100)
    shop = Shop(tmp_path, postgres_url, "postgres", items={"every_runs": 1}, lines={"every_runs": 1})
    shop.run()
    shop.sql("DELETE FROM items_data WHERE id = 3")
    shop.touch(7)
    shop.sql("DROP VIEW items")
    shop.sql(
        "CREATE VIEW items AS SELECT CASE WHEN id = 1800 AND pg_terminate_backend(pg_backend_pid()) THEN -id "
        "ELSE id END AS id, name, updated_at FROM items_data"
    )

    dropped = shop.run()["items"]
    assert (3,) in shop.keys("items") and dropped[K.ROWS_UPDATED] == 1
    assert "the source connection failed on all 2 attempts" in dropped[K.RECONCILE_ERROR]
    assert "attempt 1 of 2 failed with a transient source error" in shop.logs
    assert "derive:derive@" not in dropped[K.RECONCILE_ERROR] + shop.logs  # the URL's password never shows


def test_the_guard_refuses_to_empty_the_table(tmp_path, server):
    shop = Shop(
        tmp_path, *server, items={"every_runs": 1}, lines={"every_runs": 1, "max_delete_percent": 100}
    )
    shop.run()
    shop.sql("DELETE FROM items_data WHERE id > 900")  # 55 % of the rows
    shop.sql("DELETE FROM order_lines")

    refused = shop.run()
    assert len(shop.keys("items")) == ITEMS and refused["items"][K.ROWS_DELETED] == 0
    assert (
        "would delete 1,100 of its 2,000 rows (55.0 %; the source sent 900 keys)"
        in refused["items"][K.RECONCILE_ERROR]
    )
    assert "raise reconcile.max_delete_percent in the spec (100: no limit)" in shop.logs
    # `lines` allows it: a source table that really lost every row empties its warehouse table.
    assert (refused["order_lines"][K.ROWS_DELETED], shop.keys("order_lines")) == (9, [])

    shop.use(items={"every_runs": 1, "max_delete_percent": 60}, lines={"every_runs": 1})
    allowed = shop.run()["items"]
    assert allowed[K.ROWS_DELETED] == 1100 and len(shop.keys("items")) == 900


# ----------------------------------------------------------------------------------------------- MongoDB


@pytest.fixture
def mongo(monkeypatch: pytest.MonkeyPatch, mongodb_server_url: str) -> Iterator[tuple[str, str]]:
    database = f"t_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(URL_ENV, mongodb_server_url)
    yield mongodb_server_url, database
    with pymongo.MongoClient(mongodb_server_url) as client:
        client.drop_database(database)


def test_mongodb_reconciles_a_nested_composite_key_with_a_projection(tmp_path, mongo):
    url, database = mongo
    spec = {
        "kind": "source",
        "name": "shop",
        "type": "mongodb",
        "database": database,
        "connection_env": URL_ENV,
        "owner": "team:shop",
        "tables": [
            {
                "name": "carts",
                "primary_key": ["region", "cart_id"],
                "cursor": "updated_at",
                "cursor_overlap": 0,
                "reconcile": {"every_runs": 1},
                "columns": [
                    {"name": "region", "type": "STRING", "path": "key.region"},
                    {"name": "cart_id", "type": "INT64", "path": "key.id"},
                    {"name": "total", "type": "INT64"},
                    {"name": "updated_at", "type": "TIMESTAMP"},
                ],
            }
        ],
    }
    specs = tmp_path / "table_specs"
    (specs / "sources").mkdir(parents=True)
    (specs / "sources" / "shop.yaml").write_text(yaml.safe_dump(spec))
    settings = DeriveSettings(specs_dir=specs, home=tmp_path / "home")
    defs, instance = build_definitions(settings), DagsterInstance.ephemeral()

    def run() -> dict[str, Any]:
        result = defs.resolve_job_def("replicate_shop").execute_in_process(
            instance=instance, run_config=QUIET
        )
        event = result.get_asset_materialization_events()[0].step_materialization_data.materialization
        return {k: getattr(v, "value", v) for k, v in event.metadata.items()}

    def rows() -> list[tuple[Any, ...]]:
        with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
            return [
                tuple(r)
                for r in con.execute("SELECT region, cart_id FROM shop.carts ORDER BY ALL").fetchall()
            ]

    with pymongo.MongoClient(url) as client:
        carts = client[database]["carts"]
        carts.insert_many(
            [
                {"key": {"region": r, "id": i}, "total": i, "updated_at": T0, "big": "x" * 1000}
                for r in ("eu", "us")
                for i in range(1, 101)
            ]
        )
        run()
        carts.delete_many({"$or": [{"key.region": "eu", "key.id": 7}, {"key.region": "us", "key.id": 8}]})
        second = run()
    assert (second[K.RECONCILE_KEYS_READ], second[K.ROWS_DELETED]) == (198, 2)
    assert len(rows()) == 198 and ("eu", 7) not in rows() and ("us", 8) not in rows()
    assert ("us", 7) in rows() and ("eu", 8) in rows()


# ----------------------------------------------------------------------------------------------- warehouses

COLUMNS = (ColumnDef("k1", "STRING"), ColumnDef("k2", "INT64"), ColumnDef("v", "STRING"))


def _keys(pairs: list[tuple[str, int]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"k1": a, "k2": b} for a, b in pairs], schema=pa.schema([("k1", pa.string()), ("k2", pa.int64())])
    )


def _rows(pairs: list[tuple[str, int]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"k1": a, "k2": b, "v": f"{a}{b}"} for a, b in pairs],
        schema=pa.schema([("k1", pa.string()), ("k2", pa.int64()), ("v", pa.string())]),
    )


ALL = [(a, b) for a in ("x", "y") for b in range(1, 11)]
KEPT = [p for p in ALL if p not in (("x", 3), ("y", 4))]


def test_duckdb_deletes_nothing_when_the_key_stream_breaks_after_some_batches(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    request = LoadRequest(TargetTable("shop", "pairs", COLUMNS), ("k1", "k2"), "k2")
    warehouse.load(request, [_rows(ALL)])

    def breaking() -> Iterator[pa.RecordBatch]:
        yield _keys(KEPT[:5])
        raise ConnectionResetError("connection reset by peer")

    with pytest.raises(ConnectionResetError):
        warehouse.reconcile(request, breaking())
    assert warehouse.row_count("shop.pairs") == 20
    with pytest.raises(
        ReconcileRefused, match=r"shop\.pairs: the key reconciliation would delete 20 of its 20"
    ):
        warehouse.reconcile(request, [])
    result = warehouse.reconcile(request, [_keys(KEPT[:9]), _keys(KEPT[9:])])
    assert (result.rows_read, result.rows_deleted, warehouse.row_count("shop.pairs")) == (18, 2, 18)


def test_bigquery_emulator_reconciles_a_composite_key(bigquery_emulator, bigquery_client):
    endpoint, project = bigquery_emulator
    warehouse = BigQueryWarehouse(project=project, api_endpoint=endpoint)
    dataset = f"reconcile_{uuid.uuid4().hex[:8]}"
    request = LoadRequest(TargetTable(dataset, "pairs", COLUMNS), ("k1", "k2"), "k2")
    try:
        warehouse.load(request, [_rows(ALL)])
        with pytest.raises(ReconcileRefused, match=rf"{dataset}\.pairs: .* would delete 20 of its 20 rows"):
            warehouse.reconcile(request, [_keys([])])
        result = warehouse.reconcile(request, [_keys(KEPT[:9]), _keys(KEPT[9:])])
        assert (result.rows_read, result.rows_deleted) == (18, 2)
        left = bigquery_client.query(
            f"SELECT k1, k2 FROM `{project}.{dataset}.pairs` ORDER BY k1, k2"
        ).result()
        assert [(r[0], r[1]) for r in left] == KEPT
    finally:
        bigquery_client.delete_dataset(f"{project}.{dataset}", delete_contents=True, not_found_ok=True)
