"""Fixtures for tests that talk to real PostgreSQL and MariaDB servers.

The servers come from ``deployments/local/services.sh`` (``make services``), which also prints the URLs:

    eval "$(bash deployments/local/services.sh env)"

Every test gets its own freshly created database (``postgres_url`` / ``mysql_url``), dropped afterwards, so
tests never see each other's tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from psycopg import sql

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item of the session, not only those below this directory.
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _server_url(var: str) -> str:
    url = os.environ.get(var)
    if url:
        return url
    if _running_in_ci():
        # A CI run that silently skips the integration tests would look green while testing nothing.
        pytest.fail(f"{var} is not set, and CI is set: integration tests must run in CI.", pytrace=False)
    pytest.skip(
        f"{var} is not set: run `make services` and "
        '`eval "$(bash deployments/local/services.sh env)"` to run integration tests.'
    )


def _with_database(url: str, database: str) -> str:
    """The same server URL (scheme, credentials, host, port) pointing at another database."""
    return urlsplit(url)._replace(path=f"/{database}").geturl()


def _fresh_database_name() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


def _mysql_connect_args(url: str) -> dict[str, Any]:
    """pymysql.connect() keyword arguments for a ``mysql://user:password@host:port/database`` URL."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or None,
        "autocommit": True,
    }


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """Superuser-ish URL of the test PostgreSQL server (database ``postgres``)."""
    return _server_url("DERIVE_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def mysql_server_url() -> str:
    """URL of the test MariaDB server with a login that may create databases (database ``mysql``)."""
    return _server_url("DERIVE_TEST_MYSQL_URL")


@pytest.fixture(scope="session")
def mongodb_server_url() -> str:
    """URL of the test MongoDB-wire server (FerretDB), no auth."""
    return _server_url("DERIVE_TEST_MONGODB_URL")


@pytest.fixture
def mongo_database(mongodb_server_url: str) -> Iterator[tuple[str, Any]]:
    """(URL, pymongo database) of a fresh database on the FerretDB server, dropped after the test."""
    import pymongo

    name = f"t_{uuid.uuid4().hex[:8]}"
    with pymongo.MongoClient(mongodb_server_url, tz_aware=True) as client:
        try:
            yield mongodb_server_url, client[name]
        finally:
            client.drop_database(name)


@pytest.fixture(scope="session")
def bigquery_emulator() -> tuple[str, str]:
    """(REST endpoint, project) of the local BigQuery emulator."""
    return _server_url("DERIVE_TEST_BIGQUERY_ENDPOINT"), _server_url("DERIVE_TEST_BIGQUERY_PROJECT")


@pytest.fixture
def bigquery_client(bigquery_emulator: tuple[str, str]) -> Iterator[bigquery.Client]:
    """A client of the emulator for a test to set up and inspect what the warehouse did (not the warehouse's own)."""
    endpoint, project = bigquery_emulator
    client = bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def cassandra_server() -> tuple[str, str]:
    """(comma-separated hosts, CQL port) of the test Cassandra server."""
    return _server_url("DERIVE_TEST_CASSANDRA_HOSTS"), _server_url("DERIVE_TEST_CASSANDRA_PORT")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's headless Chromium, which ``deployments/local/services.sh install`` installs (the UI tests);
    ``DERIVE_TEST_CHROMIUM`` names another binary."""
    path = Path(os.environ.get("DERIVE_TEST_CHROMIUM") or "/usr/bin/chromium")
    if path.is_file() and os.access(path, os.X_OK):
        return path
    if _running_in_ci():
        pytest.fail(f"{path} is missing, and CI is set: the UI tests must run in CI.", pytrace=False)
    pytest.skip(f"{path} is missing: run `bash deployments/local/services.sh install` to run the UI tests.")


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database that is dropped after the test."""
    name = _fresh_database_name()
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(postgres_server_url, name)
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            # FORCE ends connections the test left open (a leaked engine or pool must not fail the drop).
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def mysql_url(mysql_server_url: str) -> Iterator[str]:
    """URL of a new, empty MariaDB database that is dropped after the test."""
    name = _fresh_database_name()
    args = _mysql_connect_args(mysql_server_url)
    with pymysql.connect(**args) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        yield _with_database(mysql_server_url, name)
    finally:
        with pymysql.connect(**args) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def mysql_connect() -> Callable[[str], pymysql.connections.Connection]:
    """Open an autocommit pymysql connection from a ``mysql://`` URL (pymysql itself takes no URLs)."""

    def connect(url: str) -> pymysql.connections.Connection:
        return pymysql.connect(**_mysql_connect_args(url))

    return connect
