"""What a spec's SQL reads, outputs and needs, found with sqlglot; and its translation to other dialects.

Specs are written in BigQuery Standard SQL. The tables a query reads become the asset's dependencies, its output
columns are checked against the declared ones, and each output column's source columns become Dagster column
lineage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError
from sqlglot.lineage import lineage
from sqlglot.optimizer.qualify import qualify

SPEC_DIALECT = "bigquery"
WINDOW_PARAMETERS = ("window_start", "window_end")

Schema = dict[str, Any]
"""{dataset: {table: {column: type}}}, the shape sqlglot's optimizer takes."""


class SqlProblem(ValueError):
    """A problem with a spec's SQL, phrased for the spec's author."""


@dataclass(frozen=True)
class SqlAnalysis:
    expression: exp.Expr
    reads: list[str]
    """`dataset.name` of every table the query reads, sorted, CTE names excluded."""
    parameters: list[str]
    output_columns: list[str] = field(default_factory=list)
    lineage: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Output column -> [(`dataset.name`, column)] it is computed from."""


def parse(sql: str) -> exp.Expr:
    try:
        expressions = sqlglot.parse(sql, read=SPEC_DIALECT)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f"line {first.get('line')}, column {first.get('col')}: " if first else ""
        near = (first.get("start_context", "") + first.get("highlight", "")).strip()
        near = near.splitlines()[-1].strip() if near else near  # the offending line, not the whole query
        raise SqlProblem(
            f"{where}SQL does not parse as BigQuery Standard SQL ({first.get('description', exc)}) near '{near}'"
        ) from exc
    statements = [e for e in expressions if e is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise SqlProblem(
            "sql must be exactly one SELECT query (WITH … SELECT is fine); no DDL/DML, no ';' lists"
        )
    return statements[0]


def referenced_tables(expression: exp.Expr) -> list[str]:
    ctes = {cte.alias_or_name for cte in expression.find_all(exp.CTE)}
    refs = set()
    for table in expression.find_all(exp.Table):
        if not table.db and table.name in ctes:
            continue
        refs.add(f"{table.db}.{table.name}" if table.db else table.name)
    return sorted(refs)


def parameters(expression: exp.Expr) -> list[str]:
    names = set()
    for param in expression.find_all(exp.Parameter):
        names.add(param.name)
    for placeholder in expression.find_all(exp.Placeholder):
        names.add(placeholder.name or "?")
    return sorted(names)


def analyse(sql: str) -> SqlAnalysis:
    """Parse a query and find what it reads and which parameters it uses (no schema needed)."""
    expression = parse(sql)
    return SqlAnalysis(expression, referenced_tables(expression), parameters(expression))


def resolve_columns(analysis: SqlAnalysis, schema: Schema) -> SqlAnalysis:
    """Expand stars and qualify columns against known tables to get output columns and their lineage."""
    try:
        qualified = qualify(
            analysis.expression.copy(), schema=schema, dialect=SPEC_DIALECT, validate_qualify_columns=True
        )
    except OptimizeError as exc:
        raise SqlProblem(f"cannot resolve the query's columns: {exc}") from exc
    assert isinstance(qualified, exp.Query)
    outputs = list(qualified.named_selects)
    column_lineage: dict[str, list[tuple[str, str]]] = {}
    for column in outputs:
        try:
            node = lineage(column, qualified, schema=schema, dialect=SPEC_DIALECT)
        except SqlglotError:
            continue  # lineage is informative; a construct sqlglot cannot trace must not block loading
        deps = set()
        for leaf in node.walk():
            if leaf.downstream or not isinstance(leaf.source, exp.Table):
                continue
            table = leaf.source
            deps.add((f"{table.db}.{table.name}", leaf.name.split(".")[-1].strip('"`')))
        column_lineage[column] = sorted(deps)
    return SqlAnalysis(analysis.expression, analysis.reads, analysis.parameters, outputs, column_lineage)


def transpile(expression: exp.Expr, dialect: str) -> str:
    """Render the query in a warehouse's dialect; parameters stay parameters (`$name` in DuckDB)."""
    if dialect == SPEC_DIALECT:
        return expression.sql(SPEC_DIALECT, pretty=True)
    try:
        return expression.sql(dialect, pretty=True, unsupported_level=sqlglot.ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise SqlProblem(f"the query cannot be translated to {dialect}: {exc}") from exc
