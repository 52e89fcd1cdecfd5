"""The test Cassandra server (deployments/cassandra/cassandra.sh) answers CQL through the Python driver.

    bash deployments/cassandra/cassandra.sh install start
    eval "$(bash deployments/cassandra/cassandra.sh env)"   # DERIVE_TEST_CASSANDRA_HOSTS / _PORT

Cassandra and ScyllaDB speak the same CQL protocol; this is what a Scylla-backed feature would be tested on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from cassandra.cluster import Cluster, Session
from cassandra.concurrent import execute_concurrent_with_args


@pytest.fixture(scope="module")
def session(cassandra_server: tuple[str, str]) -> Iterator[Session]:
    hosts = [h.strip() for h in cassandra_server[0].split(",") if h.strip()]
    port = int(cassandra_server[1])
    cluster = Cluster(hosts, port=port, connect_timeout=10)
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


@pytest.fixture
def keyspace(session: Session) -> Iterator[str]:
    """A fresh keyspace (SimpleStrategy, replication factor 1), dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    session.execute(
        f"CREATE KEYSPACE {name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    try:
        yield name
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {name}")


def test_server_version(session: Session) -> None:
    row = session.execute("SELECT release_version FROM system.local").one()
    assert row is not None
    assert int(row.release_version.split(".")[0]) >= 4


def test_write_read_ttl(session: Session, keyspace: str) -> None:
    session.execute(
        f"CREATE TABLE {keyspace}.events (user_id bigint, seq int, payload text, PRIMARY KEY (user_id, seq))"
    )
    insert = session.prepare(f"INSERT INTO {keyspace}.events (user_id, seq, payload) VALUES (?, ?, ?)")
    rows = [(user, seq, f"u{user}-s{seq}") for user in range(20) for seq in range(25)]
    results = execute_concurrent_with_args(session, insert, rows, concurrency=50, raise_on_first_error=True)
    assert all(r.success for r in results)

    stored = {(r.user_id, r.seq) for r in session.execute(f"SELECT user_id, seq FROM {keyspace}.events")}
    assert stored == {(user, seq) for user, seq, _ in rows}
    select = session.prepare(f"SELECT seq, payload FROM {keyspace}.events WHERE user_id = ?")
    got = [(r.seq, r.payload) for r in session.execute(select, (7,))]
    assert got == [(seq, f"u7-s{seq}") for seq in range(25)]  # clustering order

    # A row written with a TTL disappears once it expires (checked on read; no compaction needed). Expiry has
    # one-second granularity (now_in_seconds + ttl), so a TTL 1 row can vanish after a few milliseconds: TTL 2
    # leaves at least one second to see it, and it is gone 2-3 s later.
    session.execute(
        f"INSERT INTO {keyspace}.events (user_id, seq, payload) VALUES (999, 0, 'brief') USING TTL 2"
    )
    probe = session.prepare(f"SELECT payload, TTL(payload) AS ttl FROM {keyspace}.events WHERE user_id = 999")
    written = time.monotonic()
    row = session.execute(probe).one()
    assert row is not None
    assert row.payload == "brief"
    assert 0 < row.ttl <= 2
    while session.execute(probe).one() is not None:
        assert time.monotonic() - written < 10, "the row written USING TTL 2 did not expire within 10 s"
        time.sleep(0.2)
    assert time.monotonic() - written >= 0.9
