"""The benchmark's source data: an `orders` table at a chosen scale in fresh PostgreSQL and MariaDB databases.

Rows are generated with numpy into an Arrow table, written once as CSV, and bulk-loaded: PostgreSQL with `COPY
FROM STDIN`, MariaDB with `LOAD DATA LOCAL INFILE`. Keys and the `updated_at` index are created after the load
(faster than maintaining them row by row), then the table is analysed. `created_at` spreads over `DAYS` days, so one
day holds about 2 % of the rows. Each database is created fresh and dropped again by `drop()`.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pymysql
from psycopg import sql

DAYS = 50
STATUSES = np.array(["placed", "shipped", "delivered", "cancelled"])
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_local(url: str) -> str:
    """Refuse any server but this machine's loopback: the benchmark puts real load on it."""
    host = urlsplit(url).hostname
    if host not in LOCAL_HOSTS:
        raise SystemExit(f"refusing to benchmark against {host!r}: only 127.0.0.1 servers may be loaded")
    return url


def with_database(url: str, database: str) -> str:
    return urlsplit(url)._replace(path=f"/{database}").geturl()


def orders(first_id: int, n: int, seed: int, now: dt.datetime, fresh: bool = False) -> pa.Table:
    """`n` orders with ids from `first_id`. Timestamps are naive UTC, spread over the `DAYS` days before `now`
    (or all equal to `now` when `fresh`, like rows a service inserts right now)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    now_us = np.datetime64(now.replace(tzinfo=None), "us")
    if fresh:
        created = np.full(n, now_us)
        updated = created
    else:
        offsets = rng.integers(0, DAYS * 86_400_000_000, n).astype("timedelta64[us]")
        created = now_us - np.timedelta64(DAYS * 86_400_000_000, "us") + offsets
        updated = np.minimum(created + rng.integers(0, 7_200_000_000, n).astype("timedelta64[us]"), now_us)
    cents = rng.integers(100, 100_000_00, n)
    return pa.table(
        {
            "id": ids,
            "user_id": rng.integers(1, max(2, n // 10), n),
            "status": STATUSES[rng.integers(0, len(STATUSES), n)],
            "amount": pa.array([f"{c // 100}.{c % 100:02d}" for c in cents.tolist()]),
            "created_at": pa.array(created, pa.timestamp("us")),
            "updated_at": pa.array(updated, pa.timestamp("us")),
        }
    )


def write_csv(table: pa.Table, path: Path) -> Path:
    pacsv.write_csv(table, path, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return path


class PostgresSource:
    """A fresh database on the test PostgreSQL server, with the `orders` table."""

    def __init__(self, server_url: str) -> None:
        self.server_url = check_local(server_url)
        self.database = f"bench_{uuid.uuid4().hex[:8]}"
        self.url = with_database(server_url, self.database)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True)
        conn.execute("SET timezone = 'UTC'")
        return conn

    def load(self, csv: Path) -> None:
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE orders (id bigint NOT NULL, user_id bigint NOT NULL, status text NOT NULL, "
                "amount numeric(12,2) NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"
            )
            self._copy(conn, csv)
            conn.execute("ALTER TABLE orders ADD PRIMARY KEY (id)")
            conn.execute("CREATE INDEX orders_updated_at ON orders (updated_at)")
            conn.execute("VACUUM ANALYZE orders")

    @staticmethod
    def _copy(conn: psycopg.Connection, csv: Path) -> None:
        with conn.cursor().copy("COPY orders FROM STDIN (FORMAT csv)") as copy, csv.open("rb") as f:
            while chunk := f.read(1 << 20):
                copy.write(chunk)

    def apply_changes(self, round_no: int, fraction: float, now: dt.datetime) -> dict[str, int]:
        """Update `fraction` of the rows (status, amount, updated_at = now()) and insert as many new ones."""
        with self._connect() as conn:
            total, top = conn.execute("SELECT count(*), max(id) FROM orders").fetchone()  # type: ignore[misc]
            modulus = max(1, round(1 / fraction))
            updated = conn.execute(
                "UPDATE orders SET status = 'delivered', amount = amount + 1, updated_at = now() "
                "WHERE id %% %s = %s",
                [modulus, round_no % modulus],
            ).rowcount
            n_new = max(1, int(total * fraction))
            with tempfile.TemporaryDirectory() as tmp:
                csv = write_csv(
                    orders(top + 1, n_new, 1000 + round_no, now, fresh=True), Path(tmp) / "new.csv"
                )
                self._copy(conn, csv)
        return {"updated": updated, "inserted": n_new}

    def count(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT count(*) FROM orders").fetchone()[0]  # type: ignore[index]

    def drop(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database))
            )


def mysql_args(url: str) -> dict:
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or None,
        "autocommit": True,
        "local_infile": True,
    }


class MariaDBSource:
    """A fresh database on the test MariaDB server, with the `orders` table (DATETIME(6) holds UTC)."""

    def __init__(self, server_url: str) -> None:
        self.server_url = check_local(server_url)
        self.database = f"bench_{uuid.uuid4().hex[:8]}"
        self.url = with_database(server_url, self.database)
        with pymysql.connect(**mysql_args(server_url)) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")

    def load(self, csv: Path) -> None:
        with pymysql.connect(**mysql_args(self.url)) as conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE orders (id BIGINT NOT NULL, user_id BIGINT NOT NULL, status VARCHAR(16) NOT NULL, "
                "amount DECIMAL(12,2) NOT NULL, created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL, "
                "PRIMARY KEY (id)) ENGINE=InnoDB"
            )
            # Rows arrive in primary-key order, so the clustered index is built append-only.
            cur.execute(
                f"LOAD DATA LOCAL INFILE '{csv.as_posix()}' INTO TABLE orders FIELDS TERMINATED BY ',' "
                "(id, user_id, status, amount, created_at, updated_at)"
            )
            cur.execute("CREATE INDEX orders_updated_at ON orders (updated_at)")
            cur.execute("ANALYZE TABLE orders")

    def count(self) -> int:
        with pymysql.connect(**mysql_args(self.url)) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")
            return cur.fetchone()[0]  # type: ignore[index]

    def drop(self) -> None:
        with pymysql.connect(**mysql_args(self.server_url)) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
