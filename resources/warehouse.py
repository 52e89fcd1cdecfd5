"""The warehouse interface the asset factory talks to; DuckDB and BigQuery implement it.

The factory never writes SQL against a specific engine: it hands a warehouse a target table (from a spec), a query
in the warehouse's dialect with bound parameters, and a strategy. Each implementation makes the change in one
transaction, so a failed run leaves the target as it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pyarrow as pa

from derive_assets.specs.models import Column, SourceTable, TableSpec


class WarehouseError(RuntimeError):
    """A run's data broke a rule of its strategy, or a table's layout differs from its spec; nothing was written."""


class EstimateUnavailable(WarehouseError):
    """The warehouse could not estimate a query (e.g. a table it reads does not exist yet)."""


@dataclass(frozen=True)
class TargetTable:
    """What a warehouse needs to know about a table it writes: name, declared columns, layout."""

    dataset: str
    name: str
    columns: tuple[Column, ...]
    cluster: tuple[str, ...] = ()
    partition_key: str | None = None
    partition_granularity: str = "day"
    """hour | day | month | year: BigQuery's time-partitioning unit (DuckDB ignores it)."""
    partition_expiration_days: int | None = None
    require_partition_filter: bool = False

    @property
    def ref(self) -> str:
        return f"{self.dataset}.{self.name}"

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @classmethod
    def from_table_spec(cls, spec: TableSpec) -> TargetTable:
        partition = spec.partition
        return cls(
            spec.dataset,
            spec.name,
            tuple(spec.columns),
            tuple(spec.cluster),
            partition.key if partition else None,
            partition.granularity if partition else "day",
            partition.expiration_days if partition else None,
            partition.require_filter if partition else False,
        )

    @classmethod
    def from_source_table(cls, dataset: str, table: SourceTable) -> TargetTable:
        return cls(dataset, table.name, tuple(table.columns), tuple(table.primary_key))


@dataclass(frozen=True)
class TimeWindow:
    start: dt.datetime
    end: dt.datetime

    def as_params(self) -> dict[str, dt.datetime]:
        return {"window_start": self.start, "window_end": self.end}


@dataclass(frozen=True)
class WriteRequest:
    """One run of a core/derived table: its query (already in the warehouse's dialect) over one window."""

    target: TargetTable
    sql: str
    params: Mapping[str, Any]
    strategy: Literal["merge", "append", "replace"]
    unique_key: tuple[str, ...] = ()
    window: TimeWindow | None = None


@dataclass(frozen=True)
class LoadRequest:
    """Changed source rows to merge into a replicated table by primary key."""

    target: TargetTable
    primary_key: tuple[str, ...]
    cursor: str
    soft_delete_column: str | None = None


@dataclass
class WriteResult:
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    rows_read: int = 0
    """Rows the query returned (derived) or the source sent (replication)."""
    max_cursor: Any = None
    """Replication only: the largest cursor value among the rows read."""
    extra: dict[str, Any] = field(default_factory=dict)


class Warehouse(Protocol):
    """What the factory needs from a warehouse. Implementations are Dagster `ConfigurableResource`s."""

    @property
    def dialect(self) -> str:
        """The sqlglot dialect the warehouse speaks, e.g. `duckdb` or `bigquery`."""
        ...

    @property
    def kind(self) -> str:
        """Dagster kind tag shown in the UI."""
        ...

    @property
    def types(self) -> dict[str, str]:
        """Spec (BigQuery) column type -> this warehouse's type."""
        ...

    def table_exists(self, ref: str) -> bool: ...

    def ddl_for(self, target: TargetTable) -> str:
        """The CREATE TABLE statement that the warehouse runs (or would run) for a target."""
        ...

    def estimate_bytes(self, sql: str, params: Mapping[str, Any]) -> int | None:
        """Bytes a query would process (a dry run), or None where the warehouse cannot tell."""
        ...

    def write(self, request: WriteRequest) -> WriteResult:
        """Run a core/derived table's query for one window with its strategy, in one transaction."""
        ...

    def load(self, request: LoadRequest, batches: Iterable[pa.RecordBatch]) -> WriteResult:
        """Stream source batches into staging, then merge them by primary key, in one transaction."""
        ...

    def count_violations(self, sql: str, params: Mapping[str, Any]) -> int:
        """Run a check query (in the warehouse's dialect) that returns one row with one count."""
        ...

    def scalar(self, sql: str, params: Mapping[str, Any]) -> Any:
        """The first column of the first row of a query (in the warehouse's dialect), or None."""
        ...

    def read_arrow(self, ref: str, where_sql: str | None, params: Mapping[str, Any]) -> pa.Table:
        """Read a table (or a filtered slice) as Arrow, for Python assets downstream."""
        ...

    def row_count(self, ref: str) -> int: ...

    def iter_batches(
        self,
        ref: str,
        columns: Sequence[str],
        where_sql: str | None,
        params: Mapping[str, Any],
        batch_rows: int,
    ) -> Iterator[pa.RecordBatch]:
        """Stream a table (or a filtered slice) as Arrow batches of at most `batch_rows` rows: bounded memory."""
        ...
