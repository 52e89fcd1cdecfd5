"""The rules of `resources.warehouse_rules` on BigQuery (the emulator, through the real client), and the bounded
waits of `resources.bigquery_calls` against endpoints that are down. The DuckDB side of the same rules is
`tests/embedded/test_warehouse_rules.py`.

Start the emulator with `make services`, then `eval "$(bash deployments/local/services.sh env)"`.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from google.cloud import bigquery

from resources.bigquery_sql import STAGING_PREFIX
from resources.bigquery_warehouse import BigQueryWarehouse
from resources.duckdb_warehouse import DuckDBWarehouse
from resources.schema import ColumnDef
from resources.warehouse import (
    DuplicateKeys,
    LoadRequest,
    MissingColumns,
    NullKeys,
    NullsInRequiredColumns,
    OutOfWindowRows,
    TargetTable,
    TimeWindow,
    WarehouseUnreachable,
    WriteRequest,
)

DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
IN_WINDOW = "SELECT DATE '2026-01-01' AS day, 'eu' AS region, 1 AS amount"
LEAKING = IN_WINDOW + " UNION ALL SELECT DATE '2026-01-02', 'eu', 5"
ARROW = pa.schema(
    [("order_id", pa.int64()), ("status", pa.string()), ("updated_at", pa.timestamp("us", "UTC"))]
)


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
    name = f"t_{uuid.uuid4().hex[:10]}"
    client.create_dataset(name)
    try:
        yield name
    finally:
        client.delete_dataset(name, delete_contents=True, not_found_ok=True)


def daily(dataset: str) -> TargetTable:
    columns = (
        ColumnDef("day", "DATE", not_null=True),
        ColumnDef("region", "STRING"),
        ColumnDef("amount", "NUMERIC"),
    )
    return TargetTable(dataset, "daily", columns, partition_key="day")


def orders_target(dataset: str, not_null: tuple[str, ...] = ()) -> TargetTable:
    columns = (
        ColumnDef("order_id", "INT64", not_null="order_id" in not_null),
        ColumnDef("status", "STRING", not_null="status" in not_null),
        ColumnDef("updated_at", "TIMESTAMP"),
    )
    return TargetTable(dataset, "orders", columns)


def orders(*rows: tuple[int | None, str | None, int]) -> pa.RecordBatch:
    """(order_id, status, updated minute) -> one source batch."""
    return pa.RecordBatch.from_pylist(
        [{"order_id": i, "status": s, "updated_at": T0 + dt.timedelta(minutes=m)} for i, s, m in rows], ARROW
    )


def contents(client: bigquery.Client, ref: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r.values()) for r in client.query(f"SELECT * FROM `{ref}`").result())


def leftovers(client: bigquery.Client, dataset: str) -> list[str]:
    return [t.table_id for t in client.list_tables(dataset) if t.table_id.startswith(STAGING_PREFIX)]


# ----------------------------------------------------------------------------------------------- windows


@pytest.mark.parametrize("unique_key", [("day", "region"), ("region",)])
def test_merge_refuses_rows_outside_its_window(warehouse, client, dataset, unique_key):
    target = daily(dataset)
    warehouse.write(WriteRequest(target, IN_WINDOW.replace("'2026-01-01'", "'2026-01-02'"), {}, "append"))
    warehouse.write(WriteRequest(target, IN_WINDOW, {}, "merge", unique_key, DAY1))
    before = contents(client, target.ref)
    with pytest.raises(
        OutOfWindowRows,
        match=rf"^{dataset}\.daily: the query returned 1 rows whose partition key 'day' is NULL or lies outside "
        r"the window \[2026-01-01T00:00:00\+00:00, 2026-01-02T00:00:00\+00:00\); a merge run may only write its "
        r"own window .* Filter the query with @window_start/@window_end .* Nothing was written\.$",
    ):
        warehouse.write(WriteRequest(target, LEAKING, {}, "merge", unique_key, DAY1))
    assert contents(client, target.ref) == before
    assert leftovers(client, dataset) == []


def test_append_counts_a_null_partition_key_as_outside_the_window(warehouse, dataset):
    target = TargetTable(dataset, "daily", (ColumnDef("day", "DATE"),), partition_key="day")
    sql = "SELECT DATE '2026-01-01' AS day UNION ALL SELECT CAST(NULL AS DATE)"
    with pytest.raises(OutOfWindowRows, match=r"1 rows whose partition key 'day' is NULL or lies outside"):
        warehouse.write(WriteRequest(target, sql, {}, "append", (), DAY1))
    assert not warehouse.table_exists(target.ref)


def test_merge_duplicate_keys_show_samples(warehouse, dataset):
    sql = (
        "SELECT DATE '2026-01-01' AS day, CONCAT('r', CAST(MOD(i, 7) AS STRING)) AS region, 1 AS amount "
        "FROM UNNEST(GENERATE_ARRAY(0, 19)) AS i"
    )
    with pytest.raises(DuplicateKeys) as caught:
        warehouse.write(WriteRequest(daily(dataset), sql, {}, "merge", ("day", "region"), DAY1))
    assert (caught.value.count, len(caught.value.samples)) == (7, 5)
    assert caught.value.samples[0] == (dt.date(2026, 1, 1), "r0")


# ----------------------------------------------------------------------------------------------- loads


def test_first_load_with_a_duplicated_key_creates_no_table(warehouse, client, dataset, tmp_path: Path):
    load = LoadRequest(orders_target(dataset), ("order_id",), "updated_at")
    batches = [orders((1, "new", 1), (2, "new", 2)), orders((2, "paid", 3), (3, "new", 4))]
    duck = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    messages = []
    for wh in (warehouse, duck):
        with pytest.raises(DuplicateKeys) as caught:
            wh.load(load, iter(batches))
        messages.append(str(caught.value))
        assert (caught.value.count, caught.value.samples) == (1, ((2,),))
        assert not wh.table_exists(load.target.ref)
    assert messages[0] == messages[1]  # one rule, one message, both warehouses
    assert (
        f"{dataset}.orders: the source sent several rows for 1 values of primary key ['order_id'] (e.g. 2)"
        in (messages[0])
    )
    assert "Declare a primary_key that is unique in the source. Nothing was written." in messages[0]
    assert leftovers(client, dataset) == []


def test_later_load_with_duplicates_keeps_the_table(warehouse, client, dataset):
    load = LoadRequest(orders_target(dataset), ("order_id",), "updated_at")
    warehouse.load(load, iter([orders((1, "new", 1), (2, "new", 2))]))
    before = contents(client, load.target.ref)
    keys = [(k, "paid", 10 + n) for n in range(2) for k in range(1, 9)]
    with pytest.raises(
        DuplicateKeys,
        match=r"several rows for 8 values of primary key \['order_id'\] \(e\.g\. 1, 2, 3, 4, 5\)",
    ):
        warehouse.load(load, iter([orders(*keys)]))
    assert contents(client, load.target.ref) == before
    assert leftovers(client, dataset) == []


def test_later_load_merges_and_its_watermark_is_the_newest_loaded_row(warehouse, client, dataset):
    load = LoadRequest(orders_target(dataset), ("order_id",), "updated_at")
    warehouse.load(load, iter([orders((1, "new", 1), (2, "new", 2))]))
    result = warehouse.load(load, iter([orders((2, "paid", 7)), orders((3, "new", 5))]))
    assert (result.rows_read, result.rows_inserted, result.rows_updated) == (2, 1, 1)
    assert result.max_cursor == T0 + dt.timedelta(minutes=7)
    assert [r[:2] for r in contents(client, load.target.ref)] == [(1, "new"), (2, "paid"), (3, "new")]


@pytest.mark.parametrize("first", [True, False])
def test_load_refuses_a_null_primary_key(warehouse, client, dataset, first):
    load = LoadRequest(orders_target(dataset), ("order_id",), "updated_at")
    if not first:
        warehouse.load(load, iter([orders((1, "new", 1))]))
    before = None if first else contents(client, load.target.ref)
    with pytest.raises(
        NullKeys, match=rf"^{dataset}\.orders: the source sent 2 rows with a NULL in primary key"
    ):
        warehouse.load(load, iter([orders((5, "new", 2), (None, "x", 3)), orders((None, "y", 4))]))
    if first:
        assert not warehouse.table_exists(load.target.ref)
    else:
        assert contents(client, load.target.ref) == before
    assert leftovers(client, dataset) == []


def test_load_refuses_nulls_in_not_null_columns(warehouse, dataset):
    load = LoadRequest(orders_target(dataset, not_null=("status",)), ("order_id",), "updated_at")
    with pytest.raises(
        NullsInRequiredColumns,
        match=r"the source sent NULL in not_null columns \(rows per column: \{'status': 1\}\)",
    ):
        warehouse.load(load, iter([orders((1, None, 1), (2, "new", 2))]))
    assert not warehouse.table_exists(load.target.ref)


# ----------------------------------------------------------------------------------------------- outages


def closed_port() -> int:
    """A local port nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) but never answers: every request times out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def unreachable(endpoint: str) -> BigQueryWarehouse:
    return BigQueryWarehouse(project="p", api_endpoint=endpoint, timeout_seconds=1, retry_deadline_seconds=3)


def assert_fails_clearly(wh: BigQueryWarehouse, call: Any) -> WarehouseUnreachable:
    started = time.monotonic()
    with pytest.raises(WarehouseUnreachable) as caught:
        call(wh)
    assert time.monotonic() - started < 30  # a generous bound: the client's default is ten minutes
    first_line = str(caught.value).splitlines()[0]
    assert first_line.startswith(f"The BigQuery endpoint {wh.api_endpoint} could not be reached within 3 s")
    assert "DERIVE_BIGQUERY_ENDPOINT" in first_line
    assert "`timeout_seconds` / `retry_deadline_seconds`" in first_line
    assert "DERIVE_BIGQUERY_RETRY_DEADLINE_SECONDS" in first_line
    return caught.value


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda wh: wh.table_exists("d.t"), id="get_table"),
        pytest.param(lambda wh: wh.row_count("d.t"), id="query"),
        pytest.param(
            lambda wh: wh.write(WriteRequest(daily("d"), IN_WINDOW, {}, "merge", ("day", "region"), DAY1)),
            id="write",
        ),
        pytest.param(
            lambda wh: wh.load(
                LoadRequest(orders_target("d"), ("order_id",), "updated_at"), iter([orders((1, "a", 1))])
            ),
            id="load",
        ),
    ],
)
def test_a_refused_connection_fails_within_the_retry_deadline(call):
    error = assert_fails_clearly(unreachable(f"http://127.0.0.1:{closed_port()}"), call)
    assert error.cause == "[Errno 111] Connection refused"


def test_an_endpoint_that_never_answers_fails_within_the_retry_deadline(silent_endpoint):
    error = assert_fails_clearly(unreachable(silent_endpoint), lambda wh: wh.row_count("d.t"))
    assert "timed out" in error.cause.lower()


def test_the_endpoint_in_messages_never_shows_credentials():
    wh = BigQueryWarehouse(
        project="p",
        api_endpoint=f"http://user:s3cret@127.0.0.1:{closed_port()}",
        timeout_seconds=1,
        retry_deadline_seconds=1,
    )
    with pytest.raises(WarehouseUnreachable) as caught:
        wh.table_exists("d.t")
    assert "s3cret" not in str(caught.value)
    assert caught.value.endpoint.startswith("http://127.0.0.1:")


def test_an_upload_to_a_refused_connection_fails_within_the_retry_deadline(tmp_path: Path):
    """The load job's resumable upload has its own retries (not the API's): bounded by the same deadline."""
    path = tmp_path / "rows.parquet"
    path.write_bytes(b"PAR1")
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET)

    def upload(wh: BigQueryWarehouse) -> None:
        with wh.calls() as calls:
            calls.load_parquet(path, "p.d.t", config)

    error = assert_fails_clearly(unreachable(f"http://127.0.0.1:{closed_port()}"), upload)
    assert error.cause == "[Errno 111] Connection refused"


# ----------------------------------------------------------------------------------------------- Arrow rows


def daily_rows(*rows: tuple[str, str | None, int]) -> pa.RecordBatch:
    """(day, region, amount) -> a Python asset's output batch; `amount` as int64, the table says NUMERIC."""
    return pa.RecordBatch.from_pylist(
        [{"Day": dt.date.fromisoformat(d), "region": r, "amount": a, "extra": 1} for d, r, a in rows]
    )


def test_arrow_rows_merge_by_key_with_the_declared_types(warehouse, client, dataset):
    target = daily(dataset)
    merge = WriteRequest(target, None, {}, "merge", ("day", "region"), DAY1)
    first = warehouse.write(merge, [daily_rows(("2026-01-01", "eu", 1)), daily_rows(("2026-01-01", "na", 2))])
    assert (first.rows_read, first.rows_inserted, first.rows_updated) == (2, 2, 0)
    again = warehouse.write(merge, iter([daily_rows(("2026-01-01", "eu", 5))]))
    assert (again.rows_read, again.rows_inserted, again.rows_updated) == (1, 0, 1)
    assert contents(client, target.ref) == [
        (dt.date(2026, 1, 1), "eu", Decimal(5)),
        (dt.date(2026, 1, 1), "na", Decimal(2)),
    ]
    assert leftovers(client, dataset) == []


def test_arrow_rows_follow_the_same_rules(warehouse, client, dataset):
    target = daily(dataset)
    leaking = [daily_rows(("2026-01-01", "eu", 1), ("2026-01-02", "eu", 5))]
    with pytest.raises(
        OutOfWindowRows, match=r"returned 1 rows whose partition key 'day' is NULL or lies outside"
    ):
        warehouse.write(WriteRequest(target, None, {}, "append", (), DAY1), leaking)
    no_region = pa.RecordBatch.from_pylist([{"day": dt.date(2026, 1, 1), "amount": 1}])
    with pytest.raises(
        MissingColumns, match=rf"^{dataset}\.daily: the asset's rows have no column \['region'\] \(they have"
    ):
        warehouse.write(WriteRequest(target, None, {}, "replace"), [no_region])
    assert not warehouse.table_exists(target.ref)
    empty = warehouse.write(WriteRequest(target, None, {}, "replace"), [])
    assert (empty.rows_read, contents(client, target.ref)) == (0, [])
    assert leftovers(client, dataset) == []
