"""Column constraints become asset checks that run in the warehouse after each materialization."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey

from derive_assets.specs.models import Column
from resources.sql_text import quote, table_name


@dataclass(frozen=True)
class ColumnCheck:
    name: str
    column: Column
    rule: str  # not_null | unique | accepted_values

    def spec(self, key: AssetKey) -> AssetCheckSpec:
        return AssetCheckSpec(
            self.name,
            asset=key,
            blocking=True,
            description=_describe(self),
            metadata={"column": self.column.name},
        )

    def sql(self, ref: str, dialect: str, window_filter: str) -> tuple[str, dict[str, Any]]:
        """A query returning the number of violating rows (bound parameters for accepted values)."""
        col = quote(self.column.name, dialect)
        tbl = table_name(ref, dialect)
        where = f" AND {window_filter}" if window_filter else ""
        if self.rule == "not_null":
            return f"SELECT count(*) FROM {tbl} WHERE {col} IS NULL{where}", {}
        if self.rule == "unique":
            return (
                f"SELECT count(*) FROM (SELECT {col} FROM {tbl} WHERE {col} IS NOT NULL "
                f"GROUP BY {col} HAVING count(*) > 1)",
                {},
            )
        values = self.column.constraints.accepted_values or []
        params = {f"v{i}": v for i, v in enumerate(values)}
        placeholders = ", ".join(("$" if dialect == "duckdb" else "@") + p for p in params)
        return (
            f"SELECT count(*) FROM {tbl} WHERE {col} IS NOT NULL AND {col} NOT IN ({placeholders}){where}",
            params,
        )

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


def run_checks(
    checks: list[ColumnCheck], warehouse: Any, ref: str, window_filter: str, window_params: Mapping[str, Any]
) -> list[AssetCheckResult]:
    results = []
    for check in checks:
        sql, params = check.sql(ref, warehouse.dialect, window_filter)
        used = {**params, **(window_params if window_filter and check.rule != "unique" else {})}
        results.append(check.result(warehouse.count_violations(sql, used)))
    return results
