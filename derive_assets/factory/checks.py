"""Column constraints become asset checks that run in the warehouse after each materialization."""

from __future__ import annotations

from dataclasses import dataclass

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey

from derive_assets.specs.models import Column
from resources.reads import CheckKind, CheckQuery, TableSlice
from resources.warehouse import Warehouse


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

    def result(self, violations: int) -> AssetCheckResult:
        return AssetCheckResult(
            check_name=self.name,
            passed=violations == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"violations": violations, "column": self.column.name},
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


def _describe(check: ColumnCheck) -> str:
    if check.rule == "accepted_values":
        return f"{check.column.name} only holds {check.column.constraints.accepted_values}"
    return f"{check.column.name} is {check.rule.replace('_', ' ')}"


def run_checks(checks: list[ColumnCheck], warehouse: Warehouse, scope: TableSlice) -> list[AssetCheckResult]:
    """Run each check over `scope`: the run's window of a partitioned table, else the whole table."""
    return [check.result(warehouse.count_violations(check.query(scope))) for check in checks]
