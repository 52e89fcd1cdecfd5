"""The demo data generator on SQLite: counts, determinism, activity stamps, soft deletes, re-runs."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from derive_assets.demo.generate import SourceUrls, apply_activity, embedded_urls, generate

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=15)
USERS = 300
TABLES = {
    "accounts.auth": "auth",
    "accounts.profile": "profile",
    "orders.orders": "orders",
    "payments.payments": "payments",
}


def _db(base: Path, ref: str) -> Path:
    return base / f"{ref.split('.')[0]}.db"


def _query(base: Path, ref: str, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(_db(base, ref))) as conn:
        return conn.execute(sql).fetchall()


def _count(base: Path, ref: str, where: str = "1 = 1") -> int:
    return _query(base, ref, f"SELECT count(*) FROM {TABLES[ref]} WHERE {where}")[0][0]


def _dump(base: Path) -> dict[str, list[tuple]]:
    return {ref: _query(base, ref, f"SELECT * FROM {table} ORDER BY 1") for ref, table in TABLES.items()}


@pytest.fixture
def generated(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    return tmp_path, generate(embedded_urls(tmp_path), users=USERS, now=NOW)


def test_counts_match_the_tables(generated: tuple[Path, dict[str, int]]) -> None:
    base, counts = generated
    assert set(counts) == set(TABLES)
    assert counts["accounts.auth"] == counts["accounts.profile"] == USERS
    assert 2 * USERS < counts["orders.orders"] < 4 * USERS
    assert 0.8 * counts["orders.orders"] < counts["payments.payments"] < counts["orders.orders"]
    assert {ref: _count(base, ref) for ref in TABLES} == counts


def test_history_is_utc_text_before_now(generated: tuple[Path, dict[str, int]]) -> None:
    base, _ = generated
    first, last = _query(base, "orders.orders", "SELECT min(created_at), max(updated_at) FROM orders")[0]
    assert len(first) == len(last) == len("2024-05-01 12:00:00.000000")
    assert (NOW - timedelta(days=14)).strftime("%Y-%m-%d %H:%M:%S") <= first
    assert last < NOW.strftime("%Y-%m-%d %H:%M:%S")


def test_same_seed_same_rows(tmp_path: Path, generated: tuple[Path, dict[str, int]]) -> None:
    base, _ = generated
    again, other = tmp_path / "again", tmp_path / "other"
    generate(embedded_urls(again), users=USERS, now=NOW)
    generate(embedded_urls(other), users=USERS, now=NOW, seed=8)
    assert _dump(again) == _dump(base)
    assert _dump(other) != _dump(base)


def test_rerun_replaces_the_data(generated: tuple[Path, dict[str, int]]) -> None:
    base, counts = generated
    assert generate(embedded_urls(base), users=USERS, now=NOW) == counts
    assert {ref: _count(base, ref) for ref in TABLES} == counts


def test_activity_is_stamped_now_and_newest(generated: tuple[Path, dict[str, int]]) -> None:
    base, counts = generated
    changes = apply_activity(embedded_urls(base), fraction=0.05, now=LATER)
    stamp = LATER.strftime("%Y-%m-%d %H:%M:%S.%f")
    for ref, table in TABLES.items():
        inserted, updated, deleted = (changes[f"{ref}.{what}"] for what in ("inserted", "updated", "deleted"))
        assert inserted > 0
        assert _query(base, ref, f"SELECT max(updated_at) FROM {table}")[0][0] == stamp
        assert _count(base, ref, f"updated_at = '{stamp}'") == inserted + updated + deleted
        assert _count(base, ref) == counts[ref] + inserted
    assert changes["orders.orders.updated"] > 0
    assert changes["payments.payments.updated"] > 0
    assert changes["accounts.profile.updated"] > 0


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


def test_one_file_for_all_sources(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/all.db"
    counts = generate(SourceUrls(url, url, url), users=50, now=NOW)
    with closing(sqlite3.connect(tmp_path / "nested" / "all.db")) as conn:
        assert conn.execute("SELECT count(*) FROM payments").fetchone()[0] == counts["payments.payments"]
