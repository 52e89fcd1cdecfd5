"""Table-level checks of a spec's `checks:` block that run in the asset's own step: `row_count` and custom `sql`.

- `row_count` (check `row_count`): the rows of each window the run wrote (a partitioned table; else of the whole
  table) lie within `min`..`max`, and differ from the window before by at most `max_change_percent`. The previous
  window is counted **in the warehouse**, with the same window predicate as the current one, not read from the
  event log: a single-run backfill writes many windows in one step and records their materializations only when
  the step ends, so the window before one of them has no event yet; and the warehouse says what the window holds
  now (after a rebuild, a `delete_missing` merge, or a table loaded outside Dagster), which is what a change is
  measured against. A previous window without rows (not built yet) is not compared; `min: 1` catches empty
  windows. A table without windows compares with its `dagster/row_count` at its previous materialization (the
  event log is the only record of the table's earlier size).
- custom `sql` checks (check `<name>`): the query returns the violating rows; `SELECT count(*) FROM (<query>)`
  runs in the warehouse, in its dialect, with `@window_start`/`@window_end` bound to the run's window.

Freshness checks are not run in the step (a stale table has no run): see `freshness.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    PartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

from derive_assets import metadata_keys as K
from derive_assets.factory.checks import (
    SAMPLES,
    Check,
    CheckRun,
    column_checks,
    dagster_severity,
    violation_result,
)
from derive_assets.specs.models import CheckSeverity, Column, RowCountCheck, SqlCheck, TableChecks
from resources.reads import SliceReads, SqlCheckQuery, TableSlice, WindowBound
from resources.schema import ColumnType
from resources.warehouse import TimeWindow, Warehouse

ROW_COUNT = "row_count"
"""The name of the `row_count` check."""


def asset_checks(columns: list[Column], checks: TableChecks, spec_file: Path | str) -> list[Check]:
    """Every check a table's (or a source table's) step runs: its column checks, then `row_count`, then the
    custom `sql` checks, in the order the spec declares them."""
    found: list[Check] = [*column_checks(columns)]
    if checks.row_count is not None:
        found.append(RowCount(checks.row_count))
    found += [CustomSql(c, spec_file) for c in checks.sql]
    return found


@dataclass(frozen=True)
class RowCount:
    rule: RowCountCheck
    name: str = ROW_COUNT

    @property
    def severity(self) -> CheckSeverity:
        return self.rule.severity

    def spec(self, key: AssetKey) -> AssetCheckSpec:
        return AssetCheckSpec(
            self.name,
            asset=key,
            blocking=self.severity == "error",
            description=_describe_row_count(self.rule),
        )

    def evaluate(self, run: CheckRun) -> AssetCheckResult:
        problems: list[str] = []
        counts: dict[str, int] = {}
        bound = run.rows.window
        if bound is None:
            count = run.warehouse.row_count(run.rows.ref)
            counts["table"] = count
            previous = run.previous_row_count() if self.rule.max_change_percent is not None else None
            problems += self._problems("the table", count, previous)
        else:
            for w in run.windows or (bound.window,):
                count = _count(run.warehouse, run.rows, bound, w)
                counts[w.start.isoformat()] = count
                before = run.previous_window(w)
                previous = None
                if self.rule.max_change_percent is not None and before is not None:
                    previous = _count(run.warehouse, run.rows, bound, before)
                problems += self._problems(f"window {w.start.isoformat()}", count, previous)
        metadata: dict[str, Any] = {"row_counts": counts}
        return AssetCheckResult(
            check_name=self.name,
            passed=not problems,
            severity=dagster_severity(self.severity),
            metadata=metadata,
            description="; ".join(problems) if problems else None,
        )

    def _problems(self, what: str, count: int, previous: int | None) -> list[str]:
        rule, problems = self.rule, []
        if rule.min is not None and count < rule.min:
            problems.append(f"{what} has {count:,} rows, fewer than min {rule.min:,}")
        if rule.max is not None and count > rule.max:
            problems.append(f"{what} has {count:,} rows, more than max {rule.max:,}")
        if (
            rule.max_change_percent is not None and previous
        ):  # no rows before (not built yet): nothing to compare
            change = abs(count - previous) * 100 / previous
            if change > rule.max_change_percent:
                problems.append(
                    f"{what} has {count:,} rows, {change:.1f}% {'more' if count > previous else 'fewer'} than "
                    f"the {previous:,} before it (max_change_percent {rule.max_change_percent:g})"
                )
        return problems


def _count(warehouse: Warehouse, rows: TableSlice, bound: WindowBound, window: TimeWindow) -> int:
    return warehouse.count_slice(TableSlice(rows.ref, window=WindowBound(bound.column, bound.type, window)))


def _describe_row_count(rule: RowCountCheck) -> str:
    parts = []
    if rule.min is not None:
        parts.append(f"at least {rule.min:,} rows")
    if rule.max is not None:
        parts.append(f"at most {rule.max:,} rows")
    if rule.max_change_percent is not None:
        parts.append(f"within ±{rule.max_change_percent:g}% of the previous window")
    return "Each window (or the table) has " + ", ".join(parts)


@dataclass(frozen=True)
class CustomSql:
    rule: SqlCheck
    spec_file: Path | str

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def severity(self) -> CheckSeverity:
        return self.rule.severity

    def spec(self, key: AssetKey) -> AssetCheckSpec:
        from derive_assets.specs.sql_analysis import SqlProblem, analyse

        try:
            reads = analyse(self.rule.query).reads
        except SqlProblem:  # refused when the project loaded; only a hand-built spec gets here
            reads = []
        own = "/".join(key.path)
        return AssetCheckSpec(
            self.name,
            asset=key,
            blocking=self.severity == "error",
            description=self.rule.description
            or f"the query returns no rows: {self.rule.query.strip()[:200]}",
            metadata={"query": self.rule.query.strip()},
            additional_deps=[AssetKey(r.split(".")) for r in reads if r.replace(".", "/") != own] or None,
        )

    def evaluate(self, run: CheckRun) -> AssetCheckResult:
        from sqlglot import exp

        from derive_assets.specs.sql_analysis import SqlProblem, analyse

        try:
            analysis = analyse(self.rule.query)
        except SqlProblem as exc:  # refused when the project loaded; only a hand-built spec gets here
            return self._result(None, (), f"{self.spec_file}: checks.sql {self.name}: {exc}")
        from derive_assets.factory.environment import rewrite_tables

        expression = rewrite_tables(analysis.expression, run.relations)
        assert isinstance(expression, exp.Query), "analyse() accepts only queries"
        params = {k: v for k, v in run.params.items() if k in analysis.parameters}
        check = SqlCheckQuery(expression, params)
        violations = run.warehouse.count_sql_violations(check)
        samples: list[tuple[Any, ...]] = []
        if violations and isinstance(run.warehouse, SliceReads):
            samples = run.warehouse.sql_violation_samples(check, SAMPLES)
        return self._result(violations, samples)

    def _result(
        self, violations: int | None, samples: Sequence[tuple[Any, ...]], why: str | None = None
    ) -> AssetCheckResult:
        what = self.rule.description or "the check's query"
        return violation_result(
            self.name,
            self.severity,
            violations,
            [", ".join(str(v) for v in row) for row in samples],
            why or f"{violations} rows break {what}",
        )


def check_run(
    context: AssetExecutionContext,
    warehouse: Warehouse,
    rows: TableSlice,
    windows: Sequence[TimeWindow],
    params: dict[str, Any],
    relations: Mapping[str, str] | None = None,
) -> CheckRun:
    """The `CheckRun` of a table asset's step: `rows` (its window or the whole table), each window of the run, the
    window before one (from the asset's partitions), and its previous row count (from the event log)."""
    partitions_def = _partitions_def(context)
    run_windows = tuple(windows) or ((rows.window.window,) if rows.window else ())

    def previous_window(window: TimeWindow) -> TimeWindow | None:
        if not isinstance(partitions_def, TimeWindowPartitionsDefinition):
            return None
        before = partitions_def.get_prev_partition_window(window.start)
        return TimeWindow(before.start, before.end) if before else None

    def previous_row_count() -> int | None:
        event = context.instance.get_latest_materialization_event(context.asset_key)
        materialization = event.asset_materialization if event else None
        value = materialization.metadata.get(K.ROW_COUNT) if materialization else None
        count = getattr(value, "value", None)
        return count if isinstance(count, int) else None

    return CheckRun(
        warehouse, rows, run_windows, previous_window, previous_row_count, params, dict(relations or {})
    )


def _partitions_def(context: AssetExecutionContext) -> PartitionsDefinition | None:
    return context.assets_def.partitions_def if context.has_partition_key else None


def window_rows(
    ref: str, columns: list[Column], partition_key: str | None, window: TimeWindow | None
) -> TableSlice:
    """The rows a run's checks cover: the run's window of a partitioned table, else the whole table."""
    if window is None or partition_key is None:
        return TableSlice(ref)
    key_type: ColumnType = next(c.type for c in columns if c.name == partition_key)
    return TableSlice(ref, window=WindowBound(partition_key, key_type, window))
