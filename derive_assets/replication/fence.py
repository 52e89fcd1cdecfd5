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
  transaction with an id up to it remains.
- SQLite serializes writers (a later id cannot commit before an earlier one) and MongoDB has no such view:
  no fence (MongoDB relies on `cursor_overlap`).
"""

from __future__ import annotations

import re
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
_MY_WRITERS = "FROM information_schema.INNODB_TRX WHERE trx_rows_modified > 0"
_MY_TOKEN = f"SELECT CAST(COALESCE(MAX(CAST(trx_id AS UNSIGNED)), 0) AS CHAR) AS token {_MY_WRITERS}"


def applies(source: SourceSpec, table: SourceTable) -> bool:
    return source.type in ("postgres", "mysql") and table.wait_for_open_transactions


def take(url: str, source: SourceSpec, table: SourceTable) -> str | None:
    """A token naming the transactions open now (call it right after a read), or None without a fence."""
    if not applies(source, table):
        return None
    sql = _PG_TOKEN if source.type == "postgres" else _MY_TOKEN
    return str(_one_value(url, sql, source, table))


def cleared(
    url: str,
    source: SourceSpec,
    table: SourceTable,
    token: str | None,
    query: Callable[[str], Any] | None = None,
) -> bool:
    """Whether every transaction open when `token` was taken has ended (True without a token). `query` runs a
    one-value query (default: connectorx; the source sensors pass one with a statement timeout)."""
    if token is None or not applies(source, table):
        return True
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
    if source.type == "postgres":
        return int(run(_PG_XMIN)) >= int(token)
    sql = f"SELECT CAST(COUNT(*) AS CHAR) AS open {_MY_WRITERS} AND CAST(trx_id AS UNSIGNED) <= {int(token)}"
    return int(run(sql)) == 0


def _one_value(url: str, sql: str, source: SourceSpec, table: SourceTable) -> Any:
    import connectorx as cx

    try:
        result = cx.read_sql(url, sql, return_type="arrow")
    except RuntimeError as exc:  # connectorx raises RuntimeError with the driver's message
        message = scrub(str(exc), url)
        hint = (
            "grant the PROCESS privilege to the source user (it lets Derive see open transactions), or set "
            "`wait_for_open_transactions: false` on the table and rely on `cursor_overlap`"
            if source.type == "mysql"
            else "check that the source user may call pg_current_snapshot() (PostgreSQL 13 or later)"
        )
        raise SourceConnectionError(
            f"source '{source.name}' table '{table.name}': could not check for open transactions "
            f"({message.splitlines()[0] if message else type(exc).__name__}); {hint}"
        ) from None
    column = result.column(0)  # type: ignore[union-attr]
    return column[0].as_py() if len(column) else 0
