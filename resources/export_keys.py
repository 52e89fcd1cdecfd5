"""The key set an export keeps in the warehouse, and the statements that maintain it (rendered per dialect here,
so the factory holds no SQL): `_derive_exports.<export>__keys` holds the online primary key of every row the
export put online, the window column for a windowed export, and `_online` (false once the key was deleted
online). The factory's `export_deletes.py` says when each statement runs and why.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from resources.engine_sql import col as _col
from resources.engine_sql import table as _table
from resources.engine_sql import window_between
from resources.reads import TableSlice
from resources.schema import ColumnDef
from resources.warehouse import TargetTable, TimeWindow, WriteRequest

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    from sqlglot import exp
else:  # a step process that defines the assets imports neither (tests/unit/test_import_cost.py)
    from resources.lazy_import import lazy_module

    exp = lazy_module("sqlglot.expressions")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

KEYS_DATASET = "_derive_exports"
"""The warehouse dataset (schema) holding every export's key set; Derive's own, never a spec's."""
ONLINE = "_online"
TABLE, KEYS = "t", "k"


@dataclasses.dataclass(frozen=True)
class KeySet:
    """Where one export keeps its keys, what they are, and the statements of one run over them."""

    export: str
    table_ref: str
    """The exported warehouse table, `dataset.name`."""
    key_columns: tuple[ColumnDef, ...]
    """The online primary key's columns."""
    window_column: ColumnDef | None = None
    """A windowed export's window column (kept with each key; part of the key set's key)."""
    window: TimeWindow | None = None
    """This run's window (None: the whole key set)."""
    cursor: bool = False
    """A cursor export (writes changed rows only): the key set starts from every key of the table."""

    @property
    def names(self) -> list[str]:
        """The key set's key: the primary key, and the window column if it is not part of it."""
        return [c.name for c in self._columns()]

    @property
    def primary_key(self) -> list[str]:
        return [c.name for c in self.key_columns]

    def _columns(self) -> tuple[ColumnDef, ...]:
        extra = (
            (self.window_column,)
            if self.window_column is not None and self.window_column.name not in self.primary_key
            else ()
        )
        return (*self.key_columns, *extra)

    @property
    def keys(self) -> TargetTable:
        """The key set: partitioned by the window column of a windowed export, so windows touch disjoint
        partitions."""
        return TargetTable(
            dataset=KEYS_DATASET,
            name=f"{self.export}__keys",
            columns=(*self._columns(), ColumnDef(ONLINE, "BOOL")),
            partition_key=self.window_column.name if self.window_column is not None else None,
            unique_key=tuple(self.names),
        )

    def scratch(self, role: str) -> TargetTable:
        """A scratch table of this run (`written`, `gone`), one per window so two windows never share one."""
        tag = "" if self.window is None else "__" + self.window.start.strftime("%Y%m%dT%H%M%S")
        return TargetTable(dataset=KEYS_DATASET, name=f"{self.export}__{role}{tag}", columns=self._columns())

    def seed(self, dialect: str) -> WriteRequest:
        """A new key set holding every key of the table, as online (a cursor export's first run with deletes)."""
        return WriteRequest(
            self.keys, self._select(self.table_ref, True).distinct().sql(dialect), {}, "replace"
        )

    def written(self) -> WriteRequest:
        """The recorded keys (given as batches) into the `written` scratch table."""
        return WriteRequest(self.scratch("written"), None, {}, "replace")

    def upsert(self, source: str, online: bool, dialect: str, exists: bool) -> WriteRequest:
        """Upsert the keys of scratch table `source` into the key set with `_online = online`, by the key set's
        key; windowed: within the run's window (the rows all are in it)."""
        return WriteRequest(
            self.keys,
            self._select(source, online).distinct().sql(dialect),
            {},
            "merge" if exists else "replace",
            unique_key=tuple(self.names),
            window=self.window if exists and self.window_column is not None else None,
        )

    def gone(self, dialect: str, types: Mapping[str, str]) -> WriteRequest:
        """The keys of the key set (in this run's window) that are online and that no row of the table holds
        any more (an anti-join, in the warehouse), into the `gone` scratch table."""
        in_table = (
            exp.select(exp.Literal.number(1))
            .from_(_table(self.table_ref, TABLE))
            .where(
                exp.and_(*(exp.EQ(this=_col(k, TABLE), expression=_col(k, KEYS)) for k in self.primary_key))
            )
        )
        conditions: list[exp.Expr] = [_col(ONLINE, KEYS), exp.Not(this=exp.Exists(this=in_table))]
        params = {}
        if self.window is not None and self.window_column is not None:
            conditions.append(
                window_between(self.window_column.name, types[self.window_column.type], dialect, KEYS)
            )
            params = self.window.as_params()
        query = (
            exp.select(*(_col(n, KEYS) for n in self.names))
            .from_(_table(self.keys.ref, KEYS))
            .where(exp.and_(*conditions))
        )
        return WriteRequest(self.scratch("gone"), query.sql(dialect), params, "replace")

    def gone_slice(self) -> TableSlice:
        return TableSlice(self.scratch("gone").ref, tuple(self.names))

    def _select(self, ref: str, online: bool) -> exp.Select:
        return exp.select(
            *(_col(n) for n in self.names), exp.alias_(exp.Boolean(this=online), ONLINE, quoted=True)
        ).from_(_table(ref))


class KeyRecorder:
    """The keys of the batches an export hands to the store, kept in a local Arrow IPC file (bounded memory)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self._dir = tempfile.TemporaryDirectory(prefix="derive-export-keys-")
        self._path = Path(self._dir.name) / "keys.arrow"
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self.rows = 0

    def tee(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Pass `batches` on unchanged, writing their key columns to the file as they go by."""
        for batch in batches:
            keys = pa.RecordBatch.from_arrays([batch.column(n) for n in self.names], names=self.names)
            if any(column.null_count for column in keys.columns):  # never online: the store refuses it
                valid = functools.reduce(
                    lambda a, b: pc.call_function("and", [a, b]),
                    [column.is_valid() for column in keys.columns],
                )
                keys = keys.filter(valid)
            if self._writer is None:
                self._writer = pa.ipc.new_file(str(self._path), keys.schema)
            self._writer.write_batch(keys)
            self.rows += keys.num_rows
            yield batch

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The recorded key batches, read back from the file."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        with pa.memory_map(str(self._path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._dir.cleanup()
