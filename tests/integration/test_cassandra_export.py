"""Online export to a real Cassandra server (the CQL protocol ScyllaDB speaks), through cassandra-driver."""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, Definitions
from support import run_job

import resources.cassandra_online_store as cassandra_store
from derive_assets.demo.generate import apply_activity, embedded_urls, generate
from derive_assets.factory.build import build_definitions, build_online_store, build_warehouse
from derive_assets.factory.export_assets import _verify, online_table
from derive_assets.online import OnlineReader
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project
from resources.online_store import OnlineStoreError

EXPORT = AssetKey(["online", "user_profile_online"])


@pytest.fixture
def cassandra_env(monkeypatch: pytest.MonkeyPatch, cassandra_server: tuple[str, str]) -> None:
    hosts, port = cassandra_server
    monkeypatch.setenv("DERIVE_CASSANDRA_HOSTS", hosts)
    monkeypatch.setenv("DERIVE_CASSANDRA_PORT", port)
    for name in ("DERIVE_ACCOUNTS_URL", "DERIVE_ORDERS_URL", "DERIVE_PAYMENTS_URL", "DERIVE_DUCKDB_PATH"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def settings(tmp_path: Path, cassandra_env: None) -> Iterator[DeriveSettings]:
    specs = tmp_path / "table_specs"
    shutil.copytree(PROJECT_ROOT / "table_specs", specs)
    keyspace = f"t_{uuid.uuid4().hex[:10]}"
    for spec in (specs / "exports").glob("*.yaml"):
        spec.write_text(spec.read_text().replace("keyspace: derive_online", f"keyspace: {keyspace}"))
    settings = DeriveSettings(specs_dir=specs, home=tmp_path / "home", online_store="cassandra")
    generate(embedded_urls(settings.embedded_sources_dir), users=400)
    yield settings
    store = build_online_store(settings)
    store.session().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    store.close()


run = run_job


def upstream(defs: Definitions, instance: DagsterInstance) -> None:
    for job in ("replicate_accounts", "replicate_profiles", "replicate_payments", "core__user_detail_job"):
        run(defs, instance, job)


def warehouse_rows(settings: DeriveSettings, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
    with build_warehouse(settings).get_connection() as con:
        return con.execute(sql, params or {}).fetchall()


def test_export_is_readable_by_key_with_warehouse_values(settings: DeriveSettings):
    defs = build_definitions(settings)
    with DagsterInstance.ephemeral() as instance:
        upstream(defs, instance)
        day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).strftime("%Y-%m-%d")
        run(defs, instance, "analytics__daily_payments_by_region_job", day)
        meta = run(defs, instance, "export_region_payments_online", day)["online/region_payments_online"]
    expected = warehouse_rows(settings, "SELECT * FROM analytics.daily_payments_by_region ORDER BY region")
    assert meta["derive/rows_written"] == len(expected) > 0

    reader = OnlineReader(load_project(settings.specs_dir), build_online_store(settings))
    for when, region, payments, payers, revenue in expected:
        [row] = reader.lookup("region_payments_online", region, when.isoformat())
        assert row == {
            "region": region,
            "day": when,
            "payments": payments,
            "payers": payers,
            "revenue": revenue,
        }


def test_incremental_export_writes_only_changes_and_reexport_is_idempotent(settings: DeriveSettings):
    defs = build_definitions(settings)
    table = online_table(load_project(settings.specs_dir).export("user_profile_online"))
    store = build_online_store(settings)
    with DagsterInstance.ephemeral() as instance:
        upstream(defs, instance)
        first = run(defs, instance, "export_user_profile_online")["online/user_profile_online"]
        assert first["derive/rows_written"] == 400 == store.count(table)

        apply_activity(embedded_urls(settings.embedded_sources_dir), fraction=0.05)
        run(defs, instance, "replicate_accounts")
        run(defs, instance, "replicate_profiles")
        run(defs, instance, "core__user_detail_job")
        [(changed,)] = warehouse_rows(
            settings,
            "SELECT count(*) FROM core.user_detail WHERE updated_at > $w",
            {"w": dt.datetime.fromisoformat(first["derive/watermark"])},
        )
        second = run(defs, instance, "export_user_profile_online")["online/user_profile_online"]
        assert 0 < second["derive/rows_written"] == changed

        [(user_id, region)] = warehouse_rows(
            settings, "SELECT user_id, region FROM core.user_detail ORDER BY updated_at DESC, user_id LIMIT 1"
        )
        assert store.lookup(table, [user_id])[0]["region"] == region

        count = store.count(table)
        instance.wipe()  # forget the watermark: a full re-export must change nothing online
        again = run(defs, instance, "export_user_profile_online")["online/user_profile_online"]
        assert again["derive/rows_written"] > second["derive/rows_written"]
        assert store.count(table) == count


def test_ttl_is_honoured(settings: DeriveSettings):
    spec = settings.specs_dir / "exports" / "user_profile_online.yaml"
    spec.write_text(spec.read_text() + "ttl_seconds: 2\n")
    defs = build_definitions(settings)
    table = online_table(load_project(settings.specs_dir).export("user_profile_online"))
    store = build_online_store(settings)
    with DagsterInstance.ephemeral() as instance:
        upstream(defs, instance)
        run(defs, instance, "export_user_profile_online")
    assert store.lookup(table, [1])
    deadline = time.monotonic() + 15
    while store.lookup(table, [1]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert store.lookup(table, [1]) == []
    ttl = store.session().execute(f'SELECT TTL(region) FROM "{table.keyspace}"."{table.name}" LIMIT 1').one()
    assert ttl is None or ttl[0] is None or ttl[0] <= 2


def test_failed_batch_is_retried_then_fails_without_moving_the_watermark(
    settings: DeriveSettings, monkeypatch
):
    defs = build_definitions(settings)
    real = cassandra_store.execute_concurrent_with_args
    calls: list[int] = []

    def flaky(session, statement, rows, **kwargs):  # the first attempt of each batch loses its first 3 rows
        calls.append(len(rows))
        outcomes = list(real(session, statement, rows, **kwargs))
        if len(calls) == 1:
            outcomes[:3] = [(False, TimeoutError("write timeout"))] * 3
        return outcomes

    monkeypatch.setattr(cassandra_store, "execute_concurrent_with_args", flaky)
    with DagsterInstance.ephemeral() as instance:
        upstream(defs, instance)
        meta = run(defs, instance, "export_user_profile_online")["online/user_profile_online"]
        assert meta["derive/write_retries"] == 3 and calls[:2] == [400, 3]
        mark = instance.get_latest_materialization_event(EXPORT)

        # Now a row Cassandra refuses (a NULL primary key): retries run out, the run fails, the watermark stays.
        monkeypatch.setattr(cassandra_store, "execute_concurrent_with_args", real)
        apply_activity(embedded_urls(settings.embedded_sources_dir), fraction=0.05)
        run(defs, instance, "replicate_accounts")
        run(defs, instance, "replicate_profiles")
        run(defs, instance, "core__user_detail_job")
        _break_primary_key(settings)
        run(defs, instance, "export_user_profile_online", ok=False)
        after = instance.get_latest_materialization_event(EXPORT)
        assert after is not None and mark is not None and after.run_id == mark.run_id


def _break_primary_key(settings: DeriveSettings) -> None:
    """core.user_detail declares user_id NOT NULL; drop that to plant a row the online store must refuse."""
    with build_warehouse(settings).get_connection() as con:
        con.execute("ALTER TABLE core.user_detail ALTER COLUMN user_id DROP NOT NULL")
        con.execute(
            "INSERT INTO core.user_detail (user_id, email, updated_at) VALUES (NULL, 'x@example.com', now())"
        )


def test_verification_fails_when_rows_are_missing(settings: DeriveSettings):
    defs = build_definitions(settings)
    table = online_table(load_project(settings.specs_dir).export("user_profile_online"))
    store = build_online_store(settings)
    with DagsterInstance.ephemeral() as instance:
        upstream(defs, instance)
        run(defs, instance, "export_user_profile_online")
    for user_id in range(1, 60):
        store.session().execute(
            f'DELETE FROM "{table.keyspace}"."{table.name}" WHERE user_id = %s', (user_id,)
        )
    check = _verify(build_warehouse(settings), store, table, "core.user_detail", None, {}, 400)
    assert not check.passed and check.metadata["missing_online"].value > 0


def test_mismatching_existing_table_is_reported_not_altered(settings: DeriveSettings):
    table = online_table(load_project(settings.specs_dir).export("user_profile_online"))
    store = build_online_store(settings)
    store.ensure_table(table)
    store.session().execute(f'ALTER TABLE "{table.keyspace}"."{table.name}" ADD extra text')
    with pytest.raises(OnlineStoreError, match="differs from the export spec"):
        store.ensure_table(table)
