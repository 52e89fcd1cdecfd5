"""ScyllaDB / Apache Cassandra, the production online store, through the CQL driver (`cassandra-driver`).

Writes use one prepared `INSERT … USING TTL ?` per table (deletes one prepared `DELETE … WHERE <primary key>`),
sent as unlogged batches of at most `batch_rows` rows grouped by the replica that owns their partition (so a
batch goes to a node holding every row in it, and rows sharing a partition key travel together), with at most
`concurrency` requests in flight; inserts are upserts in CQL, so re-exporting a window is idempotent.

Why batches and one process: on these 2-core machines (Cassandra's JVM on the same cores, shared with other
work), the server's cost per request is the limit. Measured 2026-12-02 on 20-40k rows: single-row requests 0.7-1.3k
rows/s, 2 and 3 writer processes no faster (0.72k, 0.70k); unlogged batches of 25 rows 4.3-5.1k, of 50 rows 7.3k
in one process, and 2 processes with batches no faster (3.3-5.0k vs 4.8-5.0k). A batch is an all-or-nothing
request: a refused row fails its batch, which is reported as refused like a single row.

Failures are sorted by cause. Transient ones (no host available, timeouts, a lost connection, an overloaded
node) are retried for the rows that failed, up to `write_retries` times with exponential backoff
(`retry_backoff_seconds`, doubling, at most `retry_backoff_max_seconds`); the driver reconnects in between. A
row the server refuses (`InvalidRequest`, e.g. a NULL key) is never retried. Giving up raises
`OnlineWriteError` with the number of rows written; a failed run records no materialization, so the export's
watermark never passes what was written.

The driver's own `execute_concurrent` is not used: when the connection drops, `session.execute_async` raises
`NoHostAvailable` synchronously, its executor recurses through the remaining rows until a `RecursionError`, records
one row twice and then fails sorting its results (`TypeError: '<' not supported between instances of
'RecursionError' and 'NoHostAvailable'`), so no retry ever ran.

Time bounds: connecting fails after `connect_timeout_seconds` per contact point (at once for a refused port); a
write that cannot complete fails after at most `(write_retries + 1) * request_timeout_seconds` plus the backoff.

Connection settings come from configuration (`resources/backends.py` `CassandraConfig`, which Derive fills from the
`DERIVE_CASSANDRA_*` variables); the password is a Dagster `EnvVar`, so the UI shows its name, never its value.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
from cassandra import (
    ConsistencyLevel,
    DriverException,
    OperationTimedOut,
    RequestExecutionException,
)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable, ResponseFuture, Session
from cassandra.connection import ConnectionException
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
from cassandra.protocol import IsBootstrappingErrorMessage, OverloadedErrorMessage, ServerError
from cassandra.query import BatchStatement, BatchType, BoundStatement, PreparedStatement
from cassandra.util import Date
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from resources.online_store import (
    CQL_TYPES,
    ExportResult,
    OnlineStoreError,
    OnlineStoreUnavailable,
    OnlineTable,
    OnlineWriteError,
    key_values,
)

BATCH_BYTES = 4_000
"""About this many bytes of values per unlogged batch at most: below Cassandra's default
`batch_size_warn_threshold` (5 KiB), far below its fail threshold (50 KiB)."""

PRECISION = dt.timedelta(milliseconds=1)
"""CQL `timestamp` is milliseconds since the epoch."""

TRANSIENT = (
    NoHostAvailable,
    OperationTimedOut,
    ConnectionException,
    RequestExecutionException,  # WriteTimeout, Unavailable, WriteFailure: the coordinator or replicas were busy
    OverloadedErrorMessage,
    IsBootstrappingErrorMessage,
    ServerError,
)
"""Errors that a later attempt can succeed past; everything else is the row's or the schema's fault."""

SETTINGS_HINT = "DERIVE_CASSANDRA_HOSTS / DERIVE_CASSANDRA_PORT"


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
        ge=1,
        description="Replication factor of keyspaces Derive creates with SimpleStrategy, when "
        "`keyspace_replication` is not given (a one-DC test cluster).",
    )
    keyspace_replication: dict[str, int] | None = Field(
        default=None,
        description="Replicas per data center of keyspaces Derive creates, with NetworkTopologyStrategy, e.g. "
        "{'dc1': 3, 'dc2': 3} (`DERIVE_CASSANDRA_REPLICATION=dc1:3,dc2:3`). None: SimpleStrategy with "
        "`replication_factor`. An existing keyspace is never altered.",
    )
    create_keyspaces: bool = Field(
        default=True,
        description="Create a missing keyspace (`DERIVE_CASSANDRA_CREATE_KEYSPACES`). False: keyspaces are "
        "pre-created by the cluster's operators, and an export to a missing one fails, saying how to create it.",
    )
    concurrency: int = Field(default=64, description="Most write requests in flight at once.")
    batch_rows: int = Field(
        default=50,
        description="Most rows per unlogged batch; rows are grouped by the replica owning their partition, so "
        "a batch goes to a node holding all of its rows (1: every row its own request).",
    )
    batches_in_flight: int = Field(
        default=8,
        description="Most unlogged batches in flight at once (single-row requests follow `concurrency`); keeps "
        "the rows in flight, and so what one lost connection fails, near what `concurrency` single rows are.",
    )
    write_retries: int = Field(
        default=5,
        description="Retries of rows whose write failed for a transient reason (no host, timeout, lost "
        "connection, overloaded node) before the run fails; refused rows are never retried.",
    )
    retry_backoff_seconds: float = Field(
        default=0.5, description="Pause before the first retry; it doubles on each later one."
    )
    retry_backoff_max_seconds: float = Field(default=8.0, description="Longest pause between two retries.")
    connect_timeout_seconds: float = Field(
        default=5.0, description="How long connecting to one contact point may take before it counts as down."
    )
    request_timeout_seconds: float = Field(default=20.0, description="Driver request timeout.")

    _cluster: Any = PrivateAttr(default=None)
    _session: Session | None = PrivateAttr(default=None)
    _prepared: dict[str, PreparedStatement] = PrivateAttr(default_factory=dict)

    @property
    def kind(self) -> str:
        return "cassandra"

    @property
    def timestamp_precision(self) -> dt.timedelta:
        return PRECISION

    # ------------------------------------------------------------------------------------------- connection

    def session(self) -> Session:
        """One session per resource instance, opened on first use (a Cluster is costly; a query is not)."""
        if self._session is None:
            auth = PlainTextAuthProvider(self.username, self.password or "") if self.username else None
            context = None
            if self.ssl_ca_file:
                context = ssl.create_default_context(cafile=self.ssl_ca_file)
            policy = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.local_datacenter or ""))
            cluster = Cluster(
                self.contact_points,
                port=self.port,
                auth_provider=auth,
                ssl_context=context,
                load_balancing_policy=policy,
                # Reconnect soon after a lost connection, so the write retries find the node back.
                reconnection_policy=ExponentialReconnectionPolicy(
                    base_delay=min(0.5, self.retry_backoff_seconds or 0.5),
                    max_delay=max(1.0, self.retry_backoff_max_seconds),
                ),
                connect_timeout=self.connect_timeout_seconds,  # pyright: ignore[reportArgumentType]
                control_connection_timeout=self.connect_timeout_seconds,
                protocol_version=5,
            )
            try:
                session = cluster.connect()
            except (NoHostAvailable, OperationTimedOut, DriverException) as exc:
                cluster.shutdown()
                raise OnlineStoreUnavailable(
                    f"cannot connect to Cassandra at {self._where()}: {_describe(exc)}; check that the cluster is "
                    f"up and reachable, and the contact points and port ({SETTINGS_HINT}); each contact point "
                    f"is given {self.connect_timeout_seconds:g} s (DERIVE_CASSANDRA_CONNECT_TIMEOUT)"
                ) from None
            session.default_timeout = self.request_timeout_seconds
            self._cluster, self._session = cluster, session
        assert self._session is not None
        return self._session

    def _where(self) -> str:
        return ", ".join(f"{host}:{self.port}" for host in self.contact_points)

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
        try:
            self._ensure_table(table)
        except TRANSIENT as exc:
            raise self._unavailable(f"creating or checking {table.ref}", exc) from None

    def _ensure_table(self, table: OnlineTable) -> None:
        s = self.session()
        create_keyspace = f"CREATE KEYSPACE IF NOT EXISTS {_q(table.keyspace)} WITH replication = "
        create_keyspace += self.replication_cql()
        if self.create_keyspaces:
            s.execute(create_keyspace)
        elif (
            s.execute(
                "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
                (table.keyspace,),
            ).one()
            is None
        ):
            raise OnlineStoreError(
                f"keyspace '{table.keyspace}' does not exist in Cassandra at {self._where()}, and Derive creates "
                "none (DERIVE_CASSANDRA_CREATE_KEYSPACES=false): ask the cluster's operators to create it, e.g. "
                f"`{create_keyspace.replace(' IF NOT EXISTS', '')}`, or fix the export's `keyspace`"
            )
        columns = ", ".join(f"{_q(c.name)} {CQL_TYPES[c.type]}" for c in table.columns)
        partition = ", ".join(_q(k) for k in table.partition_key)
        clustering = "".join(f", {_q(k)}" for k in table.clustering)
        s.execute(
            f"CREATE TABLE IF NOT EXISTS {_ref(table)} ({columns}, PRIMARY KEY (({partition}){clustering}))"
        )
        self._check_layout(table)

    def replication_cql(self) -> str:
        """The `replication = {…}` map of keyspaces Derive creates."""
        if not self.keyspace_replication:
            return f"{{'class': 'SimpleStrategy', 'replication_factor': {int(self.replication_factor)}}}"
        per_dc = ", ".join(f"{_literal(dc)}: {int(n)}" for dc, n in sorted(self.keyspace_replication.items()))
        return f"{{'class': 'NetworkTopologyStrategy', {per_dc}}}"

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
            columns = [
                _encode_column(batch.column(n).to_pylist(), t) for n, t in zip(names, types, strict=True)
            ]
            ttls = [ttl] * batch.num_rows
            rows = list(zip(*columns, ttls, strict=True))
            self._write_rows(statement, rows, table, result)
            result.batches += 1
        return result

    def delete(self, table: OnlineTable, keys: Iterable[pa.RecordBatch]) -> int:
        """One prepared `DELETE … WHERE <primary key>` per key, concurrent and retried like writes."""
        where = " AND ".join(f"{_q(k)} = ?" for k in table.primary_key)
        statement = self._prepare(f"DELETE FROM {_ref(table)} WHERE {where}")
        statement.consistency_level = getattr(ConsistencyLevel, table.consistency)
        types = {c.name: c.type for c in table.columns}
        result = ExportResult()
        for batch in keys:
            columns = [batch.column(k).to_pylist() for k in table.primary_key]
            rows = [
                tuple(_encode(v, types[k]) for v, k in zip(values, table.primary_key, strict=True))
                for values in zip(*columns, strict=True)
            ]
            self._write_rows(statement, rows, table, result, names=table.primary_key, verb="deleted from")
        return result.rows_written

    def _write_rows(
        self,
        statement: PreparedStatement,
        rows: list[tuple[Any, ...]],
        table: OnlineTable,
        result: ExportResult,
        names: Sequence[str] | None = None,
        verb: str = "written to",
    ) -> None:
        """Run `statement` over rows concurrently, in replica-grouped unlogged batches (`_units`); retry the
        requests that failed transiently, with backoff. Counts into `result`. `names`: the columns of a row tuple
        (default: the table's); `verb`: for messages."""
        names = list(names or table.column_names)
        units, bound = self._units(statement, rows, table, names)
        pending = list(range(len(units)))
        delay = self.retry_backoff_seconds
        for attempt in range(self.write_retries + 1):
            failed = self._attempt(statement, rows, bound, units, pending)
            failed_units = {u for u, _ in failed}
            result.rows_written += sum(len(units[u]) for u in pending if u not in failed_units)
            if not failed:
                return
            refused = [(u, exc) for u, exc in failed if exc is not None and not isinstance(exc, TRANSIENT)]
            if refused:
                unit, exc = refused[0]
                key = {k: rows[units[unit][0]][names.index(k)] for k in table.primary_key}
                raise OnlineWriteError(
                    f"{table.ref}: Cassandra refused {sum(len(units[u]) for u, _ in refused)} row(s) of a batch, "
                    f"first the row with key {key}: {_describe(exc)}; such an error is not retried: fix the row in "
                    "the warehouse table (or the export's columns) and rerun",
                    rows_written=result.rows_written,
                    transient=False,
                )
            if attempt == self.write_retries:
                cause = next((exc for _, exc in failed if exc is not None), None)
                raise OnlineWriteError(
                    f"{table.ref}: {sum(len(units[u]) for u, _ in failed):,} row(s) of a batch could not be "
                    f"{verb} Cassandra at {self._where()} after {self.write_retries} retries over about "
                    f"{self._retry_span():g} s (last error: {_describe(cause)}); check that the cluster is up and "
                    f"reachable ({SETTINGS_HINT}); more patience: DERIVE_CASSANDRA_WRITE_RETRIES, "
                    "DERIVE_CASSANDRA_RETRY_BACKOFF",
                    rows_written=result.rows_written,
                    transient=True,
                )
            pending = [u for u, _ in failed]
            result.retries += sum(len(units[u]) for u in pending)
            time.sleep(delay)
            delay = min(delay * 2, self.retry_backoff_max_seconds)

    def _units(
        self, statement: PreparedStatement, rows: list[tuple[Any, ...]], table: OnlineTable, names: list[str]
    ) -> tuple[list[list[int]], list[BoundStatement | None]]:
        """The requests for `rows`: lists of row indices, each sent as one unlogged batch (or alone).

        Rows are grouped by the first replica of their partition (token-aware), so each batch goes to a node that
        owns every row in it, rows sharing a partition key land in the same batches, and a batch holds at most
        `batch_rows` rows and about `BATCH_BYTES` of values. A row whose key is NULL or whose values the driver
        cannot bind is sent alone (the server, or the driver, then refuses it as before).
        """
        bound: list[BoundStatement | None] = [None] * len(rows)
        if self.batch_rows <= 1:
            return [[i] for i in range(len(rows))], bound
        keys = [names.index(k) for k in table.primary_key]
        metadata = self._cluster.metadata if self._cluster is not None else None
        groups: dict[Any, list[int]] = {}
        sizes: dict[Any, int] = {}
        units: list[list[int]] = []
        for i, row in enumerate(rows):
            if any(row[k] is None for k in keys):
                units.append([i])
                continue
            try:
                b = statement.bind(row)
                replicas = metadata.get_replicas(table.keyspace, b.routing_key) if metadata else None
            # Binding a value the driver cannot serialize raises with no documented type (TypeError,
            # struct.error, ValueError…): the row goes alone, and `_attempt` reports it as refused.
            except Exception:  # noqa: BLE001
                units.append([i])
                continue
            bound[i] = b
            group = replicas[0] if replicas else None
            size = sum(len(v) for v in (b.values or ()) if v)
            members = groups.setdefault(group, [])
            if members and (len(members) >= self.batch_rows or sizes[group] + size > BATCH_BYTES):
                units.append(members)
                members = groups[group] = []
                sizes[group] = 0
            members.append(i)
            sizes[group] = sizes.get(group, 0) + size
        units.extend(m for m in groups.values() if m)
        return units, bound

    def _attempt(
        self,
        statement: PreparedStatement,
        rows: list[tuple[Any, ...]],
        bound: list[BoundStatement | None],
        units: list[list[int]],
        indices: list[int],
    ) -> list[tuple[int, BaseException | None]]:
        """One pass over the units `indices` with at most `concurrency` requests in flight; returns the failed
        units.

        Once no host is available, the rest of the pass is not sent (its units fail with no error of their own).
        """
        session = self.session()
        in_flight: deque[tuple[int, ResponseFuture]] = deque()
        failed: list[tuple[int, BaseException | None]] = []

        def settle() -> None:
            index, future = in_flight.popleft()
            try:
                future.result()
            except (DriverException, NoHostAvailable, ConnectionException) as exc:
                failed.append((index, exc))

        for position, index in enumerate(indices):
            unit = units[index]
            limit = self.concurrency if len(unit) == 1 else max(1, self.batches_in_flight)
            while len(in_flight) >= limit:
                settle()
            try:
                if len(unit) == 1:
                    one = bound[unit[0]]
                    future = (
                        session.execute_async(statement, rows[unit[0]])
                        if one is None
                        else session.execute_async(one)
                    )
                else:
                    batch = BatchStatement(
                        batch_type=BatchType.UNLOGGED, consistency_level=statement.consistency_level
                    )
                    for i in unit:
                        batch.add(bound[i])  # pyright: ignore[reportArgumentType]  (bound: never None here)
                    future = session.execute_async(batch)
                in_flight.append((index, future))
            except NoHostAvailable as exc:
                failed.append((index, exc))
                failed.extend((i, None) for i in indices[position + 1 :])
                break
            # A value the driver cannot serialize raises synchronously with no documented type (TypeError,
            # struct.error, ValueError…): report it as a refused row, never as an outage.
            except Exception as exc:  # noqa: BLE001
                failed.append((index, exc))
        while in_flight:
            settle()
        return failed

    def _retry_span(self) -> float:
        delay, total = self.retry_backoff_seconds, 0.0
        for _ in range(self.write_retries):
            total += delay
            delay = min(delay * 2, self.retry_backoff_max_seconds)
        return round(total, 1)

    # ------------------------------------------------------------------------------------------- reads

    def lookup(self, table: OnlineTable, key: Sequence[Any]) -> list[dict[str, Any]]:
        values = key_values(table, key)
        types = {c.name: c.type for c in table.columns}
        where = " AND ".join(f"{_q(k)} = ?" for k in values)
        statement = self._prepare(
            f"SELECT {', '.join(_q(n) for n in table.column_names)} FROM {_ref(table)} WHERE {where}"
        )
        try:
            rows = self.session().execute(statement, [_encode(v, types[k]) for k, v in values.items()])
        except TRANSIENT as exc:
            raise self._unavailable(f"reading {table.ref} by key", exc) from None
        return [
            {name: _decode(getattr(row, name), types[name]) for name in table.column_names} for row in rows
        ]

    def count(self, table: OnlineTable) -> int:
        try:
            row = self.session().execute(f"SELECT count(*) FROM {_ref(table)}", timeout=120).one()
        except TRANSIENT as exc:
            raise self._unavailable(f"counting {table.ref}", exc) from None
        return int(row[0]) if row else 0

    def _unavailable(self, doing: str, exc: BaseException) -> OnlineStoreUnavailable:
        return OnlineStoreUnavailable(
            f"{doing} failed on Cassandra at {self._where()}: {_describe(exc)}; check that the cluster is up and "
            f"reachable ({SETTINGS_HINT}); requests time out after {self.request_timeout_seconds:g} s "
            "(DERIVE_CASSANDRA_REQUEST_TIMEOUT)"
        )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    """A CQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _ref(table: OnlineTable) -> str:
    return f"{_q(table.keyspace)}.{_q(table.name)}"


def _describe(exc: BaseException | None) -> str:
    """A driver error in one line; `NoHostAvailable` keeps its per-host reasons."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, NoHostAvailable) and exc.errors:
        reasons = "; ".join(f"{host}: {error}" for host, error in exc.errors.items())
        return f"{type(exc).__name__}: {exc.args[0] if exc.args else ''} ({reasons})"
    return f"{type(exc).__name__}: {exc}"


ENCODED = frozenset({"JSON", "TIMESTAMP", "DATETIME"})
"""The spec types whose values `_encode` changes; the driver takes every other type's Python values as they are."""


def _encode_column(values: list[Any], column_type: str) -> list[Any]:
    """A column's values for the driver: `_encode` per value only where it changes something (a Python call per
    value is a cost per row of every export)."""
    return [_encode(v, column_type) for v in values] if column_type in ENCODED else values


def _encode(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type == "JSON" and not isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dt.datetime):
        # Keep whole milliseconds, rounding down (the driver truncates toward zero, which before 1970 rounds up).
        value = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if column_type == "DATETIME" and value.tzinfo is None:
            return value.replace(
                tzinfo=dt.UTC
            )  # a DATETIME is stored as the UTC instant of the same wall time
    return value


def _decode(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if isinstance(value, Date):
        return value.date()
    if isinstance(value, dt.datetime):
        # The driver turns milliseconds into float seconds; round off its float error to the millisecond.
        value = dt.datetime.min + round((value - dt.datetime.min) / PRECISION) * PRECISION
        if column_type == "TIMESTAMP":
            return value.replace(tzinfo=dt.UTC)  # the driver returns naive UTC
    return value
