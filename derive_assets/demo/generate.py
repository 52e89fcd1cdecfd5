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

This module is the generator's entry point and public face; the parts live beside it: `connections` (where the
sources are, how to open them, the UTC rules), `schema` (the SQL tables), `domain` (the value domains),
`history` (the generated rows and documents), `writing` (bulk writes), `activity` (`apply_activity`) and
`documents` (its profile-document side).
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta

from derive_assets.demo.activity import apply_activity
from derive_assets.demo.connections import (
    PROFILE_COLLECTION,
    PROFILES,
    SOURCES,
    SourceUrls,
    connect,
    embedded_urls,
    open_profiles,
    sqlalchemy_url,
    utc,
)
from derive_assets.demo.documents import IN_LIST, UPDATES_PER_BULK
from derive_assets.demo.domain import (
    COUNTRIES,
    CURRENCY,
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
from derive_assets.demo.history import USERS_PER_CHUNK, Span, history
from derive_assets.demo.schema import create_indexes, recreate, source_tables
from derive_assets.demo.writing import BATCH_ROWS, DOCUMENTS_PER_INSERT, insert_documents, write_rows

__all__ = [
    "BATCH_ROWS",
    "COUNTRIES",
    "CURRENCY",
    "DOCUMENTS_PER_INSERT",
    "FIRST_NAMES",
    "IN_LIST",
    "LAST_NAMES",
    "METHODS",
    "METHOD_WEIGHTS",
    "PROFILES",
    "PROFILE_COLLECTION",
    "PROGRESS_EVERY",
    "REGIONS",
    "REGION_WEIGHTS",
    "SOURCES",
    "TAGS",
    "TAG_COUNT_WEIGHTS",
    "THEMES",
    "TIMEZONES",
    "UPDATES_PER_BULK",
    "USERS_PER_CHUNK",
    "SourceUrls",
    "apply_activity",
    "embedded_urls",
    "generate",
    "sqlalchemy_url",
]

log = logging.getLogger(__name__)

PROGRESS_EVERY = 100_000
"""Log progress every this many users."""


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
    end = utc(now)
    span = Span(end - timedelta(days=days), end)
    schema = source_tables()
    counts = {f"{source}.{t.name}": 0 for source in SOURCES for t in schema[source]} | {PROFILES: 0}
    rng, extra = random.Random(seed), random.Random(f"{seed}:profiles")
    started = time.monotonic()
    with connect(urls) as conns, open_profiles(urls) as profiles:
        for source in SOURCES:
            recreate(conns[source], schema[source])
        profiles.drop()
        for done, chunk in enumerate(history(rng, extra, users, span), start=1):
            for source in SOURCES:
                for table in schema[source]:
                    rows = getattr(chunk, table.name)
                    write_rows(conns[source], table, rows)
                    counts[f"{source}.{table.name}"] += len(rows)
            insert_documents(profiles, chunk.profile)
            counts[PROFILES] += len(chunk.profile)
            _progress(min(done * USERS_PER_CHUNK, users), users, sum(counts.values()), started)
        for source in SOURCES:
            create_indexes(conns[source], schema[source])
        profiles.create_index("updated_at")  # a no-op on montydb, which has no indexes
        profiles.create_index("user_id", unique=True)
    return counts


def _progress(done: int, users: int, rows: int, started: float) -> None:
    if done % PROGRESS_EVERY == 0 or (done == users and users >= PROGRESS_EVERY):
        elapsed = time.monotonic() - started
        log.info("generated %d/%d users, %d rows, %.0f rows/s", done, users, rows, rows / max(elapsed, 1e-9))
