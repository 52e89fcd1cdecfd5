"""ScyllaDB / Apache Cassandra, the production online store, through the CQL driver (`cassandra-driver`).

Writes use one prepared `INSERT … USING TTL ?` per table and the driver's concurrent execution with a bounded
number of requests in flight; inserts are upserts in CQL, so re-exporting a window is idempotent. Rows whose
write failed are retried (with backoff) before the batch, and so the run, fails; a failed run records no
materialization, so the export's watermark never passes what was written.

Connection settings come from configuration (`DERIVE_CASSANDRA_*` environment variables, see
`derive_assets/factory/build.py`); the password is a Dagster `EnvVar`, so the UI shows its name, never its value.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import time
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement
from cassandra.util import Date
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from resources.online_store import CQL_TYPES, ExportResult, OnlineStoreError, OnlineTable, key_values


class CassandraOnlineStore(ConfigurableResource):
    """The online store on ScyllaDB or Cassandra.

    Example:
        ```python
        CassandraOnlineStore(contact_points=["10.0.0.5"], local_datacenter="dc1", password=EnvVar("CQL_PASSWORD"))
        ```
    """

    contact_points: list[str] = Field(
        default=["127.0.0.1"], description="Hosts the driver first connects to."
    )
    port: int = Field(default=9042, description="CQL native transport port.")
    local_datacenter: str | None = Field(
        default=None, description="Data center whose nodes serve requests (DC-aware, token-aware routing)."
    )
    username: str | None = Field(default=None, description="Login for PasswordAuthenticator; none: no auth.")
    password: str | None = Field(default=None, description="Password; pass an EnvVar so it is never shown.")
    ssl_ca_file: str | None = Field(
        default=None, description="CA certificate (PEM); when set, connect with TLS."
    )
    replication_factor: int = Field(
        default=1,
        description="Replication of keyspaces Derive creates (SimpleStrategy); create real ones yourself.",
    )
    concurrency: int = Field(default=64, description="Most write requests in flight at once.")
    write_retries: int = Field(default=3, description="Retries of failed row writes before the run fails.")
    request_timeout_seconds: float = Field(default=20.0, description="Driver request timeout.")

    _cluster: Any = PrivateAttr(default=None)
    _session: Session | None = PrivateAttr(default=None)
    _prepared: dict[str, PreparedStatement] = PrivateAttr(default_factory=dict)

    @property
    def kind(self) -> str:
        return "cassandra"

    # ------------------------------------------------------------------------------------------- connection

    def session(self) -> Session:
        """One session per resource instance, opened on first use (a Cluster is costly; a query is not)."""
        if self._session is None:
            auth = PlainTextAuthProvider(self.username, self.password or "") if self.username else None
            context = None
            if self.ssl_ca_file:
                context = ssl.create_default_context(cafile=self.ssl_ca_file)
            policy = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.local_datacenter or ""))
            self._cluster = Cluster(
                self.contact_points,
                port=self.port,
                auth_provider=auth,
                ssl_context=context,
                load_balancing_policy=policy,
                protocol_version=5,
            )
            session = self._cluster.connect()
            session.default_timeout = self.request_timeout_seconds
            self._session = session
        assert self._session is not None
        return self._session

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
        self._cluster, self._session = None, None
        self._prepared.clear()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self.close()

    def _prepare(self, cql: str) -> PreparedStatement:
        if cql not in self._prepared:
            self._prepared[cql] = self.session().prepare(cql)
        return self._prepared[cql]

    # ------------------------------------------------------------------------------------------- schema

    def ensure_table(self, table: OnlineTable) -> None:
        s = self.session()
        s.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {_q(table.keyspace)} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {int(self.replication_factor)}}}"
        )
        columns = ", ".join(f"{_q(c.name)} {CQL_TYPES[c.type]}" for c in table.columns)
        partition = ", ".join(_q(k) for k in table.partition_key)
        clustering = "".join(f", {_q(k)}" for k in table.clustering)
        s.execute(
            f"CREATE TABLE IF NOT EXISTS {_ref(table)} ({columns}, PRIMARY KEY (({partition}){clustering}))"
        )
        self._check_layout(table)

    def _check_layout(self, table: OnlineTable) -> None:
        rows = self.session().execute(
            "SELECT column_name, type, kind, position FROM system_schema.columns "
            "WHERE keyspace_name = %s AND table_name = %s",
            (table.keyspace, table.name),
        )
        actual = {r.column_name: (r.type, r.kind, r.position) for r in rows}
        expected = {c.name: (CQL_TYPES[c.type], "regular", -1) for c in table.columns}
        for i, k in enumerate(table.partition_key):
            expected[k] = (expected[k][0], "partition_key", i)
        for i, k in enumerate(table.clustering):
            expected[k] = (expected[k][0], "clustering", i)
        if actual != expected:
            raise OnlineStoreError(
                f"{table.ref}: the existing CQL table differs from the export spec (expected {expected}, found "
                f"{actual}); Derive does not alter online tables: drop it or export to a new cql_table"
            )

    # ------------------------------------------------------------------------------------------- writes

    def write(self, table: OnlineTable, batches: Iterable[pa.RecordBatch]) -> ExportResult:
        names = table.column_names
        cql = (
            f"INSERT INTO {_ref(table)} ({', '.join(_q(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)}) USING TTL ?"
        )
        statement = self._prepare(cql)
        statement.consistency_level = getattr(ConsistencyLevel, table.consistency)
        ttl = table.ttl_seconds or 0  # TTL 0 = no expiry
        types = [c.type for c in table.columns]
        result = ExportResult()
        for batch in batches:
            columns = [batch.column(n).to_pylist() for n in names]
            rows = [
                (*(_encode(v, t) for v, t in zip(values, types, strict=True)), ttl)
                for values in zip(*columns, strict=True)
            ]
            result.retries += self._write_rows(statement, rows, table)
            result.rows_written += len(rows)
            result.batches += 1
        return result

    def _write_rows(
        self, statement: PreparedStatement, rows: list[tuple[Any, ...]], table: OnlineTable
    ) -> int:
        """Write rows concurrently; retry the failed ones. Returns how many retries were needed."""
        pending, retries, delay = rows, 0, 0.2
        for attempt in range(self.write_retries + 1):
            outcomes = execute_concurrent_with_args(
                self.session(), statement, pending, concurrency=self.concurrency, raise_on_first_error=False
            )
            failed = [(row, outcome) for row, (ok, outcome) in zip(pending, outcomes, strict=True) if not ok]
            if not failed:
                return retries
            if attempt == self.write_retries:
                raise OnlineStoreError(
                    f"{table.ref}: {len(failed)} of {len(rows)} rows of a batch could not be written after "
                    f"{self.write_retries} retries; first error: {failed[0][1]!r}"
                )
            pending = [row for row, _ in failed]
            retries += len(pending)
            time.sleep(delay)
            delay *= 2
        return retries

    # ------------------------------------------------------------------------------------------- reads

    def lookup(self, table: OnlineTable, key: Sequence[Any]) -> list[dict[str, Any]]:
        values = key_values(table, key)
        types = {c.name: c.type for c in table.columns}
        where = " AND ".join(f"{_q(k)} = ?" for k in values)
        statement = self._prepare(
            f"SELECT {', '.join(_q(n) for n in table.column_names)} FROM {_ref(table)} WHERE {where}"
        )
        rows = self.session().execute(statement, [_encode(v, types[k]) for k, v in values.items()])
        return [
            {name: _decode(getattr(row, name), types[name]) for name in table.column_names} for row in rows
        ]

    def count(self, table: OnlineTable) -> int:
        row = self.session().execute(f"SELECT count(*) FROM {_ref(table)}", timeout=120).one()
        return int(row[0]) if row else 0


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ref(table: OnlineTable) -> str:
    return f"{_q(table.keyspace)}.{_q(table.name)}"


def _encode(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type == "JSON" and not isinstance(value, str):
        return json.dumps(value)
    if column_type == "DATETIME" and isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)  # a DATETIME is stored as the UTC instant of the same wall time
    return value


def _decode(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if isinstance(value, Date):
        return value.date()
    if column_type == "TIMESTAMP" and isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC)  # the driver returns naive UTC
    return value
