"""Sample data for the demo's three microservice databases: accounts, orders and payments.

`generate` (re)creates the source tables that `table_specs/sources/*.yaml` describe and fills them with a few
weeks of history; `apply_activity` then plays one batch of new activity on top (inserts, updates, soft
deletes, all stamped `updated_at = now`), which is what an incremental replication run should pick up next.

Works on SQLite, PostgreSQL and MySQL/MariaDB through SQLAlchemy Core. Timestamps are UTC everywhere:
PostgreSQL stores `timestamptz`, MySQL naive `DATETIME(6)`, SQLite naive text 'YYYY-MM-DD HH:MM:SS.ffffff' (so
comparing the text orders it correctly). Rows are produced and written chunk by chunk, so memory stays bounded
at any scale.
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
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Row, make_url

log = logging.getLogger(__name__)

SOURCES = ("accounts", "orders", "payments")
BATCH_ROWS = 20_000
"""Rows per executemany (or per COPY) call."""
USERS_PER_CHUNK = 5_000
"""Users generated at a time; with their ~15k orders and ~13k payments, under BATCH_ROWS rows per table."""
PROGRESS_EVERY = 100_000
"""Log progress every this many users."""
IN_LIST = 500
"""Ids per `IN (...)` lookup; far below SQLite's bound-parameter limit."""

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
FIRST_NAMES = ("Ada", "Ben", "Cleo", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam")
LAST_NAMES = ("Adams", "Berg", "Costa", "Diaz", "Evans", "Fox", "Garcia", "Hall", "Ito", "Jensen", "Kim")


@dataclass(frozen=True)
class SourceUrls:
    """Connection URLs of the three demo databases: `sqlite:///path`, `postgresql://…` or `mysql://…`."""

    accounts: str
    orders: str
    payments: str


def embedded_urls(base: Path) -> SourceUrls:
    """The demo's SQLite databases, one file per service under `base` (e.g. `.derive/sources`)."""
    return SourceUrls(*(f"sqlite:///{base.as_posix()}/{source}.db" for source in SOURCES))


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
            sa.Table(
                "profile", accounts, _id("user_id", True), sa.Column("display_name", sa.String(128)),
                sa.Column("region", sa.String(16)), sa.Column("country", sa.String(2)),
                sa.Column("updated_at", ts()),
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
    profile: list[tuple[Any, ...]]
    orders: list[tuple[Any, ...]]
    payments: list[tuple[Any, ...]]


def _cents(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(500, 50_000)).scaleb(-2)


def _history(rng: random.Random, users: int, span: _Span) -> Iterator[_Chunk]:
    """Rows for `users` users, USERS_PER_CHUNK at a time, from one random stream (chunking changes nothing).

    Users sign up in id order over the span; each places 0-6 orders between sign-up and the end, and each
    non-cancelled order has one payment a few minutes after it. Older orders have moved further along.
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
            chunk.profile.append(_profile_row(rng, user_id, signed_up, span, region, country))
            for _ in range(rng.randint(0, 6)):
                order_id += 1
                order = _order_row(rng, order_id, user_id, signed_up, span)
                chunk.orders.append(order)
                if order[2] != "cancelled":
                    payment_id += 1
                    method = rng.choices(METHODS, cum_weights=method_cum)[0]
                    chunk.payments.append(_payment_row(rng, payment_id, order, currency, method, span))
        yield chunk


def _later(rng: random.Random, offset: float, span: _Span, chance: float) -> float:
    """With probability `chance`, a random moment between `offset` and the end of the span; else `offset`."""
    return offset + rng.random() * (span.seconds - offset) if rng.random() < chance else offset


def _auth_row(rng: random.Random, user_id: int, signed_up: float, span: _Span) -> tuple[Any, ...]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    email = f"{first}.{last}.{user_id}@example.com".lower()
    updated = _later(rng, signed_up, span, 0.2)
    return (user_id, email, span.at(signed_up), span.at(updated), None)


def _profile_row(
    rng: random.Random, user_id: int, signed_up: float, span: _Span, region: str, country: str
) -> tuple[Any, ...]:
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)[0]}."
    return (user_id, name, region, country, span.at(_later(rng, signed_up, span, 0.3)))


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
    """Drop, recreate and fill the demo tables with `days` days of history ending just before `now` (UTC).

    ~3 orders per user and one payment per non-cancelled order, so about 8.7 rows per user in all. The same
    seed, `now` and `users` give the same rows on any database. Each database is loaded in one transaction.
    Returns row counts keyed `source.table`, e.g. `accounts.auth`.
    """
    if users < 1 or days < 1:
        raise ValueError(f"users and days must be positive, got users={users} days={days}")
    end = _utc(now)
    span = _Span(end - timedelta(days=days), end)
    schema = _schema()
    counts = {f"{source}.{t.name}": 0 for source in SOURCES for t in schema[source]}
    rng = random.Random(seed)
    started = time.monotonic()
    with _connect(urls) as conns:
        for source in SOURCES:
            _recreate(conns[source], schema[source])
        for done, chunk in enumerate(_history(rng, users, span), start=1):
            for source in SOURCES:
                for table in schema[source]:
                    rows = getattr(chunk, table.name)
                    _write(conns[source], table, rows)
                    counts[f"{source}.{table.name}"] += len(rows)
            _progress(min(done * USERS_PER_CHUNK, users), users, sum(counts.values()), started)
        for source in SOURCES:
            _create_indexes(conns[source], schema[source])
    return counts


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


def _state(conns: dict[str, Connection], schema: dict[str, tuple[sa.Table, ...]]) -> _State:
    """Row count, largest key and latest `updated_at` of each table."""
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
    return _State(counts, max_ids, max(latest, default=None))


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


def _move_profiles(
    conn: Connection, table: sa.Table, rng: random.Random, state: _State, k: int, now: datetime
) -> int:
    """Users move to another region (and a country in it)."""
    changes = []
    for row in _pick(
        conn, table, _candidates(rng, state.max_ids["profile"], k, oversample=1), lambda _: True, k
    ):
        region = rng.choice([r for r in COUNTRIES if r != row.region])
        changes.append(
            {"b_key": row.user_id, "b_region": region, "b_country": rng.choice(COUNTRIES[region])[0]}
        )
    return _update(conn, table, "user_id", changes, now)


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
    rng: random.Random,
    state: _State,
    fraction: float,
    now: datetime,
) -> dict[str, int]:
    """New users sign up and new orders are placed, each paid at once; all stamped `now`."""
    auth, profile = schema["accounts"]
    (orders,), (payments,) = schema["orders"], schema["payments"]
    new_users = max(1, round(state.counts["auth"] * fraction))
    first_user = state.max_ids["auth"] + 1
    auth_rows, profile_rows = [], []
    for user_id in range(first_user, first_user + new_users):
        region = rng.choices(REGIONS, REGION_WEIGHTS)[0]
        country = rng.choice(COUNTRIES[region])[0]
        auth_rows.append((user_id, f"user.{user_id}@example.com", now, now, None))
        profile_rows.append(
            (user_id, f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)[0]}.", region, country, now)
        )
    _write(conns["accounts"], auth, auth_rows)
    _write(conns["accounts"], profile, profile_rows)

    new_orders = max(1, round(state.counts["orders"] * fraction))
    buyers = [rng.randint(1, first_user + new_users - 1) for _ in range(new_orders)]
    countries = _countries(conns["accounts"], profile, buyers)
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
        "accounts.profile.inserted": new_users,
        "orders.orders.inserted": new_orders,
        "payments.payments.inserted": new_orders,
    }


def _countries(conn: Connection, profile: sa.Table, user_ids: Iterable[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for ids in _batched(sorted(set(user_ids)), IN_LIST):
        query = sa.select(profile.c.user_id, profile.c.country).where(profile.c.user_id.in_(ids))
        found.update({user_id: country for user_id, country in conn.execute(query)})
    return found


def apply_activity(
    urls: SourceUrls, fraction: float = 0.01, seed: int = 8, now: datetime | None = None
) -> dict[str, int]:
    """Play one batch of activity on data from `generate`, every touched row stamped `updated_at = now`.

    Updates ~`fraction` of orders (ship, deliver, cancel), payments (refund) and profiles (region change),
    soft-deletes ~`fraction`/10 of accounts, then inserts ~`fraction` new users, orders and their payments.
    `now` (default: the current time) must be later than every `updated_at` already stored: raises ValueError
    otherwise. The random stream is seeded from `seed` and the current largest ids, so repeated batches with
    the default seed differ but stay reproducible. Returns counts keyed
    `source.table.inserted|updated|deleted`.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    moment = _utc(now)
    schema = _schema()
    auth, profile = schema["accounts"]
    (orders,), (payments,) = schema["orders"], schema["payments"]
    with _connect(urls) as conns:
        state = _state(conns, schema)
        if state.latest is not None and moment <= state.latest:
            latest = state.latest.isoformat()
            raise ValueError(f"now={moment.isoformat()} must be later than the latest updated_at, {latest}")
        rng = random.Random(
            f"{seed}:{state.max_ids['auth']}:{state.max_ids['orders']}:{state.max_ids['payments']}"
        )
        counts = dict.fromkeys(
            (f"{source}.{t.name}.{what}" for source in SOURCES for t in schema[source]
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
        counts["accounts.profile.updated"] = _move_profiles(
            conns["accounts"], profile, rng, state, k["profile"], moment
        )
        deletes = max(1, round(state.counts["auth"] * fraction / 10))
        counts["accounts.auth.deleted"] = _soft_delete(conns["accounts"], auth, rng, state, deletes, moment)
        counts.update(_insert_activity(conns, schema, rng, state, fraction, moment))
    return counts
