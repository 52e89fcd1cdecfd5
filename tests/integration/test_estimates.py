"""Row estimates from each source's own statistics, against the real PostgreSQL, MariaDB and FerretDB servers and
a SQLite file: close to the real count once the statistics are fresh, None (never an error) for a missing table,
an unreachable server or a statement that outlives its timeout, and no secret in what is logged."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from derive_assets.replication.estimate import estimate_rows
from derive_assets.specs.models import SourceSpec, SourceTable

ROWS = 5000
LOGGER = "derive_assets.replication.estimate"


def source(kind: str, table: str = "events", **fields: Any) -> tuple[SourceSpec, SourceTable]:
    spec = SourceSpec.model_validate(
        {
            "kind": "source",
            "name": "shop",
            "type": kind,
            "connection_env": "DERIVE_IT_ESTIMATE_URL",
            "owner": "team:shop",
            "tables": [
                {
                    "name": table,
                    "primary_key": ["id"],
                    "cursor": "updated_at",
                    "columns": [{"name": "id", "type": "INT64"}, {"name": "updated_at", "type": "TIMESTAMP"}],
                }
            ],
            **fields,
        }
    )
    return spec, spec.tables[0]


def within_a_factor_of_two(estimate: int | None, count: int) -> bool:
    return estimate is not None and count / 2 <= estimate <= count * 2


SECRET = "s3cret-Estimate-42"
"""A password no server knows, so a failed login would show it if anything did (the test servers' own password
is also their user name, which messages name)."""


def with_password(url: str, password: str = SECRET) -> str:
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", f":{password}@", 1)


# ------------------------------------------------------------------------------------------------ PostgreSQL


def pg(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as con:
        for statement in statements:
            con.execute(statement)  # type: ignore[arg-type]  (test statements, no parameters)


def test_postgres_estimate_follows_analyze_and_the_tables_growth(postgres_url):
    spec, table = source("postgres")
    pg(postgres_url, "CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz)")
    assert estimate_rows(postgres_url, spec, table) is None  # never analyzed: reltuples is -1
    pg(
        postgres_url,
        f"INSERT INTO events SELECT g, now() FROM generate_series(1, {ROWS}) AS g",
        "ANALYZE events",
    )
    assert within_a_factor_of_two(estimate_rows(postgres_url, spec, table), ROWS)
    # Rows added since the ANALYZE: the estimate scales reltuples by the table's current pages, as the planner does.
    pg(postgres_url, f"INSERT INTO events SELECT g, now() FROM generate_series({ROWS + 1}, {4 * ROWS}) AS g")
    grown = estimate_rows(postgres_url, spec, table)
    assert grown is not None and 3 * ROWS <= grown <= 5 * ROWS


def test_postgres_estimate_of_an_analyzed_empty_table_is_none(postgres_url):
    spec, table = source("postgres")
    pg(postgres_url, "CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz)", "ANALYZE events")
    assert estimate_rows(postgres_url, spec, table) is None


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_the_estimate_of_a_missing_table_is_none(request, kind, caplog):
    url = request.getfixturevalue(f"{kind}_url")
    spec, table = source(kind, table="missing")
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert estimate_rows(url, spec, table) is None
    assert "Traceback" not in caplog.text


def test_postgres_estimate_is_cut_off_by_its_statement_timeout(postgres_url, caplog):
    """A table locked by an ALTER in progress: the estimate waits for the lock only until its timeout."""
    spec, table = source("postgres")
    pg(
        postgres_url,
        "CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz)",
        "INSERT INTO events VALUES (1, now())",
        "ANALYZE events",
    )
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with psycopg.connect(postgres_url) as locker:
        locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        # Released after 10 s whatever happens: an estimate without a timeout would then answer (and fail here).
        release = threading.Timer(10, locker.rollback)
        release.start()
        try:
            assert estimate_rows(postgres_url, spec, table, timeout_seconds=0.5) is None
        finally:
            release.cancel()
        locker.rollback()
    assert "source 'shop' table 'events': no row estimate: " in caplog.text
    assert "took longer than 0.5 s" in caplog.text


def test_an_unreachable_server_gives_no_estimate(postgres_url, caplog):
    """A port nobody listens on: None, quickly, and the URL's password is not logged."""
    parts = urlsplit(postgres_url)
    dead = with_password(postgres_url).replace(f":{parts.port}/", ":9/", 1)  # port 9 (discard): refused here
    spec, table = source("postgres")
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    started = time.monotonic()
    assert estimate_rows(dead, spec, table, timeout_seconds=1) is None
    assert time.monotonic() - started < 30
    assert "source 'shop' table 'events': no row estimate: " in caplog.text
    assert "Connection refused" in caplog.text
    assert SECRET not in caplog.text and "Traceback" not in caplog.text


# ---------------------------------------------------------------------------------------------------- MariaDB


def test_mariadb_estimate_after_analyze(mysql_url, mysql_connect: Callable[[str], Any]):
    spec, table = source("mysql")
    con = mysql_connect(mysql_url)
    try:
        cursor = con.cursor()
        cursor.execute("CREATE TABLE events (id int PRIMARY KEY, updated_at DATETIME(6))")
        cursor.execute(f"INSERT INTO events SELECT seq, NOW(6) FROM seq_1_to_{ROWS}")
        cursor.execute("ANALYZE TABLE events")
        cursor.fetchall()
    finally:
        con.close()
    assert within_a_factor_of_two(estimate_rows(mysql_url, spec, table), ROWS)


def test_mariadb_estimate_with_a_wrong_password_is_none_and_logs_no_secret(mysql_url, caplog):
    spec, table = source("mysql")
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert estimate_rows(with_password(mysql_url), spec, table) is None
    assert "source 'shop' table 'events': no row estimate: " in caplog.text
    assert "Access denied" in caplog.text
    assert SECRET not in caplog.text and "Traceback" not in caplog.text


# --------------------------------------------------------------------------------------------------- FerretDB


def test_mongo_estimate_is_the_collections_count(mongo_database):
    url, database = mongo_database
    database.events.insert_many([{"id": i} for i in range(ROWS)])
    spec, table = source("mongodb", database=database.name)
    assert within_a_factor_of_two(estimate_rows(url, spec, table), ROWS)


def test_mongo_estimate_of_a_missing_collection_is_none(mongo_database):
    url, database = mongo_database
    database.other.insert_one({"id": 1})  # the database exists; the collection does not
    spec, table = source("mongodb", database=database.name)
    assert estimate_rows(url, spec, table) is None


def test_the_embedded_mongo_store_gives_no_estimate(tmp_path):
    spec, table = source("mongodb")
    assert estimate_rows(f"montydb:///{tmp_path / 'profiles'}", spec, table) is None


# ----------------------------------------------------------------------------------------------------- SQLite


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, updated_at TEXT)")
        con.executemany("INSERT INTO events (updated_at) VALUES (?)", [("2026-12-01",)] * ROWS)
    con.close()
    return path


def test_sqlite_estimate_is_the_largest_rowid(sqlite_file):
    spec, table = source("sqlite")
    assert estimate_rows(f"sqlite:///{sqlite_file}", spec, table) == ROWS
    con = sqlite3.connect(sqlite_file)
    with con:
        con.execute("DELETE FROM events WHERE id <= 1000")  # deletes below the largest rowid: an over-count
    con.close()
    assert estimate_rows(f"sqlite:///{sqlite_file}", spec, table) == ROWS


def test_sqlite_estimate_of_a_missing_table_or_file_or_a_without_rowid_table_is_none(sqlite_file, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    spec, missing = source("sqlite", table="missing")
    assert estimate_rows(f"sqlite:///{sqlite_file}", spec, missing) is None
    assert "source 'shop' table 'missing': no row estimate: no such table: missing" in caplog.text
    spec, table = source("sqlite")
    assert estimate_rows(f"sqlite:///{sqlite_file.parent / 'nope.db'}", spec, table) is None
    con = sqlite3.connect(sqlite_file)
    with con:
        con.execute("CREATE TABLE keyed (id INTEGER PRIMARY KEY, updated_at TEXT) WITHOUT ROWID")
        con.execute("INSERT INTO keyed VALUES (1, '2026-12-01')")
    con.close()
    spec, keyed = source("sqlite", table="keyed")
    assert estimate_rows(f"sqlite:///{sqlite_file}", spec, keyed) is None
    assert "Traceback" not in caplog.text


def test_sqlite_estimate_waits_for_a_writers_lock_only_until_its_timeout(sqlite_file, caplog):
    spec, table = source("sqlite")
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    writer = sqlite3.connect(sqlite_file, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN EXCLUSIVE")
    # Released after 3 s: an estimate that waited longer than its 0.5 s (sqlite3's default is 5 s) would answer.
    release = threading.Timer(3, lambda: writer.execute("ROLLBACK"))
    release.start()
    try:
        assert estimate_rows(f"sqlite:///{sqlite_file}", spec, table, timeout_seconds=0.5) is None
    finally:
        release.join()
        writer.close()
    assert "source 'shop' table 'events': no row estimate: database is locked" in caplog.text
