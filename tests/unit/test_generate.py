"""The demo data generator on SQLite and embedded montydb: counts, determinism, the profile documents' shape,
activity stamps, soft deletes, re-runs."""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from contextlib import closing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from derive_assets.demo.generate import (
    COUNTRIES,
    CURRENCY,
    TAGS,
    THEMES,
    TIMEZONES,
    SourceUrls,
    apply_activity,
    embedded_urls,
    generate,
)
from derive_assets.replication.mongo_client import MONGO_DATABASE, open_mongo

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=15)
USERS = 300
TABLES = {"accounts.auth": "auth", "orders.orders": "orders", "payments.payments": "payments"}
PROFILES = "profiles.profile"


def _db(base: Path, ref: str) -> Path:
    return base / f"{ref.split('.')[0]}.db"


def _query(base: Path, ref: str, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(_db(base, ref))) as conn:
        return conn.execute(sql).fetchall()


def _count(base: Path, ref: str, where: str = "1 = 1") -> int:
    return _query(base, ref, f"SELECT count(*) FROM {TABLES[ref]} WHERE {where}")[0][0]


def _docs(base: Path, with_ids: bool = False) -> list[dict[str, Any]]:
    """The profile documents by user id, `updated_at` as aware UTC (montydb hands back naive datetimes)."""
    with open_mongo(embedded_urls(base).profiles) as client:
        docs = list(client[MONGO_DATABASE]["profile"].find({}, None if with_ids else {"_id": 0}))
    for doc in docs:
        doc["updated_at"] = doc["updated_at"].replace(tzinfo=UTC)
    return sorted(docs, key=lambda doc: doc["user_id"])


def _dump(base: Path) -> dict[str, list[Any]]:
    dump: dict[str, list[Any]] = {
        ref: _query(base, ref, f"SELECT * FROM {table} ORDER BY 1") for ref, table in TABLES.items()
    }
    return dump | {PROFILES: _docs(base)}


def _sizes(base: Path) -> dict[str, int]:
    return {ref: _count(base, ref) for ref in TABLES} | {PROFILES: len(_docs(base))}


@pytest.fixture
def generated(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    return tmp_path, generate(embedded_urls(tmp_path), users=USERS, now=NOW)


def test_embedded_urls(tmp_path: Path) -> None:
    urls = embedded_urls(tmp_path)
    assert urls.accounts == f"sqlite:///{tmp_path.as_posix()}/accounts.db"
    assert urls.profiles == f"montydb:///{tmp_path.as_posix()}/profiles"


def test_counts_match_the_tables(generated: tuple[Path, dict[str, int]]) -> None:
    base, counts = generated
    assert set(counts) == {*TABLES, PROFILES}
    assert counts["accounts.auth"] == counts[PROFILES] == USERS
    assert 2 * USERS < counts["orders.orders"] < 4 * USERS
    assert 0.8 * counts["orders.orders"] < counts["payments.payments"] < counts["orders.orders"]
    assert _sizes(base) == counts
    assert not _query(base, "accounts.auth", "SELECT name FROM sqlite_master WHERE name = 'profile'")


def test_history_is_utc_text_before_now(generated: tuple[Path, dict[str, int]]) -> None:
    base, _ = generated
    first, last = _query(base, "orders.orders", "SELECT min(created_at), max(updated_at) FROM orders")[0]
    assert len(first) == len(last) == len("2024-05-01 12:00:00.000000")
    assert (NOW - timedelta(days=14)).strftime("%Y-%m-%d %H:%M:%S") <= first
    assert last < NOW.strftime("%Y-%m-%d %H:%M:%S")


def test_profile_documents(generated: tuple[Path, dict[str, int]]) -> None:
    base, _ = generated
    docs = _docs(base)
    assert [doc["user_id"] for doc in docs] == list(range(1, USERS + 1))
    for doc in docs:
        assert list(doc) == ["user_id", "name", "address", "settings", "tags", "stats", "updated_at"]
        assert re.fullmatch(r"[A-Z][a-z]+ [A-Z]\.", doc["name"]["display"])
        region, country = doc["address"]["region"], doc["address"]["country"]
        assert country in {c for c, _ in COUNTRIES[region]}
        settings = doc["settings"]
        assert settings["timezone"] in TIMEZONES[country]
        assert isinstance(settings["newsletter"], bool)
        assert settings["theme"] in THEMES
        assert len(doc["tags"]) == len(set(doc["tags"])) <= 3
        assert set(doc["tags"]) <= set(TAGS)
        assert re.fullmatch(r"\d+\.\d\d", doc["stats"]["lifetime_value"])  # a string, on purpose
        assert NOW - timedelta(days=14) <= doc["updated_at"] < NOW
        assert doc["updated_at"].microsecond % 1000 == 0
    assert {len(doc["tags"]) for doc in docs} == {0, 1, 2, 3}
    assert {doc["settings"]["theme"] for doc in docs} == set(THEMES)
    assert {doc["settings"]["newsletter"] for doc in docs} == {True, False}


def test_lifetime_value_is_what_the_user_paid(generated: tuple[Path, dict[str, int]]) -> None:
    base, _ = generated
    paid: dict[int, Decimal] = defaultdict(Decimal)
    for user_id, amount in _query(
        base, "payments.payments", "SELECT user_id, amount FROM payments WHERE status = 'succeeded'"
    ):
        paid[user_id] += Decimal(str(amount)).quantize(Decimal("0.01"))
    values = {doc["user_id"]: Decimal(doc["stats"]["lifetime_value"]) for doc in _docs(base)}
    assert values == {user_id: paid[user_id] for user_id in values}
    assert any(value == 0 for value in values.values()) and any(value > 0 for value in values.values())


def test_same_seed_same_rows(tmp_path: Path, generated: tuple[Path, dict[str, int]]) -> None:
    base, _ = generated
    again, other = tmp_path / "again", tmp_path / "other"
    generate(embedded_urls(again), users=USERS, now=NOW)
    generate(embedded_urls(other), users=USERS, now=NOW, seed=8)
    first, second, third = _dump(base), _dump(again), _dump(other)
    assert second == first
    assert all(third[ref] != first[ref] for ref in first)


def test_rerun_replaces_the_data(generated: tuple[Path, dict[str, int]]) -> None:
    base, counts = generated
    assert generate(embedded_urls(base), users=USERS, now=NOW) == counts
    assert _sizes(base) == counts


def test_activity_is_stamped_now_and_newest(generated: tuple[Path, dict[str, int]]) -> None:
    base, counts = generated
    changes = apply_activity(embedded_urls(base), fraction=0.05, now=LATER)
    assert set(changes) == {f"{ref}.{what}" for ref in counts for what in ("inserted", "updated", "deleted")}
    stamp = LATER.strftime("%Y-%m-%d %H:%M:%S.%f")
    for ref, table in TABLES.items():
        inserted, updated, deleted = (changes[f"{ref}.{what}"] for what in ("inserted", "updated", "deleted"))
        assert inserted > 0
        assert _query(base, ref, f"SELECT max(updated_at) FROM {table}")[0][0] == stamp
        assert _count(base, ref, f"updated_at = '{stamp}'") == inserted + updated + deleted
        assert _count(base, ref) == counts[ref] + inserted
    docs = _docs(base)
    inserted, updated = changes[f"{PROFILES}.inserted"], changes[f"{PROFILES}.updated"]
    assert inserted == changes["accounts.auth.inserted"] > 0
    assert updated == round(USERS * 0.05)
    assert changes[f"{PROFILES}.deleted"] == 0
    assert max(doc["updated_at"] for doc in docs) == LATER
    assert sum(doc["updated_at"] == LATER for doc in docs) == inserted + updated
    assert len(docs) == counts[PROFILES] + inserted
    assert changes["orders.orders.updated"] > 0
    assert changes["payments.payments.updated"] > 0


def test_profile_updates_move_users(generated: tuple[Path, dict[str, int]]) -> None:
    base, _ = generated
    before = {doc["user_id"]: doc for doc in _docs(base, with_ids=True)}
    apply_activity(embedded_urls(base), fraction=0.1, now=LATER)
    after = {doc["user_id"]: doc for doc in _docs(base, with_ids=True)}
    moved = [user_id for user_id in before if after[user_id]["updated_at"] == LATER]
    assert len(moved) == USERS // 10
    untouched = set(before) - set(moved)
    assert all(after[user_id] == before[user_id] for user_id in untouched)
    themes_switched = 0
    for user_id in moved:
        old, new = before[user_id], after[user_id]
        assert new["_id"] == old["_id"]
        assert new["address"]["region"] != old["address"]["region"]
        assert new["settings"]["timezone"] in TIMEZONES[new["address"]["country"]]
        themes_switched += new["settings"]["theme"] != old["settings"]["theme"]
        rest = ("user_id", "name", "tags", "stats")
        assert {k: new[k] for k in rest} == {k: old[k] for k in rest}
        assert new["settings"]["newsletter"] == old["settings"]["newsletter"]
    assert 0 < themes_switched < len(moved)
    new_users = [after[user_id] for user_id in set(after) - set(before)]
    assert new_users and all(doc["updated_at"] == LATER for doc in new_users)
    assert all(doc["stats"]["lifetime_value"] == "0.00" for doc in new_users)


def test_new_payments_are_in_the_buyers_currency(generated: tuple[Path, dict[str, int]]) -> None:
    base, _ = generated
    apply_activity(embedded_urls(base), fraction=0.1, now=LATER)
    country = {doc["user_id"]: doc["address"]["country"] for doc in _docs(base)}
    stamp = LATER.strftime("%Y-%m-%d %H:%M:%S.%f")
    new_payments = _query(
        base, "payments.payments", f"SELECT user_id, currency FROM payments WHERE paid_at = '{stamp}'"
    )
    assert new_payments
    assert all(currency == CURRENCY[country[user_id]] for user_id, currency in new_payments)


def test_soft_deletes_set_deleted_at(generated: tuple[Path, dict[str, int]]) -> None:
    base, _ = generated
    deleted = apply_activity(embedded_urls(base), fraction=0.1, now=LATER)["accounts.auth.deleted"]
    stamp = LATER.strftime("%Y-%m-%d %H:%M:%S.%f")
    assert deleted > 0
    assert _count(base, "accounts.auth", "deleted_at IS NOT NULL") == deleted
    assert _count(base, "accounts.auth", f"deleted_at = '{stamp}' AND updated_at = '{stamp}'") == deleted


def test_activity_refuses_a_now_that_is_not_the_latest(generated: tuple[Path, dict[str, int]]) -> None:
    base, _ = generated
    apply_activity(embedded_urls(base), now=LATER)
    with pytest.raises(ValueError, match="must be later"):
        apply_activity(embedded_urls(base), now=LATER)


def test_activity_refuses_a_now_before_the_latest_profile(generated: tuple[Path, dict[str, int]]) -> None:
    base, _ = generated
    with open_mongo(embedded_urls(base).profiles) as client:
        client[MONGO_DATABASE]["profile"].update_one({"user_id": 1}, {"$set": {"updated_at": LATER}})
    with pytest.raises(ValueError, match="must be later"):
        apply_activity(embedded_urls(base), now=LATER)


def test_activity_stamps_milliseconds(generated: tuple[Path, dict[str, int]]) -> None:
    """BSON dates keep milliseconds, so every source gets `now` truncated to them: one stamp for the batch."""
    base, _ = generated
    apply_activity(embedded_urls(base), now=LATER + timedelta(microseconds=123_456))
    stamp = LATER + timedelta(milliseconds=123)
    assert max(doc["updated_at"] for doc in _docs(base)) == stamp
    text = _query(base, "orders.orders", "SELECT max(updated_at) FROM orders")[0][0]
    assert text == stamp.strftime("%Y-%m-%d %H:%M:%S.%f")


def test_one_file_for_all_sources(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/all.db"
    counts = generate(SourceUrls(url, url, url, f"montydb:///{tmp_path}/nested/docs"), users=50, now=NOW)
    with closing(sqlite3.connect(tmp_path / "nested" / "all.db")) as conn:
        assert conn.execute("SELECT count(*) FROM payments").fetchone()[0] == counts["payments.payments"]
    assert counts[PROFILES] == 50
