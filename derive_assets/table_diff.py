"""`derive diff`: how an environment's shadow table differs from production, computed in the warehouse.

`diff_tables` compares `alice__analytics.order_facts` with `analytics.order_facts` over the same windows (rows whose
partition column lies in them) or the whole table, with a handful of queries (`table_diff_sql`) that each return
one row of counts and sums or a few sample rows; no table is read into Python. It reports:

- schema: columns only on one side, columns whose type changed (from `Warehouse.describe` of both tables);
- rows on each side;
- by key (a merge table's `unique_key`): keys only on one side (count and the smallest few), and per common
  column the rows whose value changed (count and a sample of key, before, after). Values compare NULL-safe
  (`IS DISTINCT FROM`: NULL vs NULL is equal, NULL vs a value is a change) and exactly: floats too, with no
  tolerance, so a float computed in another order can differ in its last bits;
- without a key (append and replace tables): whole rows, each distinct row's copies counted on both sides (what
  `EXCEPT ALL` would return each way), so a changed value shows as one row only in production and one only in
  the shadow;
- the sums of numeric columns on each side and their difference (shadow minus production).

Only columns both tables have are compared; a column whose type changed between incompatible types (e.g. STRING
-> INT64) is listed as not compared. `TableDiff.identical` is True when the schemas match and every row does.

Example:
    ```python
    diff = diff_tables(warehouse, spec, "analytics.order_facts", "alice__analytics.order_facts", windows)
    print(render_diff(diff))          # for a terminal or a CI log
    print(diff.summary_line())        # one line, e.g. for `derive plan --env`
    ```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from derive_assets.environments import env_of_dataset
from derive_assets.specs.models import MergeStrategy, TableSpec
from derive_assets.table_diff_sql import PRODUCTION, SHADOW, Compared, DiffQueries
from resources.schema_diff import ExistingTable
from resources.warehouse import TimeWindow, Warehouse

NUMERIC_TYPES = frozenset({"INT64", "NUMERIC", "FLOAT64", "BIGNUMERIC"})
"""Types whose sums are compared, and between which a changed type still compares by value."""


class TableDiffError(ValueError):
    """Two tables that cannot be compared as asked; the message says why and what to do."""


class TableMissing(TableDiffError):
    """One of the two tables does not exist (`side`: production or shadow)."""

    def __init__(self, ref: str, side: str, message: str) -> None:
        self.ref, self.side = ref, side
        super().__init__(message)


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class TypeChange:
    column: str
    production: str
    shadow: str


@dataclass(frozen=True)
class SchemaDifferences:
    only_in_production: tuple[Column, ...] = ()
    only_in_shadow: tuple[Column, ...] = ()
    type_changes: tuple[TypeChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.only_in_production or self.only_in_shadow or self.type_changes)


@dataclass(frozen=True)
class SampleRow:
    """A key (by key) or a whole row (without one), with how many more copies it has on its side."""

    values: tuple[Any, ...]
    copies: int = 1


@dataclass(frozen=True)
class OneSided:
    """Keys (rows, without a key) on one side only: how many, and the smallest few."""

    count: int
    sample: tuple[SampleRow, ...] = ()


@dataclass(frozen=True)
class ValueChange:
    key: tuple[Any, ...]
    before: Any
    """Production's value."""
    after: Any
    """The shadow's value."""


@dataclass(frozen=True)
class ColumnChanges:
    column: str
    rows: int
    sample: tuple[ValueChange, ...] = ()


@dataclass(frozen=True)
class ColumnSum:
    column: str
    production: Any
    shadow: Any

    @property
    def difference(self) -> Any:
        """shadow - production; None when a side has no value (no rows, or only NULLs)."""
        if self.production is None or self.shadow is None:
            return None
        if isinstance(self.production, float) or isinstance(self.shadow, float):
            return float(self.shadow) - float(self.production)
        return self.shadow - self.production


@dataclass(frozen=True)
class TableDiff:
    production_ref: str
    shadow_ref: str
    windows: tuple[TimeWindow, ...] | None
    """The compared windows (merged into ranges); None: the whole tables."""
    window_column: str | None
    key: tuple[str, ...]
    """Empty: compared by whole rows."""
    compared: tuple[str, ...]
    """The columns whose values were compared."""
    not_compared: tuple[tuple[str, str], ...]
    """(column, why) of common columns that were not compared."""
    schema: SchemaDifferences
    production_rows: int
    shadow_rows: int
    only_in_production: OneSided
    only_in_shadow: OneSided
    changed_rows: int = 0
    """By key: rows on both sides with at least one changed value."""
    changed_columns: tuple[ColumnChanges, ...] = ()
    """By key: the columns with changed values (only those), in table order."""
    sums: tuple[ColumnSum, ...] = ()

    @property
    def rows_identical(self) -> bool:
        return (
            self.production_rows == self.shadow_rows
            and self.only_in_production.count == 0
            and self.only_in_shadow.count == 0
            and self.changed_rows == 0
        )

    @property
    def identical(self) -> bool:
        """Same columns and types, and every compared row equal (sums are shown, not judged: a float sum may
        differ in its last bits with equal rows)."""
        return self.schema.empty and self.rows_identical and not self.not_compared

    @property
    def env(self) -> str:
        found = env_of_dataset(self.shadow_ref.split(".", 1)[0])
        return found[0] if found else self.shadow_ref

    def summary_line(self) -> str:
        """One line, e.g. `analytics.order_facts in alice: differs (...): 2 changed rows (amount 2); ...`, for
        `derive plan --env` and CI summaries."""
        from derive_assets.table_diff_render import summary_line

        return summary_line(self)


def diff_tables(
    warehouse: Warehouse,
    spec: TableSpec,
    production_ref: str,
    shadow_ref: str,
    windows: Sequence[TimeWindow] | None,
    sample: int = 5,
) -> TableDiff:
    """Compare `shadow_ref` with `production_ref` (both written by `spec`) over `windows` (None: the whole
    tables), with up to `sample` examples of each difference. Raises `TableMissing` when a table does not
    exist and `TableDiffError` when the tables cannot be compared as asked."""
    if sample < 0:
        raise TableDiffError(f"sample: {sample} is negative; give 0 (counts only) or more")
    production = _described(warehouse, production_ref, "production", spec)
    shadow = _described(warehouse, shadow_ref, "shadow", spec)
    schema, common = _schema(production, shadow)
    key = tuple(spec.strategy.unique_key) if isinstance(spec.strategy, MergeStrategy) else ()
    compared, not_compared = _comparable(common, key)
    window_column = _window_column(spec, common, windows, shadow_ref)
    queries = DiffQueries(
        dialect=warehouse.dialect,
        production_ref=production_ref,
        shadow_ref=shadow_ref,
        columns=tuple(Compared(c.name, json=c.type == "JSON") for c in compared),
        key=key,
        window_column=window_column,
        window_type=warehouse.types[_spec_type(spec, window_column)] if window_column else None,
        windows=None if windows is None else tuple(windows),
    )
    sums = [c.name for c in compared if c.type in NUMERIC_TYPES and common[c.name][1] in NUMERIC_TYPES]
    sums = [n for n in sums if n not in key]
    production_rows, production_sums = _side(warehouse, queries, production_ref, sums)
    shadow_rows, shadow_sums = _side(warehouse, queries, shadow_ref, sums)
    base = {
        "production_ref": production_ref,
        "shadow_ref": shadow_ref,
        "windows": None if windows is None else tuple(queries.ranges),
        "window_column": window_column,
        "key": key,
        "compared": tuple(c.name for c in compared),
        "not_compared": tuple(not_compared),
        "schema": schema,
        "production_rows": production_rows,
        "shadow_rows": shadow_rows,
        "sums": tuple(ColumnSum(n, p, s) for n, p, s in zip(sums, production_sums, shadow_sums, strict=True)),
    }
    if not compared:
        empty = OneSided(0)
        return TableDiff(**base, only_in_production=empty, only_in_shadow=empty)
    if key:
        return _by_key(warehouse, queries, sample, base)
    return _by_row(warehouse, queries, sample, base)


def environment_summary(
    warehouse: Warehouse, spec: TableSpec, env: str, windows: Sequence[TimeWindow] | None
) -> str:
    """One line for `derive plan --env` and CI logs: `spec`'s table in `env` against production, counts only (no
    samples), or why there is no diff (a new table, not built in the environment yet, not comparable)."""
    from derive_assets.environments import shadow_ref

    shadow = shadow_ref(env, spec.ref)
    try:
        return diff_tables(warehouse, spec, spec.ref, shadow, windows, sample=0).summary_line()
    except TableMissing as exc:
        if exc.side == "production":
            return f"{spec.ref} in {env}: new table (no production table to compare with)"
        return f"{spec.ref} in {env}: not built (`derive build --env {env} {spec.dataset}/{spec.name}`)"
    except TableDiffError as exc:
        return f"{spec.ref} in {env}: not compared: {exc}"


def _by_key(warehouse: Warehouse, q: DiffQueries, sample: int, base: dict[str, Any]) -> TableDiff:
    only_p, only_s, changed, *per_column = warehouse.query(*q.key_stats())[0]
    changes = []
    for c, rows in zip(q.values, per_column, strict=True):
        if not rows:
            continue
        found = warehouse.query(*q.changed_sample(c, sample)) if sample else []
        n = len(q.key)
        values = tuple(ValueChange(tuple(r[:n]), r[n], r[n + 1]) for r in found)
        changes.append(ColumnChanges(c.name, int(rows), values))

    def one_sided(side: str, count: int) -> OneSided:
        rows = warehouse.query(*q.only_keys(side, sample)) if count and sample else []
        return OneSided(int(count), tuple(SampleRow(tuple(r)) for r in rows))

    return TableDiff(
        **base,
        only_in_production=one_sided(PRODUCTION, only_p),
        only_in_shadow=one_sided(SHADOW, only_s),
        changed_rows=int(changed),
        changed_columns=tuple(changes),
    )


def _by_row(warehouse: Warehouse, q: DiffQueries, sample: int, base: dict[str, Any]) -> TableDiff:
    only_p, only_s = warehouse.query(*q.row_stats())[0]

    def one_sided(side: str, count: Any) -> OneSided:
        count = int(count or 0)  # SUM over no rows is NULL
        rows = warehouse.query(*q.only_rows(side, sample)) if count and sample else []
        return OneSided(count, tuple(SampleRow(tuple(r[:-1]), int(r[-1])) for r in rows))

    return TableDiff(
        **base, only_in_production=one_sided(PRODUCTION, only_p), only_in_shadow=one_sided(SHADOW, only_s)
    )


def _side(warehouse: Warehouse, q: DiffQueries, ref: str, sums: Sequence[str]) -> tuple[int, list[Any]]:
    count, *totals = warehouse.query(*q.side_stats(ref, sums))[0]
    return int(count), totals


# ------------------------------------------------------------------------------------------------ columns


def _described(warehouse: Warehouse, ref: str, side: str, spec: TableSpec) -> ExistingTable:
    existing = warehouse.describe(ref)
    if existing is not None:
        return existing
    if side == "shadow":
        found = env_of_dataset(ref.split(".", 1)[0])
        env = found[0] if found else "<env>"
        message = (
            f"{ref} does not exist: build it first with `derive build --env {env} {spec.dataset}/{spec.name}`"
        )
    else:
        message = (
            f"{ref} does not exist in production, so there is nothing to compare the environment's table "
            f"with: every row of a new table is new. Build it in production first (`derive rebuild {ref}`), "
            "or review the environment's table directly."
        )
    raise TableMissing(ref, side, message)


def _schema(
    production: ExistingTable, shadow: ExistingTable
) -> tuple[SchemaDifferences, dict[str, tuple[str, str]]]:
    """The differences, and the common columns (production's name -> (production type, shadow type)) in
    production's order; names compare case-insensitively, as both warehouses do."""
    theirs = {c.name.lower(): c for c in shadow.columns}
    ours = {c.name.lower() for c in production.columns}
    common: dict[str, tuple[str, str]] = {}
    changes = []
    for c in production.columns:
        other = theirs.get(c.name.lower())
        if other is None:
            continue
        common[c.name] = (c.type, other.type)
        if c.type != other.type:
            changes.append(TypeChange(c.name, c.type, other.type))
    schema = SchemaDifferences(
        tuple(Column(c.name, c.type) for c in production.columns if c.name.lower() not in theirs),
        tuple(Column(c.name, c.type) for c in shadow.columns if c.name.lower() not in ours),
        tuple(changes),
    )
    return schema, common


def _comparable(
    common: dict[str, tuple[str, str]], key: Sequence[str]
) -> tuple[list[Column], list[tuple[str, str]]]:
    """The common columns whose values compare (same type, or both numeric; JSON as its text), and why the
    others do not."""
    lowered = {name.lower(): name for name in common}
    for k in key:
        if k.lower() not in lowered:
            raise TableDiffError(
                f"the key column {k!r} (strategy.unique_key) is not in both tables (common columns: "
                f"{sorted(common)}), so rows cannot be matched by key; rebuild the table whose key column is "
                "missing, or compare after both have it"
            )
    compared, skipped = [], []
    for name, (before, after) in common.items():
        if before == after or (before in NUMERIC_TYPES and after in NUMERIC_TYPES):
            compared.append(Column(name, before))
        elif name.lower() in {k.lower() for k in key}:
            raise TableDiffError(
                f"the key column {name!r} is {before} in production and {after} in the environment, so rows "
                "cannot be matched by key; keep the key's type, or compare after rebuilding production"
            )
        else:
            skipped.append((name, f"type {before} -> {after}: values of different types are not compared"))
    return compared, skipped


def _window_column(
    spec: TableSpec,
    common: dict[str, tuple[str, str]],
    windows: Sequence[TimeWindow] | None,
    shadow_ref: str,
) -> str | None:
    if windows is None:
        return None
    if spec.partition is None:
        raise TableDiffError(
            f"{spec.ref} has no partition column (`partition.key`), so its tables cannot be compared window by "
            "window; compare the whole tables (no windows)"
        )
    column = next((name for name in common if name.lower() == spec.partition.key.lower()), None)
    if column is None:
        raise TableDiffError(
            f"the partition column {spec.partition.key!r} is not in both {spec.ref} and {shadow_ref}, so the "
            "same windows cannot be selected on both; compare the whole tables (no windows)"
        )
    return column


def _spec_type(spec: TableSpec, column: str) -> str:
    return next(c.type for c in spec.columns if c.name.lower() == column.lower())


def render_diff(diff: TableDiff) -> str:
    """The diff as plain text (no colours, no wide tables): readable in a terminal and in a CI log
    (`table_diff_render`)."""
    from derive_assets.table_diff_render import render

    return render(diff)
