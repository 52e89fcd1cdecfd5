"""A cheap look at a source table: is there a row whose cursor is beyond the stored watermark?

The source sensors (`factory/sensors.py`) call `probe` every tick for every table, so a probe must stay cheap on
a production database: one `SELECT MAX(cursor) FROM t WHERE cursor > :watermark` (an index range scan on an
indexed cursor; the same filter the replication reads with, minus its overlap), or, for MongoDB,
`find({cursor: {$gt: watermark}}).sort({cursor: -1}).limit(1)`. Each runs under a statement timeout, set by the
server for this one query and connection:

- PostgreSQL: `set_config('statement_timeout', ..., true)` (transaction-local, like `SET LOCAL`);
- MariaDB: the session's `max_statement_time`; MySQL: the session's `MAX_EXECUTION_TIME`;
- MongoDB: `maxTimeMS` on the `find`;
- SQLite (the embedded demo sources): a progress handler that interrupts the query at the deadline.

The same timeout bounds the connection attempt. A probe that times out or cannot connect raises `ProbeError`,
whose message names the source, the table and the fix, never the URL's secrets.

Example:
    ```python
    newest = probe(source, table, url, watermark=state.watermark, timeout_seconds=5)
    if newest is not None: ...  # rows beyond the watermark: replicate
    ```
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, LiteralString, cast

from sqlglot import exp

from derive_assets.replication import fence, sqlite_values
from derive_assets.replication.extract import SQLGLOT_DIALECT
from derive_assets.replication.mongo_client import open_mongo
from derive_assets.replication.preflight import mysql_connect_args, mysql_reason, postgres_dsn
from derive_assets.replication.urls import SourceConnectionError, scrub
from derive_assets.specs.models import SourceSpec, SourceTable

MYSQL_TIMEOUT_ERRORS = {1969, 3024}
"""MariaDB's `max_statement_time exceeded`; MySQL's `maximum statement execution time exceeded`."""
POSTGRES_QUERY_CANCELED = "57014"
MONGO_TIME_LIMIT_EXCEEDED = 50


class ProbeError(SourceConnectionError):
    """A probe could not answer (timeout, unreachable server, missing table); the message names source, table and
    the fix, and holds no secret."""


class ProbeTimeout(ProbeError):
    """The probe query ran longer than its statement timeout and was cut off by the server."""


def probe(source: SourceSpec, table: SourceTable, url: str, watermark: Any, timeout_seconds: float) -> Any:
    """The largest cursor value of `table` beyond `watermark` (typed as the cursor; None when there is none).

    `watermark` is the stored one, typed by `watermark.from_text`; None asks for the largest value of all.
    Rows whose cursor is NULL or unreadable are not looked at (the replication reports those).
    """
    where = f"source '{source.name}' table '{table.name}'"
    runner = {"postgres": _postgres, "mysql": _mysql, "sqlite": _sqlite, "mongodb": _mongo}[source.type]
    try:
        return runner(source, table, url, watermark, timeout_seconds)
    except ProbeError:
        raise
    except SourceConnectionError as exc:
        raise ProbeError(f"{where}: the probe could not connect: {exc}") from None


def fence_cleared(
    source: SourceSpec, table: SourceTable, url: str, token: str | None, timeout_seconds: float
) -> bool:
    """`fence.cleared` with the probe's connect and statement timeouts (PostgreSQL and MySQL only)."""
    if source.type == "postgres":
        return fence.cleared(
            url,
            source,
            table,
            token,
            query=lambda sql: postgres_value(source, table, url, sql, [], timeout_seconds),
        )
    if source.type == "mysql":
        return fence.cleared(url, source, table, token, timeout_seconds=timeout_seconds)
    return True


# ------------------------------------------------------------------------------------------- SQL sources


def _max_query(source: SourceSpec, table: SourceTable, bound: bool) -> str:
    cursor = exp.column(table.cursor, quoted=True)
    query = exp.select(exp.func("MAX", cursor)).from_(
        exp.Table(this=exp.to_identifier(table.name, quoted=True))
    )
    if bound:
        query = query.where(exp.GT(this=cursor, expression=exp.Placeholder()))
    return query.sql(SQLGLOT_DIALECT[source.type])


def _bound(value: Any) -> Any:
    """A watermark as the drivers bind it: datetimes in UTC (naive for MySQL/MariaDB, whose session is UTC)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    return value


def _postgres(source: SourceSpec, table: SourceTable, url: str, watermark: Any, timeout: float) -> Any:
    params = [] if watermark is None else [_bound(watermark)]
    return postgres_value(
        source, table, url, _max_query(source, table, watermark is not None), params, timeout
    )


def postgres_value(
    source: SourceSpec, table: SourceTable, url: str, sql: str, params: list[Any], timeout: float
) -> Any:
    """The first value of `sql` (psycopg `%s` parameters) under a `timeout` connect and statement timeout, in a
    read-only transaction that is rolled back; raises `ProbeTimeout` or `ProbeError` (no secret in either)."""
    import psycopg

    where = f"source '{source.name}' table '{table.name}'"
    try:
        # libpq counts connect_timeout in whole seconds, at least 2.
        with psycopg.connect(
            postgres_dsn(url), connect_timeout=max(2, math.ceil(timeout)), autocommit=False
        ) as con:
            con.execute("SELECT set_config('statement_timeout', %s, true)", [f"{int(timeout * 1000)}ms"])
            con.execute("SELECT set_config('timezone', 'UTC', true)")
            # sqlglot built the text from quoted identifiers; the watermark is a bound parameter.
            row = con.execute(cast(LiteralString, sql), params).fetchone()
            con.rollback()
    except psycopg.errors.QueryCanceled:
        raise ProbeTimeout(_timeout_message(source, table, timeout)) from None
    except psycopg.Error as exc:  # OperationalError (server), ProgrammingError (no such table), ...
        raise ProbeError(f"{where}: the probe failed: {_first_line(exc, url)}. {_fix(source)}") from None
    value = row[0] if row else None
    if isinstance(value, dt.datetime) and value.tzinfo is None and table.cursor_column.type == "TIMESTAMP":
        value = value.replace(tzinfo=dt.UTC)  # a naive `timestamp` column: Derive reads it as UTC
    return value


def _mysql(source: SourceSpec, table: SourceTable, url: str, watermark: Any, timeout: float) -> Any:
    params = [] if watermark is None else [_mysql_param(watermark)]
    sql = _max_query(source, table, watermark is not None).replace("?", "%s")  # identifiers hold no '?'
    value = mysql_value(source, table, url, sql, params, timeout)
    if isinstance(value, dt.datetime) and table.cursor_column.type == "TIMESTAMP":
        value = value.replace(tzinfo=dt.UTC)  # the session is in UTC
    return value


def _mysql_param(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def mysql_value(
    source: SourceSpec, table: SourceTable, url: str, sql: str, params: list[Any], timeout: float
) -> Any:
    """The first value of `sql` (pymysql `%s` parameters) under a `timeout` connect and statement timeout
    (MariaDB's `max_statement_time`, MySQL's `MAX_EXECUTION_TIME`); raises `ProbeTimeout` or `ProbeError`."""
    import pymysql

    where = f"source '{source.name}' table '{table.name}'"
    try:
        # read_timeout: a backstop in case the server ignores the statement timeout (a server without it).
        con = pymysql.connect(**mysql_connect_args(url, timeout, read_timeout=timeout + 5), autocommit=True)
    except pymysql.err.MySQLError as exc:
        raise ProbeError(
            f"{where}: the probe could not connect: {mysql_reason(exc, url)}. {_fix(source)}"
        ) from None
    try:
        with con.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            version = str((cursor.fetchone() or [""])[0])
            milliseconds = max(1, int(timeout * 1000))
            if "mariadb" in version.lower():
                cursor.execute("SET SESSION max_statement_time = %s", [milliseconds / 1000])
            else:
                cursor.execute("SET SESSION MAX_EXECUTION_TIME = %s", [milliseconds])
            cursor.execute("SET SESSION time_zone = '+00:00'")
            cursor.execute(sql, params or None)
            row = cursor.fetchone()
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code in MYSQL_TIMEOUT_ERRORS:
            raise ProbeTimeout(_timeout_message(source, table, timeout)) from None
        raise ProbeError(f"{where}: the probe failed: {mysql_reason(exc, url)}. {_fix(source)}") from None
    finally:
        con.close()
    return row[0] if row else None


# ------------------------------------------------------------------------------------------------- SQLite


def _sqlite(source: SourceSpec, table: SourceTable, url: str, watermark: Any, timeout: float) -> Any:
    """SQLite cursors may be text with offsets: compare instants with `julianday` (as the replication reads,
    with its millisecond slack), then keep the largest value only if it is really beyond the watermark."""
    from derive_assets.replication.extract import _sqlite_newer as sqlite_newer

    path = url.removeprefix("sqlite:///")
    where = f"source '{source.name}' table '{table.name}'"
    if not Path(path).is_file():
        raise ProbeError(
            f"{where}: sqlite database {path} does not exist. Run `derive generate`, or point "
            f"{source.connection_env} at an existing file."
        )
    column = table.cursor_column
    cursor = exp.column(table.cursor, quoted=True)
    table_ = exp.Table(this=exp.to_identifier(table.name, quoted=True))
    conditions: list[exp.Expr] = [exp.not_(cursor.is_(exp.null()))]
    params: list[Any] = []
    if watermark is not None:
        newer, param = sqlite_newer(cursor, column.type, watermark)
        conditions, params = [*conditions, newer], [param]
    if column.type in ("TIMESTAMP", "DATETIME", "DATE"):
        # julianday() has millisecond resolution: take every value within 2 ms of the largest instant and let
        # Python, which reads microseconds, pick the largest.
        julian = exp.func("julianday", cursor)
        largest = exp.select(exp.func("MAX", julian)).from_(table_.copy()).where(*conditions)
        slack = exp.Literal.number(2 / 86_400_000)
        near = exp.GTE(this=julian, expression=exp.Sub(this=exp.paren(largest.subquery()), expression=slack))
        query = exp.select(cursor).from_(table_).where(*conditions, near)
        params = params * 2
    else:
        query = (
            exp.select(cursor).from_(table_).where(*conditions).order_by(exp.Ordered(this=cursor, desc=True))
        )
        query = query.limit(1)
    deadline = time.monotonic() + timeout
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    con.text_factory = sqlite_values.decode_text
    con.set_progress_handler(past_deadline(deadline), 10_000)
    try:
        rows = con.execute(query.sql("sqlite"), params).fetchall()
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise ProbeTimeout(_timeout_message(source, table, timeout)) from None
        raise ProbeError(f"{where}: the probe failed: {exc}. {_fix(source)}") from None
    finally:
        con.close()
    values = []
    for (raw,) in rows:
        try:
            values.append(sqlite_values.convert(raw, column))
        except sqlite_values.CellError:
            continue  # an unreadable cursor: the replication reports it
    newest = max(values, default=None)
    return newest if newest is None or watermark is None or newest > watermark else None


def past_deadline(deadline: float) -> Callable[[], int]:
    """A SQLite progress handler that interrupts the query once `time.monotonic()` passes `deadline`."""

    def handler() -> int:
        return 1 if time.monotonic() > deadline else 0  # non-zero interrupts the query

    return handler


# ------------------------------------------------------------------------------------------------ MongoDB


def _mongo(source: SourceSpec, table: SourceTable, url: str, watermark: Any, timeout: float) -> Any:
    import pymongo.errors
    from bson import ObjectId

    from derive_assets.replication import mongo

    column = table.cursor_column
    path = mongo.path_of(column)
    if watermark is None:
        query: dict[str, Any] = {path: {"$exists": True, "$ne": None}}
    elif mongo.is_object_id_cursor(column):
        query = {"_id": {"$gt": ObjectId(str(watermark))}}
    else:
        query = mongo.mongo_filter(table, watermark)  # the watermark itself: no overlap
    where = f"source '{source.name}' collection '{table.name}'"
    try:
        with open_mongo(url, timeout) as client:
            found = client[source.mongo_database][table.name].find(query, {path: 1}).sort(path, -1).limit(1)
            if not url.startswith("montydb:"):  # the embedded store has no server to cut the query off
                found = found.max_time_ms(max(1, int(timeout * 1000)))
            documents = list(found)
    except pymongo.errors.ExecutionTimeout:
        raise ProbeTimeout(_timeout_message(source, table, timeout)) from None
    except pymongo.errors.OperationFailure as exc:
        if exc.code == MONGO_TIME_LIMIT_EXCEEDED:
            raise ProbeTimeout(_timeout_message(source, table, timeout)) from None
        raise ProbeError(f"{where}: the probe failed: {scrub(str(exc), url)}. {_fix(source)}") from None
    if not documents:
        return None
    raw = mongo._get(documents[0], path)
    if mongo.is_object_id_cursor(column):
        return str(raw)
    try:
        return mongo._coerce(raw, column)
    except (TypeError, ValueError):
        return None  # an unreadable cursor: the replication reports it


# ------------------------------------------------------------------------------------------------ messages


def _timeout_message(source: SourceSpec, table: SourceTable, timeout: float) -> str:
    return (
        f"source '{source.name}' table '{table.name}': the probe for rows with {table.cursor} beyond the watermark "
        f"took longer than {timeout:g} s and was cut off by the server. Index the cursor column "
        f"({table.cursor}) in the source, or raise `sensor.probe_timeout_seconds` in the source's spec (at most "
        "60). Nothing was read; the next tick probes again."
    )


def _fix(source: SourceSpec) -> str:
    return (
        f"Check that the server is up, that {source.connection_env} names the right database and that the table "
        "exists there; the next tick probes again."
    )


def _first_line(exc: Exception, url: str) -> str:
    text = scrub(str(exc), url).strip()
    return text.splitlines()[0] if text else type(exc).__name__
