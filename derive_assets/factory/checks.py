"""Column constraints become asset checks that run in the warehouse after each materialization."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MetadataValue,
)

from derive_assets.specs.models import Column
from resources.reads import CheckKind, CheckQuery, SliceReads, TableSlice
from resources.warehouse import Warehouse

SAMPLES = 5
"""How many of the values breaking a failed check its result shows."""


@dataclass(frozen=True)
class ColumnCheck:
    name: str
    column: Column
    rule: CheckKind

    def spec(self, key: AssetKey) -> AssetCheckSpec:
        return AssetCheckSpec(
            self.name,
            asset=key,
            blocking=True,
            description=_describe(self),
            metadata={"column": self.column.name},
        )

    def query(self, scope: TableSlice) -> CheckQuery:
        """The count of violating rows over `scope` (`unique` looks at the whole table; see `CheckQuery`)."""
        values = (
            tuple(self.column.constraints.accepted_values or ()) if self.rule == "accepted_values" else ()
        )
        return CheckQuery(self.rule, self.column.name, scope, values)

    def result(self, violations: int, samples: Sequence[Any] = ()) -> AssetCheckResult:
        metadata: dict[str, Any] = {"violations": violations, "column": self.column.name}
        if samples:
            metadata["examples"] = [_shown(v) for v in samples]
        return AssetCheckResult(
            check_name=self.name,
            passed=violations == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=None
            if violations == 0
            else f"{violations} rows break `{self.rule}` on {self.column.name}",
        )


def column_checks(columns: list[Column]) -> list[ColumnCheck]:
    checks = []
    for column in columns:
        c = column.constraints
        if c.not_null:
            checks.append(ColumnCheck(f"{column.name}_not_null", column, "not_null"))
        if c.unique:
            checks.append(ColumnCheck(f"{column.name}_unique", column, "unique"))
        if c.accepted_values:
            checks.append(ColumnCheck(f"{column.name}_accepted_values", column, "accepted_values"))
    return checks


def selected(context: AssetExecutionContext, checks: list[ColumnCheck]) -> list[ColumnCheck]:
    """The checks this step runs: those of `checks` the asset declares (its translator may leave some out) and
    the run selected with it."""
    names = {k.name for k in context.selected_asset_check_keys if k.asset_key == context.asset_key}
    return [c for c in checks if c.name in names]


def _describe(check: ColumnCheck) -> str:
    if check.rule == "accepted_values":
        return f"{check.column.name} only holds {check.column.constraints.accepted_values}"
    return f"{check.column.name} is {check.rule.replace('_', ' ')}"


def run_checks(checks: list[ColumnCheck], warehouse: Warehouse, scope: TableSlice) -> list[AssetCheckResult]:
    """Run each check over `scope`: the run's window of a partitioned table, else the whole table. A failed
    `accepted_values` or `unique` check also reads a few of the values breaking it (`examples`)."""
    results = []
    for check in checks:
        query = check.query(scope)
        violations = warehouse.count_violations(query)
        samples: list[Any] = []
        if violations and check.rule != "not_null" and isinstance(warehouse, SliceReads):
            samples = warehouse.violation_samples(query, SAMPLES)
        results.append(check.result(violations, samples))
    return results


def failed_checks_message(spec_file: Path | str, ref: str, results: Sequence[AssetCheckResult]) -> str | None:
    """One paragraph for the run's log when blocking checks failed: the spec file first, each failed check with
    a few offending values, and what to do; None when every check passed."""
    failed = [r for r in results if not r.passed]
    if not failed:
        return None
    parts = []
    for result in failed:
        examples = result.metadata.get("examples")
        value = examples.value if isinstance(examples, MetadataValue) else None
        shown = [str(v) for v in value] if isinstance(value, list) else []
        parts.append(
            f"{result.check_name}: {result.description}" + (f" (e.g. {', '.join(shown)})" if shown else "")
        )
    return (
        f"{spec_file}: {ref}: {len(failed)} blocking check{'s' if len(failed) > 1 else ''} failed: "
        f"{'; '.join(parts)}. The rows were written; tables downstream wait. Fix the query (or the data it "
        "reads) or the column's constraints in the spec, then run this table again."
    )


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
