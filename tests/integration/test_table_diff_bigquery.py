"""`derive diff` on BigQuery (the emulator, through the real client): the same scenario and the same assertions as
on DuckDB (`tests/embedded/test_table_diff.py`), so the SQL sqlglot renders for BigQuery (FULL OUTER JOIN, `IS
NOT DISTINCT FROM`, COUNTIF, UNION ALL + GROUP BY, bound DATE windows) finds exactly the seeded differences.

The engine-independent tests are imported from the DuckDB module, which makes pytest collect them here too, where
`warehouse` is this module's BigQuery warehouse over a project of its own on the shared emulator.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from embedded.table_diff_scenario import (
    ENV,
    EVENTS,
    FACTS,
    PROD,
    WINDOWS,
    CreateTable,
    events_spec,
    facts_spec,
    seed,
)
from embedded.test_table_diff import (  # noqa: F401 - collected here with the BigQuery `warehouse`
    test_a_difference_outside_the_windows_is_not_reported_but_the_whole_table_shows_it,
    test_a_missing_table_is_named_with_the_command_that_builds_it,
    test_by_key_over_the_windows_finds_exactly_the_seeded_differences,
    test_json_values_compare_as_their_text,
    test_render_is_plain_text_with_every_difference,
    test_samples_are_capped,
    test_windows_need_a_partition_column,
    test_without_a_key_whole_rows_are_compared_null_safe,
)
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from derive_assets.table_diff import diff_tables
from resources.bigquery_warehouse import BigQueryWarehouse


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value  # a JSON column's value is its text already


class Emulator(NamedTuple):
    client: bigquery.Client
    endpoint: str
    project: str
    create: CreateTable


@pytest.fixture(scope="module")
def emulator(bigquery_emulator: tuple[str, str]) -> Iterator[Emulator]:
    endpoint, _ = bigquery_emulator
    project = f"derive-diff-{uuid.uuid4().hex[:8]}"
    client = bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )

    def create(ref: str, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]) -> None:
        dataset, _ = ref.split(".")
        client.create_dataset(dataset, exists_ok=True)
        table = bigquery.Table(f"{project}.{ref}", schema=[bigquery.SchemaField(n, t) for n, t in columns])
        client.create_table(table)
        errors = client.insert_rows_json(table, [{k: _json(v) for k, v in r.items()} for r in rows])
        assert errors == [], errors

    seed(create)
    try:
        yield Emulator(client, endpoint, project, create)
    finally:
        for dataset in (PROD, ENV, f"bob__{PROD}"):  # the per-test tables live in these too
            client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
        client.close()


@pytest.fixture
def warehouse(emulator: Emulator) -> BigQueryWarehouse:
    return BigQueryWarehouse(project=emulator.project, api_endpoint=emulator.endpoint)


@pytest.fixture
def create_table(emulator: Emulator) -> CreateTable:
    """Another table in the module's project, made through the client."""
    return emulator.create


def test_the_warehouse_is_the_emulator(warehouse: BigQueryWarehouse) -> None:
    assert warehouse.dialect == "bigquery" and warehouse.api_endpoint


def test_identical_tables_say_so_on_bigquery(warehouse: BigQueryWarehouse, emulator: Emulator) -> None:
    client, project = emulator.client, emulator.project
    client.create_dataset(f"bob__{PROD}", exists_ok=True)
    client.query(
        f"CREATE TABLE `{project}.bob__{PROD}.{EVENTS}` AS SELECT * FROM `{project}.{PROD}.{EVENTS}`"
    ).result()

    diff = diff_tables(warehouse, events_spec(), f"{PROD}.{EVENTS}", f"bob__{PROD}.{EVENTS}", WINDOWS)

    assert diff.identical, diff
    assert (diff.production_rows, diff.shadow_rows) == (4, 4)


def test_the_facts_compare_in_a_few_queries(warehouse: BigQueryWarehouse, monkeypatch) -> None:
    """Counts, sums and samples come back as a few small results: no query returns more rows than the sample."""
    sizes: list[int] = []
    query = BigQueryWarehouse.query

    def counting(self: BigQueryWarehouse, sql: str, params: Any) -> list[tuple[Any, ...]]:
        rows = query(self, sql, params)
        sizes.append(len(rows))
        return rows

    monkeypatch.setattr(BigQueryWarehouse, "query", counting)

    diff_tables(warehouse, facts_spec(), f"{PROD}.{FACTS}", f"{ENV}.{FACTS}", WINDOWS, sample=1)

    assert sizes and max(sizes) == 1
    assert len(sizes) == 8  # 2 sides, key stats, 2 one-sided samples, 3 changed columns
