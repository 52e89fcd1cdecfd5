"""Declared flattening of documents: dot paths, coercion to declared types, drift, quarantine.

The documents live in montydb (an embedded, pymongo-compatible store) in tmp_path; the same reader runs against
a real Mongo-wire server in tests/integration/test_mongo_replication.py.
"""

import datetime as dt
from decimal import Decimal

import pytest
from bson import ObjectId

from derive_assets.replication.mongo import CoercionError, ExtractStats, read_mongo_batches
from derive_assets.replication.mongo_client import open_mongo
from derive_assets.specs.models import SourceSpec

SPEC = {
    "kind": "source",
    "name": "profiles",
    "type": "mongodb",
    "connection_env": "DERIVE_PROFILES_URL",
    "owner": "team:accounts",
    "tables": [
        {
            "name": "profile",
            "primary_key": ["user_id"],
            "cursor": "updated_at",
            "columns": [
                {"name": "user_id", "type": "INT64"},
                {"name": "oid", "type": "STRING", "path": "_id"},
                {"name": "timezone", "type": "STRING", "path": "settings.timezone"},
                {"name": "newsletter", "type": "BOOL", "path": "settings.newsletter"},
                {"name": "lifetime_value", "type": "NUMERIC", "path": "stats.lifetime_value"},
                {"name": "tags", "type": "JSON"},
                {"name": "updated_at", "type": "TIMESTAMP"},
            ],
        }
    ],
}
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def source(**table_changes) -> SourceSpec:
    spec = {**SPEC, "tables": [{**SPEC["tables"][0], **table_changes}]}
    return SourceSpec.model_validate(spec)


@pytest.fixture
def url(tmp_path) -> str:
    url = f"montydb:///{tmp_path}/mongo"
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_many(
            [
                {
                    "_id": ObjectId("6b0836e0b7f02ccc7af5070f"),
                    "user_id": 1,
                    "settings": {"timezone": "Europe/Berlin", "newsletter": True, "theme": "dark"},
                    "stats": {"lifetime_value": "12.5"},
                    "tags": ["beta", "vip"],
                    "updated_at": T0,
                    "referrer": "ads",
                },
                {
                    "user_id": "2",  # a number stored as a string
                    "settings": {"timezone": "Asia/Tokyo"},
                    "stats": {"lifetime_value": 7},
                    "tags": [],
                    "updated_at": T0 + dt.timedelta(hours=1),
                },
            ]
        )
    return url


def read(url: str, spec: SourceSpec, since=None) -> tuple[list[dict], ExtractStats]:
    stats = ExtractStats()
    batches = list(read_mongo_batches(url, spec, spec.tables[0], since, 1000, stats))
    return [row for b in batches for row in b.to_pylist()], stats


def test_paths_are_flattened_and_coerced_to_declared_types(url):
    rows, stats = read(url, source())
    first, second = sorted(rows, key=lambda r: r["user_id"])
    assert first == {
        "user_id": 1,
        "oid": "6b0836e0b7f02ccc7af5070f",
        "timezone": "Europe/Berlin",
        "newsletter": True,
        "lifetime_value": Decimal("12.500000000"),
        "tags": '["beta", "vip"]',
        "updated_at": T0,
    }
    assert second["user_id"] == 2 and second["newsletter"] is None and second["lifetime_value"] == Decimal(7)
    assert stats.documents_read == 2


def test_undeclared_fields_are_counted_as_drift(url):
    _, stats = read(url, source())
    assert stats.undeclared == {"settings.theme": 1, "referrer": 1}


def test_incremental_read_takes_only_documents_beyond_the_watermark(url):
    rows, _ = read(url, source(), since=T0)
    assert [r["user_id"] for r in rows] == [2]


def test_uncoercible_value_fails_with_collection_id_path_value_and_type(url):
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_one(
            {"_id": "bad-1", "user_id": 3, "stats": {"lifetime_value": "n/a"}, "updated_at": T0}
        )
    with pytest.raises(
        CoercionError,
        match=r"collection profiles\.profile: document _id='bad-1': field 'stats\.lifetime_value' has value "
        r"'n/a', which cannot be read as NUMERIC .*on_invalid: quarantine",
    ):
        read(url, source())


def test_quarantine_sets_bad_documents_aside_and_keeps_the_rest(url):
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_one({"_id": "bad-2", "user_id": "three", "updated_at": T0})
    rows, stats = read(url, source(on_invalid="quarantine"))
    assert sorted(r["user_id"] for r in rows) == [1, 2]
    [bad] = stats.quarantined
    assert bad["_id"] == "bad-2" and "field 'user_id' has value 'three'" in bad["error"]


def test_object_id_cursor_for_insert_only_collections(url):
    spec = source(cursor="oid", primary_key=["oid"])
    rows, _ = read(url, spec, since="6b0836e0b7f02ccc7af5070f")
    assert [r["user_id"] for r in rows] == [2]  # the second document's ObjectId was generated later


def test_path_is_only_for_mongodb_sources():
    spec = {**SPEC, "type": "postgres"}
    with pytest.raises(ValueError, match=r"have a `path`, which only MongoDB sources use"):
        SourceSpec.model_validate(spec)
