"""The demo generator's profile documents on a real MongoDB-wire-protocol server (FerretDB in the tests):
`generate` writes the same documents as on embedded montydb, with its indexes; `apply_activity` updates and
inserts documents, stamped `now`.

    bash deployments/ferretdb/ferretdb.sh install start
    eval "$(bash deployments/ferretdb/ferretdb.sh env)"   # DERIVE_TEST_MONGODB_URL

The SQL sources are SQLite files here: their side is covered by the unit tests and the replication tests. The
document database's name is fixed (`MONGO_DATABASE`), so each test drops it before and after itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest
from bson import ObjectId
from pymongo.collection import Collection

from derive_assets.demo.generate import (
    UPDATES_PER_BULK,
    SourceUrls,
    apply_activity,
    embedded_urls,
    generate,
)
from derive_assets.replication.mongo_client import MONGO_DATABASE, open_mongo

URL_VAR = "DERIVE_TEST_MONGODB_URL"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=15)
USERS = 300


@pytest.fixture
def profiles(mongodb_server_url: str) -> Iterator[Collection]:
    """The profile collection on the server, its database dropped before and after the test."""
    with pymongo.MongoClient(mongodb_server_url, tz_aware=True, serverSelectionTimeoutMS=10_000) as client:
        client.drop_database(MONGO_DATABASE)
        try:
            yield client[MONGO_DATABASE]["profile"]
        finally:
            client.drop_database(MONGO_DATABASE)


def _urls(base: Path, profiles_url: str) -> SourceUrls:
    sqlite = embedded_urls(base)
    return SourceUrls(sqlite.accounts, sqlite.orders, sqlite.payments, profiles_url)


def _by_user(docs: Any) -> dict[int, dict[str, Any]]:
    return {doc["user_id"]: doc for doc in docs}


def test_generate_writes_the_embedded_documents(
    tmp_path: Path, mongodb_server_url: str, profiles: Collection
) -> None:
    counts = generate(_urls(tmp_path / "server", mongodb_server_url), users=USERS, now=NOW)
    assert counts["profiles.profile"] == USERS
    assert profiles.count_documents({}) == USERS

    embedded = embedded_urls(tmp_path / "embedded")
    generate(embedded, users=USERS, now=NOW)
    with open_mongo(embedded.profiles) as client:
        expected = list(client[MONGO_DATABASE]["profile"].find({}, {"_id": 0}))
    for doc in expected:
        doc["updated_at"] = doc["updated_at"].replace(tzinfo=UTC)  # montydb: naive UTC
    served = _by_user(profiles.find({}, {"_id": 0}))
    assert served == _by_user(expected)

    doc = served[1]
    assert isinstance(doc["stats"]["lifetime_value"], str)
    assert isinstance(doc["settings"]["newsletter"], bool)
    assert doc["updated_at"].utcoffset() == timedelta(0)
    assert all(isinstance(d["_id"], ObjectId) for d in profiles.find({}, {"_id": 1}))

    indexes = {tuple(key for key, _ in info["key"]): info for info in profiles.index_information().values()}
    assert ("updated_at",) in indexes
    assert indexes[("user_id",)].get("unique") is True


def test_activity_updates_and_inserts_documents(
    tmp_path: Path, mongodb_server_url: str, profiles: Collection
) -> None:
    urls = _urls(tmp_path, mongodb_server_url)
    generate(urls, users=USERS, now=NOW)
    before = _by_user(profiles.find())

    # Over 100 updates: FerretDB 1.24 hangs on an update command that large, so they must go in batches.
    fraction = 0.35
    assert USERS * fraction > 2 * UPDATES_PER_BULK
    changes = apply_activity(urls, fraction=fraction, now=LATER)
    inserted, updated = changes["profiles.profile.inserted"], changes["profiles.profile.updated"]
    assert updated == round(USERS * fraction)
    assert inserted == changes["accounts.auth.inserted"] > 0
    assert changes["profiles.profile.deleted"] == 0

    after = _by_user(profiles.find())
    assert len(after) == USERS + inserted
    assert profiles.count_documents({"updated_at": LATER}) == inserted + updated
    newest = profiles.find_one({}, sort=[("updated_at", -1)])
    assert newest is not None and newest["updated_at"] == LATER
    moved = [user_id for user_id in before if after[user_id]["updated_at"] == LATER]
    assert len(moved) == updated
    for user_id in moved:
        old, new = before[user_id], after[user_id]
        assert new["_id"] == old["_id"]
        assert new["address"]["region"] != old["address"]["region"]
        assert (new["name"], new["tags"], new["stats"]) == (old["name"], old["tags"], old["stats"])
    assert all(after[user_id] == before[user_id] for user_id in set(before) - set(moved))

    with pytest.raises(ValueError, match="must be later"):
        apply_activity(urls, now=LATER)
