"""Replication of a MongoDB collection through a real Mongo-wire server (FerretDB) into DuckDB, via Dagster."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pymongo
import pytest
import yaml
from bson import ObjectId
from dagster import AssetKey, DagsterInstance

from derive_assets.factory.build import build_definitions
from derive_assets.settings import DeriveSettings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def source_spec(database: str, on_invalid: str = "fail") -> dict[str, Any]:
    return {
        "kind": "source",
        "name": "profiles",
        "type": "mongodb",
        "database": database,
        "connection_env": "DERIVE_TEST_PROFILES_URL",
        "owner": "team:accounts",
        "tables": [
            {
                "name": "profile",
                "primary_key": ["user_id"],
                "cursor": "updated_at",
                "on_invalid": on_invalid,
                "cursor_overlap": 0,  # exact read counts below; the default overlap is tested with events
                "columns": [
                    {"name": "user_id", "type": "INT64", "constraints": {"not_null": True}},
                    {"name": "display_name", "type": "STRING", "path": "name.display"},
                    {"name": "region", "type": "STRING", "path": "address.region"},
                    {"name": "lifetime_value", "type": "NUMERIC", "path": "stats.lifetime_value"},
                    {"name": "tags", "type": "JSON"},
                    {"name": "updated_at", "type": "TIMESTAMP"},
                ],
            }
        ],
    }


def document(user_id: int, at: dt.datetime, **extra: Any) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "name": {"display": f"user {user_id}"},
        "address": {"region": "eu", "country": "DE"},
        "stats": {"lifetime_value": f"{user_id}.25"},
        "tags": ["beta"] if user_id % 2 else [],
        "updated_at": at,
        **extra,
    }


@pytest.fixture
def mongo(monkeypatch: pytest.MonkeyPatch, mongodb_server_url: str) -> Iterator[tuple[str, str]]:
    url = mongodb_server_url
    database = f"t_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("DERIVE_TEST_PROFILES_URL", url)
    yield url, database
    with pymongo.MongoClient(url) as client:
        client.drop_database(database)


class Pipeline:
    def __init__(
        self, tmp_path: Path, database: str, on_invalid: str = "fail", spec: dict[str, Any] | None = None
    ):
        specs = tmp_path / "table_specs"
        (specs / "sources").mkdir(parents=True, exist_ok=True)
        spec = spec or source_spec(database, on_invalid)
        (specs / "sources" / "profiles.yaml").write_text(yaml.safe_dump(spec))
        self.key = AssetKey(["profiles", spec["tables"][0]["name"]])
        self.settings = DeriveSettings(specs_dir=specs, home=tmp_path / "home")
        self.defs = build_definitions(self.settings)
        self.instance = DagsterInstance.ephemeral()

    def run(self, ok: bool = True) -> dict[str, Any]:
        result = self.defs.resolve_job_def("replicate_profiles").execute_in_process(
            instance=self.instance, run_config=QUIET, raise_on_error=False
        )
        assert result.success is ok
        self.failure = "\n".join(str(e.event_specific_data) for e in result.all_events if e.is_failure)
        events = result.get_asset_materialization_events()
        return (
            {k: v.value for k, v in events[0].step_materialization_data.materialization.metadata.items()}
            if events
            else {}
        )

    def rows(self, table: str = "profiles.profile") -> list[tuple]:
        with duckdb.connect(str(self.settings.duckdb_path), read_only=True) as con:
            return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()

    def watermark(self) -> Any:
        event = self.instance.get_latest_materialization_event(self.key)
        return (
            event.asset_materialization.metadata["derive/watermark"].value
            if event and event.asset_materialization
            else None
        )


def test_full_then_incremental_replication_merges_updates(tmp_path: Path, mongo: tuple[str, str]):
    url, database = mongo
    with pymongo.MongoClient(url) as client:
        collection = client[database]["profile"]
        collection.insert_many([document(i, T0 + dt.timedelta(minutes=i)) for i in range(1, 51)])
        pipeline = Pipeline(tmp_path, database)
        first = pipeline.run()
        assert first["derive/rows_read"] == 50 and first["derive/documents_read"] == 50
        rows = pipeline.rows()
        assert rows[0][:3] == (1, "user 1", "eu") and float(rows[0][3]) == 1.25  # "1.25" stored as a string
        assert json.loads(rows[0][4]) == ["beta"] and json.loads(rows[1][4]) == []  # arrays as JSON columns
        assert first["derive/undeclared_fields"] == {"address.country": 50}  # drift, counted per field

        later = T0 + dt.timedelta(days=1)
        collection.update_many(
            {"user_id": {"$lte": 5}}, {"$set": {"address.region": "apac", "updated_at": later}}
        )
        collection.insert_many([document(i, later) for i in (51, 52)])
        second = pipeline.run()
        assert second["derive/rows_read"] == 7
        assert (second["derive/rows_inserted"], second["derive/rows_updated"]) == (2, 5)
        rows = pipeline.rows()
        assert len(rows) == 52 and {r[2] for r in rows if r[0] <= 5} == {"apac"}
        assert dt.datetime.fromisoformat(pipeline.watermark()) == later

        assert pipeline.run()["derive/rows_read"] == 0


def test_uncoercible_value_fails_and_changes_nothing(tmp_path: Path, mongo: tuple[str, str]):
    url, database = mongo
    with pymongo.MongoClient(url) as client:
        collection = client[database]["profile"]
        collection.insert_many([document(i, T0) for i in range(1, 11)])
        pipeline = Pipeline(tmp_path, database)
        pipeline.run()
        before, mark = pipeline.rows(), pipeline.watermark()
        collection.insert_one(
            document(11, T0 + dt.timedelta(hours=1), _id="bad-doc", stats={"lifetime_value": "lots"})
        )
        collection.update_one({"user_id": 1}, {"$set": {"updated_at": T0 + dt.timedelta(hours=1)}})
        pipeline.run(ok=False)
        assert "document _id='bad-doc': field 'stats.lifetime_value' has value 'lots'" in pipeline.failure
        assert "cannot be read as NUMERIC" in pipeline.failure
        assert pipeline.rows() == before and pipeline.watermark() == mark


def test_quarantine_keeps_bad_documents_aside(tmp_path: Path, mongo: tuple[str, str]):
    url, database = mongo
    with pymongo.MongoClient(url) as client:
        collection = client[database]["profile"]
        collection.insert_many([document(i, T0) for i in range(1, 6)])
        collection.insert_one({**document(6, T0), "_id": "bad-doc", "user_id": "six"})
        pipeline = Pipeline(tmp_path, database, on_invalid="quarantine")
        meta = pipeline.run()
    assert meta["derive/rows_read"] == 5 and meta["derive/quarantined_documents"] == 1
    [(doc_id, error, raw, _)] = pipeline.rows("profiles.profile__quarantine")
    assert (
        doc_id == "bad-doc"
        and "field 'user_id' has value 'six'" in error
        and json.loads(raw)["user_id"] == "six"
    )


# ------------------------------------------------------------------------------ `_id` (ObjectId) cursors


def events_spec(database: str, overlap: int | None) -> dict[str, Any]:
    """An insert-only collection replicated in ObjectId order (`cursor` is the `_id` column)."""
    table: dict[str, Any] = {
        "name": "events",
        "primary_key": ["event_id"],
        "cursor": "event_id",
        "columns": [
            {"name": "event_id", "type": "STRING", "path": "_id"},
            {"name": "user_id", "type": "INT64"},
            {"name": "kind", "type": "STRING"},
        ],
    }
    if overlap is not None:
        table["cursor_overlap"] = overlap
    return {**source_spec(database), "tables": [table]}


def made_at(seconds_ago: int) -> ObjectId:
    """An ObjectId as a client makes it `seconds_ago` seconds before now (random tail, as in a real driver)."""
    moment = int(dt.datetime.now(dt.UTC).timestamp()) - seconds_ago
    return ObjectId(moment.to_bytes(4, "big") + os.urandom(8))


def event(oid: ObjectId, user_id: int) -> dict[str, Any]:
    return {"_id": oid, "user_id": user_id, "kind": f"kind {user_id}"}


def source_events(collection: Any) -> list[tuple[str, int, str]]:
    return sorted((str(d["_id"]), d["user_id"], d["kind"]) for d in collection.find({}))


@pytest.mark.parametrize("overlap", [0, None])
def test_object_id_cursor_round_trips_through_the_event_log(tmp_path: Path, mongo: tuple[str, str], overlap):
    """The watermark is an ObjectId's text: every later run must read it back (it once failed to parse)."""
    url, database = mongo
    with pymongo.MongoClient(url) as client:
        collection = client[database]["events"]
        collection.insert_many([event(made_at(400 - i), i) for i in range(1, 6)])
        pipeline = Pipeline(tmp_path, database, spec=events_spec(database, overlap))
        assert pipeline.run()["derive/rows_read"] == 5
        first = pipeline.watermark()
        assert first == max(str(d["_id"]) for d in collection.find({}))
        collection.insert_many([event(made_at(10), 6), event(made_at(5), 7)])
        second = pipeline.run()
        assert second["derive/rows_inserted"] == 2
        assert pipeline.watermark() == max(str(d["_id"]) for d in collection.find({})) > first
        third = pipeline.run()
        assert third["derive/rows_inserted"] == 0 and pipeline.watermark() > first
        assert pipeline.rows("profiles.events") == source_events(collection)


def test_late_object_id_is_caught_by_the_overlap_and_never_moves_the_watermark_back(
    tmp_path: Path, mongo: tuple[str, str]
):
    """ObjectIds are made by clients: a document made 250 s ago but inserted after one made 200 s ago was read."""
    url, database = mongo
    with pymongo.MongoClient(url) as client:
        collection = client[database]["events"]
        collection.insert_many([event(made_at(300), 1), event(made_at(200), 2)])
        pipeline = Pipeline(tmp_path, database, spec=events_spec(database, overlap=120))
        pipeline.run()
        mark = pipeline.watermark()
        collection.insert_one(event(made_at(250), 3))  # late: its ObjectId sorts before the watermark
        meta = pipeline.run()
        assert meta["derive/rows_inserted"] == 1
        assert pipeline.rows("profiles.events") == source_events(collection)
        assert pipeline.watermark() == mark  # the late id is older: the watermark stays
        assert "$gte" in meta["derive/source_query"]


def test_object_id_cursor_refuses_documents_with_other_ids(tmp_path: Path, mongo: tuple[str, str]):
    url, database = mongo
    with pymongo.MongoClient(url) as client:
        collection = client[database]["events"]
        collection.insert_many([event(made_at(100), 1), {"_id": "custom-7", "user_id": 7, "kind": "x"}])
        pipeline = Pipeline(tmp_path, database, spec=events_spec(database, overlap=0))
        pipeline.run(ok=False)
    assert "document _id='custom-7': cursor field '_id' has value 'custom-7', which is not an ObjectId" in (
        pipeline.failure
    )
    assert pipeline.watermark() is None


def test_documents_without_key_or_cursor_or_with_a_future_cursor_are_counted_then_quarantined(
    tmp_path: Path, mongo: tuple[str, str]
):
    url, database = mongo
    with pymongo.MongoClient(url) as client:
        collection = client[database]["profile"]
        collection.insert_many([document(i, T0 + dt.timedelta(minutes=i)) for i in range(1, 4)])
        no_key = {k: v for k, v in document(0, T0).items() if k != "user_id"}
        collection.insert_many(
            [
                {"_id": "no-key", **no_key},
                {"_id": "no-cursor", **document(5, T0), "updated_at": None},
                {"_id": "future", **document(6, dt.datetime(9999, 12, 31, tzinfo=dt.UTC))},
            ]
        )
        failing = Pipeline(tmp_path / "fail", database)
        failing.run(ok=False)
        assert f"collection {database}.profile: 3 documents cannot be loaded" in failing.failure
        for needle in (
            "_id='no-key': primary key field 'user_id' is missing or null",
            "_id='no-cursor': cursor field 'updated_at' is missing or null",
            "_id='future': cursor field 'updated_at' has value datetime.datetime(9999, 12, 31",
        ):
            assert needle in failing.failure
        assert failing.watermark() is None

        pipeline = Pipeline(tmp_path / "quarantine", database, on_invalid="quarantine")
        meta = pipeline.run()
    assert meta["derive/rows_read"] == 3 and meta["derive/quarantined_documents"] == 3
    assert sorted(r[0] for r in pipeline.rows("profiles.profile__quarantine")) == [
        "future",
        "no-cursor",
        "no-key",
    ]
    assert [r[0] for r in pipeline.rows()] == [1, 2, 3]
    assert dt.datetime.fromisoformat(pipeline.watermark()) == T0 + dt.timedelta(minutes=3)  # not 9999


def test_two_documents_with_one_key_fail_the_run_naming_the_key(tmp_path: Path, mongo: tuple[str, str]):
    """A collection has no unique index on the declared key: two documents for one key are refused, not both
    loaded and not one dropped in silence."""
    url, database = mongo
    with pymongo.MongoClient(url) as client:
        collection = client[database]["profile"]
        collection.insert_many(
            [document(1, T0), document(2, T0), document(2, T0 + dt.timedelta(minutes=5), tags=["newest"])]
        )
        pipeline = Pipeline(tmp_path, database)
        pipeline.run(ok=False)
    assert "profiles.profile: the source sent several rows for 1 values of primary key ['user_id']" in (
        pipeline.failure
    )
    assert pipeline.watermark() is None
