"""One batch of new activity on top of generated data: `apply_activity`."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from derive_assets.demo.connections import (
    PROFILES,
    SOURCES,
    SourceUrls,
    bind_time,
    connect,
    is_embedded,
    open_profiles,
    truncate_ms,
    utc,
)
from derive_assets.demo.documents import IN_LIST, buyer_countries, find_profiles, profile_state, set_fields
from derive_assets.demo.domain import (
    COUNTRIES,
    CURRENCY,
    METHOD_WEIGHTS,
    METHODS,
    REGION_WEIGHTS,
    REGIONS,
    TIMEZONES,
)
from derive_assets.demo.history import cents, display_name, profile_doc
from derive_assets.demo.schema import source_tables
from derive_assets.demo.writing import BATCH_ROWS, batched, insert_documents, write_rows


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
                latest.append(utc(last))
    counts["profile"], max_ids["profile"], last_profile = profile_state(profiles, embedded)
    if last_profile is not None:
        latest.append(utc(last_profile))  # montydb returns naive UTC datetimes
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
    for ids in batched(candidates, IN_LIST):
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
        .values({**{c: sa.bindparam(f"b_{c}") for c in columns}, "updated_at": bind_time(conn, now)})
    )
    for batch in batched(changes, BATCH_ROWS):
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
    profiles: Any, embedded: bool, rng: random.Random, state: _State, k: int, now: datetime
) -> int:
    """Users move to another region (and a country and time zone in it); some switch theme."""
    candidates = _candidates(rng, state.max_ids["profile"], k, oversample=1)
    found = find_profiles(profiles, candidates, embedded)
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
    return set_fields(profiles, changes, embedded)


def _soft_delete(
    conn: Connection, table: sa.Table, rng: random.Random, state: _State, k: int, now: datetime
) -> int:
    """Close `k` open accounts: `deleted_at = updated_at = now`."""
    rows = _pick(conn, table, _candidates(rng, state.max_ids["auth"], k), lambda r: r.deleted_at is None, k)
    changes = [{"b_key": r.user_id, "b_deleted_at": bind_time(conn, now)} for r in rows]
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
        profile_docs.append(profile_doc(rng, user_id, display_name(rng), region, country, Decimal(0), now))
    write_rows(conns["accounts"], auth, auth_rows)
    insert_documents(profiles, profile_docs)

    new_orders = max(1, round(state.counts["orders"] * fraction))
    buyers = [rng.randint(1, first_user + new_users - 1) for _ in range(new_orders)]
    countries = buyer_countries(profiles, embedded, buyers)
    order_rows, payment_rows = [], []
    for offset, user_id in enumerate(buyers):
        order_id, payment_id = state.max_ids["orders"] + 1 + offset, state.max_ids["payments"] + 1 + offset
        amount = cents(rng)
        order_rows.append((order_id, user_id, "placed", amount, now, now))
        status = "succeeded" if rng.random() < 0.95 else "failed"
        method = rng.choices(METHODS, METHOD_WEIGHTS)[0]
        currency = CURRENCY.get(countries.get(user_id, "US"), "USD")
        payment_rows.append((payment_id, order_id, user_id, amount, currency, method, status, now, now))
    write_rows(conns["orders"], orders, order_rows)
    write_rows(conns["payments"], payments, payment_rows)
    return {
        "accounts.auth.inserted": new_users,
        f"{PROFILES}.inserted": new_users,
        "orders.orders.inserted": new_orders,
        "payments.payments.inserted": new_orders,
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
    moment = truncate_ms(utc(now))
    schema = source_tables()
    (auth,), (orders,), (payments,) = schema["accounts"], schema["orders"], schema["payments"]
    embedded = is_embedded(urls.profiles)
    with connect(urls) as conns, open_profiles(urls) as profiles:
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
