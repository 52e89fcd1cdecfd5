"""Export deletes reach the real online stores: SQLite and the Cassandra server from `services.sh`.

Rows leave an exported table three ways, and each time the next export deletes them online: a `replace` table
that lost rows (core.user_detail, after its input lost accounts), a windowed merge with `delete_missing`
(analytics.daily_payments_by_region), and rows deleted from a warehouse table by a plain `DELETE` (standing in for
a reconciled hard delete). Also: Cassandra's replica-grouped unlogged batches put exactly the rows row-by-row
writes put, and deletes in batches too.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from dagster import AssetKey, DagsterInstance, Definitions
from support import QUIET, materializations, run_job

from derive_assets.demo.generate import embedded_urls, generate
from derive_assets.factory.build import build_definitions, build_online_store
from derive_assets.factory.export_assets import online_table
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project
from resources.cassandra_online_store import CassandraOnlineStore
from resources.online_store import OnlineTable
from resources.schema import ColumnDef

USER_DETAIL = AssetKey(["core", "user_detail"])
DAILY = AssetKey(["analytics", "daily_payments_by_region"])
REGION_EXPORT = AssetKey(["online", "region_payments_online"])
PROFILE_EXPORT = AssetKey(["online", "user_profile_online"])


@pytest.fixture(params=["sqlite", "cassandra"])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DeriveSettings]:
    for name in ("DERIVE_ACCOUNTS_URL", "DERIVE_ORDERS_URL", "DERIVE_PAYMENTS_URL", "DERIVE_DUCKDB_PATH"):
        monkeypatch.delenv(name, raising=False)
    specs = tmp_path / "table_specs"
    shutil.copytree(PROJECT_ROOT / "table_specs", specs)
    keyspace = f"t_{uuid.uuid4().hex[:10]}"
    for spec in (specs / "exports").glob("*.yaml"):
        spec.write_text(spec.read_text().replace("keyspace: derive_online", f"keyspace: {keyspace}"))
    daily = specs / "analytics" / "daily_payments_by_region.yaml"
    daily.write_text(
        daily.read_text().replace(
            "  unique_key: [day, region]\n", "  unique_key: [day, region]\n  delete_missing: true\n"
        )
    )
    if request.param == "cassandra":
        hosts, port = request.getfixturevalue("cassandra_server")
        monkeypatch.setenv("DERIVE_CASSANDRA_HOSTS", hosts)
        monkeypatch.setenv("DERIVE_CASSANDRA_PORT", port)
    settings = DeriveSettings(specs_dir=specs, home=tmp_path / "home", online_store=request.param)
    generate(embedded_urls(settings.embedded_sources_dir), users=300)
    yield settings
    if request.param == "cassandra":
        store = build_online_store(settings)
        store.session().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
        store.close()


def materialize(
    defs: Definitions, instance: DagsterInstance, key: AssetKey, partition: str | None = None
) -> dict:
    result = materialize_keys(defs, [key], instance=instance, partition_key=partition, run_config=QUIET)
    assert result.success, result.get_step_failure_events()
    failed = [c.description for c in result.get_asset_check_evaluations() if not c.passed]
    assert not failed, failed
    return materializations(result)[key.to_user_string()]


def sql(settings: DeriveSettings, statement: str) -> list[tuple]:
    with duckdb.connect(str(settings.duckdb_path)) as con:
        return con.execute(statement).fetchall()


def day(days_ago: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).strftime("%Y-%m-%d")


def upstream(defs: Definitions, instance: DagsterInstance) -> None:
    for job in ("replicate_accounts", "replicate_profiles", "replicate_payments"):
        run_job(defs, instance, job)
    materialize(defs, instance, USER_DETAIL)


def test_rows_a_replace_table_lost_and_rows_deleted_by_hand_leave_the_store(settings: DeriveSettings):
    defs = build_definitions(settings)
    store = build_online_store(settings)
    table = online_table(load_project(settings.specs_dir).export("user_profile_online"))
    with DagsterInstance.ephemeral() as instance:
        upstream(defs, instance)
        assert materialize(defs, instance, PROFILE_EXPORT)["derive/rows_written"] == 300
        # a reconciled hard delete in the replicated table; core.user_detail (replace) loses the accounts
        sql(settings, "DELETE FROM accounts.auth WHERE user_id IN (11, 12)")
        materialize(defs, instance, USER_DETAIL)
        meta = materialize(defs, instance, PROFILE_EXPORT)
        assert (meta["derive/rows_written"], meta["derive/rows_deleted"]) == (0, 2)
        # rows simply vanish from the exported table itself
        sql(settings, "DELETE FROM core.user_detail WHERE user_id BETWEEN 20 AND 29")
        assert materialize(defs, instance, PROFILE_EXPORT)["derive/rows_deleted"] == 10
    assert store.lookup(table, [11]) == [] and store.lookup(table, [25]) == []
    assert store.lookup(table, [13]) != []
    assert store.count(table) == 288


def test_a_windowed_merge_with_delete_missing_deletes_the_dropped_key_online(settings: DeriveSettings):
    defs = build_definitions(settings)
    store = build_online_store(settings)
    table = online_table(load_project(settings.specs_dir).export("region_payments_online"))
    window = day(2)
    with DagsterInstance.ephemeral() as instance:
        upstream(defs, instance)
        materialize(defs, instance, DAILY, window)
        first = materialize(defs, instance, REGION_EXPORT, window)
        regions = sql(
            settings,
            f"SELECT region FROM analytics.daily_payments_by_region WHERE day = '{window}' ORDER BY 1",
        )
        assert first["derive/rows_written"] == len(regions) >= 2
        gone = regions[0][0]
        sql(
            settings,
            f"DELETE FROM payments.payments WHERE CAST(paid_at AS DATE) = DATE '{window}' AND user_id IN "
            f"(SELECT user_id FROM core.user_detail WHERE COALESCE(region, 'unknown') = '{gone}')",
        )
        assert materialize(defs, instance, DAILY, window)["derive/rows_deleted"] == 1
        assert materialize(defs, instance, REGION_EXPORT, window)["derive/rows_deleted"] == 1
    key_day = dt.date.fromisoformat(window)
    assert store.lookup(table, [gone, key_day]) == []
    assert store.lookup(table, [regions[1][0], key_day]) != []
    assert store.count(table) == len(regions) - 1


ROWS = 1_234


def _clustered(keyspace: str) -> OnlineTable:
    return OnlineTable(
        keyspace=keyspace,
        name="events",
        partition_key=("user_id",),
        clustering=("seq",),
        columns=(ColumnDef("user_id", "INT64"), ColumnDef("seq", "INT64"), ColumnDef("label", "STRING")),
    )


def test_batched_cassandra_writes_equal_row_by_row_writes_and_batched_deletes_delete(
    cassandra_server: tuple[str, str],
):
    hosts, port = cassandra_server
    keyspace = f"t_{uuid.uuid4().hex[:10]}"
    batched = CassandraOnlineStore(contact_points=hosts.split(","), port=int(port))  # batch_rows: the default
    single = CassandraOnlineStore(contact_points=hosts.split(","), port=int(port), batch_rows=1)
    data = pa.RecordBatch.from_pydict(
        {
            "user_id": [i % 37 for i in range(ROWS)],  # many rows share a partition
            "seq": list(range(ROWS)),
            "label": [f"r{i}" for i in range(ROWS)],
        }
    )
    try:
        a, b = _clustered(keyspace), OnlineTable(**{**_clustered(keyspace).__dict__, "name": "events_single"})
        for store, t in ((batched, a), (single, b)):
            store.ensure_table(t)
            assert store.write(t, [data.slice(0, 1000), data.slice(1000)]).rows_written == ROWS
        assert batched.count(a) == single.count(b) == ROWS
        for user in (0, 5, 36):
            assert batched.lookup(a, [user]) == single.lookup(b, [user]) != []
        keys = pa.RecordBatch.from_pydict({"user_id": data["user_id"][:600], "seq": data["seq"][:600]})
        assert batched.delete(a, [keys]) == 600
        assert batched.count(a) == ROWS - 600
        assert batched.lookup(a, [5]) == [r for r in single.lookup(b, [5]) if r["seq"] >= 600]
    finally:
        batched.session().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
        batched.close()
        single.close()
