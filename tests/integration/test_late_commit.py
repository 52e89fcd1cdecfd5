"""Rows committed late, behind the watermark, on real PostgreSQL and MariaDB servers with a TIMESTAMP cursor.

dlt#2269 is the anti-example: a run reads `updated_at > last max`, a transaction that was open during that read
commits a row whose `updated_at` is below the max, and no later run ever reads it. Derive's default for these
sources (`wait_for_open_transactions`, on top of the 600 s `cursor_overlap`) keeps the read floor below the
watermark until every transaction open at a read has ended, so the row arrives on the next run; and the source
sensor requests that next run by itself, even when no new row follows. The late row here is two hours behind the
watermark, far beyond any time overlap, so only the fence can bring it."""

from __future__ import annotations

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
ENV = "DERIVE_IT_LATE_SHOP_URL"
SERVERS = {"postgres": "postgres_url", "mysql": "mysql_url"}
CREATE = {
    "postgres": "CREATE TABLE events (id int PRIMARY KEY, note text, updated_at timestamp)",
    "mysql": "CREATE TABLE events (id int PRIMARY KEY, note text, updated_at DATETIME(6)) ENGINE=InnoDB",
}


class Shop:
    """The `shop` source (one table, `events`, cursor `updated_at`, spec defaults unless given), replicated into
    DuckDB by Dagster on one instance, with its sensor's ticks."""

    def __init__(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, kind: str, **table: Any
    ) -> None:
        monkeypatch.setenv(ENV, url)
        self.settings = DeriveSettings(specs_dir=tmp_path / "specs", home=tmp_path / "home")
        (self.settings.specs_dir / "sources").mkdir(parents=True)
        columns = [
            {"name": "id", "type": "INT64"},
            {"name": "note", "type": "STRING"},
            {"name": "updated_at", "type": "TIMESTAMP"},
        ]
        spec = {
            "kind": "source",
            "name": "shop",
            "type": kind,
            "connection_env": ENV,
            "owner": "team:shop",
            "tables": [
                {"name": "events", "primary_key": ["id"], "cursor": "updated_at", "columns": columns, **table}
            ],
        }
        (self.settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(spec))
        self.defs = build_definitions(self.settings)
        self.instance = DagsterInstance.ephemeral()

    def replicate(self) -> dict[str, Any]:
        return support.run_assets(self.defs, self.instance, [KEY])["shop/events"]

    def notes(self) -> list[str]:
        with duckdb.connect(str(self.settings.duckdb_path), read_only=True) as con:
            return [r[0] for r in con.execute("SELECT note FROM shop.events ORDER BY id").fetchall()]

    def tick(self) -> tuple[bool, str | None]:
        """One sensor evaluation: (whether it requested the table, its skip reason)."""
        data = support.sensor_tick(self.defs, "replicate_shop_sensor", self.instance)
        return bool(data.run_requests), data.skip_message


@contextmanager
def session(url: str, kind: str, mysql_connect: Callable[[str], Any]) -> Iterator[Callable[[str], None]]:
    """A connection of its own (autocommit unless a statement says BEGIN), in UTC; yields a statement runner."""
    if kind == "postgres":
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("SET timezone = 'UTC'")
            yield lambda sql: con.execute(sql)  # type: ignore[arg-type, return-value]  (test statements)
    else:
        mysql: pymysql.connections.Connection = mysql_connect(url)
        try:
            mysql.cursor().execute("SET time_zone = '+00:00'")
            yield lambda sql: mysql.cursor().execute(sql)  # type: ignore[return-value]
        finally:
            mysql.close()


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_a_row_committed_late_behind_the_watermark_arrives_on_the_next_run(
    request, tmp_path, monkeypatch, kind, mysql_connect
):
    url = request.getfixturevalue(SERVERS[kind])
    with session(url, kind, mysql_connect) as writer, session(url, kind, mysql_connect) as late:
        writer(CREATE[kind])
        shop = Shop(tmp_path, monkeypatch, url, kind)
        writer("INSERT INTO events VALUES (1, 'first', '2026-11-30 09:00:00')")
        late("BEGIN")
        late("INSERT INTO events VALUES (2, 'late', '2026-11-30 09:05:00')")  # open across the next run
        writer("INSERT INTO events VALUES (3, 'after', '2026-11-30 11:00:00')")
        run = shop.replicate()  # reads while the late transaction is open: it sees 1 and 3
        assert run["derive/watermark"] == "2026-11-30T11:00:00+00:00"
        assert shop.notes() == ["first", "after"]
        moved, _ = shop.tick()  # the watermark is the newest row, and the late transaction is still open
        assert not moved
        again = shop.replicate()  # a run while it is still open: the floor must not move
        assert again["derive/read_floor"] is None and shop.notes() == ["first", "after"]
        late("COMMIT")  # 09:05, two hours behind the watermark
        requested, _ = shop.tick()  # no new row beyond the watermark, but the fence has cleared: settle
        assert requested
        shop.replicate()
        assert shop.notes() == ["first", "late", "after"]
        assert shop.replicate()["derive/read_floor"] == "2026-11-30T11:00:00+00:00"  # caught up
        assert shop.tick() == (
            False,
            "shop/events: no row with updated_at > watermark 2026-11-30T11:00:00+00:00",
        )


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_without_the_default_the_late_row_is_lost_as_in_dlt_2269(
    request, tmp_path, monkeypatch, kind, mysql_connect
):
    url = request.getfixturevalue(SERVERS[kind])
    with session(url, kind, mysql_connect) as writer, session(url, kind, mysql_connect) as late:
        writer(CREATE[kind])
        # The time overlap alone (600 s by default) cannot reach a row two hours behind the watermark.
        shop = Shop(tmp_path, monkeypatch, url, kind, wait_for_open_transactions=False)
        writer("INSERT INTO events VALUES (1, 'first', '2026-11-30 09:00:00')")
        late("BEGIN")
        late("INSERT INTO events VALUES (2, 'late', '2026-11-30 09:05:00')")
        writer("INSERT INTO events VALUES (3, 'after', '2026-11-30 11:00:00')")
        shop.replicate()
        late("COMMIT")
        assert shop.tick()[0] is False  # nothing beyond the watermark, no fence to settle
        shop.replicate()  # even a run reads only from 10:50
        assert shop.notes() == ["first", "after"]


def test_a_postgres_transaction_that_writes_only_after_the_read_is_waited_for_too(
    tmp_path, monkeypatch, postgres_url
):
    """PostgreSQL gives a transaction its xid at its first write, so a transaction that began before a read (and
    took its `now()` then) but writes after it holds no xid at the read: the fence names every open transaction
    of the database (its virtual transaction id), not only those holding an xid."""
    with session(postgres_url, "postgres", None) as writer, session(postgres_url, "postgres", None) as late:  # type: ignore[arg-type]
        writer(CREATE["postgres"])
        shop = Shop(tmp_path, monkeypatch, postgres_url, "postgres")
        late("BEGIN")
        late("SELECT 1")  # open, no write yet: no xid
        writer("INSERT INTO events VALUES (1, 'first', '2026-11-30 11:00:00')")
        shop.replicate()
        late("INSERT INTO events VALUES (2, 'late', '2026-11-30 09:05:00')")  # as if DEFAULT now() at BEGIN
        shop.replicate()  # the late transaction is still open
        late("COMMIT")
        assert shop.tick()[0] is True  # settle: the transactions open at the reads have ended
        shop.replicate()
        assert shop.notes() == ["first", "late"]
