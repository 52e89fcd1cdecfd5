"""Each engine as the contract suite sees it: the resource under test, plus what a test needs around it.

A contract test talks to the resource only through its public interface (`Warehouse`, `OnlineStore`). What the
interface has no method for (creating a source table, changing it between runs, reading the target back in its
physical order, listing a dataset's tables) goes through the engine's own client here, so the tests stay one text
for every engine. Nothing here calls the resource's internals: helper code may change them freely.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from google.api_core.exceptions import BadRequest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "NUMERIC": "DECIMAL(38, 9)",
    "BOOL": "BOOLEAN",
    "DATE": "DATE",
    "DATETIME": "TIMESTAMP",
    "TIMESTAMP": "TIMESTAMPTZ",
    "JSON": "JSON",
    "BYTES": "BLOB",
}
"""Source-table column types for DuckDB (written out here: the suite does not lean on the engine's own map)."""


def fresh_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class WarehouseEngine(ABC):
    """One warehouse under contract, with a dataset of its own for the test."""

    name: str
    warehouse: Any
    dataset: str
    param: str
    """How the engine's SQL names a bound parameter: `$` (DuckDB) or `@` (BigQuery)."""
    query_error: type[BaseException] | tuple[type[BaseException], ...]
    """What a statement the engine cannot run (e.g. a failed cast) raises."""
    cluster_order_observable: bool
    """Whether a plain SELECT returns rows in the order they were inserted (so cluster order can be checked)."""

    def sql(self, text: str) -> str:
        """`text` with `{p}` replaced by the parameter sigil and `{ds}` by the test's dataset."""
        return text.replace("{p}", self.param).replace("{ds}", self.dataset)

    @abstractmethod
    def execute(self, sql: str) -> None: ...

    @abstractmethod
    def query(self, sql: str) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def create_source(
        self, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]
    ) -> str:
        """A source table `<dataset>.<name>` of spec-typed columns holding `rows`; returns its ref."""
        ...

    @abstractmethod
    def tables(self) -> list[str]:
        """The tables in the test's dataset (staging tables a run left behind would show here)."""
        ...

    @abstractmethod
    def clustering(self, ref: str) -> list[str] | None:
        """The table's declared clustering columns, where the engine records them (None: it has no such DDL)."""
        ...

    @abstractmethod
    def column_defs(self, ref: str) -> list[tuple[str, bool]]:
        """The table's columns in order, each with whether it accepts NULL."""
        ...

    @abstractmethod
    def partitioning(self, ref: str) -> str | None:
        """`<UNIT>:<column>` of the table's time partitioning, where the engine records it (None: none, or no
        such DDL)."""
        ...

    @abstractmethod
    def column_types(self, ref: str) -> list[tuple[str, str]]:
        """The table's columns in order with their types in the spec's names (`INT64`, `NUMERIC`, ...), read
        from the engine's catalog (the emulator: its API metadata)."""
        ...

    def rows(self, ref: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        cols = ", ".join(columns)
        order = ", ".join(str(i + 1) for i in range(len(columns)))
        return self.query(f"SELECT {cols} FROM {ref} ORDER BY {order}")

    def physical(self, ref: str, column: str) -> list[Any]:
        """One column in the order a plain scan returns it."""
        return [r[0] for r in self.query(f"SELECT {column} FROM {ref}")]

    def close(self) -> None:  # noqa: B027 - nothing to drop by default (DuckDB: the test's tmp file)
        """Drop what the test created."""


class DuckDBEngine(WarehouseEngine):
    name = "duckdb"
    param = "$"
    query_error = duckdb.ConversionException
    cluster_order_observable = True

    def __init__(self, tmp_path: Path) -> None:
        from resources.duckdb_warehouse import (
            DuckDBWarehouse,  # imported per engine: a test of one needs only it
        )

        self.path = str(tmp_path / "wh.duckdb")
        self.warehouse = DuckDBWarehouse(path=self.path)
        self.dataset = fresh_name()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(self.path)
        con.execute("SET TimeZone = 'UTC'")
        return con

    def execute(self, sql: str) -> None:
        with self._connect() as con:
            con.execute(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self._connect() as con:
            return con.execute(sql).fetchall()

    def create_source(
        self, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]
    ) -> str:
        ref = f"{self.dataset}.{name}"
        defs = ", ".join(f"{n} {DUCKDB_TYPES[t]}" for n, t in columns)
        with self._connect() as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {self.dataset}")
            con.execute(f"CREATE TABLE {ref} ({defs})")
            if rows:
                marks = ", ".join("?" for _ in columns)
                con.executemany(
                    f"INSERT INTO {ref} VALUES ({marks})", [[r[n] for n, _ in columns] for r in rows]
                )
        return ref

    def tables(self) -> list[str]:
        found = self.query(
            "SELECT table_name FROM information_schema.tables "
            f"WHERE table_schema = '{self.dataset}' ORDER BY table_name"
        )
        return [r[0] for r in found]

    def clustering(self, ref: str) -> list[str] | None:
        return None

    def column_defs(self, ref: str) -> list[tuple[str, bool]]:
        schema, name = ref.split(".")
        found = self.query(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            f"WHERE table_schema = '{schema}' AND table_name = '{name}' ORDER BY ordinal_position"
        )
        return [(r[0], r[1] == "YES") for r in found]

    def partitioning(self, ref: str) -> str | None:
        return None

    def column_types(self, ref: str) -> list[tuple[str, str]]:
        schema, name = ref.split(".")
        found = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = '{schema}' AND table_name = '{name}' ORDER BY ordinal_position"
        )
        spec_names = {v.replace(" ", ""): k for k, v in DUCKDB_TYPES.items() if k != "TIMESTAMP"}
        spec_names["TIMESTAMPWITHTIMEZONE"] = "TIMESTAMP"
        return [(str(n), spec_names.get(str(t).replace(" ", ""), str(t))) for n, t in found]


class BigQueryEngine(WarehouseEngine):
    name = "bigquery"
    param = "@"
    query_error = BadRequest
    cluster_order_observable = False  # the emulator returns rows in no promised order

    def __init__(self, endpoint: str, project: str) -> None:
        from resources.bigquery_warehouse import BigQueryWarehouse

        self.warehouse = BigQueryWarehouse(project=project, api_endpoint=endpoint)
        self.client = bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
        self.dataset = fresh_name()
        self.client.create_dataset(self.dataset)

    def execute(self, sql: str) -> None:
        self.client.query(sql).result()

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row.values()) for row in self.client.query(sql).result()]

    def create_source(
        self, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]
    ) -> str:
        ref = f"{self.dataset}.{name}"
        table = bigquery.Table(
            f"{self.client.project}.{ref}", schema=[bigquery.SchemaField(n, t) for n, t in columns]
        )
        self.client.create_table(table)
        if rows:
            json_rows = [{k: _json(v) for k, v in r.items()} for r in rows]
            errors = self.client.insert_rows_json(table, json_rows)
            assert errors == [], errors
        return ref

    def tables(self) -> list[str]:
        return sorted(t.table_id for t in self.client.list_tables(self.dataset))

    def clustering(self, ref: str) -> list[str] | None:
        return list(self.client.get_table(f"{self.client.project}.{ref}").clustering_fields or [])

    def column_defs(self, ref: str) -> list[tuple[str, bool]]:
        schema = self.client.get_table(f"{self.client.project}.{ref}").schema
        return [(f.name, f.mode != "REQUIRED") for f in schema]

    def partitioning(self, ref: str) -> str | None:
        p = self.client.get_table(f"{self.client.project}.{ref}").time_partitioning
        return None if p is None else f"{p.type_}:{p.field}"

    def column_types(self, ref: str) -> list[tuple[str, str]]:
        legacy = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}
        schema = self.client.get_table(f"{self.client.project}.{ref}").schema
        return [(f.name, legacy.get(f.field_type, f.field_type)) for f in schema]

    def close(self) -> None:
        self.client.delete_dataset(self.dataset, delete_contents=True, not_found_ok=True)
        self.client.close()


@dataclass
class OnlineEngine:
    """One online store under contract, with a keyspace of its own for the test."""

    name: str
    store: Any
    keyspace: str


def _json(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def record_batches(
    rows: Sequence[dict[str, Any]], schema: pa.Schema, size: int = 2
) -> Iterator[pa.RecordBatch]:
    """`rows` as Arrow batches of at most `size` rows (several batches, as a source stream sends them)."""
    for start in range(0, len(rows), size):
        yield pa.RecordBatch.from_pylist(list(rows[start : start + size]), schema)
