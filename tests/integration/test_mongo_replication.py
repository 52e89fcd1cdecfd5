"""Replication of a MongoDB collection through a real Mongo-wire server (FerretDB) into DuckDB, via Dagster."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pymongo
import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from derive_assets.factory.build import build_definitions
from derive_assets.settings import DeriveSettings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
KEY = AssetKey(["profiles", "profile"])
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
    def __init__(self, tmp_path: Path, database: str, on_invalid: str = "fail"):
        specs = tmp_path / "table_specs"
        (specs / "sources").mkdir(parents=True)
        (specs / "sources" / "profiles.yaml").write_text(yaml.safe_dump(source_spec(database, on_invalid)))
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
        event = self.instance.get_latest_materialization_event(KEY)
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
