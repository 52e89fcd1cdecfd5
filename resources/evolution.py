"""Schema evolution in a run, written once for every engine over the `Session` primitives.

`resources.strategy` calls these around a write or a load:

1. `compare` before anything else: the spec (`TargetTable`) against the existing table (`Session.describe`,
   `resources.schema_diff.diff`). A breaking difference raises `BreakingSchemaChange` before the run stages,
   creates or alters anything (and, for a load, before the watermark could move: it lives in Dagster).
2. `Evolution.apply` with the additive changes (`Session.evolve`: `ALTER TABLE`; BigQuery through the API keeping
   partitioning and clustering). A transactional engine (DuckDB) applies them before staging, inside the run's
   transaction, so a refused run rolls them back; one without (BigQuery) only after the row checks passed, right
   before the statement that changes the target, so a refused run alters nothing.
3. `Evolution.finish` after the change: Derive's marker (`TableLayout`) refreshed where it differs (a new
   `code_version`, or a table from before markers, adopted now), and the applied changes reported as
   `WriteResult.extra["schema_changes"]` (their `describe()` lines).

A rebuild (`WriteRequest.rebuild`) skips all of it: it builds a new table from the spec.

The warehouse-level helpers (`schema_diff`, `refuse_unmarked`) are the parts of `Warehouse.schema_diff` and
`Warehouse.drop_table` both engines share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from resources.engine import Capabilities, Session
from resources.schema_diff import BreakingSchemaChange, ExistingTable, SchemaDiff, TableLayout, diff
from resources.warehouse import TargetTable, WarehouseError, WriteResult

SCHEMA_CHANGES = "schema_changes"
"""The `WriteResult.extra` key of the applied changes."""


def spec_target(target: TargetTable, key: Sequence[str]) -> TargetTable:
    """The target with its key recorded: the request's `unique_key` (a load's primary key) when the caller left
    `TargetTable.unique_key` empty, so the marker holds the key the table is written by."""
    if target.unique_key or not key:
        return target
    return dataclasses.replace(target, unique_key=tuple(key))


@dataclass
class Evolution:
    """What a run found when it compared its spec with the table, and what it still has to do about it."""

    target: TargetTable
    existing: ExistingTable | None
    """None: the table did not exist (or a rebuild, which never compares)."""
    diff: SchemaDiff | None
    applied: bool = False

    def apply(self, s: Session, caps: Capabilities, *, before_rows: bool) -> None:
        """Apply the additive changes at the point the engine allows (module docstring, step 2): call it with
        `before_rows=True` after `prepare` and with `before_rows=False` right before the change; it acts once."""
        if self.applied or caps.transactional_session != before_rows:
            return
        self.applied = True
        if self.diff is not None and self.diff.additive:
            s.evolve(self.target, self.diff.additive)

    def finish(self, s: Session, result: WriteResult) -> None:
        """After a successful change: refresh the marker where it differs, report the applied changes."""
        if self.existing is not None and self.existing.layout != TableLayout.of(self.target):
            s.mark(self.target)
        if self.diff is not None and self.diff.additive:
            result.extra[SCHEMA_CHANGES] = [c.describe() for c in self.diff.additive]


def compare(s: Session, target: TargetTable, rebuild: bool = False) -> Evolution:
    """The spec against the existing table; `BreakingSchemaChange` when a run cannot apply the difference."""
    if rebuild:
        return Evolution(target, None, None, applied=True)
    existing = s.describe(target.ref)
    if existing is None:
        return Evolution(target, None, None)
    found = diff(target, existing)
    if found.breaking:
        raise BreakingSchemaChange(found)
    return Evolution(target, existing, found)


def schema_diff(existing: ExistingTable | None, target: TargetTable) -> SchemaDiff | None:
    """`Warehouse.schema_diff`: None when the table does not exist."""
    return None if existing is None else diff(target, existing)


def refuse_unmarked(ref: str, existing: ExistingTable) -> None:
    """`Warehouse.drop_table` drops only tables Derive created (they carry its marker)."""
    if existing.layout is None:
        raise WarehouseError(
            f"{ref}: this table carries no Derive marker, so Derive did not create it (or an older Derive did, "
            "before tables were marked) and will not drop it. Drop it by hand if it should go, or let a run of "
            "its spec adopt it (the next successful write marks it)."
        )
