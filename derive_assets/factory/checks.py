"""Column constraints become asset checks that run in the warehouse after each materialization.

Each constraint of a column is one check named `<column>_<rule>`: `not_null`, `unique`, `accepted_values`,
`min`, `max` and `relationships` (an anti-join against another table's key, counted in the warehouse). The
column's `severity` decides what a failure does: `error` checks are blocking (`AssetCheckSpec(blocking=True)`:
the step fails after its materialization is recorded, and everything downstream waits, exports included); `warn`
checks are reported with `AssetCheckSeverity.WARN` and block nothing. Table-level checks (`row_count`, custom
`sql`) are in `quality_checks.py` and share `Check`, `CheckRun` and `run_checks` with these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MetadataValue,
)

from derive_assets.specs.models import CheckSeverity, Column
from resources.reads import CheckKind, CheckQuery, Reference, SliceReads, TableSlice
from resources.warehouse import TimeWindow, Warehouse

SAMPLES = 5
"""How many of the values breaking a failed check its result shows."""

RULES: tuple[CheckKind, ...] = ("not_null", "unique", "accepted_values", "min", "max", "relationships")
"""The column rules, in the order their checks are declared."""


@dataclass(frozen=True)
class CheckRun:
    """What one step's checks look at: the warehouse and the rows the run wrote."""

    warehouse: Warehouse
    rows: TableSlice
    """The run's window of a partitioned table (the union of its windows), else the whole table."""
    windows: tuple[TimeWindow, ...] = ()
    """Each window of the run, oldest first, when `rows` is a window of a partitioned table; else empty."""
    previous_window: Callable[[TimeWindow], TimeWindow | None] = lambda _: None
    """The window before a given one (None before the first): where `row_count.max_change_percent` compares."""
    previous_row_count: Callable[[], int | None] = lambda: None
    """A table without windows: its row count at its previous materialization (from the event log), or None."""
    params: dict[str, Any] = field(default_factory=dict)
    """`window_start`/`window_end` of the run (a custom check's query may read them)."""
    relations: Mapping[str, str] = field(default_factory=dict)
    """In an environment: the tables a custom check's query names (`dataset.name`) -> the relations it reads
    instead (the table's own copy, changed upstreams' copies); empty in production."""


class Check(Protocol):
    """One asset check an asset body runs in its own step."""

    @property
    def name(self) -> str: ...

    @property
    def severity(self) -> CheckSeverity: ...

    def spec(self, key: AssetKey) -> AssetCheckSpec: ...

    def evaluate(self, run: CheckRun) -> AssetCheckResult: ...


C = TypeVar("C", bound=Check)


def dagster_severity(severity: CheckSeverity) -> AssetCheckSeverity:
    return AssetCheckSeverity.WARN if severity == "warn" else AssetCheckSeverity.ERROR


def violation_result(
    name: str,
    severity: CheckSeverity,
    violations: int | None,
    examples: Sequence[str],
    failed_description: str,
    metadata: dict[str, Any] | None = None,
) -> AssetCheckResult:
    """A check that counts violating rows: passed when `violations` is 0 (None: it could not be counted, and
    `failed_description` says why), with its count, a few `examples` and `failed_description` when it failed."""
    meta: dict[str, Any] = dict(metadata or {})
    if violations is not None:
        meta["violations"] = violations
    if examples:
        meta["examples"] = list(examples)
    passed = violations == 0
    return AssetCheckResult(
        check_name=name,
        passed=passed,
        severity=dagster_severity(severity),
        metadata=meta,
        description=None if passed else failed_description,
    )


@dataclass(frozen=True)
class ColumnCheck:
    name: str
    column: Column
    rule: CheckKind

    @property
    def severity(self) -> CheckSeverity:
        return self.column.constraints.severity

    def spec(self, key: AssetKey) -> AssetCheckSpec:
        rel = self.column.constraints.relationships
        return AssetCheckSpec(
            self.name,
            asset=key,
            blocking=self.severity == "error",
            description=_describe(self),
            metadata={"column": self.column.name},
            # the referenced table is read by this check (lineage only: it never becomes a dep of the asset)
            additional_deps=[AssetKey(rel.table.split("."))]
            if rel and self.rule == "relationships"
            else None,
        )

    def query(self, scope: TableSlice) -> CheckQuery:
        """The count of violating rows over `scope` (`unique` looks at the whole table; see `CheckQuery`)."""
        c = self.column.constraints
        if self.rule == "accepted_values":
            return CheckQuery(self.rule, self.column.name, scope, tuple(c.accepted_values or ()))
        if self.rule in ("min", "max"):
            bound = bound_value(c.min if self.rule == "min" else c.max, self.column.type)
            return CheckQuery(self.rule, self.column.name, scope, bound=bound, type=self.column.type)
        if self.rule == "relationships":
            assert c.relationships is not None
            reference = Reference(c.relationships.table, c.relationships.column)
            return CheckQuery(self.rule, self.column.name, scope, reference=reference)
        return CheckQuery(self.rule, self.column.name, scope)

    def evaluate(self, run: CheckRun) -> AssetCheckResult:
        """Count the violations over the run's rows; a failed check other than `not_null` also reads a few of
        the values breaking it (`examples`)."""
        rel = self.column.constraints.relationships
        if self.rule == "relationships" and rel and not run.warehouse.table_exists(rel.table):
            return self.result(
                None,
                description=f"the referenced table {rel.table} does not exist in the warehouse yet; materialize "
                "it, then run this table (or its checks) again",
            )
        query = self.query(run.rows)
        violations = run.warehouse.count_violations(query)
        samples: list[Any] = []
        if violations and self.rule != "not_null" and isinstance(run.warehouse, SliceReads):
            samples = run.warehouse.violation_samples(query, SAMPLES)
        return self.result(violations, samples)

    def result(
        self, violations: int | None, samples: Sequence[Any] = (), description: str | None = None
    ) -> AssetCheckResult:
        """The check's result: passed when `violations` is 0 (None: it could not be counted, `description` says
        why)."""
        return violation_result(
            self.name,
            self.severity,
            violations,
            [_shown(v) for v in samples],
            description or f"{violations} rows break `{self.rule}` on {self.column.name}",
            {"column": self.column.name},
        )


def column_checks(columns: list[Column]) -> list[ColumnCheck]:
    """One check for each constraint each column declares, named `<column>_<rule>`."""
    checks = []
    for column in columns:
        c = column.constraints
        declared = {
            "not_null": c.not_null,
            "unique": c.unique,
            "accepted_values": bool(c.accepted_values),
            "min": c.min is not None,
            "max": c.max is not None,
            "relationships": c.relationships is not None,
        }
        checks += [ColumnCheck(f"{column.name}_{rule}", column, rule) for rule in RULES if declared[rule]]
    return checks


def bound_value(value: Any, column_type: str) -> Any:
    """A `min`/`max` bound as the parameter the column compares with: a DATE column's date, a TIMESTAMP's aware
    UTC datetime, a DATETIME's naive one (a date is its midnight; a timestamp with an offset is read in UTC)."""
    if column_type not in ("DATETIME", "TIMESTAMP") or not isinstance(value, dt.date):
        return value
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.replace(tzinfo=dt.UTC) if column_type == "TIMESTAMP" else value


def selected(context: AssetExecutionContext, checks: Sequence[C]) -> list[C]:
    """The checks this step runs: those of `checks` the asset declares (its translator may leave some out) and
    the run selected with it."""
    names = {k.name for k in context.selected_asset_check_keys if k.asset_key == context.asset_key}
    return [c for c in checks if c.name in names]


def _describe(check: ColumnCheck) -> str:
    c, name = check.column.constraints, check.column.name
    if check.rule == "accepted_values":
        return f"{name} only holds {c.accepted_values}"
    if check.rule == "min":
        return f"{name} is at least {c.min}"
    if check.rule == "max":
        return f"{name} is at most {c.max}"
    if check.rule == "relationships" and c.relationships:
        return f"every {name} exists in {c.relationships.table}.{c.relationships.column}"
    return f"{name} is {check.rule.replace('_', ' ')}"


def run_checks(
    checks: Sequence[Check], warehouse: Warehouse, scope: TableSlice | CheckRun
) -> list[AssetCheckResult]:
    """Run each check over `scope`: the run's window of a partitioned table, else the whole table (a `CheckRun`
    also gives the run's windows and the previous counts the table-level checks compare with)."""
    run = scope if isinstance(scope, CheckRun) else CheckRun(warehouse, scope)
    return [check.evaluate(run) for check in checks]


def failed_checks_message(spec_file: Path | str, ref: str, results: Sequence[AssetCheckResult]) -> str | None:
    """One paragraph for the run's log when blocking checks failed: the spec file first, each failed check with
    a few offending values, and what to do; None when every blocking check passed."""
    failed = [r for r in results if not r.passed and r.severity == AssetCheckSeverity.ERROR]
    if not failed:
        return None
    return (
        f"{spec_file}: {ref}: {len(failed)} blocking check{'s' if len(failed) > 1 else ''} failed: "
        f"{_listed(failed)}. The rows were written; tables downstream wait. Fix the query (or the data it "
        "reads) or the column's constraints in the spec, then run this table again."
    )


def warned_checks_message(spec_file: Path | str, ref: str, results: Sequence[AssetCheckResult]) -> str | None:
    """One paragraph for the run's log (a warning) when `severity: warn` checks failed; None when none did."""
    failed = [r for r in results if not r.passed and r.severity == AssetCheckSeverity.WARN]
    if not failed:
        return None
    return (
        f"{spec_file}: {ref}: {len(failed)} warn check{'s' if len(failed) > 1 else ''} failed: {_listed(failed)}. "
        "They do not block: tables downstream run as usual. Fix the data or the check, or make it "
        "`severity: error` to stop the tables downstream."
    )


def _listed(failed: Sequence[AssetCheckResult]) -> str:
    parts = []
    for result in failed:
        examples = result.metadata.get("examples")
        value = examples.value if isinstance(examples, MetadataValue) else None
        shown = [str(v) for v in value] if isinstance(value, list) else []
        parts.append(
            f"{result.check_name}: {result.description}" + (f" (e.g. {', '.join(shown)})" if shown else "")
        )
    return "; ".join(parts)


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
