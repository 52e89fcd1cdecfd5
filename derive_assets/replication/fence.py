"""The open-transaction fence: has every transaction that was open during a read ended yet?

A cursor read sees only committed rows. A transaction that took id 100 (or `now()` = 09:00) but commits after
another one that took id 101 is invisible to a read that sees 101, and a plain `> watermark` filter would skip it
for good. So after each read Derive takes a *fence token* naming the transactions still open; the next run moves
its read floor up to that read's watermark only once the token has cleared (all of them ended), and otherwise
reads again from the old floor. Re-read rows are merged by primary key, so waiting never duplicates.

- PostgreSQL: the token lists the virtual transaction ids (`pg_locks`, readable by every user) of the
  transactions open in the source's database, other than the reader's own: `v:3/15,7/2`; it has cleared when
  none of them is still open. Virtual ids, not xids: PostgreSQL assigns an xid only at a transaction's first
  write, so a transaction that began before the read (and took its `now()` then) but writes only after it holds
  no xid at the read, and an xid fence would not wait for it. Tokens of older versions (a bare xid8, the
  snapshot's xmax) still clear when the snapshot's xmin has reached them.
- MySQL/MariaDB: the token is the largest id of a transaction that has modified rows
  (`information_schema.INNODB_TRX`, which needs the PROCESS privilege); it has cleared when no writing
  transaction with an id up to it remains. InnoDB serves INNODB_TRX from a cache it refreshes only once the
  cache has gone unread for 100 ms (`CACHE_MIN_IDLE_TIME` in trx0i_s.cc), so a read soon after another client's
  shows transactions as they were, missing one that began since. So each look opens a transaction of its own
  first and trusts only a view that lists it (`_mysql_view`); without one within `FRESH_VIEW_SECONDS`, the token
  is `STALE_TOKEN`, which never clears (the next run reads from the old floor again), and a fence never clears.
- SQLite serializes writers (a later id cannot commit before an earlier one) and MongoDB has no such view:
  no fence (MongoDB relies on `cursor_overlap`).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import Any

from derive_assets.replication.urls import SourceConnectionError, scrub
from derive_assets.specs.models import SourceSpec, SourceTable

_PG_TOKEN = (
    "SELECT 'v:' || COALESCE(string_agg(l.virtualxid, ',' ORDER BY l.virtualxid), '') AS token "
    "FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
    "WHERE l.locktype = 'virtualxid' AND l.granted AND a.datname = current_database() "
    "AND l.pid <> pg_backend_pid()"
)
_PG_VXID = re.compile(r"^\d+/\d+$")
_PG_XMIN = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin"
_MY_VIEW = (
    "SELECT CAST(COALESCE(MAX(CASE WHEN trx_rows_modified > 0 THEN CAST(trx_id AS UNSIGNED) END), 0) AS CHAR), "
    "CAST(COALESCE(SUM(trx_rows_modified > 0 AND CAST(trx_id AS UNSIGNED) <= %s), 0) AS CHAR), "
    "CAST(COALESCE(SUM(trx_mysql_thread_id = CONNECTION_ID()), 0) AS CHAR) "
    "FROM information_schema.INNODB_TRX"
)
"""One look at INNODB_TRX (one cache read): the largest writer's id, the writers with an id up to the bound, and
whether the view lists this session's own transaction (then it is newer than that transaction's start)."""
FRESH_VIEW_SECONDS = 10.0
"""How long a MySQL/MariaDB look waits for a view of INNODB_TRX newer than its own start."""
STALE_TOKEN = "stale"
"""The token of a read after which no fresh view came: it never clears (the floor waits for a later run's)."""


def applies(source: SourceSpec, table: SourceTable) -> bool:
    return source.type in ("postgres", "mysql") and table.wait_for_open_transactions


def take(
    url: str, source: SourceSpec, table: SourceTable, warn: Callable[[str], object] | None = None
) -> str | None:
    """A token naming the transactions open now (call it right after a read), or None without a fence. `warn`
    is told when MySQL gave no fresh view of them (the token is then `STALE_TOKEN`)."""
    if not applies(source, table):
        return None
    if source.type == "postgres":
        return str(_one_value(url, _PG_TOKEN, source, table))
    view = _mysql_view(url, source, table, bound=0)
    if view is None:
        if warn is not None:
            warn(_stale_message(source, table))
        return STALE_TOKEN
    return str(view[0])


def cleared(
    url: str,
    source: SourceSpec,
    table: SourceTable,
    token: str | None,
    query: Callable[[str], Any] | None = None,
    timeout_seconds: float | None = None,
) -> bool:
    """Whether every transaction open when `token` was taken has ended (True without a token). PostgreSQL:
    `query` runs a one-value query (default: connectorx; the source sensors pass one with a statement timeout).
    MySQL: its own session, each wait bounded by `timeout_seconds` (default `FRESH_VIEW_SECONDS`)."""
    if token is None or not applies(source, table):
        return True
    if source.type == "mysql":
        if not token.isdigit():
            return False  # STALE_TOKEN, or not a token this version wrote: wait, never skip
        seconds = FRESH_VIEW_SECONDS if timeout_seconds is None else min(timeout_seconds, FRESH_VIEW_SECONDS)
        view = _mysql_view(url, source, table, bound=int(token), seconds=seconds)
        return view is not None and view[1] == 0  # no fresh view: as if still open
    run = query or (lambda sql: _one_value(url, sql, source, table))
    if source.type == "postgres" and token.startswith("v:"):
        vxids = [v for v in token.removeprefix("v:").split(",") if v]
        if not all(_PG_VXID.match(v) for v in vxids):
            return False  # not a token this version wrote: wait, never skip
        if not vxids:
            return True
        from sqlglot import exp  # imported by the step that replicates, not by loading the definitions

        held = exp.In(this=exp.column("virtualxid"), expressions=[exp.Literal.string(v) for v in vxids])
        still_open = (
            exp.select(exp.cast(exp.func("COUNT", exp.Star()), "TEXT").as_("open"))
            .from_("pg_locks")
            .where(exp.EQ(this=exp.column("locktype"), expression=exp.Literal.string("virtualxid")))
            .where(held)
        )
        return int(run(still_open.sql("postgres"))) == 0
    if not token.isdigit():
        return False  # not a token this version wrote: wait, never skip
    return int(run(_PG_XMIN)) >= int(token)


def _mysql_view(
    url: str, source: SourceSpec, table: SourceTable, bound: int, seconds: float | None = None
) -> tuple[int, int] | None:
    """(the largest id of a writing transaction, the writers with an id up to `bound`) from a view of INNODB_TRX
    taken after this call began, or None when none came within `seconds` (default `FRESH_VIEW_SECONDS`).

    The session's own transaction (`START TRANSACTION WITH CONSISTENT SNAPSHOT` registers it at once, read-only)
    marks the view's age: a view that lists it was built after every transaction still open then had begun. A
    view that does not is the cache of an earlier look; retry after longer than the cache's 100 ms, with jitter,
    so that clients looking at once do not keep each other's cache old."""
    import pymysql

    from derive_assets.replication.preflight import mysql_connect_args

    seconds = FRESH_VIEW_SECONDS if seconds is None else seconds
    try:
        con = pymysql.connect(
            **mysql_connect_args(url, max(seconds, 5.0), read_timeout=max(seconds, 5.0) + 5)
        )
    except pymysql.err.MySQLError as exc:
        raise _mysql_error(source, table, exc, url) from None
    deadline = time.monotonic() + seconds
    delay = 0.12
    try:
        with con.cursor() as cursor:
            cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            while True:
                cursor.execute(_MY_VIEW, [bound])
                largest, below, own = cursor.fetchone() or (0, 0, 0)
                if int(own or 0):
                    return int(largest or 0), int(below or 0)
                if time.monotonic() + delay > deadline:
                    return None
                time.sleep(delay + random.uniform(0, delay))
                delay = min(delay * 1.5, 1.0)
    except pymysql.err.MySQLError as exc:
        raise _mysql_error(source, table, exc, url) from None
    finally:
        con.close()  # ends the read-only transaction


def _stale_message(source: SourceSpec, table: SourceTable) -> str:
    return (
        f"source '{source.name}' table {table.name}: MySQL showed no current view of the open transactions "
        f"(information_schema.INNODB_TRX) within {FRESH_VIEW_SECONDS:g} s: it is read too often by other clients "
        "(InnoDB refreshes it only after 100 ms unread). Nothing is missed: the next run reads from the old floor "
        "again. If it persists, find what polls INNODB_TRX, or set `wait_for_open_transactions: false` on the "
        "table and rely on `cursor_overlap`"
    )


def _mysql_error(source: SourceSpec, table: SourceTable, exc: Exception, url: str) -> SourceConnectionError:
    from derive_assets.replication.preflight import mysql_reason

    return SourceConnectionError(
        f"source '{source.name}' table '{table.name}': could not check for open transactions "
        f"({mysql_reason(exc, url)}); {_MY_HINT}"
    )


_MY_HINT = (
    "grant the PROCESS privilege to the source user (it lets Derive see open transactions), or set "
    "`wait_for_open_transactions: false` on the table and rely on `cursor_overlap`"
)


def _one_value(url: str, sql: str, source: SourceSpec, table: SourceTable) -> Any:
    import connectorx as cx

    try:
        result = cx.read_sql(url, sql, return_type="arrow")
    except RuntimeError as exc:  # connectorx raises RuntimeError with the driver's message
        message = scrub(str(exc), url)
        hint = "check that the source user may call pg_current_snapshot() (PostgreSQL 13 or later)"
        raise SourceConnectionError(
            f"source '{source.name}' table '{table.name}': could not check for open transactions "
            f"({message.splitlines()[0] if message else type(exc).__name__}); {hint}"
        ) from None
    column = result.column(0)  # type: ignore[union-attr]
    return column[0].as_py() if len(column) else 0
