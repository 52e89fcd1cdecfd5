"""Keyspace replication on a real Cassandra server: what Derive creates (NetworkTopologyStrategy per data center,
from `DERIVE_CASSANDRA_REPLICATION`), and the pre-created-keyspace path (`DERIVE_CASSANDRA_CREATE_KEYSPACES=false`),
where a missing keyspace fails with the statement to run and an existing one is used as it is."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from resources.cassandra_online_store import CassandraOnlineStore
from resources.online_store import OnlineStoreError, OnlineTable
from resources.schema import ColumnDef

pytestmark = pytest.mark.integration


@pytest.fixture
def keyspace_name(cassandra_server: tuple[str, str]) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    store = _store(cassandra_server)
    store.session().execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)
    store.close()


def _store(server: tuple[str, str], **config: Any) -> CassandraOnlineStore:
    hosts, port = server
    return CassandraOnlineStore(
        contact_points=[h.strip() for h in hosts.split(",") if h.strip()], port=int(port), **config
    )


def _table(keyspace: str) -> OnlineTable:
    return OnlineTable(
        keyspace=keyspace,
        name="scores",
        partition_key=("user_id",),
        clustering=(),
        columns=(ColumnDef("user_id", "INT64", not_null=True), ColumnDef("score", "FLOAT64")),
    )


def _replication(store: CassandraOnlineStore, keyspace: str) -> dict[str, str] | None:
    row = (
        store.session()
        .execute("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (keyspace,))
        .one()
    )
    return None if row is None else dict(row.replication)


def test_a_created_keyspace_has_the_replication_per_data_center(cassandra_server, keyspace_name):
    probe = _store(cassandra_server)
    local = probe.session().execute("SELECT data_center FROM system.local").one()
    assert local is not None
    probe.close()
    store = _store(cassandra_server, keyspace_replication={local.data_center: 1})
    try:
        store.ensure_table(_table(keyspace_name))
        replication = _replication(store, keyspace_name)
    finally:
        store.close()
    assert replication is not None
    assert replication["class"].endswith("NetworkTopologyStrategy")
    assert replication[local.data_center] == "1"
    assert "replication_factor" not in replication


def test_with_keyspaces_pre_created_a_missing_one_fails_naming_the_statement(cassandra_server, keyspace_name):
    store = _store(cassandra_server, create_keyspaces=False, keyspace_replication={"dc1": 3, "dc2": 3})
    try:
        with pytest.raises(OnlineStoreError) as failure:
            store.ensure_table(_table(keyspace_name))
        assert _replication(store, keyspace_name) is None  # nothing was created
    finally:
        store.close()
    message = str(failure.value)
    assert f"keyspace '{keyspace_name}' does not exist" in message
    assert "DERIVE_CASSANDRA_CREATE_KEYSPACES=false" in message
    assert (
        f'CREATE KEYSPACE "{keyspace_name}" WITH replication = '
        "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}" in message
    )


def test_with_keyspaces_pre_created_an_existing_one_is_used_and_not_altered(cassandra_server, keyspace_name):
    admin = _store(cassandra_server)
    admin.session().execute(
        f"CREATE KEYSPACE {keyspace_name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    admin.close()
    store = _store(cassandra_server, create_keyspaces=False, keyspace_replication={"dc9": 3})
    try:
        store.ensure_table(_table(keyspace_name))
        replication = _replication(store, keyspace_name)
        tables = store.session().execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace_name,)
        )
        assert [t.table_name for t in tables] == ["scores"]
    finally:
        store.close()
    assert replication is not None and replication["class"].endswith("SimpleStrategy")
