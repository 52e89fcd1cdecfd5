"""Sample data for the demo's microservices: accounts, orders and payments (SQL) and profiles (documents).

`generate` (re)creates the source tables that `table_specs/sources/*.yaml` describe and fills them with a few
weeks of history; `apply_activity` then plays one batch of new activity on top (inserts, updates, soft
deletes, all stamped `updated_at = now`), which is what an incremental replication run should pick up next.

The SQL databases work on SQLite, PostgreSQL and MySQL/MariaDB through SQLAlchemy Core. Timestamps are UTC
everywhere: PostgreSQL stores `timestamptz`, MySQL naive `DATETIME(6)`, SQLite naive text
'YYYY-MM-DD HH:MM:SS.ffffff' (so comparing the text orders it correctly). The user profiles are
semi-structured documents (nested objects, a tag array, a number stored as a string) in a MongoDB-compatible
store: a real server (`mongodb://…`) or embedded montydb (`montydb:///path`); BSON dates keep milliseconds, so
profile timestamps are generated at millisecond precision. Rows and documents are produced and written chunk
by chunk, so memory stays bounded at any scale.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import accumulate, islice
from pathlib import Path
from types import MappingProxyType
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql as pgsql
from pymongo import UpdateOne
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Row, make_url

from derive_assets.replication.mongo_client import MONGO_DATABASE, open_mongo

log = logging.getLogger(__name__)

SOURCES = ("accounts", "orders", "payments")
"""The SQL sources; the profile documents live in `SourceUrls.profiles`."""
PROFILE_COLLECTION = "profile"
PROFILES = f"{MONGO_DATABASE}.{PROFILE_COLLECTION}"
"""The profile documents' key in the returned counts, like `source.table` for the SQL tables."""
BATCH_ROWS = 20_000
"""Rows per executemany (or per COPY) call."""
USERS_PER_CHUNK = 5_000
"""Users generated at a time; with their ~15k orders and ~13k payments, under BATCH_ROWS rows per table."""
PROGRESS_EVERY = 100_000
"""Log progress every this many users."""
DOCUMENTS_PER_INSERT = 5_000
"""Documents per `insert_many` call."""
UPDATES_PER_BULK = 50
"""Updates per `bulk_write`: FerretDB 1.24 (SQLite) hangs, for good, on an update command of 100 or more."""
IN_LIST = 500
"""Ids per `IN (...)` lookup (and `$in` query); far below SQLite's bound-parameter limit."""

COUNTRIES = MappingProxyType(
    {
        "na": (("US", "USD"), ("US", "USD"), ("US", "USD"), ("CA", "CAD")),
        "eu": (("DE", "EUR"), ("FR", "EUR"), ("ES", "EUR"), ("IT", "EUR"), ("NL", "EUR"), ("PL", "PLN")),
        "apac": (("JP", "JPY"), ("AU", "AUD"), ("IN", "INR"), ("SG", "SGD"), ("KR", "KRW")),
        "latam": (("BR", "BRL"), ("MX", "MXN"), ("AR", "ARS"), ("CO", "COP"), ("CL", "CLP")),
    }
)
"""Region -> (country, currency) choices; a country listed twice is drawn twice as often."""
REGIONS, REGION_WEIGHTS = ("na", "eu", "apac", "latam"), (35, 35, 20, 10)
CURRENCY = MappingProxyType({country: cur for choices in COUNTRIES.values() for country, cur in choices})
METHODS, METHOD_WEIGHTS = ("card", "paypal", "bank_transfer"), (70, 20, 10)
TIMEZONES = MappingProxyType(
    {
        "US": ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"),
        "CA": ("America/Toronto", "America/Vancouver"), "DE": ("Europe/Berlin",), "FR": ("Europe/Paris",),
        "ES": ("Europe/Madrid",), "IT": ("Europe/Rome",), "NL": ("Europe/Amsterdam",),
        "PL": ("Europe/Warsaw",), "JP": ("Asia/Tokyo",), "AU": ("Australia/Sydney", "Australia/Perth"),
        "IN": ("Asia/Kolkata",), "SG": ("Asia/Singapore",), "KR": ("Asia/Seoul",),
        "BR": ("America/Sao_Paulo",), "MX": ("America/Mexico_City",), "CO": ("America/Bogota",),
        "AR": ("America/Argentina/Buenos_Aires",), "CL": ("America/Santiago",),
    }
)  # fmt: skip
"""Country -> the time zones a user there may set."""
THEMES = ("dark", "light")
TAGS, TAG_COUNT_WEIGHTS = ("beta", "vip", "early_adopter", "newsletter"), (50, 30, 15, 5)
"""Profile tags; a profile has 0, 1, 2 or 3 of them with these weights."""
FIRST_NAMES = ("Ada", "Ben", "Cleo", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam")
LAST_NAMES = ("Adams", "Berg", "Costa", "Diaz", "Evans", "Fox", "Garcia", "Hall", "Ito", "Jensen", "Kim")


@dataclass(frozen=True)
class SourceUrls:
    """Connection URLs of the demo's sources.

    `accounts`, `orders` and `payments`: `sqlite:///path`, `postgresql://…` or `mysql://…`. `profiles`: the
    document store, `mongodb://…` or `montydb:///path` (database `MONGO_DATABASE`, collection `profile`).
    """

    accounts: str
    orders: str
    payments: str
    profiles: str


def embedded_urls(base: Path) -> SourceUrls:
    """The demo's embedded sources under `base` (e.g. `.derive/sources`): one SQLite file per SQL service, and
    a montydb repository (a directory) for the profiles."""
    sqlite = {source: f"sqlite:///{base.as_posix()}/{source}.db" for source in SOURCES}
    return SourceUrls(**sqlite, profiles=f"montydb:///{base.as_posix()}/profiles")


# ---------------------------------------------------------------------------------------------- schema


def _timestamp() -> sa.types.TypeEngine[datetime]:
    """`timestamptz` on PostgreSQL, `DATETIME(6)` on MySQL (plain DATETIME drops microseconds), else text."""
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _id(name: str, primary_key: bool = False) -> sa.Column[int]:
    return sa.Column(
        name, sa.BigInteger, primary_key=primary_key, autoincrement=False, nullable=not primary_key
    )


def _schema() -> dict[str, tuple[sa.Table, ...]]:
    """The tables of each source, each source on its own MetaData (they live in different databases)."""
    accounts, orders, payments = sa.MetaData(), sa.MetaData(), sa.MetaData()
    ts = _timestamp
    return {
        "accounts": (
            sa.Table(
                "auth", accounts, _id("user_id", True), sa.Column("email", sa.String(255), nullable=False),
                sa.Column("created_at", ts()), sa.Column("updated_at", ts()), sa.Column("deleted_at", ts()),
            ),
        ),
        "orders": (
            sa.Table(
                "orders", orders, _id("order_id", True), _id("user_id"), sa.Column("status", sa.String(16)),
                sa.Column("amount", sa.Numeric(12, 2)), sa.Column("created_at", ts()),
                sa.Column("updated_at", ts()),
            ),
        ),
        "payments": (
            sa.Table(
                "payments", payments, _id("payment_id", True), _id("order_id"), _id("user_id"),
                sa.Column("amount", sa.Numeric(12, 2)), sa.Column("currency", sa.String(3)),
                sa.Column("method", sa.String(16)), sa.Column("status", sa.String(16)),
                sa.Column("paid_at", ts()), sa.Column("updated_at", ts()),
            ),
        ),
    }  # fmt: skip


def _recreate(conn: Connection, tables: Sequence[sa.Table]) -> None:
    """Drop and create without indexes: building the `updated_at` indexes after the bulk load is faster."""
    for table in tables:
        table.drop(conn, checkfirst=True)
        table.create(conn)


def _create_indexes(conn: Connection, tables: Sequence[sa.Table]) -> None:
    for table in tables:
        sa.Index(f"ix_{table.name}_updated_at", table.c.updated_at).create(conn)


# ---------------------------------------------------------------------------------------------- connections


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
def _connect(urls: SourceUrls) -> Iterator[dict[str, Connection]]:
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


def _is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _stamp(conn: Connection, moment: datetime) -> datetime:
    """The value to bind for an aware UTC `moment`: aware for `timestamptz`, naive UTC for the others."""
    return moment if _is_postgres(conn) else moment.replace(tzinfo=None)


def _utc(now: datetime | None) -> datetime:
    """`now` as an aware UTC datetime; naive values are taken to be UTC already."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _ms(moment: datetime) -> datetime:
    """`moment` truncated to milliseconds, what a BSON date keeps (so never later than `moment`)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@contextmanager
def _profiles(url: str) -> Iterator[Any]:
    """The profile collection of the document store at `url` (pymongo or montydb: one API, no common type)."""
    with open_mongo(url) as client:
        yield client[MONGO_DATABASE][PROFILE_COLLECTION]


def _embedded(url: str) -> bool:
    return url.startswith("montydb:")


# ---------------------------------------------------------------------------------------------- writing


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _write(conn: Connection, table: sa.Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert `rows` (tuples in column order, aware UTC timestamps): COPY on PostgreSQL, else executemany."""
    if not rows:
        return
    if _is_postgres(conn):
        _copy(conn, table, rows)
        return
    compiled = table.insert().compile(dialect=conn.dialect)
    binds = list(compiled.positiontup or []) if compiled.positional else list(compiled.params)
    names = [c.name for c in table.columns]
    order = [names.index(name) for name in binds]  # bind names are the column names
    converters = _converters(conn, table)
    for batch in _batched(rows, BATCH_ROWS):
        columns = list(zip(*batch, strict=True))
        values = zip(*(_convert(columns[i], converters[i]) for i in order), strict=True)
        params = list(values) if compiled.positional else [dict(zip(binds, v, strict=True)) for v in values]
        conn.exec_driver_sql(compiled.string, params)


def _convert(values: Sequence[Any], convert: Callable[[Any], Any] | None) -> Sequence[Any]:
    """One column of a batch; column-wise is ~3x faster than converting row by row."""
    if convert is None:
        return values
    return [None if v is None else convert(v) for v in values]


def _converters(conn: Connection, table: sa.Table) -> list[Callable[[Any], Any] | None]:
    """Per column, what SQLAlchemy's bind processing would do to a value, minus its ~3x per-row overhead.

    SQLite: timestamps become SQLAlchemy's text format 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, zone dropped),
    NUMERIC a float (sqlite3 cannot bind Decimal). MySQL: timestamps become naive UTC.
    """
    sqlite = conn.dialect.name == "sqlite"
    converters: list[Callable[[Any], Any] | None] = []
    for column in table.columns:
        if isinstance(column.type, sa.DateTime):
            converters.append(_sqlite_text if sqlite else _naive)
        elif isinstance(column.type, sa.Numeric) and sqlite:
            converters.append(float)
        else:
            converters.append(None)
    return converters


def _sqlite_text(moment: datetime) -> str:
    return moment.isoformat(" ", "microseconds")[:26]


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def _copy(conn: Connection, table: sa.Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """psycopg's COPY FROM STDIN, inside the SQLAlchemy connection's transaction; ~10x executemany."""
    statement = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
        pgsql.Identifier(table.name), pgsql.SQL(", ").join(pgsql.Identifier(c.name) for c in table.columns)
    )
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


# ---------------------------------------------------------------------------------------------- history


@dataclass(frozen=True)
class _Span:
    """The history window: seconds since `start` become aware datetimes, all strictly before `end`."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def at(self, offset: float) -> datetime:
        return self.start + timedelta(seconds=offset)


@dataclass(frozen=True)
class _Chunk:
    auth: list[tuple[Any, ...]]
    profile: list[dict[str, Any]]
    orders: list[tuple[Any, ...]]
    payments: list[tuple[Any, ...]]


def _cents(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(500, 50_000)).scaleb(-2)


def _history(rng: random.Random, extra: random.Random, users: int, span: _Span) -> Iterator[_Chunk]:
    """Rows for `users` users, USERS_PER_CHUNK at a time, from one random stream (chunking changes nothing).

    Users sign up in id order over the span; each places 0-6 orders between sign-up and the end, and each
    non-cancelled order has one payment a few minutes after it. Older orders have moved further along. The
    profile fields the SQL profile rows did not have (settings, tags) come from `extra`, so `rng` draws what
    it always drew; a profile's lifetime value is the sum of the user's succeeded payments.
    """
    region_cum, method_cum = list(accumulate(REGION_WEIGHTS)), list(accumulate(METHOD_WEIGHTS))
    order_id = payment_id = 0
    for first in range(1, users + 1, USERS_PER_CHUNK):
        chunk = _Chunk([], [], [], [])
        for user_id in range(first, min(first + USERS_PER_CHUNK, users + 1)):
            signed_up = span.seconds * (user_id - 1 + rng.random()) / users
            region = rng.choices(REGIONS, cum_weights=region_cum)[0]
            country, currency = rng.choice(COUNTRIES[region])
            chunk.auth.append(_auth_row(rng, user_id, signed_up, span))
            name = _display_name(rng)
            profile_updated = _ms(span.at(_later(rng, signed_up, span, 0.3)))
            spent = Decimal(0)
            for _ in range(rng.randint(0, 6)):
                order_id += 1
                order = _order_row(rng, order_id, user_id, signed_up, span)
                chunk.orders.append(order)
                if order[2] != "cancelled":
                    payment_id += 1
                    method = rng.choices(METHODS, cum_weights=method_cum)[0]
                    payment = _payment_row(rng, payment_id, order, currency, method, span)
                    chunk.payments.append(payment)
                    spent += payment[3] if payment[6] == "succeeded" else 0
            chunk.profile.append(_profile_doc(extra, user_id, name, region, country, spent, profile_updated))
        yield chunk


def _later(rng: random.Random, offset: float, span: _Span, chance: float) -> float:
    """With probability `chance`, a random moment between `offset` and the end of the span; else `offset`."""
    return offset + rng.random() * (span.seconds - offset) if rng.random() < chance else offset


def _auth_row(rng: random.Random, user_id: int, signed_up: float, span: _Span) -> tuple[Any, ...]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    email = f"{first}.{last}.{user_id}@example.com".lower()
    updated = _later(rng, signed_up, span, 0.2)
    return (user_id, email, span.at(signed_up), span.at(updated), None)


def _display_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)[0]}."


def _profile_doc(
    rng: random.Random,
    user_id: int,
    name: str,
    region: str,
    country: str,
    lifetime_value: Decimal,
    updated_at: datetime,
) -> dict[str, Any]:
    """One profile document. `lifetime_value` is stored as a string on purpose: the replicated table's spec
    coerces it to a decimal (and FerretDB has no Decimal128)."""
    settings = {
        "timezone": rng.choice(TIMEZONES[country]),
        "newsletter": rng.random() < 0.4,
        "theme": rng.choice(THEMES),
    }
    tags = rng.sample(TAGS, rng.choices(range(len(TAG_COUNT_WEIGHTS)), TAG_COUNT_WEIGHTS)[0])
    return {
        "user_id": user_id,
        "name": {"display": name},
        "address": {"region": region, "country": country},
        "settings": settings,
        "tags": tags,
        "stats": {"lifetime_value": f"{lifetime_value:.2f}"},
        "updated_at": updated_at,
    }


def _order_row(
    rng: random.Random, order_id: int, user_id: int, signed_up: float, span: _Span
) -> tuple[Any, ...]:
    created = signed_up + rng.random() * (span.seconds - signed_up)
    age_days = (span.seconds - created) / 86_400
    pick = rng.random()
    if pick < 0.05:
        status = "cancelled"
    elif age_days < 1:
        status = "placed" if pick < 0.7 else "shipped"
    elif age_days < 3:
        status = "shipped" if pick < 0.6 else "delivered"
    else:
        status = "delivered"
    updated = created if status == "placed" else _later(rng, created, span, 1.0)
    return (order_id, user_id, status, _cents(rng), span.at(created), span.at(updated))


def _payment_row(
    rng: random.Random, payment_id: int, order: tuple[Any, ...], currency: str, method: str, span: _Span
) -> tuple[Any, ...]:
    order_id, user_id, _, amount, ordered_at, _ = order
    created = (ordered_at - span.start).total_seconds()
    paid = created + rng.random() * min(600.0, span.seconds - created)
    pick = rng.random()
    status = "succeeded" if pick < 0.92 else "failed" if pick < 0.97 else "refunded"
    updated = _later(rng, paid, span, 1.0) if status == "refunded" else paid
    return (payment_id, order_id, user_id, amount, currency, method, status, span.at(paid), span.at(updated))


def generate(
    urls: SourceUrls, users: int = 10_000, seed: int = 7, now: datetime | None = None, days: int = 14
) -> dict[str, int]:
    """Drop, recreate and fill the demo sources with `days` days of history ending just before `now` (UTC).

    ~3 orders per user and one payment per non-cancelled order, so about 6.9 rows per user plus one profile
    document. The same seed, `now` and `users` give the same rows and documents (but for their generated
    `_id`s) on any store. Each SQL database is loaded in one transaction; the profile collection is dropped
    and refilled as it goes (a document store has no such transaction), indexed on `updated_at` and
    `user_id`.
    Returns counts keyed `source.table`, e.g. `accounts.auth`, and `profiles.profile`.
    """
    if users < 1 or days < 1:
        raise ValueError(f"users and days must be positive, got users={users} days={days}")
    end = _utc(now)
    span = _Span(end - timedelta(days=days), end)
    schema = _schema()
    counts = {f"{source}.{t.name}": 0 for source in SOURCES for t in schema[source]} | {PROFILES: 0}
    rng, extra = random.Random(seed), random.Random(f"{seed}:profiles")
    started = time.monotonic()
    with _connect(urls) as conns, _profiles(urls.profiles) as profiles:
        for source in SOURCES:
            _recreate(conns[source], schema[source])
        profiles.drop()
        for done, chunk in enumerate(_history(rng, extra, users, span), start=1):
            for source in SOURCES:
                for table in schema[source]:
                    rows = getattr(chunk, table.name)
                    _write(conns[source], table, rows)
                    counts[f"{source}.{table.name}"] += len(rows)
            _insert_documents(profiles, chunk.profile)
            counts[PROFILES] += len(chunk.profile)
            _progress(min(done * USERS_PER_CHUNK, users), users, sum(counts.values()), started)
        for source in SOURCES:
            _create_indexes(conns[source], schema[source])
        profiles.create_index("updated_at")  # a no-op on montydb, which has no indexes
        profiles.create_index("user_id", unique=True)
    return counts


def _insert_documents(collection: Any, documents: Sequence[dict[str, Any]]) -> None:
    """`insert_many` in batches (it adds an `_id` to each document)."""
    for batch in _batched(documents, DOCUMENTS_PER_INSERT):
        collection.insert_many(batch)


def _progress(done: int, users: int, rows: int, started: float) -> None:
    if done % PROGRESS_EVERY == 0 or (done == users and users >= PROGRESS_EVERY):
        elapsed = time.monotonic() - started
        log.info("generated %d/%d users, %d rows, %.0f rows/s", done, users, rows, rows / max(elapsed, 1e-9))


# ---------------------------------------------------------------------------------------------- activity


@dataclass(frozen=True)
class _State:
    counts: dict[str, int]
    max_ids: dict[str, int]
    latest: datetime | None


def _state(
    conns: dict[str, Connection], schema: dict[str, tuple[sa.Table, ...]], profiles: Any, embedded: bool
) -> _State:
    """Row count, largest key and latest `updated_at` of each table, and of the profile collection."""
    counts: dict[str, int] = {}
    max_ids: dict[str, int] = {}
    latest: list[datetime] = []
    for source in SOURCES:
        for table in schema[source]:
            key = table.primary_key.columns.values()[0]
            query = sa.select(sa.func.count(), sa.func.max(key), sa.func.max(table.c.updated_at))
            count, max_id, last = conns[source].execute(query).one()
            counts[table.name], max_ids[table.name] = count, max_id or 0
            if last is not None:
                latest.append(_utc(last))
    counts["profile"], max_ids["profile"], last_profile = _profile_state(profiles, embedded)
    if last_profile is not None:
        latest.append(_utc(last_profile))  # montydb returns naive UTC datetimes
    return _State(counts, max_ids, max(latest, default=None))


def _profile_state(profiles: Any, embedded: bool) -> tuple[int, int, datetime | None]:
    """Document count, largest `user_id` and latest `updated_at` of the profile collection.

    Three indexed queries on a server; on montydb, where each of them would scan the collection, one scan.
    """
    if embedded:
        count, max_id, latest = 0, 0, None
        for doc in profiles.find():  # a projection would make montydb slower, not faster
            count += 1
            max_id = max(max_id, doc.get("user_id") or 0)
            if isinstance(stamp := doc.get("updated_at"), datetime) and (latest is None or stamp > latest):
                latest = stamp
        return count, max_id, latest
    last_user = profiles.find_one({}, {"_id": 0, "user_id": 1}, sort=[("user_id", -1)])
    last = profiles.find_one({}, {"_id": 0, "updated_at": 1}, sort=[("updated_at", -1)])
    stamp = last.get("updated_at") if last else None
    return (
        profiles.count_documents({}),
        last_user["user_id"] if last_user else 0,
        stamp if isinstance(stamp, datetime) else None,
    )


def _pick(
    conn: Connection,
    table: sa.Table,
    candidates: Iterable[int],
    keep: Callable[[Row[Any]], bool],
    limit: int,
) -> list[Row[Any]]:
    """The first `limit` rows, in candidate order, whose key is among `candidates` and that `keep` accepts."""
    key = table.primary_key.columns.values()[0]
    picked: list[Row[Any]] = []
    for ids in _batched(candidates, IN_LIST):
        found = {row[0]: row for row in conn.execute(sa.select(key, *table.columns).where(key.in_(ids)))}
        for ident in ids:
            row = found.get(ident)
            if row is not None and keep(row):
                picked.append(row)
                if len(picked) == limit:
                    return picked
    return picked


def _candidates(rng: random.Random, max_id: int, wanted: int, oversample: int = 4) -> list[int]:
    """Random distinct ids in 1..max_id, `oversample` times `wanted`, since some will not qualify."""
    return rng.sample(range(1, max_id + 1), min(max_id, wanted * oversample))


def _update(conn: Connection, table: sa.Table, key: str, changes: list[dict[str, Any]], now: datetime) -> int:
    """Apply per-row `changes` (each with `b_key` and `b_<column>` values) and stamp `updated_at = now`."""
    if not changes:
        return 0
    columns = [name[2:] for name in changes[0] if name != "b_key"]
    statement = (
        sa.update(table)
        .where(table.c[key] == sa.bindparam("b_key"))
        .values({**{c: sa.bindparam(f"b_{c}") for c in columns}, "updated_at": _stamp(conn, now)})
    )
    for batch in _batched(changes, BATCH_ROWS):
        conn.execute(statement, batch)
    return len(changes)


def _move_orders(
    conn: Connection, table: sa.Table, rng: random.Random, state: _State, k: int, now: datetime
) -> int:
    """Placed orders ship (or, some, get cancelled); shipped orders are delivered."""
    candidates = _candidates(rng, state.max_ids["orders"], k)
    rows = _pick(conn, table, candidates, lambda r: r.status in ("placed", "shipped"), k)
    changes = [{"b_key": r.order_id, "b_status": _next_status(rng, r.status)} for r in rows]
    return _update(conn, table, "order_id", changes, now)


def _next_status(rng: random.Random, status: str) -> str:
    if status == "shipped":
        return "delivered"
    return "cancelled" if rng.random() < 0.15 else "shipped"


def _refund_payments(
    conn: Connection, table: sa.Table, rng: random.Random, state: _State, k: int, now: datetime
) -> int:
    candidates = _candidates(rng, state.max_ids["payments"], k, oversample=2)
    rows = _pick(conn, table, candidates, lambda r: r.status == "succeeded", k)
    return _update(
        conn, table, "payment_id", [{"b_key": r.payment_id, "b_status": "refunded"} for r in rows], now
    )


def _find_profiles(
    profiles: Any, user_ids: Iterable[int], embedded: bool, projection: dict[str, int] | None = None
) -> dict[int, dict[str, Any]]:
    """The profile documents of `user_ids` (those that exist), by user id.

    `$in` queries on a server (indexed on `user_id`). montydb has no indexes and matches `$in` by comparing
    each document with every listed value, which makes a lookup cost documents x ids: there one plain scan,
    filtered here, is far cheaper (and without `projection`, which montydb applies slowly, in Python).
    """
    wanted = set(user_ids)
    if embedded:
        return {doc["user_id"]: doc for doc in profiles.find() if doc.get("user_id") in wanted}
    found: dict[int, dict[str, Any]] = {}
    for ids in _batched(sorted(wanted), IN_LIST):
        found.update({doc["user_id"]: doc for doc in profiles.find({"user_id": {"$in": ids}}, projection)})
    return found


def _set_fields(
    profiles: Any, changes: Sequence[tuple[dict[str, Any], dict[str, Any]]], embedded: bool
) -> int:
    """Apply `(document, {dotted.path: value})` changes, each to its document (found by `_id`).

    A server takes them as bulk writes of UPDATES_PER_BULK. montydb has no bulk writes and scans its whole
    collection for every update, so there the changed documents (complete, as read) are deleted by one `$in`
    (documents x changes comparisons: ~2 s for 100 changes among 10k documents) and re-inserted with the same
    `_id`s.
    """
    if not changes:
        return 0
    if not embedded:
        for batch in _batched(changes, UPDATES_PER_BULK):
            profiles.bulk_write([UpdateOne({"_id": doc["_id"]}, {"$set": fields}) for doc, fields in batch])
        return len(changes)
    for doc, fields in changes:
        for path, value in fields.items():
            *parents, leaf = path.split(".")
            target = doc
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = value
    for batch in _batched(changes, BATCH_ROWS):
        profiles.delete_many({"_id": {"$in": [doc["_id"] for doc, _ in batch]}})
        profiles.insert_many([doc for doc, _ in batch])
    return len(changes)


def _move_profiles(
    profiles: Any, embedded: bool, rng: random.Random, state: _State, k: int, now: datetime
) -> int:
    """Users move to another region (and a country and time zone in it); some switch theme."""
    candidates = _candidates(rng, state.max_ids["profile"], k, oversample=1)
    found = _find_profiles(profiles, candidates, embedded)
    changes = []
    for user_id in candidates:
        doc = found.get(user_id)
        if doc is None:
            continue
        region = rng.choice([r for r in COUNTRIES if r != doc.get("address", {}).get("region")])
        country = rng.choice(COUNTRIES[region])[0]
        fields: dict[str, Any] = {
            "address.region": region,
            "address.country": country,
            "settings.timezone": rng.choice(TIMEZONES[country]),
            "updated_at": now,
        }
        if rng.random() < 0.25:
            fields["settings.theme"] = "light" if doc.get("settings", {}).get("theme") == "dark" else "dark"
        changes.append((doc, fields))
    return _set_fields(profiles, changes, embedded)


def _soft_delete(
    conn: Connection, table: sa.Table, rng: random.Random, state: _State, k: int, now: datetime
) -> int:
    """Close `k` open accounts: `deleted_at = updated_at = now`."""
    rows = _pick(conn, table, _candidates(rng, state.max_ids["auth"], k), lambda r: r.deleted_at is None, k)
    changes = [{"b_key": r.user_id, "b_deleted_at": _stamp(conn, now)} for r in rows]
    return _update(conn, table, "user_id", changes, now)


def _insert_activity(
    conns: dict[str, Connection],
    schema: dict[str, tuple[sa.Table, ...]],
    profiles: Any,
    embedded: bool,
    rng: random.Random,
    state: _State,
    fraction: float,
    now: datetime,
) -> dict[str, int]:
    """New users sign up and new orders are placed, each paid at once; all stamped `now`."""
    (auth,), (orders,), (payments,) = schema["accounts"], schema["orders"], schema["payments"]
    new_users = max(1, round(state.counts["auth"] * fraction))
    first_user = state.max_ids["auth"] + 1
    auth_rows, profile_docs = [], []
    for user_id in range(first_user, first_user + new_users):
        region = rng.choices(REGIONS, REGION_WEIGHTS)[0]
        country = rng.choice(COUNTRIES[region])[0]
        auth_rows.append((user_id, f"user.{user_id}@example.com", now, now, None))
        profile_docs.append(_profile_doc(rng, user_id, _display_name(rng), region, country, Decimal(0), now))
    _write(conns["accounts"], auth, auth_rows)
    _insert_documents(profiles, profile_docs)

    new_orders = max(1, round(state.counts["orders"] * fraction))
    buyers = [rng.randint(1, first_user + new_users - 1) for _ in range(new_orders)]
    countries = _countries(profiles, embedded, buyers)
    order_rows, payment_rows = [], []
    for offset, user_id in enumerate(buyers):
        order_id, payment_id = state.max_ids["orders"] + 1 + offset, state.max_ids["payments"] + 1 + offset
        amount = _cents(rng)
        order_rows.append((order_id, user_id, "placed", amount, now, now))
        status = "succeeded" if rng.random() < 0.95 else "failed"
        method = rng.choices(METHODS, METHOD_WEIGHTS)[0]
        currency = CURRENCY.get(countries.get(user_id, "US"), "USD")
        payment_rows.append((payment_id, order_id, user_id, amount, currency, method, status, now, now))
    _write(conns["orders"], orders, order_rows)
    _write(conns["payments"], payments, payment_rows)
    return {
        "accounts.auth.inserted": new_users,
        f"{PROFILES}.inserted": new_users,
        "orders.orders.inserted": new_orders,
        "payments.payments.inserted": new_orders,
    }


def _countries(profiles: Any, embedded: bool, user_ids: Iterable[int]) -> dict[int, str]:
    projection = {"_id": 0, "user_id": 1, "address.country": 1}
    docs = _find_profiles(profiles, user_ids, embedded, projection)
    return {
        user_id: country
        for user_id, doc in docs.items()
        if isinstance(country := doc.get("address", {}).get("country"), str)
    }


def apply_activity(
    urls: SourceUrls, fraction: float = 0.01, seed: int = 8, now: datetime | None = None
) -> dict[str, int]:
    """Play one batch of activity on data from `generate`, every touched row and document stamped
    `updated_at = now`, truncated to milliseconds (what a BSON date keeps, so all sources get the same stamp).

    Updates ~`fraction` of orders (ship, deliver, cancel), payments (refund) and profiles (region change, some
    theme switches), soft-deletes ~`fraction`/10 of accounts, then inserts ~`fraction` new users (and their
    profiles), orders and their payments. `now` (default: the current time) must be later than every
    `updated_at` already stored, profiles included: raises ValueError otherwise. The random stream is seeded
    from `seed` and the current largest ids, so repeated batches with the default seed differ but stay
    reproducible. Returns counts keyed `source.table.inserted|updated|deleted`, with `profiles.profile` for
    the profile documents. The SQL changes commit together at the end; the document changes are written as
    they are made.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    moment = _ms(_utc(now))
    schema = _schema()
    (auth,), (orders,), (payments,) = schema["accounts"], schema["orders"], schema["payments"]
    embedded = _embedded(urls.profiles)
    with _connect(urls) as conns, _profiles(urls.profiles) as profiles:
        state = _state(conns, schema, profiles, embedded)
        if state.latest is not None and moment <= state.latest:
            latest = state.latest.isoformat()
            raise ValueError(f"now={moment.isoformat()} must be later than the latest updated_at, {latest}")
        rng = random.Random(
            f"{seed}:{state.max_ids['auth']}:{state.max_ids['orders']}:{state.max_ids['payments']}"
        )
        counts = dict.fromkeys(
            (f"{table}.{what}" for table in [*(f"{s}.{t.name}" for s in SOURCES for t in schema[s]), PROFILES]
             for what in ("inserted", "updated", "deleted")),
            0,
        )  # fmt: skip
        k = {name: max(1, round(count * fraction)) for name, count in state.counts.items()}
        counts["orders.orders.updated"] = _move_orders(
            conns["orders"], orders, rng, state, k["orders"], moment
        )
        counts["payments.payments.updated"] = _refund_payments(
            conns["payments"], payments, rng, state, k["payments"], moment
        )
        counts[f"{PROFILES}.updated"] = _move_profiles(profiles, embedded, rng, state, k["profile"], moment)
        deletes = max(1, round(state.counts["auth"] * fraction / 10))
        counts["accounts.auth.deleted"] = _soft_delete(conns["accounts"], auth, rng, state, deletes, moment)
        counts.update(_insert_activity(conns, schema, profiles, embedded, rng, state, fraction, moment))
    return counts
