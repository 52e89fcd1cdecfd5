"""The integration fixtures hand out working, empty, per-test databases."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import psycopg
import pymysql


def _database(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def test_postgres_fresh_database(postgres_url: str) -> None:
    assert _database(postgres_url).startswith("t_")
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT 1, current_database()").fetchone()
    assert row == (1, _database(postgres_url))


def test_mysql_fresh_database(
    mysql_url: str, mysql_connect: Callable[[str], pymysql.connections.Connection]
) -> None:
    assert _database(mysql_url).startswith("t_")
    with mysql_connect(mysql_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1, DATABASE()")
        row = cur.fetchone()
    assert row == (1, _database(mysql_url))
