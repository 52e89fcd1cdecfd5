"""Fixtures of the contract suites: every scenario runs once per engine of its interface.

`warehouse_engine` is DuckDB (a temporary file) and the BigQuery emulator; `online_store` is SQLite (a temporary
file) and the Cassandra server. The server-backed parameters carry the `integration` mark, so
`pytest -m "not integration"` runs the embedded half; without the servers' variables those parameters skip with
the command that starts them (and fail in CI), like every integration test.

Start the servers with `make services`, then `eval "$(bash deployments/local/services.sh env)"`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from contract_engines import BigQueryEngine, DuckDBEngine, OnlineEngine, WarehouseEngine, fresh_name

# The server fixtures (URLs from the environment, skip locally / fail in CI when unset) are the integration
# suite's own; reusing them keeps one rule for when a server-backed test runs.
from integration.conftest import bigquery_emulator, cassandra_server  # noqa: F401

from resources.cassandra_online_store import CassandraOnlineStore
from resources.sqlite_online_store import SQLiteOnlineStore

WAREHOUSES = [pytest.param("duckdb"), pytest.param("bigquery", marks=pytest.mark.integration)]
ONLINE_STORES = [pytest.param("sqlite"), pytest.param("cassandra", marks=pytest.mark.integration)]


@pytest.fixture(params=WAREHOUSES)
def warehouse_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WarehouseEngine]:
    if request.param == "duckdb":
        engine: WarehouseEngine = DuckDBEngine(tmp_path)
    else:
        endpoint, project = request.getfixturevalue("bigquery_emulator")
        engine = BigQueryEngine(endpoint, project)
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture(params=ONLINE_STORES)
def online_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineEngine]:
    """An online store and a keyspace of its own, dropped afterwards."""
    keyspace = fresh_name("k")
    if request.param == "sqlite":
        yield OnlineEngine("sqlite", SQLiteOnlineStore(path=str(tmp_path / "online.sqlite")), keyspace)
        return
    hosts, port = request.getfixturevalue("cassandra_server")
    store = CassandraOnlineStore(
        contact_points=[h.strip() for h in hosts.split(",") if h.strip()], port=int(port)
    )
    try:
        yield OnlineEngine("cassandra", store, keyspace)
    finally:
        store.session().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
        store.close()
