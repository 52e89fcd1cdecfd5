"""The quality checks' SQL on the BigQuery emulator: the same check objects the assets run (`factory/checks.py`,
`factory/quality_checks.py`), rendered by `resources/reads.py` in BigQuery's dialect with typed query parameters:
`min`/`max` on NUMERIC, DATE, TIMESTAMP and DATETIME columns, the `relationships` anti-join, a custom SQL check
with `@window_start`/`@window_end`, and `row_count` per window. The embedded tests run them on DuckDB.

Start the emulator with `make services`, then `eval "$(bash deployments/local/services.sh env)"`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import bigquery

from derive_assets.factory.checks import CheckRun, ColumnCheck, column_checks
from derive_assets.factory.quality_checks import CustomSql, RowCount
from derive_assets.specs.models import Column, RowCountCheck, SqlCheck
from resources.bigquery_warehouse import BigQueryWarehouse
from resources.reads import TableSlice, WindowBound
from resources.warehouse import TimeWindow

DAY1 = TimeWindow(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
DAY2 = TimeWindow(dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC))

ORDERS = [
    {"order_id": 1, "user_id": 1, "amount": "10", "day": "2026-01-01", "at": "2026-01-01 10:00:00+00",
     "local": "2026-01-01T10:00:00"},
    {"order_id": 2, "user_id": 2, "amount": "-5", "day": "2026-01-01", "at": "2026-01-01 23:00:00+00",
     "local": "2026-01-01T23:00:00"},
    {"order_id": 3, "user_id": 99, "amount": "2000", "day": "2026-01-02", "at": "2026-01-02 09:00:00+00",
     "local": "2026-01-02T09:00:00"},
    {"order_id": 4, "user_id": None, "amount": "1", "day": "2026-01-02", "at": "2026-01-02 10:00:00+00",
     "local": "2026-01-02T10:00:00"},
]  # fmt: skip


@pytest.fixture
def warehouse(bigquery_emulator: tuple[str, str]) -> BigQueryWarehouse:
    endpoint, project = bigquery_emulator
    return BigQueryWarehouse(project=project, api_endpoint=endpoint)


@pytest.fixture
def dataset(bigquery_client: bigquery.Client) -> Iterator[str]:
    """A new dataset with `orders` and the `users` its user_id refers to; deleted afterwards."""
    client = bigquery_client
    name = f"q_{uuid.uuid4().hex[:10]}"
    client.create_dataset(name)
    users = bigquery.Table(
        f"{client.project}.{name}.users", schema=[bigquery.SchemaField("user_id", "INT64")]
    )
    orders = bigquery.Table(
        f"{client.project}.{name}.orders",
        schema=[
            bigquery.SchemaField("order_id", "INT64"),
            bigquery.SchemaField("user_id", "INT64"),
            bigquery.SchemaField("amount", "NUMERIC"),
            bigquery.SchemaField("day", "DATE"),
            bigquery.SchemaField("at", "TIMESTAMP"),
            bigquery.SchemaField("local", "DATETIME"),
        ],
    )
    client.create_table(users)
    client.create_table(orders)
    assert client.insert_rows_json(users, [{"user_id": i} for i in (1, 2, 3)]) == []
    assert client.insert_rows_json(orders, ORDERS) == []
    try:
        yield name
    finally:
        client.delete_dataset(name, delete_contents=True, not_found_ok=True)


def check(name: str, type_: str, rule: str, **constraints: Any) -> ColumnCheck:
    column = Column.model_validate({"name": name, "type": type_, "constraints": constraints})
    (found,) = [c for c in column_checks([column]) if c.rule == rule]
    return found


def run(
    warehouse: BigQueryWarehouse, dataset: str, window: TimeWindow | None = None, **fields: Any
) -> CheckRun:
    rows = TableSlice(f"{dataset}.orders")
    if window is not None:
        rows = TableSlice(rows.ref, window=WindowBound("day", "DATE", window))
    return CheckRun(warehouse, rows, **fields)


@pytest.mark.parametrize(
    ("column", "type_", "rule", "bound", "expected", "examples"),
    [
        ("amount", "NUMERIC", "min", 0, 1, ["-5"]),
        ("amount", "NUMERIC", "max", 1000, 1, ["2000"]),
        ("amount", "NUMERIC", "max", 2000, 0, []),  # inclusive
        ("day", "DATE", "min", dt.date(2026, 1, 2), 2, ["2026-01-01"]),
        # a timestamp bound as YAML gives it (naive: UTC); rows 2, 3 and 4 are later than noon
        ("at", "TIMESTAMP", "max", dt.datetime(2026, 1, 1, 12), 3, None),
        ("at", "TIMESTAMP", "min", dt.date(2026, 1, 1), 0, []),
        ("local", "DATETIME", "min", dt.date(2026, 1, 2), 2, None),
        ("local", "DATETIME", "max", dt.datetime(2026, 1, 2, 9, tzinfo=dt.UTC), 1, None),
    ],
)
def test_min_and_max_on_each_type(
    warehouse: BigQueryWarehouse,
    dataset: str,
    column: str,
    type_: str,
    rule: str,
    bound: Any,
    expected: int,
    examples: list[str] | None,
) -> None:
    result = check(column, type_, rule, **{rule: bound}).evaluate(run(warehouse, dataset))
    assert result.metadata["violations"].value == expected
    assert result.passed is (expected == 0)
    if examples is not None:
        shown = result.metadata["examples"].value if "examples" in result.metadata else []
        assert [str(v).rstrip("0").rstrip(".") if "." in str(v) else str(v) for v in shown] == examples


def test_min_looks_at_the_runs_window_only(warehouse: BigQueryWarehouse, dataset: str) -> None:
    amount_min = check("amount", "NUMERIC", "min", min=0)
    assert not amount_min.evaluate(run(warehouse, dataset, DAY1)).passed
    assert amount_min.evaluate(run(warehouse, dataset, DAY2)).passed


def test_relationships_is_an_anti_join_in_the_warehouse(warehouse: BigQueryWarehouse, dataset: str) -> None:
    rel = check(
        "user_id", "INT64", "relationships", relationships={"table": f"{dataset}.users", "column": "user_id"}
    )
    whole = rel.evaluate(run(warehouse, dataset))
    assert (whole.passed, whole.metadata["violations"].value) == (False, 1)  # 99; a NULL is never missing
    assert whole.metadata["examples"].value == ["99"]
    assert rel.evaluate(run(warehouse, dataset, DAY1)).passed


def test_relationships_to_a_table_not_built_yet_fails_with_the_fix(
    warehouse: BigQueryWarehouse, dataset: str
) -> None:
    rel = check(
        "user_id",
        "INT64",
        "relationships",
        relationships={"table": f"{dataset}.accounts", "column": "user_id"},
    )
    result = rel.evaluate(run(warehouse, dataset))
    assert not result.passed
    assert result.description == (
        f"the referenced table {dataset}.accounts does not exist in the warehouse yet; materialize it, then run "
        "this table (or its checks) again"
    )


def test_a_custom_sql_check_binds_the_window(warehouse: BigQueryWarehouse, dataset: str) -> None:
    rule = SqlCheck(
        name="no_negative_amounts",
        query=f"SELECT order_id, amount FROM {dataset}.orders "
        "WHERE amount < 0 AND at >= @window_start AND at < @window_end",
    )
    custom = CustomSql(rule, "specs/orders.yaml")
    day1 = custom.evaluate(run(warehouse, dataset, DAY1, params=DAY1.as_params()))
    assert (day1.passed, day1.metadata["violations"].value) == (False, 1)
    assert day1.metadata["examples"].value[0].startswith("2, -5")
    assert custom.evaluate(run(warehouse, dataset, DAY2, params=DAY2.as_params())).passed


def test_row_count_per_window_against_the_window_before(warehouse: BigQueryWarehouse, dataset: str) -> None:
    def before(window: TimeWindow) -> TimeWindow | None:
        return DAY1 if window == DAY2 else None

    both = TimeWindow(DAY1.start, DAY2.end)
    ok = RowCount(RowCountCheck(min=2, max_change_percent=10))
    result = ok.evaluate(run(warehouse, dataset, both, windows=(DAY1, DAY2), previous_window=before))
    assert result.passed, result.description
    assert result.metadata["row_counts"].value == {DAY1.start.isoformat(): 2, DAY2.start.isoformat(): 2}

    too_many = RowCount(RowCountCheck(max=1))
    failed = too_many.evaluate(run(warehouse, dataset, both, windows=(DAY1, DAY2), previous_window=before))
    assert failed.description == (
        f"window {DAY1.start.isoformat()} has 2 rows, more than max 1; "
        f"window {DAY2.start.isoformat()} has 2 rows, more than max 1"
    )
