"""The MariaDB open-transaction fence against InnoDB's INNODB_TRX cache (derive_assets/replication/fence.py).

InnoDB serves `information_schema.INNODB_TRX` from a cache refreshed only once it has gone unread for 100 ms. A
look within 100 ms of another client's sees the transactions as they were: the writer that began in between is
missing, and a token taken from that view would let the read floor pass rows it may still commit. These tests
make exactly that happen (another client reads the view, a writer begins, the fence looks at once) and check
that the fence still sees the writer; and that when the view cannot be fresh at all (a client polling it every
20 ms), the fence says so and never clears, so nothing is skipped.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest

from derive_assets.replication import fence
from derive_assets.specs.models import SourceSpec

VIEW = "SELECT trx_id, trx_rows_modified FROM information_schema.INNODB_TRX"


@pytest.fixture
def source() -> SourceSpec:
    return SourceSpec.model_validate(
        {
            "kind": "source",
            "name": "shop",
            "type": "mysql",
            "connection_env": "DERIVE_IT_FENCE_URL",
            "owner": "team:shop",
            "tables": [
                {
                    "name": "events",
                    "primary_key": ["id"],
                    "cursor": "id",
                    "columns": [{"name": "id", "type": "INT64"}],
                }
            ],
        }
    )


@pytest.fixture
def connections(
    mysql_url: str, mysql_connect: Callable[[str], pymysql.connections.Connection]
) -> Iterator[tuple[Any, Any]]:
    """(a writer, another client that reads INNODB_TRX) on a database with a table `events`."""
    writer, other = mysql_connect(mysql_url), mysql_connect(mysql_url)
    try:
        writer.cursor().execute("CREATE TABLE events (id bigint PRIMARY KEY) ENGINE=InnoDB")
        yield writer.cursor(), other.cursor()
    finally:
        writer.close()
        other.close()


def fresh_old_view(other: Any) -> None:
    """Let the cache go unread (it refreshes at the next read), then read it: it now holds this moment's view."""
    time.sleep(0.25)
    other.execute(VIEW)
    other.fetchall()


def test_a_writer_that_began_just_after_another_clients_look_is_in_the_token(
    mysql_url: str, source: SourceSpec, connections: tuple[Any, Any]
):
    writer, other = connections
    table = source.tables[0]
    fresh_old_view(other)
    writer.execute("BEGIN")
    writer.execute("INSERT INTO events VALUES (1)")
    other.execute(VIEW)
    assert other.fetchall() == ()  # the cached view does not show the writer: what a plain look would trust
    token = fence.take(mysql_url, source, table)
    assert token is not None and token.isdigit() and int(token) > 0, token
    writer.execute(
        "SELECT trx_id FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = CONNECTION_ID()"
    )
    assert int(token) >= int(writer.fetchone()[0])
    assert not fence.cleared(mysql_url, source, table, token)  # the writer is still open
    writer.execute("COMMIT")
    other.execute(VIEW)  # a look right after the commit: the cache would still show the writer open
    other.fetchall()
    assert fence.cleared(mysql_url, source, table, token)


def test_without_a_fresh_view_the_token_is_stale_and_never_clears(
    mysql_url: str,
    source: SourceSpec,
    mysql_connect: Callable[[str], pymysql.connections.Connection],
    monkeypatch: pytest.MonkeyPatch,
):
    table = source.tables[0]
    monkeypatch.setattr(fence, "FRESH_VIEW_SECONDS", 1.5)
    stop = threading.Event()
    poller = mysql_connect(mysql_url)

    def poll() -> None:  # reads the view every 20 ms: InnoDB never refreshes it
        with poller.cursor() as cursor:
            while not stop.is_set():
                cursor.execute(VIEW)
                cursor.fetchall()
                time.sleep(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    warnings: list[str] = []
    try:
        time.sleep(0.1)
        token = fence.take(mysql_url, source, table, warnings.append)
        assert token == fence.STALE_TOKEN
        assert (
            fence.cleared(mysql_url, source, table, "0", timeout_seconds=1.5) is False
        )  # no view: still open
    finally:
        stop.set()
        thread.join()
        poller.close()
    [warning] = warnings
    assert "source 'shop' table events: MySQL showed no current view of the open transactions" in warning
    assert "Nothing is missed: the next run reads from the old floor again" in warning
    assert fence.cleared(mysql_url, source, table, fence.STALE_TOKEN) is False
    assert fence.cleared(mysql_url, source, table, "0") is True  # nobody polls now: a fresh view, no writer


def test_a_user_without_the_process_privilege_is_told_to_grant_it(
    mysql_url: str, source: SourceSpec, mysql_connect: Callable[[str], pymysql.connections.Connection]
):
    from urllib.parse import urlsplit

    from derive_assets.replication.urls import SourceConnectionError

    parts = urlsplit(mysql_url)
    database = parts.path.lstrip("/")
    user, password = f"np_{uuid.uuid4().hex[:8]}", "s3cret-Fence-9"
    admin = mysql_connect(mysql_url)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", [password])
            cursor.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'")  # no PROCESS
        url = parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}").geturl()
        with pytest.raises(SourceConnectionError) as raised:
            fence.take(url, source, source.tables[0])
        message = str(raised.value)
        assert message.startswith("source 'shop' table 'events': could not check for open transactions (")
        assert "grant the PROCESS privilege to the source user" in message
        assert password not in message
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()
