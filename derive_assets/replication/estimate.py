"""How many rows a source table holds, from the source's own statistics: cheap, approximate, never failing a run.

The estimate is the `total` of a long read's progress lines (`derive_assets/progress.py`) and tells a first load
whether the table is large enough to read in chunks. It reads statistics the source already keeps, never the
table itself, under the probe's connect and statement timeouts (`probe.py`):

- PostgreSQL: the planner's own estimate: `pg_class.reltuples` (rows at the last ANALYZE or VACUUM) scaled by
  the table's current size in pages against `relpages`, as `estimate_rel_size` in the planner does, so a table
  that grew since its last ANALYZE is not under-counted. `reltuples` is -1 for a table never analyzed (0 before
  PostgreSQL 14, and 0 for one analyzed while empty): no estimate, because a guess from the page count alone
  would need the row width, and autovacuum analyzes any table that grows large, so an unanalyzed table is new
  or small.
- MySQL/MariaDB: `information_schema.TABLES.TABLE_ROWS`, InnoDB's sampled estimate (often 10-50 % off; MySQL 8
  also caches it for `information_schema_stats_expiry`, a day by default).
- MongoDB: `estimated_document_count` (the collection's metadata count, `maxTimeMS` bounded; 0 for a
  collection that does not exist). The embedded montydb store has no metadata count.
- SQLite keeps no row count (`sqlite_stat1` exists only after an ANALYZE, and goes stale): `max(rowid)`, which
  reads one leaf of the table's b-tree. It equals the count for a table that was only ever appended to,
  over-counts after deletes, and is no estimate for a `WITHOUT ROWID` table.

An estimate is an int of at least 1, or None: unknown, or the statistics say the table is empty (count it if
the difference matters). Any failure (timeout, unreachable server, missing table, no privilege) is logged at
debug level, scrubbed of secrets, and gives None. An incremental run reads the rows changed since the watermark,
which no statistic counts: its progress shows rows and rows/s without a total.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from sqlglot import exp

from derive_assets.replication.mongo_client import open_mongo
from derive_assets.replication.probe import mysql_value, past_deadline, postgres_value
from derive_assets.replication.urls import SourceConnectionError, scrub
from derive_assets.specs.models import SourceSpec, SourceTable

logger = logging.getLogger(__name__)

_POSTGRES = (
    "SELECT CASE WHEN c.reltuples > 0 AND c.relpages > 0 "
    "THEN c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::float8) "
    "ELSE c.reltuples END "
    "FROM pg_class AS c WHERE c.oid = to_regclass(quote_ident(%s))"
)
"""`to_regclass` gives NULL (no row) for a missing table; `pg_relation_size` waits for the table's lock, which
the statement timeout bounds."""
_MYSQL = (
    "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
)


def estimate_rows(url: str, source: SourceSpec, table: SourceTable, timeout_seconds: float = 5) -> int | None:
    """The source's own estimate of `table`'s row count (see the module docstring), or None; never raises for
    a source problem, and never waits much longer than `timeout_seconds`."""
    try:
        value = _ESTIMATORS[source.type](url, source, table, timeout_seconds)
    # What the drivers raise: the probe's and the MongoDB client's errors (SourceConnectionError), sqlite3's,
    # and a URL that does not parse (ValueError: a bad port, say).
    except (SourceConnectionError, sqlite3.Error, ValueError, OSError) as exc:
        where = f"source '{source.name}' table '{table.name}'"
        lines = scrub(str(exc), url).strip().removeprefix(f"{where}: ").splitlines()
        logger.debug("%s: no row estimate: %s", where, lines[0] if lines else type(exc).__name__)
        return None
    if value is None or isinstance(value, bool) or float(value) < 1:
        return None
    return round(float(value))


def _postgres(url: str, source: SourceSpec, table: SourceTable, timeout: float) -> float | None:
    return postgres_value(source, table, url, _POSTGRES, [table.name], timeout)


def _mysql(url: str, source: SourceSpec, table: SourceTable, timeout: float) -> float | None:
    return mysql_value(source, table, url, _MYSQL, [table.name], timeout)


def _mongo(url: str, source: SourceSpec, table: SourceTable, timeout: float) -> int | None:
    if url.startswith("montydb:"):
        return None  # the embedded store keeps no metadata count, and has no server to cut a count off
    import pymongo.errors

    milliseconds = max(1, int(timeout * 1000))
    try:
        with open_mongo(url, timeout) as client:
            collection = client[source.mongo_database][table.name]
            return collection.estimated_document_count(maxTimeMS=milliseconds)
    except (
        pymongo.errors.PyMongoError
    ) as exc:  # ExecutionTimeout, an OperationFailure open_mongo leaves to us
        raise SourceConnectionError(scrub(str(exc), url)) from None


def _sqlite(url: str, source: SourceSpec, table: SourceTable, timeout: float) -> int | None:
    path = url.removeprefix("sqlite:///")
    if not Path(path).is_file():
        raise SourceConnectionError(f"sqlite database {path} does not exist")
    query = exp.select(exp.func("MAX", exp.column("rowid"))).from_(
        exp.Table(this=exp.to_identifier(table.name, quoted=True))
    )
    # `timeout`: how long to wait for a writer's lock; the progress handler cuts off a query past the deadline.
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    con.set_progress_handler(past_deadline(time.monotonic() + timeout), 10_000)
    try:
        row = con.execute(query.sql("sqlite")).fetchone()
    finally:
        con.close()
    return row[0] if row else None


_ESTIMATORS = {"postgres": _postgres, "mysql": _mysql, "mongodb": _mongo, "sqlite": _sqlite}
