"""Source faults on the real servers: the source connection dropped in the middle of an extraction.

The drop is a real one. While a replication run streams `orders` (a view over the real table whose last row
waits for a lock the test holds, so the server is still in the middle of the stream), a second connection ends
the streaming backend with `pg_terminate_backend` (PostgreSQL) or `KILL` (MariaDB), right after the first batch
reached the warehouse. The load must then be retried from scratch, within bounded attempts, and end with exactly
the source's rows; or, when every attempt is dropped, fail clearly with the table and the watermark untouched.

The only thing the test changes in the process is the batch size of the read (small batches, so the first one
arrives long before the last) and the moment of the drop: a wrapper around `read_batches` as the replication run
calls it, counting the attempts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pytest
from helpers import SECRET_IN_URL, Replication, materializations

from derive_assets.replication import retry
from derive_assets.replication import run as replication_run
from derive_assets.replication.retry import (
    RetryPolicy,
    SourceRetriesExhausted,
    is_transient,
    load_with_retries,
)

ORDERS = "orders.orders"
USERS = 400
BATCH_ROWS = 200
RETRY_LOG = "failed with a transient source error"


GATE_KEY = 4242
"""PostgreSQL advisory lock key of the gate (advisory locks are per database: tests never share one)."""


class Gate:
    """A lock on the source server that the read of `orders` must pass before its last row: while the test holds
    it, the server is still in the middle of the stream, so dropping the connection then is a real mid-stream
    drop (the client cannot have buffered the rest)."""

    def __init__(self, rep: Replication) -> None:
        self.rep = rep
        self.name = f"derive_gate_{urlsplit(rep.url).path.lstrip('/')}"
        if rep.source_type == "postgres":
            self.pg: psycopg.Connection | None = psycopg.connect(rep.url, autocommit=True)
            self.pg.execute("SELECT pg_advisory_lock(%s)", [GATE_KEY])
            self.my = None
        else:
            self.pg = None
            self.my = _mysql(rep.url)
            with self.my.cursor() as cur:
                cur.execute("SELECT GET_LOCK(%s, 5)", [self.name])
                assert cur.fetchone() == (1,)

    def install(self) -> None:
        """Put `orders` behind a view whose last row (the greatest order_id) waits for the gate (20 s at most)."""
        last = int(self.rep.source("SELECT max(order_id) FROM orders")[0][0])
        self.rep.source_execute("ALTER TABLE orders RENAME TO orders_data")
        if self.pg is not None:
            self.rep.source_execute(
                "CREATE FUNCTION derive_test_gate(id bigint) RETURNS boolean LANGUAGE plpgsql "
                f"SET lock_timeout = '20s' AS $$ BEGIN IF id = {last} THEN "
                f"PERFORM pg_advisory_lock_shared({GATE_KEY}); PERFORM pg_advisory_unlock_shared({GATE_KEY}); "
                "END IF; RETURN true; END $$"
            )
            self.rep.source_execute(
                "CREATE VIEW orders AS SELECT * FROM orders_data WHERE derive_test_gate(order_id)"
            )
        else:
            self.rep.source_execute(
                f"CREATE VIEW orders AS SELECT * FROM orders_data WHERE order_id <> {last} "
                f"OR GET_LOCK('{self.name}', 20) + RELEASE_LOCK('{self.name}') >= 0"
            )

    def open(self) -> None:
        if self.pg is not None and not self.pg.closed:
            self.pg.close()
        if self.my is not None and self.my.open:
            self.my.close()


class Dropper:
    """Ends the source backend that streams `orders` after the first batch of each of the first `times`
    attempts (then opens the gate); records how many batches every attempt delivered."""

    def __init__(self, rep: Replication, gate: Gate | None, times: int) -> None:
        self.rep = rep
        self.gate = gate
        self.times = times
        self.delivered: list[int] = []
        self.dropped = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = replication_run.read_batches

        def read(url: str, plan: Any, **kwargs: Any) -> Iterator[Any]:
            attempt = len(self.delivered)
            self.delivered.append(0)
            for batch in real(url, plan, batch_rows=BATCH_ROWS, **kwargs):
                yield batch
                self.delivered[attempt] += 1
                if self.delivered[attempt] == 1 and attempt < self.times:
                    self.drop()

        monkeypatch.setattr(replication_run, "read_batches", read)

    def drop(self) -> None:
        """End every other connection of the test database that is reading `orders` (the extraction)."""
        if self.rep.source_type == "postgres":
            with psycopg.connect(self.rep.url, autocommit=True) as con:
                ended = con.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state = 'active' AND query ILIKE %s",
                    ["%FROM%orders%"],
                ).fetchall()
        else:
            with _mysql(self.rep.url) as con, con.cursor() as cur:
                cur.execute(
                    "SELECT id FROM information_schema.processlist WHERE db = DATABASE() "
                    "AND id <> CONNECTION_ID() AND info LIKE %s",
                    ["%FROM%orders%"],
                )
                ended = cur.fetchall()
                for (thread,) in ended:
                    cur.execute("KILL %s", [thread])
        assert ended, "no backend was streaming orders when the drop came"
        self.dropped += 1
        if self.dropped == self.times and self.gate is not None:
            self.gate.open()


def _mysql(url: str) -> pymysql.connections.Connection:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/"),
        autocommit=True,
    )


@pytest.fixture
def gate(rep: Replication) -> Iterator[Gate]:
    held = Gate(rep)
    try:
        yield held
    finally:
        held.open()


@pytest.fixture(params=["postgres", "mysql"])
def rep(request: pytest.FixtureRequest, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Replication:
    url = request.getfixturevalue("postgres_url" if request.param == "postgres" else "mysql_url")
    monkeypatch.setenv(retry.ATTEMPTS_ENV, "3")
    monkeypatch.setenv(retry.BACKOFF_ENV, "0.2")
    replication = Replication(tmp_path, monkeypatch, url, request.param)
    replication.generate(users=USERS)
    return replication


def checksum(rep: Replication) -> tuple[int, int, str]:
    """(rows, distinct keys, md5 of every row as text, sorted): equal only for the same table contents."""
    return rep.warehouse(
        "SELECT count(*), count(DISTINCT order_id), "
        "md5(coalesce(string_agg(CAST(o AS VARCHAR), '|' ORDER BY order_id), '')) FROM orders.orders AS o"
    )[0]


def assert_equals_source(rep: Replication) -> None:
    rows = rep.source_rows(ORDERS)
    assert rep.warehouse_rows(ORDERS) == rows
    count, keys, _ = checksum(rep)
    assert count == keys == len(rows)
    assert rep.watermark_time(ORDERS) == rep.source_max_updated_at(ORDERS)


def retry_logs(rep: Replication, result: Any) -> list[str]:
    return [line for line in rep.failure_text(result).splitlines() if RETRY_LOG in line]


def test_connection_dropped_during_a_first_load_is_retried_from_scratch(rep, gate, monkeypatch):
    gate.install()
    dropper = Dropper(rep, gate, times=1)
    dropper.install(monkeypatch)

    result = rep.replicate("orders")

    assert dropper.dropped == 1
    assert len(dropper.delivered) == 2 and dropper.delivered[0] >= 1, dropper.delivered
    logs = retry_logs(rep, result)
    assert len(logs) == 1 and "attempt 1 of 3" in logs[0], logs
    assert SECRET_IN_URL not in rep.failure_text(result)
    assert_equals_source(rep)
    total = len(rep.source_rows(ORDERS))
    meta = materializations(result)[ORDERS]
    assert (meta["derive/rows_read"], meta["derive/rows_inserted"]) == (total, total)


def test_connection_dropped_during_an_incremental_load_is_retried_from_scratch(rep, gate, monkeypatch):
    rep.replicate("orders")
    before = rep.watermark_time(ORDERS)
    activity = rep.apply_activity(fraction=0.2)
    changed = rep.source_changed_since(ORDERS, before)
    gate.install()
    dropper = Dropper(rep, gate, times=2)
    dropper.install(monkeypatch)

    result = rep.replicate("orders")

    assert dropper.dropped == 2 and len(dropper.delivered) == 3, dropper.delivered
    assert all(n >= 1 for n in dropper.delivered[:2]), dropper.delivered
    assert [line.split(": attempt ")[1][:6] for line in retry_logs(rep, result)] == ["1 of 3", "2 of 3"]
    assert_equals_source(rep)
    meta = materializations(result)[ORDERS]
    # Counted once, by the attempt that committed: the rolled-back attempts left nothing behind. (The read may
    # start a little before the old watermark, to catch late commits, so it can read more than `changed`.)
    counted = meta["derive/rows_inserted"] + meta["derive/rows_updated"] + meta["derive/rows_deleted"]
    assert changed <= meta["derive/rows_read"] == counted
    assert meta["derive/rows_inserted"] == activity[f"{ORDERS}.inserted"]


def test_source_that_stays_down_fails_clearly_and_changes_nothing(rep, gate, monkeypatch):
    rep.replicate("orders")
    rep.apply_activity(fraction=0.2)  # changes are pending: a half-applied attempt would show
    snapshot = checksum(rep)
    mark = rep.watermark(ORDERS)
    gate.install()
    dropper = Dropper(rep, gate, times=99)
    dropper.install(monkeypatch)

    started = time.monotonic()
    result = rep.replicate("orders", ok=False)

    assert time.monotonic() - started < 60, "an outage must fail within a bounded time"
    assert dropper.dropped == 3 and len(dropper.delivered) == 3
    text = rep.failure_text(result)
    assert "source 'orders' table orders: the source connection failed on all 3 attempts" in text, text
    assert "DERIVE_SOURCE_RETRY_ATTEMPTS" in text
    assert SECRET_IN_URL not in text
    assert len(retry_logs(rep, result)) == 2
    assert materializations(result) == {}
    assert checksum(rep) == snapshot
    assert rep.watermark(ORDERS) == mark


def test_error_that_is_not_transient_is_not_retried(rep, monkeypatch):
    rep.replicate("orders")
    rep.apply_activity(fraction=0.2)
    snapshot, mark = checksum(rep), rep.watermark(ORDERS)
    rep.source_execute("ALTER TABLE orders DROP COLUMN status")
    dropper = Dropper(rep, None, times=0)
    dropper.install(monkeypatch)

    result = rep.replicate("orders", ok=False)

    assert len(dropper.delivered) == 1, "a spec/schema error was retried"
    assert retry_logs(rep, result) == []
    assert "status" in rep.failure_text(result)
    assert (checksum(rep), rep.watermark(ORDERS)) == (snapshot, mark)


# ----------------------------------------------------------------------------------------------- the rules
# Pure logic, beside the integration tests that exercise it: the texts are those the real drivers produced here.

DRIVER_TEXTS = {
    'cx writer failed: Source(PostgresError(Error { kind: Db, cause: Some(DbError { severity: "FATAL", '
    'code: SqlState(E57P01), message: "terminating connection due to administrator command" }) }))': True,
    "cx writer failed: Source(MySQLError(CodecError { IO error: `bytes remaining on stream' }))": True,
    "Lost connection to MySQL server during query": True,
    "server closed the connection unexpectedly": True,
    'timed out waiting for connection: db error: FATAL: password authentication failed for user "derive"': False,
    "timed out waiting for connection: MySqlError { ERROR 1045 (28000): Access denied for user 'derive'@'x' }": False,
    "timed out waiting for connection: error connecting to server: Connection refused (os error 111)": False,
    'db error: ERROR: column "status" does not exist': False,
    "cx writer failed: Source(PostgresError(... cannot convert NaN to Decimal ...))": False,
}


class PanicException(BaseException):
    """Stands in for pyo3's PanicException (a BaseException), which cannot be imported."""


@pytest.mark.parametrize("text", list(DRIVER_TEXTS))
def test_transient_errors_are_told_apart_from_permanent_ones(text):
    assert is_transient(PanicException(text)) is DRIVER_TEXTS[text]
    wrapped = RuntimeError("source 'orders': the driver could not decode a value")
    wrapped.__context__ = PanicException(text)  # a wrapper that dropped the driver's text (`from None`)
    assert is_transient(wrapped) is DRIVER_TEXTS[text]


def test_retries_are_bounded_backed_off_and_logged_without_secrets():
    waits: list[float] = []
    warnings: list[str] = []

    class Log:
        def warning(self, msg: str) -> None:
            warnings.append(msg)

    def load() -> None:
        raise ConnectionResetError("connection reset by postgresql://derive:s3cr3t@db:5432/orders")

    policy = RetryPolicy(attempts=4, backoff_seconds=1.5, max_backoff_seconds=4)
    with pytest.raises(SourceRetriesExhausted, match=r"^source 'x': the source connection failed on all 4 "):
        load_with_retries(load, what="source 'x'", log=Log(), policy=policy, sleep=waits.append)
    assert waits == [1.5, 3.0, 4.0]
    assert len(warnings) == 3 and all("s3cr3t" not in w and "derive:***@" in w for w in warnings)
    assert RetryPolicy.from_env({retry.ATTEMPTS_ENV: "5", retry.BACKOFF_ENV: "0.5"}) == RetryPolicy(5, 0.5)
    with pytest.raises(ValueError, match=r"DERIVE_SOURCE_RETRY_ATTEMPTS='x' is not an integer"):
        RetryPolicy.from_env({retry.ATTEMPTS_ENV: "x"})
    with pytest.raises(ValueError, match=r"DERIVE_SOURCE_RETRY_ATTEMPTS must be 1 or more"):
        RetryPolicy.from_env({retry.ATTEMPTS_ENV: "0"})
