"""The source sensors' probes against the real servers: PostgreSQL, MariaDB and FerretDB (MongoDB's wire protocol).

A probe finds the rows beyond a table's stored watermark, finds none once the replication has them, and a slow
probe is cut off by the server's statement timeout with a clear message (asserted by its text; the bound is only a
generous guard against a probe that hangs)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import support
import yaml
from bson import ObjectId
from dagster import AssetKey, DagsterInstance

from derive_assets.factory.build import build_definitions
from derive_assets.replication.probe import ProbeTimeout, probe
from derive_assets.settings import DeriveSettings
from derive_assets.specs.models import SourceSpec

KEY = AssetKey(["shop", "events"])
ENV = "DERIVE_IT_PROBE_SHOP_URL"
COLUMNS = [{"name": "id", "type": "INT64"}, {"name": "updated_at", "type": "TIMESTAMP"}]
T0 = dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC)


def spec(kind: str, table: str = "events", **fields: Any) -> dict[str, Any]:
    return {
        "kind": "source",
        "name": "shop",
        "type": kind,
        "connection_env": ENV,
        "owner": "team:shop",
        "tables": [{"name": table, "primary_key": ["id"], "cursor": "updated_at", "columns": COLUMNS}],
        **fields,
    }


class Shop:
    """Definitions for the `shop` source at `url`, one instance, and the sensor's ticks."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, kind: str) -> None:
        monkeypatch.setenv(ENV, url)
        self.settings = DeriveSettings(specs_dir=tmp_path / "specs", home=tmp_path / "home")
        (self.settings.specs_dir / "sources").mkdir(parents=True)
        (self.settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(spec(kind)))
        self.defs = build_definitions(self.settings)
        self.instance = DagsterInstance.ephemeral()

    def tick(self) -> tuple[set[AssetKey] | None, str | None]:
        data = support.sensor_tick(self.defs, "replicate_shop_sensor", self.instance)
        if not data.run_requests:
            return None, data.skip_message
        return set(data.run_requests[0].asset_selection or []), None

    def replicate(self) -> dict[str, Any]:
        return support.run_assets(self.defs, self.instance, [KEY])["shop/events"]


SQL_SERVERS = {"postgres": "postgres_url", "mysql": "mysql_url"}


def sql_runner(kind: str, url: str, mysql_connect: Callable[[str], Any]) -> Callable[[str], None]:
    """Run one statement on the server, autocommit, in a UTC session."""

    def run(sql: str) -> None:
        if kind == "postgres":
            with psycopg.connect(url, autocommit=True) as con:
                con.execute("SET timezone = 'UTC'")
                con.execute(sql)  # type: ignore[arg-type]  (test statements, no parameters)
        else:
            con = mysql_connect(url)
            try:
                con.cursor().execute("SET time_zone = '+00:00'")
                con.cursor().execute(sql)
            finally:
                con.close()

    return run


CREATE = {
    "postgres": "CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz)",
    "mysql": "CREATE TABLE events (id int PRIMARY KEY, updated_at TIMESTAMP(6) NULL)",
}


@pytest.mark.parametrize("kind", sorted(SQL_SERVERS))
def test_the_sensor_requests_new_rows_and_nothing_once_replicated(
    request, tmp_path, monkeypatch, kind, mysql_connect
):
    url = request.getfixturevalue(SQL_SERVERS[kind])
    run = sql_runner(kind, url, mysql_connect)
    run(CREATE[kind])
    run("INSERT INTO events VALUES (1, '2026-11-30 09:00:00')")
    shop = Shop(tmp_path, monkeypatch, url, kind)
    assert shop.tick()[0] == {KEY}  # never replicated
    first = shop.replicate()
    # A first load takes the fence before its read: no transaction was open, so its floor is its watermark at once
    # and no settling run follows (test_snapshot's one-pass tests pin the case with one open).
    assert first["derive/read_floor"] == first["derive/pending_floor"] == "2026-11-30T09:00:00+00:00"
    requested, reason = shop.tick()
    assert requested is None
    assert reason == "shop/events: no row with updated_at > watermark 2026-11-30T09:00:00+00:00"
    run("INSERT INTO events VALUES (2, '2026-11-30 09:00:00.000001')")  # one microsecond later
    assert shop.tick()[0] == {KEY}
    # The run's read floor waits below its new watermark (the fence): once the transactions open at its read have
    # ended, one more run reads again from the floor, for rows they committed late, and moves the floor up.
    assert shop.replicate()["derive/read_floor"] == "2026-11-30T09:00:00+00:00"
    assert shop.tick()[0] == {KEY}  # the settling run
    assert shop.replicate()["derive/read_floor"] == "2026-11-30T09:00:00.000001+00:00"
    assert shop.tick()[0] is None


@pytest.mark.parametrize("kind", sorted(SQL_SERVERS))
def test_the_probe_compares_in_utc_whatever_the_servers_zone(request, kind, mysql_connect):
    url = request.getfixturevalue(SQL_SERVERS[kind])
    run = sql_runner(kind, url, mysql_connect)
    run(CREATE[kind])
    run("INSERT INTO events VALUES (1, '2026-11-30 09:00:00')")  # 09:00 UTC
    source = SourceSpec.model_validate(spec(kind))
    table = source.tables[0]
    assert probe(source, table, url, None, 5) == T0
    assert probe(source, table, url, T0, 5) is None
    assert probe(source, table, url, T0 - dt.timedelta(microseconds=1), 5) == T0
    tokyo = T0.astimezone(dt.timezone(dt.timedelta(hours=9)))  # the same instant, another offset
    assert probe(source, table, url, tokyo, 5) is None


SLOW_VIEW = {
    # Each row waits 3 s before the view returns it: MAX() over it takes at least 3 s.
    "postgres": "CREATE VIEW slow AS SELECT id, updated_at FROM events WHERE pg_sleep(3)::text = ''",
    "mysql": "CREATE VIEW slow AS SELECT id, updated_at FROM events WHERE SLEEP(3) = 0",
}


@pytest.mark.parametrize("kind", sorted(SQL_SERVERS))
def test_a_slow_probe_is_cut_off_by_the_statement_timeout(request, kind, mysql_connect):
    url = request.getfixturevalue(SQL_SERVERS[kind])
    run = sql_runner(kind, url, mysql_connect)
    run(CREATE[kind])
    run("INSERT INTO events VALUES (1, '2026-11-30 09:00:00')")
    run(SLOW_VIEW[kind])
    source = SourceSpec.model_validate(spec(kind, table="slow"))
    started = time.monotonic()
    with pytest.raises(
        ProbeTimeout,
        match=r"source 'shop' table 'slow': the probe for rows with updated_at beyond the watermark took longer "
        r"than 0\.5 s and was cut off by the server\. Index the cursor column \(updated_at\)",
    ) as error:
        probe(source, source.tables[0], url, None, 0.5)
    assert time.monotonic() - started < 30  # a bound against a probe that hangs, not a timing assertion
    assert "password" not in str(error.value).lower()


# ---------------------------------------------------------------------------------------------- FerretDB


def test_mongo_probe_finds_documents_beyond_the_watermark_and_none_at_it(mongo_database):
    url, database = mongo_database
    source = SourceSpec.model_validate(spec("mongodb", database=database.name))
    table = source.tables[0]
    database.events.insert_many(
        [{"id": 1, "updated_at": T0}, {"id": 2, "updated_at": T0 - dt.timedelta(hours=1)}]
    )
    assert probe(source, table, url, None, 5) == T0
    assert probe(source, table, url, T0, 5) is None
    database.events.insert_one({"id": 3, "updated_at": T0 + dt.timedelta(milliseconds=1)})
    assert probe(source, table, url, T0, 5) == T0 + dt.timedelta(milliseconds=1)


def test_mongo_probe_of_an_object_id_cursor(mongo_database):
    url, database = mongo_database
    columns = [{"name": "id", "type": "STRING", "path": "_id"}]
    source = SourceSpec.model_validate(
        {
            **spec("mongodb", database=database.name),
            "tables": [{"name": "events", "primary_key": ["id"], "cursor": "id", "columns": columns}],
        }
    )
    table = source.tables[0]
    first, second = ObjectId(), ObjectId()
    database.events.insert_many([{"_id": first}, {"_id": second}])
    assert probe(source, table, url, None, 5) == str(second)
    assert probe(source, table, url, str(second), 5) is None
    assert probe(source, table, url, str(first), 5) == str(second)
