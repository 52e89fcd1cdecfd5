"""What an engine gives the strategy layer: capability flags and a session of small primitives.

`resources.strategy` writes merge, append, replace and replication load once, over these primitives. An engine
(`DuckDBWarehouse`, `BigQueryWarehouse`) declares what it can do in `CAPABILITIES` (the way SQLMesh's engine
adapters declare `INSERT_OVERWRITE_STRATEGY`) and opens a `Session` per run; the session stages rows, runs the
sqlglot statements of `resources.engine_sql` in its dialect, and cleans up its staging on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from resources.schema_diff import ExistingTable, SchemaChange
from resources.warehouse import TargetTable

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp


Origin = Literal["source", "rows"]
"""Who sent staged batches: a replication source, or a Python asset's returned rows (for error messages)."""


@dataclass(frozen=True)
class Capabilities:
    """How an engine carries out each strategy. Every combination the strategy layer supports can be declared;
    one it does not support fails when the engine class is defined."""

    transactional_session: bool
    """All statements of a run are one transaction (DuckDB). Without it (BigQuery) each statement is atomic on
    its own: a strategy then changes the target with one statement or one `script`, and the target is created
    only after the checks passed, so a refused run creates nothing."""

    upsert: Literal["delete_insert", "merge"]
    """merge and load: delete the target rows a staged row replaces, then insert (in the session's transaction),
    or one `MERGE` statement."""

    insert_overwrite: Literal["delete_insert", "merge_on_false"]
    """append: delete the window, then insert; or one `MERGE ... ON FALSE` whose `WHEN NOT MATCHED BY SOURCE`
    deletes the window and `WHEN NOT MATCHED` inserts (SQLMesh's MERGE insert-overwrite strategy)."""

    replace: Literal["delete_insert", "script"]
    """replace: delete every row then insert in the session's transaction, or a multi-statement transaction
    script (`Session.script`, which takes no parameters)."""

    dml_row_counts: bool
    """DELETE reports the rows it removed (`Session.execute` returns it); else the strategy counts them first."""

    cluster_by_insert_order: bool
    """Rows are inserted in cluster-key order (DuckDB's zone maps then skip row groups; BigQuery clusters itself)."""

    direct_first_load: bool
    """A first load streams batches straight into the empty target (no staging copy); needs a transactional
    session, so a refusal rolls the rows back."""

    def __post_init__(self) -> None:
        """Refuse a combination that could not keep a failed run from changing the target."""
        needs_transaction = [
            name
            for name, value in (
                ("upsert", self.upsert),
                ("insert_overwrite", self.insert_overwrite),
                ("replace", self.replace),
            )
            if value == "delete_insert"
        ]
        if self.direct_first_load:
            needs_transaction.append("direct_first_load")
        if needs_transaction and not self.transactional_session:
            raise TypeError(
                f"Capabilities: {needs_transaction} run several statements, which is only safe in a "
                "transactional session; set transactional_session=True or choose the single-statement "
                "strategies (merge, merge_on_false, script)"
            )


@dataclass(frozen=True)
class Staged:
    """Rows a session staged for one run."""

    source: exp.Expr
    """The staged rows as a relation with the declared columns in their declared types: a table, or a query
    over one (e.g. BigQuery's casts over its staging table)."""
    rows: int | None = None
    """How many rows were staged, when staging counted them (batches); a query's rows are counted by the
    profile."""
    name: str | None = None
    """The staging table's name, reported as `extra["staging_table"]` (None: not reported)."""
    in_target: bool = False
    """The rows went straight into the (empty) target: a direct first load."""


BatchScreen = Callable[["exp.Expr"], None]
"""Called by `Session.stage_batches` with each raw batch as a relation, before it is cast and inserted; raises
to refuse the load."""


class Session(Protocol):
    """One run's connection to an engine. Statements are sqlglot expressions; the session renders them."""

    dialect: str
    cast_types: Mapping[str, str]
    """Spec type -> the type name the engine casts to (window bounds, declared column types)."""

    def prepare(self, target: TargetTable) -> bool:
        """Make the dataset ready; True when the target exists (its layout checked against the spec). A
        transactional engine creates a missing target here (rolled back with the run)."""
        ...

    def create(self, target: TargetTable) -> None:
        """Create the target after the checks passed (engines whose `prepare` does not)."""
        ...

    def stage_query(self, target: TargetTable, sql: str, params: Mapping[str, Any]) -> Staged:
        """Materialize a query (in the engine's dialect) into a new staging relation."""
        ...

    def stage_batches(
        self,
        target: TargetTable,
        batches: Iterable[pa.RecordBatch],
        origin: Origin,
        into_target: bool = False,
        screen: BatchScreen | None = None,
    ) -> Staged:
        """Stage Arrow batches cast to the declared types (`MissingColumns` when a declared column is absent).

        `into_target`: insert them into the target itself (`Capabilities.direct_first_load`). An engine that
        inserts batch by batch passes each raw batch to `screen` first (required with `into_target`); one that
        stages every batch at once (a single load job) may skip it: the strategy profiles the staged rows."""
        ...

    def execute(self, statement: exp.Expr, params: Mapping[str, Any] | None = None) -> int | None:
        """Run one statement; the rows a DML statement changed when the engine reports it, else None."""
        ...

    def rows(self, query: exp.Expr, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Every row of a query."""
        ...

    def script(self, statements: Sequence[exp.Expr]) -> None:
        """Run statements as one transaction (no parameters)."""
        ...

    def describe(self, ref: str) -> ExistingTable | None:
        """The table as it stands (columns mapped to spec types, Derive's marker), None when it does not exist."""
        ...

    def evolve(self, target: TargetTable, changes: Sequence[SchemaChange]) -> None:
        """Apply additive changes (`resources.schema_diff`: new nullable columns, widenings, dropped NOT NULL) to
        the existing target, keeping its partitioning and clustering."""
        ...

    def mark(self, target: TargetTable) -> None:
        """Write Derive's marker (the target's `TableLayout`) on the existing target."""
        ...

    def exists(self, target: TargetTable) -> bool:
        """Whether the table exists (nothing checked, nothing created): a rebuild replaces whatever is there."""
        ...

    def swap(self, fresh: TargetTable, target: TargetTable) -> int:
        """Put the table `fresh` (a rebuild filled it) in the place of `target`, and return how many rows the old
        `target` held. A transactional engine drops the old table and renames `fresh` inside the run's
        transaction; otherwise the engine does it as atomically as it can, never losing the old rows (see
        `resources.rebuild`)."""
        ...

    def discard(self, fresh: TargetTable) -> None:
        """Drop a table this run created, after the run failed (a transactional engine's rollback already did)."""
        ...


class Engine(Protocol):
    """What the strategy layer needs of a warehouse class."""

    CAPABILITIES: ClassVar[Capabilities]

    def session(self) -> AbstractContextManager[Session]:
        """A session for one run; staging is dropped when it closes, a transaction committed or rolled back."""
        ...
