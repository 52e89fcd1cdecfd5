"""The profile documents' side of `apply_activity`: state, lookups by user id and field updates, on a
MongoDB-wire-protocol server or on embedded montydb (which has no indexes and no bulk writes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo import UpdateOne

from derive_assets.demo.writing import BATCH_ROWS, batched

UPDATES_PER_BULK = 50
"""Updates per `bulk_write`: FerretDB 1.24 (SQLite) hangs, for good, on an update command of 100 or more."""
IN_LIST = 500
"""Ids per `IN (...)` lookup (and `$in` query); far below SQLite's bound-parameter limit."""


def profile_state(profiles: Any, embedded: bool) -> tuple[int, int, datetime | None]:
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


def find_profiles(
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
    for ids in batched(sorted(wanted), IN_LIST):
        found.update({doc["user_id"]: doc for doc in profiles.find({"user_id": {"$in": ids}}, projection)})
    return found


def set_fields(
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
        for batch in batched(changes, UPDATES_PER_BULK):
            profiles.bulk_write([UpdateOne({"_id": doc["_id"]}, {"$set": fields}) for doc, fields in batch])
        return len(changes)
    for doc, fields in changes:
        for path, value in fields.items():
            *parents, leaf = path.split(".")
            target = doc
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = value
    for batch in batched(changes, BATCH_ROWS):
        profiles.delete_many({"_id": {"$in": [doc["_id"] for doc, _ in batch]}})
        profiles.insert_many([doc for doc, _ in batch])
    return len(changes)


def buyer_countries(profiles: Any, embedded: bool, user_ids: Iterable[int]) -> dict[int, str]:
    projection = {"_id": 0, "user_id": 1, "address.country": 1}
    docs = find_profiles(profiles, user_ids, embedded, projection)
    return {
        user_id: country
        for user_id, doc in docs.items()
        if isinstance(country := doc.get("address", {}).get("country"), str)
    }
