"""The generated history: users, their profiles, orders and payments, from seeded random streams."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any

from derive_assets.demo.connections import (
    truncate_ms,
)
from derive_assets.demo.domain import (
    COUNTRIES,
    FIRST_NAMES,
    LAST_NAMES,
    METHOD_WEIGHTS,
    METHODS,
    REGION_WEIGHTS,
    REGIONS,
    TAG_COUNT_WEIGHTS,
    TAGS,
    THEMES,
    TIMEZONES,
)

USERS_PER_CHUNK = 5_000
"""Users generated at a time; with their ~15k orders and ~13k payments, under BATCH_ROWS rows per table."""


@dataclass(frozen=True)
class Span:
    """The history window: seconds since `start` become aware datetimes, all strictly before `end`."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def at(self, offset: float) -> datetime:
        return self.start + timedelta(seconds=offset)


@dataclass(frozen=True)
class Chunk:
    auth: list[tuple[Any, ...]]
    profile: list[dict[str, Any]]
    orders: list[tuple[Any, ...]]
    payments: list[tuple[Any, ...]]


def cents(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(500, 50_000)).scaleb(-2)


def history(rng: random.Random, extra: random.Random, users: int, span: Span) -> Iterator[Chunk]:
    """Rows for `users` users, USERS_PER_CHUNK at a time, from one random stream (chunking changes nothing).

    Users sign up in id order over the span; each places 0-6 orders between sign-up and the end, and each
    non-cancelled order has one payment a few minutes after it. Older orders have moved further along. The
    profile fields the SQL profile rows did not have (settings, tags) come from `extra`, so `rng` draws what
    it always drew; a profile's lifetime value is the sum of the user's succeeded payments.
    """
    region_cum, method_cum = list(accumulate(REGION_WEIGHTS)), list(accumulate(METHOD_WEIGHTS))
    order_id = payment_id = 0
    for first in range(1, users + 1, USERS_PER_CHUNK):
        chunk = Chunk([], [], [], [])
        for user_id in range(first, min(first + USERS_PER_CHUNK, users + 1)):
            signed_up = span.seconds * (user_id - 1 + rng.random()) / users
            region = rng.choices(REGIONS, cum_weights=region_cum)[0]
            country, currency = rng.choice(COUNTRIES[region])
            chunk.auth.append(_auth_row(rng, user_id, signed_up, span))
            name = display_name(rng)
            profile_updated = truncate_ms(span.at(_later(rng, signed_up, span, 0.3)))
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
            chunk.profile.append(profile_doc(extra, user_id, name, region, country, spent, profile_updated))
        yield chunk


def _later(rng: random.Random, offset: float, span: Span, chance: float) -> float:
    """With probability `chance`, a random moment between `offset` and the end of the span; else `offset`."""
    return offset + rng.random() * (span.seconds - offset) if rng.random() < chance else offset


def _auth_row(rng: random.Random, user_id: int, signed_up: float, span: Span) -> tuple[Any, ...]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    email = f"{first}.{last}.{user_id}@example.com".lower()
    updated = _later(rng, signed_up, span, 0.2)
    return (user_id, email, span.at(signed_up), span.at(updated), None)


def display_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)[0]}."


def profile_doc(
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
    rng: random.Random, order_id: int, user_id: int, signed_up: float, span: Span
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
    return (order_id, user_id, status, cents(rng), span.at(created), span.at(updated))


def _payment_row(
    rng: random.Random, payment_id: int, order: tuple[Any, ...], currency: str, method: str, span: Span
) -> tuple[Any, ...]:
    order_id, user_id, _, amount, ordered_at, _ = order
    created = (ordered_at - span.start).total_seconds()
    paid = created + rng.random() * min(600.0, span.seconds - created)
    pick = rng.random()
    status = "succeeded" if pick < 0.92 else "failed" if pick < 0.97 else "refunded"
    updated = _later(rng, paid, span, 1.0) if status == "refunded" else paid
    return (payment_id, order_id, user_id, amount, currency, method, status, span.at(paid), span.at(updated))
