"""SQLite, the embedded default online store: one file, so the demo ends with data an app can read by key.

A CQL table becomes a SQLite table named `<keyspace>__<table>` with the same primary key. TTLs are kept as an
expiry time per row; expired rows are invisible to lookups and counts and are purged on the next write.

Values keep the warehouse's precision: timestamps as ISO text with microseconds, NUMERIC as decimal text, and a
NaN float as the text `'NaN'` (SQLite itself would store NaN as NULL). A row with a NULL in its primary key is
refused, as Cassandra refuses it (`OnlineWriteError`, not transient), instead of being kept under no key.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource
from pydantic import Field

from resources.online_store import ExportResult, OnlineStoreError, OnlineTable, OnlineWriteError, key_values

if TYPE_CHECKING:
    import pyarrow as pa


EXPIRES = "_derive_expires_at"
SQLITE_TYPES = {"INT64": "INTEGER", "FLOAT64": "REAL", "BOOL": "INTEGER", "BYTES": "BLOB"}  # others: TEXT
PRECISION = dt.timedelta(microseconds=1)
NAN = "NaN"


class SQLiteOnlineStore(ConfigurableResource):
    """The embedded online store.

    Example:
        ```python
        SQLiteOnlineStore(path=".derive/online.sqlite").lookup(table, ["eu", date(2026, 11, 20)])
        ```
    """

    path: str = Field(description="Path of the SQLite file; created with its directory if missing.")

    @property
    def kind(self) -> str:
        return "sqlite"

    @property
    def timestamp_precision(self) -> dt.timedelta:
        return PRECISION

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            yield con
        finally:
            con.close()

    def ensure_table(self, table: OnlineTable) -> None:
        columns = ", ".join(f'"{c.name}" {SQLITE_TYPES.get(c.type, "TEXT")}' for c in table.columns)
        key = ", ".join(f'"{k}"' for k in table.primary_key)
        with self._connect() as con:
            con.execute(
                f'CREATE TABLE IF NOT EXISTS "{_name(table)}" ({columns}, "{EXPIRES}" REAL, PRIMARY KEY ({key}))'
            )
            existing = [row[1] for row in con.execute(f'PRAGMA table_info("{_name(table)}")')]
        expected = [*table.column_names, EXPIRES]
        if existing != expected:
            raise OnlineStoreError(
                f"{table.ref}: the existing online table has columns {existing[:-1]} but the export declares "
                f"{table.column_names}; drop the table (or rename the export) to rebuild it"
            )

    def write(self, table: OnlineTable, batches: Iterable[pa.RecordBatch]) -> ExportResult:
        names = table.column_names
        placeholders = ", ".join("?" for _ in range(len(names) + 1))
        cols = ", ".join(f'"{n}"' for n in [*names, EXPIRES])
        sql = f'INSERT OR REPLACE INTO "{_name(table)}" ({cols}) VALUES ({placeholders})'
        result = ExportResult()
        with self._connect() as con:
            con.execute(f'DELETE FROM "{_name(table)}" WHERE "{EXPIRES}" < ?', [time.time()])
            for batch in batches:
                expires = time.time() + table.ttl_seconds if table.ttl_seconds else None
                columns = [batch.column(n).to_pylist() for n in names]
                _refuse_null_keys(table, columns, result.rows_written)
                rows = [(*(_encode(v) for v in values), expires) for values in zip(*columns, strict=True)]
                try:
                    with con:  # one transaction per batch
                        con.executemany(sql, rows)
                except sqlite3.OperationalError as exc:  # locked or full: the batch rolled back
                    raise OnlineWriteError(
                        f"{table.ref}: the SQLite online store {self.path} refused a batch ({exc}); no other "
                        "process may hold it locked for more than 60 s, and the disk must have room",
                        rows_written=result.rows_written,
                        transient=True,
                    ) from None
                result.rows_written += len(rows)
                result.batches += 1
        return result

    def delete(self, table: OnlineTable, keys: Iterable[pa.RecordBatch]) -> int:
        """Delete by primary key, one transaction per batch; a failed batch rolls back and raises."""
        where = " AND ".join(f'"{k}" = ?' for k in table.primary_key)
        sql = f'DELETE FROM "{_name(table)}" WHERE {where}'
        deleted = 0
        with self._connect() as con:
            for batch in keys:
                columns = [batch.column(k).to_pylist() for k in table.primary_key]
                rows = [tuple(_encode(v) for v in values) for values in zip(*columns, strict=True)]
                try:
                    with con:
                        con.executemany(sql, rows)
                except sqlite3.DatabaseError as exc:  # locked, full, or refused (e.g. by a trigger)
                    raise OnlineWriteError(
                        f"{table.ref}: the SQLite online store {self.path} refused to delete a batch of "
                        f"{len(rows):,} key(s) ({exc}); no other process may hold it locked for more than 60 s, "
                        "and the disk must have room; the next export deletes them again",
                        rows_written=deleted,
                        transient=True,
                    ) from None
                deleted += len(rows)
        return deleted

    def lookup(self, table: OnlineTable, key: Sequence[Any]) -> list[dict[str, Any]]:
        values = key_values(table, key)
        where = " AND ".join(f'"{k}" = ?' for k in values)
        order = ", ".join(f'"{c}"' for c in table.clustering) or "rowid"
        cols = ", ".join(f'"{n}"' for n in table.column_names)
        sql = (
            f'SELECT {cols} FROM "{_name(table)}" WHERE {where} '
            f'AND ("{EXPIRES}" IS NULL OR "{EXPIRES}" >= ?) ORDER BY {order}'
        )
        with self._connect() as con:
            rows = con.execute(sql, [*(_encode(v) for v in values.values()), time.time()]).fetchall()
        return [{c.name: _decode(v, c.type) for c, v in zip(table.columns, row, strict=True)} for row in rows]

    def count(self, table: OnlineTable) -> int:
        with self._connect() as con:
            sql = f'SELECT count(*) FROM "{_name(table)}" WHERE "{EXPIRES}" IS NULL OR "{EXPIRES}" >= ?'
            return int(con.execute(sql, [time.time()]).fetchone()[0])


def _refuse_null_keys(table: OnlineTable, columns: list[list[Any]], rows_written: int) -> None:
    """Refuse a batch with a NULL in a primary key column, as Cassandra does: SQLite itself would keep such a row
    (a NULL never equals another, so each write would add it again) or, for one INTEGER key, invent a key."""
    names = table.column_names
    keys = [columns[names.index(k)] for k in table.primary_key]
    refused = [i for i, values in enumerate(zip(*keys, strict=True)) if any(v is None for v in values)]
    if refused:
        first = {k: columns[names.index(k)][refused[0]] for k in table.primary_key}
        raise OnlineWriteError(
            f"{table.ref}: the SQLite online store refused {len(refused)} row(s) of a batch, first the row with key "
            f"{first}: a primary key column is NULL; such an error is not retried: fix the row in the warehouse "
            "table (or the export's columns) and rerun",
            rows_written=rows_written,
            transient=False,
        )


def _name(table: OnlineTable) -> str:
    return f"{table.keyspace}__{table.name}"


def _encode(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return NAN
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _decode(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type == "FLOAT64":
        return float(value)  # 'NaN' -> nan
    if column_type == "NUMERIC":
        return Decimal(value)
    if column_type == "DATE":
        return dt.date.fromisoformat(value)
    if column_type in ("TIMESTAMP", "DATETIME"):
        return dt.datetime.fromisoformat(value)
    if column_type == "BOOL":
        return bool(value)
    return value
