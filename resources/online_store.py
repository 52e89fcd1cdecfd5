"""The online-store interface the export assets talk to; SQLite (embedded) and Cassandra/ScyllaDB implement it.

An online table is keyed like a CQL table: a partition key (what every lookup gives) and optional clustering
columns (rows sorted within a partition). Writes are idempotent upserts, so re-exporting a window is harmless;
deletes by primary key are idempotent too (the export deletes the keys that left its table, `export_deletes.py`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from resources.schema import ColumnDef

if TYPE_CHECKING:
    import pyarrow as pa


CQL_TYPES = {
    "STRING": "text",
    "INT64": "bigint",
    "FLOAT64": "double",
    "NUMERIC": "decimal",
    "BOOL": "boolean",
    "DATE": "date",
    "DATETIME": "timestamp",
    "TIMESTAMP": "timestamp",
    "JSON": "text",
    "BYTES": "blob",
}
"""Spec (BigQuery) type -> CQL type."""


class OnlineStoreError(RuntimeError):
    """The online store refused a write or a table differs from its export spec."""


class OnlineStoreUnavailable(OnlineStoreError):
    """The store could not be reached (refused, timed out, connection lost) within the configured retries."""


class OnlineWriteError(OnlineStoreError):
    """A write gave up part-way: `rows_written` rows are online, the rest of the export is not.

    `transient` says whether the cause was an outage (worth rerunning once the store is back) or a row the
    store refuses (a rerun fails the same way until the data or the spec changes).
    """

    def __init__(self, message: str, rows_written: int, transient: bool):
        super().__init__(message)
        self.rows_written = rows_written
        self.transient = transient


@dataclass(frozen=True)
class OnlineTable:
    keyspace: str
    name: str
    partition_key: tuple[str, ...]
    clustering: tuple[str, ...]
    columns: tuple[ColumnDef, ...]
    ttl_seconds: int | None = None
    consistency: str = "LOCAL_QUORUM"

    @property
    def primary_key(self) -> tuple[str, ...]:
        return (*self.partition_key, *self.clustering)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def ref(self) -> str:
        return f"{self.keyspace}.{self.name}"


@dataclass
class ExportResult:
    rows_written: int = 0
    batches: int = 0
    retries: int = 0


class OnlineStore(Protocol):
    """What the export asset needs from an online store. Implementations are Dagster `ConfigurableResource`s."""

    @property
    def kind(self) -> str: ...

    @property
    def timestamp_precision(self) -> dt.timedelta:
        """The finest time step a TIMESTAMP/DATETIME value keeps online (Cassandra: 1 ms; SQLite: 1 µs).

        Writes truncate finer values to it; the export's verification compares both sides truncated to it.
        """
        ...

    def ensure_table(self, table: OnlineTable) -> None:
        """Create the keyspace/table if missing; raise `OnlineStoreError` if an existing one differs."""
        ...

    def write(self, table: OnlineTable, batches: Iterable[pa.RecordBatch]) -> ExportResult:
        """Upsert every row, batch by batch, with bounded memory; honour the TTL.

        Raises `OnlineWriteError` (with how many rows were written) when it gives up part-way.
        """
        ...

    def delete(self, table: OnlineTable, keys: Iterable[pa.RecordBatch]) -> int:
        """Delete the rows with these primary keys (batches of the primary-key columns only), batch by batch,
        with bounded memory; a key that is not online is no error. Returns how many keys were sent (a store
        cannot always tell which existed).

        Raises `OnlineWriteError` (`rows_written`: keys deleted so far) when it gives up part-way; the export
        keeps what it still has to delete and deletes it on its next run.
        """
        ...

    def lookup(self, table: OnlineTable, key: Sequence[Any]) -> list[dict[str, Any]]:
        """Rows whose primary key starts with `key` (the full partition key, then any clustering prefix)."""
        ...

    def count(self, table: OnlineTable) -> int:
        """Live rows in the table (a full scan on Cassandra: for verification, not for serving)."""
        ...


def key_values(table: OnlineTable, key: Sequence[Any]) -> Mapping[str, Any]:
    """Name the lookup key's values, after checking there are enough of them."""
    if len(key) < len(table.partition_key) or len(key) > len(table.primary_key):
        raise OnlineStoreError(
            f"{table.ref}: a lookup needs the partition key {list(table.partition_key)}"
            + (
                f" and optionally a prefix of the clustering columns {list(table.clustering)}"
                if table.clustering
                else ""
            )
            + f"; got {len(key)} value(s)"
        )
    return dict(zip(table.primary_key, key, strict=False))
