"""Where the demo's sources live and how to open them: `SourceUrls`, one SQLAlchemy connection per SQL
source, the profile collection of the document store, and the UTC timestamp rules every writer follows.

Every store is written in the database its URL names: SQL URLs carry it (`postgresql://…/db`,
`mysql://…/db`, the SQLite file), and a `mongodb://host/db` URL names the document database in its path; a
URL without one (`mongodb://host/`, `montydb:///dir`) uses `SourceUrls.default_database`, the database the
`profiles` source spec reads (`database:`, `MONGO_DATABASE` in the project's specs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from derive_assets.replication.mongo_client import MONGO_DATABASE, open_mongo

SOURCES = ("accounts", "orders", "payments")
"""The SQL sources; the profile documents live in `SourceUrls.profiles`."""
PROFILE_COLLECTION = "profile"
PROFILES = f"profiles.{PROFILE_COLLECTION}"
"""The profile documents' key in the returned counts, `source.table` as for the SQL tables (whichever database
holds them)."""


@dataclass(frozen=True)
class SourceUrls:
    """Connection URLs of the demo's sources.

    `accounts`, `orders` and `payments`: `sqlite:///path`, `postgresql://…/db` or `mysql://…/db`. `profiles`:
    the document store, `mongodb://host/db` or `montydb:///path`, collection `profile` in the database the URL
    names, else in `default_database`.
    """

    accounts: str
    orders: str
    payments: str
    profiles: str
    default_database: str = MONGO_DATABASE
    """The document database when the `profiles` URL names none."""

    @property
    def profiles_database(self) -> str:
        """The document database the profiles are written to: the URL's, else `default_database`."""
        return url_database(self.profiles) or self.default_database

    def every(self) -> dict[str, str]:
        """Each source's URL, by source name (`accounts`, …, `profiles`)."""
        return {source: getattr(self, source) for source in (*SOURCES, "profiles")}


def embedded_urls(base: Path) -> SourceUrls:
    """The demo's embedded sources under `base` (e.g. `.derive/sources`): one SQLite file per SQL service, and
    a montydb repository (a directory) for the profiles."""
    sqlite = {source: f"sqlite:///{base.as_posix()}/{source}.db" for source in SOURCES}
    return SourceUrls(**sqlite, profiles=f"montydb:///{base.as_posix()}/profiles")


def sqlalchemy_url(url: str) -> sa.URL:
    """`postgresql://` and `mysql://` URLs with the drivers this project installs (psycopg 3, PyMySQL)."""
    parsed = make_url(url)
    drivers = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg", "mysql": "mysql+pymysql",
               "mariadb": "mysql+pymysql"}  # fmt: skip
    if parsed.drivername in drivers:
        parsed = parsed.set(drivername=drivers[parsed.drivername])
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return parsed


@contextmanager
def connect(urls: SourceUrls) -> Iterator[dict[str, Connection]]:
    """One connection per source, each in a transaction that commits when the block exits cleanly.

    Sources that share a URL share a connection: two writers on one SQLite file would lock each other out.
    """
    by_url: dict[str, Connection] = {}
    with ExitStack() as stack:
        for source in SOURCES:
            url = getattr(urls, source)
            if url not in by_url:
                engine = sa.create_engine(sqlalchemy_url(url))
                stack.callback(engine.dispose)
                by_url[url] = stack.enter_context(engine.begin())
        yield {source: by_url[getattr(urls, source)] for source in SOURCES}


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def bind_time(conn: Connection, moment: datetime) -> datetime:
    """The value to bind for an aware UTC `moment`: aware for `timestamptz`, naive UTC for the others."""
    return moment if is_postgres(conn) else moment.replace(tzinfo=None)


def utc(now: datetime | None) -> datetime:
    """`now` as an aware UTC datetime; naive values are taken to be UTC already."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def truncate_ms(moment: datetime) -> datetime:
    """`moment` truncated to milliseconds, what a BSON date keeps (so never later than `moment`)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def url_database(url: str) -> str | None:
    """The database a `mongodb://host/db` URL names in its path (percent-decoded), else None; montydb URLs name
    a directory, never a database."""
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        return None
    return unquote(urlsplit(url).path.lstrip("/")) or None


@contextmanager
def open_profiles(urls: SourceUrls) -> Iterator[Any]:
    """The profile collection in `urls.profiles_database` of the document store at `urls.profiles` (pymongo or
    montydb: one API, no common type)."""
    with open_mongo(urls.profiles) as client:
        yield client[urls.profiles_database][PROFILE_COLLECTION]


def is_embedded(url: str) -> bool:
    return url.startswith("montydb:")
