"""What only BigQuery has, against the emulator and on the generated SQL: the table's partitioning and
clustering, a mismatching existing table, per-run staging tables, the replace transaction, dry runs, and (where the
emulator accepts but ignores or cannot run something, see "Emulator gaps" in `resources/bigquery_warehouse.py`) the
generated statements and API objects.

Every scenario both warehouses share (strategies, loads, Python-asset rows, reads and checks, refusals) is in the
contract suite, `tests/contract/`, which runs it on DuckDB and on this emulator.

Start the emulator with `make services`, then `eval "$(bash deployments/local/services.sh env)"`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlglot
from google.api_core.exceptions import BadRequest
from google.cloud import bigquery
from sqlglot import exp

from resources.bigquery_ddl import ddl_for, table_for
from resources.bigquery_sql import STAGING_PREFIX, merge_sql, replace_sql, source_select
from resources.bigquery_warehouse import BigQueryWarehouse, query_parameters
from resources.schema import ColumnDef
from resources.warehouse import TargetTable, TimeWindow, WarehouseError, WriteRequest

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
def client(bigquery_client: bigquery.Client) -> bigquery.Client:
    """The test's own client (not the warehouse's), to set up and inspect what the warehouse did."""
    return bigquery_client


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


# ----------------------------------------------------------------------------------------------- layout


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


def test_a_run_on_an_existing_table_reads_its_metadata_once(warehouse, client, target, monkeypatch):
    """The schema comparison and the layout check share one `get_table` (the run's first call on the table)."""
    from resources.bigquery_calls import Calls

    warehouse.write(request(target, "append", DAY1))
    fetched: list[str] = []
    real = Calls.get_table

    def counting(self: Calls, ref: str) -> bigquery.Table:
        fetched.append(ref)
        return real(self, ref)

    monkeypatch.setattr(Calls, "get_table", counting)
    warehouse.write(request(target, "append", DAY2))
    assert fetched.count(f"{client.project}.{target.ref}") == 1, fetched
    assert rows(client, target) != []


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


def test_replace_transaction_rolls_back_when_the_insert_fails(warehouse, client, target):
    """The DELETE has run when the INSERT fails: the transaction must undo it."""
    warehouse.write(request(target, "merge", DAY1))
    before = rows(client, target)
    events = f"`{target.dataset}`.events"
    bad = f"SELECT CAST(ts AS DATE) AS day, region, CAST(region AS NUMERIC) AS amount FROM {events}"
    with pytest.raises(BadRequest):
        client.query(replace_sql(target, bad)).result()
    assert rows(client, target) == before


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


# ----------------------------------------------------------------------------------------------- pruning


def merges_into(client: bigquery.Client, target: TargetTable) -> list[exp.Merge]:
    """The MERGE statements into `target` among the emulator's newest jobs (newest first), parsed."""
    into = f"MERGE INTO `{target.dataset}`.`{target.name}`"
    texts = [j.query or "" for j in client.list_jobs(max_results=100) if isinstance(j, bigquery.QueryJob)]
    found = [sqlglot.parse_one(t, read="bigquery") for t in texts if t.startswith(into)]
    assert found, f"no {into} among the emulator's newest jobs"
    return [m for m in found if isinstance(m, exp.Merge)]


@pytest.mark.parametrize(("unique_key", "pruned"), [(("day", "region"), True), (("region",), False)])
def test_a_windowed_merge_restricts_the_target_to_its_window_when_the_key_holds_the_partition_key(
    warehouse, client, target, unique_key, pruned
):
    """BigQuery prunes partitions only by a filter on the partition column: the MERGE's ON clause carries the
    window whenever that is safe (the key holds the partition key, so a key lives in one window only). With
    `require_partition_filter`, BigQuery refuses a MERGE without it; the emulator enforces neither, so this
    reads the statement the run sent (from the emulator's job list)."""
    warehouse.write(request(target, "append", DAY1))
    warehouse.write(WriteRequest(target, query(target.dataset), DAY1.as_params(), "merge", unique_key, DAY1))
    merge = merges_into(client, target)[0]
    on = merge.args["on"]
    names = {p.name for p in on.find_all(exp.Parameter, exp.Placeholder)}
    keys = {c.name for c in on.find_all(exp.Column) if c.table == "T"}
    assert keys == ({"day", "region"} if pruned else {"region"})
    assert names == ({"window_start", "window_end"} if pruned else set())


# ----------------------------------------------------------------------------------------------- dry runs


def test_dry_runs_estimate_the_bytes_a_query_scans(warehouse, target):
    warehouse.write(request(target, "append", DAY1))
    estimate = warehouse.estimate_bytes(query(target.dataset), DAY1.as_params())
    assert isinstance(estimate, int)  # the emulator says 0; BigQuery the bytes scanned
    assert estimate >= 0


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
        "ON T.`day` = S.`day` AND T.`region` = S.`region` "
        "AND T.`day` >= CAST(@window_start AS DATE) AND T.`day` < CAST(@window_end AS DATE) WHEN"
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
