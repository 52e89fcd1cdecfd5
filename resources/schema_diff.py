"""How a spec differs from the table it writes: additive changes a run applies, breaking ones it refuses.

Pure logic, no engine. An engine describes an existing table (`ExistingTable`: its columns in the spec's type
vocabulary, and the `TableLayout` Derive recorded on it when it created it, if any); `diff` compares a spec's
`TargetTable` with it:

- additive (applied by the run, `resources.evolution`): a new nullable column (old rows hold NULL until their
  windows run again), a widening (INT64 -> NUMERIC, INT64 -> FLOAT64, NUMERIC -> FLOAT64), dropping NOT NULL;
- breaking (the run refuses before writing anything, `BreakingSchemaChange`): a column the spec no longer has
  (dropped or renamed), a narrowing or incompatible type change, a new NOT NULL column or NOT NULL on an existing
  column, a changed partition key or granularity, changed cluster keys, a changed `unique_key`.

Column names compare case-insensitively (both warehouses do). A table without Derive's marker (made by an older
Derive, or by hand) has no known layout and is compared by its columns only. A `unique_key` is compared only when
both the spec and the table have one: a changed key would meet rows that were only unique by the old one, while a
table that starts merging (an append table becoming a merge) has no old key to contradict, and one that stops
(append, replace) does not depend on its key any more.

The order of `SchemaDiff.changes` is fixed: the table's columns in table order (dropped, retyped, NOT NULL
changed), then the spec's new columns in spec order, then partitioning, cluster keys and unique_key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from resources.schema import ColumnDef
from resources.warehouse import TargetTable, WarehouseError

ChangeKind = Literal[
    "add_column", "widen_type", "drop_column", "change_type", "not_null", "partition", "cluster", "unique_key"
]

WIDENINGS: frozenset[tuple[str, str]] = frozenset(
    {("INT64", "NUMERIC"), ("INT64", "FLOAT64"), ("NUMERIC", "FLOAT64")}
)
"""(from, to) type changes both warehouses make in place keeping every value (BigQuery's `ALTER COLUMN SET DATA
TYPE` coercions; NUMERIC -> FLOAT64 may round beyond ~15 significant digits, as BigQuery's does)."""

MARKER_VERSION = 1
"""The `derive` field of a marker: the format of `TableLayout.to_marker`."""


@dataclass(frozen=True)
class TableLayout:
    """What Derive records on every table it creates (DuckDB: the table COMMENT; BigQuery: the table
    description, plus the label `derive-managed`), so a later run, `derive plan` and `derive prune` can read it."""

    partition_key: str | None
    partition_granularity: str
    """hour | day | month | year (meaningful only with a partition key)."""
    cluster: tuple[str, ...]
    unique_key: tuple[str, ...]
    code_version: str | None
    """The spec version that last wrote the table (`TargetTable.code_version`)."""

    @classmethod
    def of(cls, target: TargetTable) -> TableLayout:
        """The layout a spec's target declares."""
        return cls(
            target.partition_key,
            target.partition_granularity,
            tuple(target.cluster),
            tuple(target.unique_key),
            target.code_version,
        )

    def to_marker(self) -> str:
        """The marker text: a small JSON object, e.g. `{"derive": 1, "partition_key": "day", ...}`."""
        body: dict[str, Any] = {
            "derive": MARKER_VERSION,
            "partition_key": self.partition_key,
            "partition_granularity": self.partition_granularity,
            "cluster": list(self.cluster),
            "unique_key": list(self.unique_key),
            "code_version": self.code_version,
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_marker(cls, text: str | None) -> TableLayout | None:
        """The layout a marker records; None when `text` is not a Derive marker (no comment, someone's own
        description, an unreadable one)."""
        if not text:
            return None
        try:
            body = json.loads(text)
        except ValueError:
            return None
        if not isinstance(body, dict) or body.get("derive") != MARKER_VERSION:
            return None
        try:
            return cls(
                _optional_str(body.get("partition_key")),
                str(body.get("partition_granularity") or "day"),
                tuple(str(c) for c in body.get("cluster") or ()),
                tuple(str(c) for c in body.get("unique_key") or ()),
                _optional_str(body.get("code_version")),
            )
        except TypeError:  # a field of the wrong shape (e.g. a number for a list): not ours
            return None


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class ExistingTable:
    """A table as the warehouse holds it."""

    ref: str
    columns: tuple[ColumnDef, ...]
    """In table order; types in the spec vocabulary ("INT64", "NUMERIC", ...), or the warehouse's own name for a
    type the spec cannot declare (e.g. "HUGEINT", "BIGNUMERIC")."""
    layout: TableLayout | None
    """None: no Derive marker (a table Derive did not create, or one created before markers)."""


@dataclass(frozen=True)
class SchemaChange:
    """One difference between a spec and its table."""

    kind: ChangeKind
    column: str | None
    before: str | None
    after: str | None
    breaking: bool

    def describe(self) -> str:
        """One line, e.g. "add column avg_amount NUMERIC (old rows hold NULL)"."""
        c, before, after = self.column, self.before, self.after
        if self.kind == "add_column":
            if self.breaking:
                return f"add column {c} {after} NOT NULL (the existing rows have no value for it)"
            return f"add column {c} {after} (old rows hold NULL)"
        if self.kind == "widen_type":
            return f"widen column {c} {before} -> {after} (values kept)"
        if self.kind == "drop_column":
            return f"column {c} {before} is in the table but not in the spec (dropped or renamed)"
        if self.kind == "change_type":
            return f"change column {c} {before} -> {after} (a narrowing or incompatible type change)"
        if self.kind == "not_null":
            if self.breaking:
                return f"column {c} becomes NOT NULL (existing rows may hold NULL)"
            return f"column {c} becomes nullable (drop NOT NULL)"
        if self.kind == "partition":
            return f"partitioning {before} -> {after}"
        if self.kind == "cluster":
            return f"cluster keys {before} -> {after}"
        return f"unique_key {before} -> {after}"


@dataclass(frozen=True)
class SchemaDiff:
    ref: str
    changes: tuple[SchemaChange, ...]

    @property
    def additive(self) -> tuple[SchemaChange, ...]:
        return tuple(c for c in self.changes if not c.breaking)

    @property
    def breaking(self) -> tuple[SchemaChange, ...]:
        return tuple(c for c in self.changes if c.breaking)

    def describe(self) -> str:
        """One line per change (empty when the spec matches the table)."""
        return "\n".join(c.describe() for c in self.changes)


class BreakingSchemaChange(WarehouseError):
    """The spec no longer matches its existing table in a way a run cannot apply; raised before any write."""

    def __init__(self, diff: SchemaDiff) -> None:
        self.diff = diff
        lines = "\n".join(f"  - {c.describe()}" for c in diff.breaking)
        additive = diff.additive
        also = (
            "\nAlso different (additive: a run applies these by itself):\n"
            + "\n".join(f"  - {c.describe()}" for c in additive)
            if additive
            else ""
        )
        super().__init__(
            f"{diff.ref}: the spec no longer matches the existing table:\n{lines}{also}\n"
            f"Run `derive rebuild {diff.ref}` to rebuild it from the spec (the old table stays until the new one "
            "is complete), or change the spec back. Nothing was written."
        )


def diff(target: TargetTable, existing: ExistingTable) -> SchemaDiff:
    """Every difference between a spec's target and its existing table, in a fixed order (module docstring)."""
    declared = {c.name.lower(): c for c in target.columns}
    present = {c.name.lower() for c in existing.columns}
    changes: list[SchemaChange] = []
    for have in existing.columns:
        want = declared.get(have.name.lower())
        if want is None:
            changes.append(SchemaChange("drop_column", have.name, have.type, None, True))
            continue
        changes.extend(_column_changes(have, want))
    for want in target.columns:
        if want.name.lower() not in present:
            changes.append(SchemaChange("add_column", want.name, None, want.type, want.not_null))
    if existing.layout is not None:
        changes.extend(_layout_changes(TableLayout.of(target), existing.layout))
    return SchemaDiff(existing.ref, tuple(changes))


def _column_changes(have: ColumnDef, want: ColumnDef) -> list[SchemaChange]:
    changes = []
    if have.type != want.type:
        widening = (have.type, want.type) in WIDENINGS
        kind: ChangeKind = "widen_type" if widening else "change_type"
        changes.append(SchemaChange(kind, want.name, have.type, want.type, not widening))
    if have.not_null != want.not_null:
        before, after = _nullability(have), _nullability(want)
        changes.append(SchemaChange("not_null", want.name, before, after, want.not_null))
    return changes


def _nullability(column: ColumnDef) -> str:
    return "NOT NULL" if column.not_null else "NULL"


def _layout_changes(want: TableLayout, have: TableLayout) -> list[SchemaChange]:
    changes = []
    if _partitioning(want).lower() != _partitioning(have).lower():
        changes.append(
            SchemaChange("partition", want.partition_key, _partitioning(have), _partitioning(want), True)
        )
    if _lower(want.cluster) != _lower(have.cluster):
        changes.append(SchemaChange("cluster", None, _keys(have.cluster), _keys(want.cluster), True))
    keyed = want.unique_key and have.unique_key
    if keyed and sorted(_lower(want.unique_key)) != sorted(_lower(have.unique_key)):
        changes.append(SchemaChange("unique_key", None, _keys(have.unique_key), _keys(want.unique_key), True))
    return changes


def _partitioning(layout: TableLayout) -> str:
    if layout.partition_key is None:
        return "none"
    return f"{layout.partition_granularity} on {layout.partition_key}"


def _lower(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n.lower() for n in names)


def _keys(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(names) + "]" if names else "none"
