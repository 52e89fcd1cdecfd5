"""BigQueryWarehouse against the BigQuery emulator, through the real `google-cloud-bigquery` client.

The same scenarios as `tests/embedded/test_strategies.py` (each strategy, idempotency per window,
all-or-nothing failures, refused keys and windows), plus what only BigQuery has: the table's partitioning and
clustering, a mismatching existing table, per-run staging tables, replication loads (checked against DuckDB's
results) and dry runs. What the emulator cannot do (see "Emulator gaps" in `resources/bigquery_warehouse.py`)
is checked on the generated SQL and API objects at the end of this file.

Start the emulator with `make services`, then `eval "$(bash deployments/local/services.sh env)"`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dagster import asset, materialize
from google.api_core.exceptions import BadRequest
from google.cloud import bigquery

from resources.bigquery_ddl import ddl_for, table_for
from resources.bigquery_sql import STAGING_PREFIX, merge_sql, replace_sql, source_select
from resources.bigquery_warehouse import BigQueryWarehouse, query_parameters
from resources.duckdb_warehouse import DuckDBWarehouse
from resources.schema import ColumnDef
from resources.warehouse import LoadRequest, TargetTable, TimeWindow, WarehouseError, WriteRequest

DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
DAY2 = TimeWindow(dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC))

COLUMNS = (
    ColumnDef("day", "DATE", not_null=True),
    ColumnDef("region", "STRING"),
    ColumnDef("amount", "NUMERIC"),
)

EVENTS = [
    {"ts": "2026-01-01 10:00:00+00", "region": "eu", "amount": 10.5},
    {"ts": "2026-01-01 11:00:00+00", "region": "eu", "amount": 2.0},
    {"ts": "2026-01-01 12:00:00+00", "region": "na", "amount": 7.0},
    {"ts": "2026-01-02 09:00:00+00", "region": "na", "amount": 1.25},
]


@pytest.fixture
def warehouse(bigquery_emulator: tuple[str, str]) -> BigQueryWarehouse:
    endpoint, project = bigquery_emulator
    return BigQueryWarehouse(project=project, api_endpoint=endpoint)


@pytest.fixture
def client(warehouse: BigQueryWarehouse) -> Iterator[bigquery.Client]:
    with warehouse.get_client() as client:
        yield client


@pytest.fixture
def dataset(client: bigquery.Client) -> Iterator[str]:
    """A new dataset holding the test's source (`events`) and target (`daily`) tables; deleted afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    client.create_dataset(name)
    events = bigquery.Table(
        f"{client.project}.{name}.events",
        schema=[
            bigquery.SchemaField("ts", "TIMESTAMP"),
            bigquery.SchemaField("region", "STRING"),
            bigquery.SchemaField("amount", "FLOAT64"),
        ],
    )
    client.create_table(events)
    assert client.insert_rows_json(events, EVENTS) == []
    try:
        yield name
    finally:
        client.delete_dataset(name, delete_contents=True, not_found_ok=True)


@pytest.fixture
def target(dataset: str) -> TargetTable:
    return TargetTable(dataset, "daily", COLUMNS, cluster=("region",), partition_key="day")


def query(dataset: str, windowed: bool = True) -> str:
    where = "WHERE ts >= @window_start AND ts < @window_end" if windowed else ""
    return (
        f"SELECT CAST(ts AS DATE) AS day, region, SUM(amount) AS amount FROM `{dataset}`.events {where} "
        "GROUP BY 1, 2"
    )


def request(target: TargetTable, strategy: str, window: TimeWindow, sql: str | None = None) -> WriteRequest:
    sql = sql or query(target.dataset)
    key = ("day", "region") if strategy == "merge" else ()
    params = window.as_params() if "@window" in sql else {}
    return WriteRequest(target, sql, params, strategy, key, window)  # type: ignore[arg-type]


def run(client: bigquery.Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in client.query(sql).result()]


def rows(client: bigquery.Client, target: TargetTable) -> list[tuple[Any, ...]]:
    return run(client, f"SELECT day, region, amount FROM `{target.dataset}`.`{target.name}` ORDER BY 1, 2")


def staging_tables(client: bigquery.Client, dataset: str) -> list[str]:
    return [t.table_id for t in client.list_tables(dataset) if t.table_id.startswith(STAGING_PREFIX)]


# ----------------------------------------------------------------------------------------------- strategies


@pytest.mark.parametrize("strategy", ["merge", "append"])
def test_windowed_strategies_are_idempotent_per_window(warehouse, client, target, strategy):
    first = warehouse.write(request(target, strategy, DAY1))
    assert (first.rows_read, first.rows_inserted) == (2, 2)
    warehouse.write(request(target, strategy, DAY2))
    once = rows(client, target)
    again = warehouse.write(request(target, strategy, DAY1))
    assert rows(client, target) == once
    assert len(once) == 3
    if strategy == "merge":
        assert (again.rows_inserted, again.rows_updated) == (0, 2)
    else:
        assert (again.rows_inserted, again.rows_deleted) == (2, 2)


def test_merge_updates_changed_rows_and_keeps_other_windows(warehouse, client, target):
    warehouse.write(request(target, "merge", DAY1))
    warehouse.write(request(target, "merge", DAY2))
    run(
        client,
        f"INSERT INTO `{target.dataset}`.events VALUES (TIMESTAMP '2026-01-01 13:00:00+00', 'eu', 100)",
    )
    result = warehouse.write(request(target, "merge", DAY1))
    assert (result.rows_updated, result.rows_inserted) == (2, 0)
    assert [r[2] for r in rows(client, target)] == [Decimal("112.5"), Decimal("7"), Decimal("1.25")]


def test_replace_makes_table_exactly_the_query_output(warehouse, client, target):
    sql = query(target.dataset, windowed=False)
    warehouse.write(WriteRequest(target, sql, {}, "replace"))
    assert len(rows(client, target)) == 3
    run(client, f"DELETE FROM `{target.dataset}`.events WHERE region = 'na'")
    result = warehouse.write(WriteRequest(target, sql, {}, "replace"))
    assert (result.rows_deleted, result.rows_inserted) == (3, 1)
    assert [r[1] for r in rows(client, target)] == ["eu"]


def test_table_is_created_with_the_spec_layout(warehouse, client, target):
    warehouse.write(request(target, "append", DAY1))
    table = client.get_table(f"{client.project}.{target.ref}")
    assert table.time_partitioning is not None
    assert (table.time_partitioning.type_, table.time_partitioning.field) == ("DAY", "day")
    assert table.clustering_fields == ["region"]
    assert [(f.name, f.field_type, f.mode) for f in table.schema] == [
        ("day", "DATE", "REQUIRED"),
        ("region", "STRING", "NULLABLE"),
        ("amount", "NUMERIC", "NULLABLE"),
    ]
    partitions = run(
        client,
        f"SELECT partition_id, total_rows FROM `{target.dataset}`.INFORMATION_SCHEMA.PARTITIONS "
        "WHERE table_name = 'daily'",
    )
    assert partitions == [("20260101", 2)]


def test_numeric_keeps_nine_decimal_places(warehouse, client, target):
    sql = "SELECT DATE '2026-01-01' AS day, 'eu' AS region, '12345678901234567890.123456789' AS amount"
    warehouse.write(WriteRequest(target, sql, {}, "replace"))
    assert rows(client, target) == [(dt.date(2026, 1, 1), "eu", Decimal("12345678901234567890.123456789"))]


def test_existing_table_with_other_layout_is_reported_not_altered(warehouse, client, target):
    plain = bigquery.Table(f"{client.project}.{target.ref}", schema=table_for(target, client.project).schema)
    plain.clustering_fields = ["amount"]
    client.create_table(plain)
    with pytest.raises(WarehouseError) as caught:
        warehouse.write(request(target, "append", DAY1))
    message = str(caught.value)
    assert f"{target.ref}: the existing BigQuery table does not have the layout its spec declares" in message
    assert "partitioning: expected day partitions on 'day', actual no partitioning" in message
    assert "clustering: expected ['region'], actual ['amount']" in message
    assert "Recreate or migrate the table" in message
    table = client.get_table(f"{client.project}.{target.ref}")
    assert (table.time_partitioning, table.clustering_fields, table.num_rows) == (None, ["amount"], 0)


def test_failing_statement_leaves_target_unchanged(warehouse, client, target):
    warehouse.write(request(target, "merge", DAY1))
    before = rows(client, target)
    bad = (  # right keys and window; only the cast of `amount` to NUMERIC fails
        f"SELECT CAST(ts AS DATE) AS day, region, MAX(region) AS amount FROM `{target.dataset}`.events "
        "WHERE ts >= @window_start AND ts < @window_end GROUP BY 1, 2"
    )
    for strategy in ("replace", "append", "merge"):
        with pytest.raises(BadRequest):
            warehouse.write(request(target, strategy, DAY1, bad))
        assert rows(client, target) == before, strategy
    assert staging_tables(client, target.dataset) == []


def test_replace_transaction_rolls_back_when_the_insert_fails(warehouse, client, target):
    """The DELETE has run when the INSERT fails: the transaction must undo it."""
    warehouse.write(request(target, "merge", DAY1))
    before = rows(client, target)
    events = f"`{target.dataset}`.events"
    bad = f"SELECT CAST(ts AS DATE) AS day, region, CAST(region AS NUMERIC) AS amount FROM {events}"
    with pytest.raises(BadRequest):
        client.query(replace_sql(target, bad)).result()
    assert rows(client, target) == before


def test_not_null_violation_is_refused(warehouse, client, target):
    warehouse.write(request(target, "merge", DAY1))
    before = rows(client, target)
    bad = "SELECT CAST(NULL AS DATE) AS day, 'eu' AS region, 1.0 AS amount"
    with pytest.raises(WarehouseError, match=r"NULL in not_null columns \(rows per column: \{'day': 1\}\)"):
        warehouse.write(WriteRequest(target, bad, {}, "replace"))
    assert rows(client, target) == before


def test_merge_rejects_duplicate_keys_and_writes_nothing(warehouse, client, target):
    warehouse.write(request(target, "merge", DAY1))
    before = rows(client, target)
    dupes = (
        f"SELECT CAST(ts AS DATE) AS day, region, amount FROM `{target.dataset}`.events "
        "WHERE ts >= @window_start AND ts < @window_end"
    )
    with pytest.raises(WarehouseError, match=r"several rows for 1 values of unique_key \['day', 'region'\]"):
        warehouse.write(request(target, "merge", DAY1, dupes))
    assert rows(client, target) == before


def test_merge_rejects_null_keys(warehouse, target):
    nulls = "SELECT DATE '2026-01-01' AS day, CAST(NULL AS STRING) AS region, 1 AS amount"
    with pytest.raises(WarehouseError, match=r"1 rows with a NULL in unique_key \['day', 'region'\]"):
        warehouse.write(request(target, "merge", DAY1, nulls))


def test_append_rejects_rows_outside_the_window(warehouse, target):
    everything = f"SELECT CAST(ts AS DATE) AS day, region, amount FROM `{target.dataset}`.events"
    with pytest.raises(
        WarehouseError, match="1 rows whose partition key 'day' is NULL or lies outside the window"
    ):
        warehouse.write(request(target, "append", DAY1, everything))
    assert not warehouse.table_exists(target.ref)  # checks run before the table is created


# ----------------------------------------------------------------------------------------------- staging


def test_each_run_has_its_own_staging_table_and_drops_it(warehouse, client, target):
    first = warehouse.write(request(target, "merge", DAY1))
    second = warehouse.write(request(target, "merge", DAY2))
    names = {first.extra["staging_table"], second.extra["staging_table"]}
    assert len(names) == 2
    assert all(n.startswith(f"{STAGING_PREFIX}daily_") for n in names)
    assert staging_tables(client, target.dataset) == []
    with pytest.raises(WarehouseError):
        warehouse.write(request(target, "merge", DAY1, "SELECT DATE '2026-01-01' AS day, 'eu' AS region"))
    assert staging_tables(client, target.dataset) == []


# ----------------------------------------------------------------------------------------------- reads


def test_reads_checks_and_dry_runs(warehouse, target):
    warehouse.write(request(target, "append", DAY1))
    warehouse.write(request(target, "append", DAY2))
    assert warehouse.table_exists(target.ref)
    assert not warehouse.table_exists(f"{target.dataset}.nope")
    assert warehouse.row_count(target.ref) == 3
    window = "day >= CAST(@window_start AS DATE) AND day < CAST(@window_end AS DATE)"
    table = warehouse.read_arrow(target.ref, window, DAY2.as_params())
    assert table.to_pylist() == [{"day": dt.date(2026, 1, 2), "region": "na", "amount": Decimal("1.25")}]
    check = f"SELECT count(*) FROM `{target.dataset}`.daily WHERE region NOT IN (@v0, @v1)"
    assert warehouse.count_violations(check, {"v0": "eu", "v1": "apac"}) == 2  # na, both days
    estimate = warehouse.estimate_bytes(query(target.dataset), DAY1.as_params())
    assert isinstance(estimate, int)  # the emulator says 0; BigQuery the bytes scanned


def test_assets_get_the_warehouse_itself(warehouse):
    """`BigQueryResource` hands ops a bare client; the factory needs the `Warehouse` methods."""
    seen = []

    @asset(required_resource_keys={"warehouse"})
    def probe(context) -> None:  # no annotation: dagster cannot resolve postponed ones
        seen.append(context.resources.warehouse)

    assert materialize([probe], resources={"warehouse": warehouse}).success
    assert isinstance(seen[0], BigQueryWarehouse)


# ----------------------------------------------------------------------------------------------- replication

REPLICATED = TargetTable(
    "",
    "orders",
    (
        ColumnDef("order_id", "INT64", not_null=True),
        ColumnDef("status", "STRING"),
        ColumnDef("amount", "NUMERIC"),
        ColumnDef("placed_local", "DATETIME"),
        ColumnDef("attrs", "JSON"),
        ColumnDef("updated_at", "TIMESTAMP"),
        ColumnDef("deleted_at", "TIMESTAMP"),
    ),
    cluster=("order_id",),
)
ARROW = pa.schema(
    [
        ("order_id", pa.int64()),
        ("status", pa.string()),
        ("amount", pa.decimal128(38, 10)),  # as connectorx sends numeric(12,2)
        ("placed_local", pa.timestamp("us")),
        ("attrs", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("deleted_at", pa.timestamp("us", tz="UTC")),
    ]
)


def batch(*records: tuple[int, str, str, int, int | None]) -> pa.RecordBatch:
    """(order_id, status, amount, updated minute, deleted minute) -> one source batch."""
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    columns: dict[str, list[Any]] = {name: [] for name in ARROW.names}
    for order_id, status, amount, updated, deleted in records:
        columns["order_id"].append(order_id)
        columns["status"].append(status)
        columns["amount"].append(Decimal(amount))
        columns["placed_local"].append(dt.datetime(2026, 1, 1, 8, order_id))
        columns["attrs"].append(f'{{"n": {order_id}}}')
        columns["updated_at"].append(t0 + dt.timedelta(minutes=updated))
        columns["deleted_at"].append(None if deleted is None else t0 + dt.timedelta(minutes=deleted))
    return pa.RecordBatch.from_pydict(columns, schema=ARROW)


FIRST = [
    batch((1, "new", "10.50", 1, None), (2, "new", "20.0000000001", 2, None)),
    batch((3, "new", "3", 3, None)),
]
SECOND = [
    batch((1, "paid", "10.50", 10, None), (2, "new", "20", 11, 11)),  # 1 updated, 2 soft-deleted
    batch((4, "new", "4", 12, None)),  # 4 is new
    batch((5, "new", "5", 13, 13)),  # created and deleted between runs: never inserted
]


def replicated_rows(wh: BigQueryWarehouse | DuckDBWarehouse, target: TargetTable) -> list[tuple[Any, ...]]:
    """(order_id, status, amount, placed_local, attrs) as plain values, comparable across warehouses."""
    table = wh.read_arrow(target.ref, None, {}).sort_by("order_id")
    return [
        (r["order_id"], r["status"], r["amount"], r["placed_local"], str(r["attrs"]).replace(" ", ""))
        for r in table.to_pylist()
    ]


def test_load_merges_newest_rows_and_soft_deletes_like_duckdb(warehouse, dataset, tmp_path: Path):
    target = dataclasses.replace(REPLICATED, dataset=dataset)
    load = LoadRequest(target, ("order_id",), "updated_at", "deleted_at")
    duck = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    results = []
    for wh in (warehouse, duck):
        first = wh.load(load, iter(FIRST))
        second = wh.load(load, iter(SECOND))
        results.append((first, second, replicated_rows(wh, target)))
    (bq_first, bq_second, bq_rows), (dk_first, dk_second, dk_rows) = results

    counters = ("rows_read", "rows_inserted", "rows_updated", "rows_deleted")
    assert [getattr(bq_first, c) for c in counters] == [3, 3, 0, 0]
    assert [getattr(bq_second, c) for c in counters] == [4, 1, 1, 1]
    for bq, dk in ((bq_first, dk_first), (bq_second, dk_second)):
        assert [getattr(bq, c) for c in counters] == [getattr(dk, c) for c in counters]
        assert bq.max_cursor == dk.max_cursor
        assert bq.extra["soft_deleted_rows_read"] == dk.extra["soft_deleted_rows_read"]
    assert bq_second.max_cursor == dt.datetime(2026, 1, 1, 0, 13, tzinfo=dt.UTC)
    assert bq_second.extra["soft_deleted_rows_read"] == 2
    assert bq_rows == dk_rows
    assert bq_rows == [
        (1, "paid", Decimal("10.5"), dt.datetime(2026, 1, 1, 8, 1), '{"n":1}'),
        (3, "new", Decimal("3"), dt.datetime(2026, 1, 1, 8, 3), '{"n":3}'),
        (4, "new", Decimal("4"), dt.datetime(2026, 1, 1, 8, 4), '{"n":4}'),
    ]


def test_load_parses_text_columns_like_duckdb(warehouse, dataset, tmp_path: Path):
    """Sources such as SQLite send timestamps (without a zone), numbers and keys as text."""
    target = dataclasses.replace(REPLICATED, dataset=dataset)
    load = LoadRequest(target, ("order_id",), "updated_at", "deleted_at")
    text = pa.RecordBatch.from_pylist(
        [
            {
                "order_id": str(n),
                "status": "new",
                "amount": f"{n}.125",
                "placed_local": f"2026-01-01 08:0{n}:00",
                "attrs": "[1, 2]",
                "updated_at": f"2026-01-01 00:0{n}:00.5",
                "deleted_at": "2026-01-01 00:09:00" if n == 2 else None,
            }
            for n in (1, 2)
        ],
        pa.schema([(name, pa.string()) for name in ARROW.names]),
    )
    duck = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    bq, dk = warehouse.load(load, iter([text])), duck.load(load, iter([text]))
    assert (bq.rows_read, bq.rows_inserted, bq.max_cursor) == (
        2,
        1,
        dt.datetime(2026, 1, 1, 0, 2, 0, 500000, tzinfo=dt.UTC),
    )
    assert (bq.rows_inserted, bq.max_cursor) == (dk.rows_inserted, dk.max_cursor)
    assert replicated_rows(warehouse, target) == replicated_rows(duck, target)
    assert replicated_rows(warehouse, target) == [
        (1, "new", Decimal("1.125"), dt.datetime(2026, 1, 1, 8, 1), "[1,2]")
    ]


def test_load_rounds_numeric_to_nine_places_and_creates_an_empty_table(warehouse, client, dataset):
    target = dataclasses.replace(REPLICATED, dataset=dataset)
    load = LoadRequest(target, ("order_id",), "updated_at")
    empty = warehouse.load(load, iter([]))
    assert (empty.rows_read, empty.rows_inserted, empty.max_cursor) == (0, 0, None)
    assert warehouse.row_count(target.ref) == 0
    assert client.get_table(f"{client.project}.{target.ref}").clustering_fields == ["order_id"]
    warehouse.load(load, iter(FIRST))
    amounts = run(client, f"SELECT amount FROM `{dataset}`.orders ORDER BY order_id")
    assert amounts == [(Decimal("10.5"),), (Decimal("20.000000000"),), (Decimal("3"),)]
    assert staging_tables(client, dataset) == []


def test_load_refuses_a_null_primary_key(warehouse, client, dataset):
    target = dataclasses.replace(REPLICATED, dataset=dataset)
    load = LoadRequest(target, ("order_id",), "updated_at")
    warehouse.load(load, iter(FIRST))
    nulls = pa.RecordBatch.from_pylist(
        [{**batch((9, "x", "1", 20, None)).to_pylist()[0], "order_id": None}], ARROW
    )
    with pytest.raises(
        WarehouseError, match=r"the source sent 1 rows with a NULL in primary key \['order_id'\]"
    ):
        warehouse.load(load, iter([nulls]))
    assert warehouse.row_count(target.ref) == 3
    assert staging_tables(client, dataset) == []


# --------------------------------------------------------------------------------------------- generated SQL
# What the emulator accepts but ignores (or cannot run), checked on the statements and API objects.

SPEC_TARGET = TargetTable(
    "analytics",
    "events",
    (
        ColumnDef("ts", "TIMESTAMP", not_null=True),
        ColumnDef("user_id", "INT64"),
        ColumnDef("amount", "NUMERIC"),
    ),
    cluster=("user_id",),
    partition_key="ts",
    partition_granularity="hour",
    partition_expiration_days=30,
    require_partition_filter=True,
)


def test_ddl_text_has_partitioning_clustering_and_options():
    assert ddl_for(SPEC_TARGET) == (
        "CREATE TABLE IF NOT EXISTS `analytics`.`events` (\n"
        "  `ts` TIMESTAMP NOT NULL,\n  `user_id` INT64,\n  `amount` NUMERIC\n)\n"
        "PARTITION BY TIMESTAMP_TRUNC(`ts`, HOUR)\n"
        "CLUSTER BY `user_id`\n"
        "OPTIONS (partition_expiration_days = 30, require_partition_filter = TRUE)"
    )
    daily = TargetTable("a", "d", COLUMNS, partition_key="day")
    assert "PARTITION BY `day`\n" in ddl_for(daily) + "\n"


def test_api_table_carries_require_partition_filter_and_expiration():
    table = table_for(SPEC_TARGET, "p")
    assert table.require_partition_filter is True  # the emulator drops it; BigQuery keeps and enforces it
    assert table.time_partitioning is not None
    assert table.time_partitioning.type_ == "HOUR"
    assert table.time_partitioning.expiration_ms == 30 * 86_400_000


def test_hourly_partitions_need_a_time_column():
    bad = TargetTable("a", "d", COLUMNS, partition_key="day", partition_granularity="hour")
    with pytest.raises(WarehouseError, match="'day' is a DATE, which BigQuery cannot partition by hour"):
        ddl_for(bad)


def test_merge_prunes_the_target_to_the_window_only_when_the_key_holds_the_partition_key():
    target = TargetTable("a", "d", COLUMNS, partition_key="day")
    source = source_select(target, "`a`.`stg`", {"day": "DATE", "region": "STRING", "amount": "FLOAT64"})
    assert "CAST(`amount` AS NUMERIC(38, 9)) AS `amount`" in source
    scoped = merge_sql(target, ("day", "region"), source, window=True)
    assert (
        "ON T.`day` = S.`day` AND T.`region` = S.`region`\n"
        "  AND T.`day` >= CAST(@window_start AS DATE) AND T.`day` < CAST(@window_end AS DATE)\n"
    ) in scoped
    assert (
        "WHEN NOT MATCHED THEN INSERT (`day`, `region`, `amount`) VALUES (S.`day`, S.`region`, S.`amount`)"
        in scoped
    )
    assert "@window" not in merge_sql(target, ("region",), source, window=False)


def test_query_parameters_are_typed():
    params = query_parameters(
        {
            "aware": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            "naive": dt.datetime(2026, 1, 1),
            "date": dt.date(2026, 1, 1),
            "flag": True,
            "int": 1,
            "float": 1.5,
            "dec": Decimal("1.5"),
            "text": "x",
        }
    )
    assert [(p.name, p.type_) for p in params] == [  # type: ignore[union-attr]
        ("aware", "TIMESTAMP"),
        ("naive", "DATETIME"),
        ("date", "DATE"),
        ("flag", "BOOL"),
        ("int", "INT64"),
        ("float", "FLOAT64"),
        ("dec", "NUMERIC"),
        ("text", "STRING"),
    ]
    with pytest.raises(TypeError, match=r"query parameter @bad has the value \{\} of type dict; allowed:"):
        query_parameters({"bad": {}})
