"""Cursor safety on real PostgreSQL and MariaDB servers: late commits behind a higher id, servers in other time
zones, poisoned cursor values and values a column type cannot hold. Each test replicates one small table through
Dagster into DuckDB with the spec defaults, unless it says otherwise."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest
import support
import yaml
from dagster import AssetKey, DagsterInstance

from derive_assets.factory.build import build_definitions
from derive_assets.settings import DeriveSettings

KEY = AssetKey(["shop", "events"])
ENV = "DERIVE_IT_SHOP_URL"


class Shop:
    """A `shop` source of type postgres or mysql with one table, `events`, replicated into DuckDB."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, kind: str, **table: Any):
        monkeypatch.setenv(ENV, url)
        self.url, self.kind = url, kind
        self.settings = DeriveSettings(specs_dir=tmp_path / "specs", home=tmp_path / "home")
        (self.settings.specs_dir / "sources").mkdir(parents=True)
        spec = {
            "kind": "source",
            "name": "shop",
            "type": kind,
            "connection_env": ENV,
            "owner": "team:shop",
            "tables": [{"name": "events", "primary_key": ["id"], **table}],
        }
        (self.settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(spec))
        self.defs = build_definitions(self.settings)
        self.instance = DagsterInstance.ephemeral()

    def run(self, ok: bool = True) -> dict[str, Any]:
        outcome = support.execute(self.defs, self.instance, "replicate_shop")
        assert outcome.success is ok, outcome.errors
        if not ok:
            return {"error": outcome.errors}
        result = outcome.result
        [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == KEY]
        return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}

    def rows(self, sql: str = "SELECT * FROM shop.events ORDER BY ALL") -> list[tuple]:
        with duckdb.connect(str(self.settings.duckdb_path), read_only=True) as con:
            con.execute("SET TimeZone = 'UTC'")
            return con.execute(sql).fetchall()


@contextmanager
def connect(url: str, kind: str, mysql_connect: Callable[[str], Any]) -> Iterator[Any]:
    """An autocommit connection (PostgreSQL in UTC, MariaDB with a UTC session)."""
    if kind == "postgres":
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("SET timezone = 'UTC'")
            yield con
    else:
        con = mysql_connect(url)
        try:
            con.cursor().execute("SET time_zone = '+00:00'")
            yield con
        finally:
            con.close()


def execute(con: Any, sql: str, params: tuple = ()) -> None:
    if isinstance(con, pymysql.connections.Connection):
        con.cursor().execute(sql, params)
    else:
        con.execute(sql, params)


def assert_no_other_writers(con: Any, kind: str, wait_seconds: float = 60.0) -> None:
    """On MariaDB, wait until no transaction that modified rows is open on the server, else fail naming them."""
    if kind != "mysql":
        return
    sql = (
        "SELECT t.trx_id, t.trx_started, t.trx_mysql_thread_id, p.DB, p.COMMAND, LEFT(p.INFO, 200) "
        "FROM information_schema.INNODB_TRX AS t LEFT JOIN information_schema.PROCESSLIST AS p "
        "ON p.ID = t.trx_mysql_thread_id WHERE t.trx_rows_modified > 0"
    )
    deadline = time.monotonic() + wait_seconds
    while True:
        with con.cursor() as cur:
            cur.execute(sql)
            open_writers = cur.fetchall()
        if not open_writers or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not open_writers, (
        f"writing transactions of other clients still open after {wait_seconds:g} s: {open_writers}"
    )


SERVERS = {"postgres": "postgres_url", "mysql": "mysql_url"}
ID_TABLE = {
    "postgres": "CREATE TABLE events (id bigserial PRIMARY KEY, note text)",
    "mysql": "CREATE TABLE events (id bigint AUTO_INCREMENT PRIMARY KEY, note text) ENGINE=InnoDB",
}
ID_SPEC = {"cursor": "id", "columns": [{"name": "id", "type": "INT64"}, {"name": "note", "type": "STRING"}]}


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_an_id_committed_late_behind_a_higher_one_is_still_read(
    request, tmp_path, monkeypatch, kind, mysql_connect
):
    url = request.getfixturevalue(SERVERS[kind])
    with connect(url, kind, mysql_connect) as writer, connect(url, kind, mysql_connect) as late:
        execute(writer, ID_TABLE[kind])
        shop = Shop(tmp_path, monkeypatch, url, kind, **ID_SPEC)
        execute(late, "BEGIN")
        execute(late, "INSERT INTO events (note) VALUES ('late')")  # takes id 1, commits after the read
        execute(writer, "INSERT INTO events (note) VALUES ('early')")  # id 2, committed
        first = shop.run()
        assert shop.rows() == [(2, "early")]
        assert first["derive/watermark"] == "2" and first["derive/read_floor"] is None
        execute(writer, "INSERT INTO events (note) VALUES ('meanwhile')")  # id 3
        second = shop.run()  # the transaction is still open: the floor must not move
        assert shop.rows() == [(2, "early"), (3, "meanwhile")]
        assert second["derive/read_floor"] is None
        execute(late, "COMMIT")
        # MariaDB's fence sees writers of the whole server: none of another client may still be open here, or the
        # floor rightly waits for it too. Wait for them, and name any that stays (a leaked test connection).
        assert_no_other_writers(writer, kind)
        shop.run()  # reads again from the old floor: the open transaction had ended
        assert shop.rows() == [(1, "late"), (2, "early"), (3, "meanwhile")]
        execute(writer, "INSERT INTO events (note) VALUES ('next')")
        fourth = shop.run()
        assert [r[0] for r in shop.rows()] == [1, 2, 3, 4]
        assert fourth["derive/read_floor"] == "3"  # the floor caught up once nothing was open
        assert shop.run()["derive/rows_read"] == 1  # id 4 again, then the floor moves to 4


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_without_the_fence_that_late_id_is_lost_which_is_why_it_is_the_default(
    request, tmp_path, monkeypatch, kind, mysql_connect
):
    url = request.getfixturevalue(SERVERS[kind])
    with connect(url, kind, mysql_connect) as writer, connect(url, kind, mysql_connect) as late:
        execute(writer, ID_TABLE[kind])
        shop = Shop(tmp_path, monkeypatch, url, kind, wait_for_open_transactions=False, **ID_SPEC)
        execute(late, "BEGIN")
        execute(late, "INSERT INTO events (note) VALUES ('late')")
        execute(writer, "INSERT INTO events (note) VALUES ('early')")
        shop.run()
        execute(late, "COMMIT")
        shop.run()
        assert shop.rows() == [(2, "early")]


def test_naive_timestamps_on_a_postgres_server_in_tokyo(tmp_path, monkeypatch, postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as con:
        database = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        con.execute(f"ALTER DATABASE \"{database}\" SET timezone TO 'Asia/Tokyo'")
        con.execute("CREATE TABLE events (id int PRIMARY KEY, at timestamptz, updated_at timestamp)")
    with psycopg.connect(postgres_url, autocommit=True) as con:  # a new session: in Tokyo
        assert con.execute("SHOW timezone").fetchone() == ("Asia/Tokyo",)
        con.execute("INSERT INTO events VALUES (1, '2026-11-30 09:00:00+00', '2026-11-30 09:00:00')")
    columns = [{"name": n, "type": "TIMESTAMP"} for n in ("at", "updated_at")]
    shop = Shop(
        tmp_path,
        monkeypatch,
        postgres_url,
        "postgres",
        cursor="updated_at",
        cursor_overlap=0,
        wait_for_open_transactions=False,
        columns=[{"name": "id", "type": "INT64"}, *columns],
    )
    shop.run()
    assert shop.run()["derive/rows_read"] == 0
    with psycopg.connect(postgres_url, autocommit=True) as con:
        # Two hours after the watermark (naive values are UTC); in Tokyo's reading it would be 7 hours before.
        con.execute("INSERT INTO events VALUES (2, '2026-11-30 11:00:00+00', '2026-11-30 11:00:00')")
    shop.run()
    utc = dt.UTC
    assert shop.rows() == [
        (1, dt.datetime(2026, 11, 30, 9, tzinfo=utc), dt.datetime(2026, 11, 30, 9, tzinfo=utc)),
        (2, dt.datetime(2026, 11, 30, 11, tzinfo=utc), dt.datetime(2026, 11, 30, 11, tzinfo=utc)),
    ]


@pytest.fixture
def mariadb_in_tokyo(mysql_server_url, mysql_connect) -> Iterator[None]:
    """The MariaDB server's default session time zone set to +09:00 for the test (new sessions pick it up)."""
    con = mysql_connect(mysql_server_url)
    cursor = con.cursor()
    cursor.execute("SELECT @@global.time_zone")
    (before,) = cursor.fetchone()
    cursor.execute("SET GLOBAL time_zone = '+09:00'")
    try:
        yield
    finally:
        cursor.execute("SET GLOBAL time_zone = %s", (before,))
        con.close()


@pytest.mark.parametrize("cursor", ["ts", "dt"])
def test_mysql_timestamp_and_datetime_cursors_whatever_the_session_zone(
    tmp_path, monkeypatch, mysql_url, mysql_connect, mariadb_in_tokyo, cursor
):
    with connect(mysql_url, "mysql", mysql_connect) as con:  # a UTC session
        execute(con, "CREATE TABLE events (id int PRIMARY KEY, ts TIMESTAMP(6) NULL, dt DATETIME(6))")
        execute(con, "INSERT INTO events VALUES (1, '2026-11-30 09:00:00', '2026-11-30 09:00:00')")
    columns = [
        {"name": "id", "type": "INT64"},
        {"name": "ts", "type": "TIMESTAMP"},
        {"name": "dt", "type": "DATETIME"},
    ]
    shop = Shop(
        tmp_path,
        monkeypatch,
        mysql_url,
        "mysql",
        cursor=cursor,
        cursor_overlap=0,
        wait_for_open_transactions=False,
        columns=columns,
    )
    shop.run()
    assert shop.run()["derive/rows_read"] == 0
    with connect(mysql_url, "mysql", mysql_connect) as con:
        execute(con, "INSERT INTO events VALUES (2, '2026-11-30 11:00:00', '2026-11-30 11:00:00')")
    assert shop.run()["derive/rows_read"] == 1
    utc = dt.UTC
    assert shop.rows() == [
        (1, dt.datetime(2026, 11, 30, 9, tzinfo=utc), dt.datetime(2026, 11, 30, 9)),
        (2, dt.datetime(2026, 11, 30, 11, tzinfo=utc), dt.datetime(2026, 11, 30, 11)),
    ]


def test_postgres_infinity_never_becomes_the_watermark(tmp_path, monkeypatch, postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz)")
        con.execute("INSERT INTO events VALUES (1, now() - interval '1 hour'), (2, 'infinity')")
    columns = [{"name": "id", "type": "INT64"}, {"name": "updated_at", "type": "TIMESTAMP"}]
    shop = Shop(tmp_path, monkeypatch, postgres_url, "postgres", cursor="updated_at", columns=columns)
    error = shop.run(ok=False)["error"]
    assert re.search(r"1 with cursor 'updated_at' beyond .* \(e\.g\. \{\"id\": 2\}\)", error), error
    quarantining = Shop(
        tmp_path / "q",
        monkeypatch,
        postgres_url,
        "postgres",
        cursor="updated_at",
        columns=columns,
        on_invalid="quarantine",
    )
    first = quarantining.run()
    assert first["derive/rows_invalid"] == 1
    assert quarantining.rows("SELECT id FROM shop.events") == [(1,)]
    [(document,)] = quarantining.rows("SELECT document FROM shop.events__quarantine")
    assert '"id": 2' in document and "beyond year 9999" in document  # PostgreSQL's infinity
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("INSERT INTO events VALUES (3, now())")
    again = quarantining.run()  # the next run reads the stored watermark without trouble
    assert quarantining.rows("SELECT id FROM shop.events ORDER BY id") == [(1,), (3,)]
    assert again["derive/watermark"] < "9999"


@pytest.mark.parametrize("value", ["NaN", "1e30"])
def test_a_numeric_that_arrow_cannot_hold_names_column_and_row(tmp_path, monkeypatch, postgres_url, value):
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("CREATE TABLE events (id int PRIMARY KEY, amount numeric)")
        con.execute("INSERT INTO events VALUES (1, 2.5), (7, %s::numeric)", (value,))
    columns = [{"name": "id", "type": "INT64"}, {"name": "amount", "type": "NUMERIC"}]
    shop = Shop(tmp_path, monkeypatch, postgres_url, "postgres", cursor="id", columns=columns)
    error = shop.run(ok=False)["error"]
    assert "source 'shop' table 'events': 1 invalid rows, so nothing was written" in error
    assert "1 with a value of column 'amount' that is not a number NUMERIC holds exactly" in error
    assert '(e.g. {"id": 7})' in error and "PanicException" not in error


def test_a_far_future_mysql_datetime_fails_the_run_and_keeps_the_watermark(
    tmp_path, monkeypatch, mysql_url, mysql_connect
):
    with connect(mysql_url, "mysql", mysql_connect) as con:
        execute(con, "CREATE TABLE events (id int PRIMARY KEY, updated_at DATETIME(6))")
        execute(con, "INSERT INTO events VALUES (1, UTC_TIMESTAMP(6))")
    columns = [{"name": "id", "type": "INT64"}, {"name": "updated_at", "type": "DATETIME"}]
    shop = Shop(tmp_path, monkeypatch, mysql_url, "mysql", cursor="updated_at", columns=columns)
    mark = shop.run()["derive/watermark"]
    with connect(mysql_url, "mysql", mysql_connect) as con:
        execute(con, "INSERT INTO events VALUES (2, '9999-12-31 23:59:59')")
    error = shop.run(ok=False)["error"]
    assert "1 with cursor 'updated_at' beyond" in error
    assert (
        shop.run(ok=False)
        and shop.instance.get_latest_materialization_event(KEY)
        .asset_materialization.metadata[  # type: ignore[union-attr]
            "derive/watermark"
        ]
        .value
        == mark
    )
