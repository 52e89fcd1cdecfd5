"""What a spec's SQL reads, outputs and needs, found with sqlglot; and its translation to other dialects.

Specs are written in BigQuery Standard SQL. The tables a query reads become the asset's dependencies, its output
columns are checked against the declared ones, and each output column's source columns become Dagster column
lineage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlglot import exp
    from sqlglot.optimizer.scope import Scope
    from sqlglot.schema import MappingSchema

# sqlglot (~0.5 s to import) is imported inside the functions that use it: a load whose analyses all come from
# the spec cache (`derive_assets.specs.cache`) never parses SQL, so it never imports sqlglot.

SPEC_DIALECT = "bigquery"
MAX_SQL_DEPTH = 256
"""Deeper syntax trees are refused: sqlglot's column resolution is quadratic in depth (5,000 chained ANDs took
over a minute) and recursive (a few hundred nested parentheses exhaust Python's stack)."""
TOO_DEEP = "the query nests parentheses, operators or subqueries too deeply to analyse"


def _too_deep(detail: str = "") -> str:
    return f"{TOO_DEEP}{detail}; flatten it, e.g. into CTEs (`WITH a AS (…), b AS (…) SELECT …`)"


WINDOW_PARAMETERS = ("window_start", "window_end")

Schema = dict[str, Any]
"""{dataset: {table: {column: type}}}, the shape sqlglot's optimizer takes."""


class SqlProblem(ValueError):
    """A problem with a spec's SQL, phrased for the spec's author."""


@dataclass(frozen=True)
class SqlAnalysis:
    """What a spec's query reads, uses and outputs.

    The plain fields are all a load needs, and all the spec cache stores; the sqlglot trees (`expression`,
    `qualified`, `schema`) are built on first use when the analysis came from the cache (a run transpiles its one
    query; a load of 2,500 cached specs parses none). Equality compares the plain fields only.
    """

    sql: str
    """The spec's SQL as written."""
    reads: list[str]
    """`dataset.name` of every table the query reads, sorted, CTE names excluded."""
    parameters: list[str]
    output_columns: list[str] = field(default_factory=list)
    """The query's output column names, in order (after `resolve_columns`; empty before)."""
    read_schema: Schema | None = None
    """The declared columns and types of the tables the query reads, as it was resolved against (after
    `resolve_columns`; None before)."""
    parsed: exp.Expr | None = field(default=None, repr=False, compare=False)
    """The parsed query when this load parsed it; None when the analysis came from the cache."""
    resolved: exp.Query | None = field(default=None, repr=False, compare=False)
    """The qualified query when this load resolved it."""
    normalized: str | None = field(default=None, repr=False, compare=False)
    """`normalized_sql`, when known without parsing (from the cache)."""
    window_columns: tuple[str, ...] = ()
    """`dataset.table.column` of each column the query filters on with a window parameter (`p.paid_at >=
    @window_start`, `DATE(o.created_at) < DATE(@window_end)`, `x BETWEEN @window_start AND @window_end`), traced
    through table aliases, CTEs and subqueries to the table read: the late-data sensor re-runs a window of this
    table when rows whose event time falls in it arrive late (`window_columns`)."""

    @cached_property
    def expression(self) -> exp.Expr:
        """The parsed query (parsed now if the analysis came from the cache; it parsed when it was cached)."""
        return self.parsed if self.parsed is not None else parse(self.sql)

    @cached_property
    def qualified(self) -> exp.Query | None:
        """The query with stars expanded and every column qualified (after `resolve_columns`)."""
        if self.resolved is not None:
            return self.resolved
        schema = self.schema
        return None if schema is None else _qualify(self.expression, schema)

    @cached_property
    def schema(self) -> MappingSchema | None:
        """`read_schema` as sqlglot's schema (after `resolve_columns`)."""
        if self.read_schema is None:
            return None
        from sqlglot.schema import MappingSchema

        return MappingSchema(self.read_schema, dialect=SPEC_DIALECT)

    @cached_property
    def normalized_sql(self) -> str:
        """The query as sqlglot regenerates it in BigQuery SQL without comments: what `code_version` hashes."""
        if self.normalized is not None:
            return self.normalized
        return self.expression.sql(SPEC_DIALECT, comments=False)

    @cached_property
    def lineage(self) -> dict[str, list[tuple[str, str]]]:
        """Output column -> [(`dataset.name`, column)] it is computed from.

        Computed on first use (when the asset runs), not at load time: tracing every column of 1,000 specs
        dominated the time to load definitions.
        """
        qualified, schema = self.qualified, self.schema
        if qualified is None or schema is None:
            return {}
        return _lineage(qualified, schema)


def parse(sql: str) -> exp.Expr:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

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
    except TokenError as exc:
        near = str(exc).removeprefix("Error tokenizing ").strip("'")[-60:]
        raise SqlProblem(
            "SQL does not parse as BigQuery Standard SQL: a string, `quoted name` or /* comment */ is not "
            f"closed (near '{near}')"
        ) from exc
    except RecursionError as exc:
        raise SqlProblem(_too_deep()) from exc
    statements = [e for e in expressions if e is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise SqlProblem(
            "sql must be exactly one SELECT query (WITH … SELECT is fine); no DDL/DML, no ';' lists"
        )
    return statements[0]


_FILE_OR_ENVIRONMENT = (
    "read_",
    "getenv",
    "glob",
    "external_query",
    "sqlite_",
    "postgres_",
    "mysql_",
    "parquet_",
)
"""Functions (by name prefix) that reach files, the environment or other databases, wherever they appear."""


def forbidden_sources(expression: exp.Expr) -> list[str]:
    """What a query reads besides `dataset.name` tables: table functions, file paths, other projects."""
    from sqlglot import exp

    problems = []
    reported: set[int] = set()
    for table in expression.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            reported.add(id(table.this))
            problems.append(
                f"table functions and file access are not allowed: {_function_name(table.this)}(…) in FROM; "
                "a spec's query reads only tables, as `dataset.name` (sources and other specs)"
            )
        elif any(ch in table.name for ch in "/\\") or table.name.startswith("~"):
            problems.append(
                f"file access is not allowed: '{table.name}' is a path; a spec's query reads only tables, as "
                "`dataset.name`"
            )
        elif table.catalog:
            problems.append(
                f"refer to tables as `dataset.name`, without a project: the warehouse's project is configured, "
                f"not written in specs (got '{table.catalog}.{table.db}.{table.name}')"
            )
    for function in expression.find_all(exp.Func):
        name = _function_name(function)
        if id(function) not in reported and name.lower().startswith(_FILE_OR_ENVIRONMENT):
            problems.append(
                f"function {name} is not allowed: table functions and file, environment or external database "
                "access cannot be used in spec SQL; a spec's query reads only tables, as `dataset.name`"
            )
    return list(dict.fromkeys(problems))  # the same function used twice is one problem


_QUOTED_PARAMETER = re.compile(r"@(window_start|window_end)\b")


def quoted_parameters(expression: exp.Expr) -> list[str]:
    """Window parameters written inside a string (`'@window_end'`, `TIMESTAMP '@window_start'`).

    BigQuery never substitutes a parameter inside a string: `ts < '@window_end'` compares with the text
    `@window_end` (an error, or on DuckDB an implicit cast that fails at run time), so the filter the author meant
    is not there.
    """
    from sqlglot import exp

    time_types = (exp.DType.DATE, exp.DType.DATETIME, exp.DType.TIMESTAMP, exp.DType.TIMESTAMPTZ)
    problems = []
    for literal in expression.find_all(exp.Literal, exp.RawString, bfs=False):  # in the order written
        if isinstance(literal, exp.Literal) and not literal.is_string:
            continue
        text = str(literal.this)
        for name in dict.fromkeys(m[1] for m in _QUOTED_PARAMETER.finditer(text)):
            written = f"'{text}'" if len(text) <= 60 else f"'{text[:57]}...'"
            parent = literal.parent
            if isinstance(parent, exp.Cast) and parent.this is literal and parent.to.is_type(*time_types):
                kind = parent.to.sql(SPEC_DIALECT)
                written = f"{kind} {written}"
                fix = (
                    f"write @{name} without quotes (it is already a TIMESTAMP)"
                    if kind == "TIMESTAMP"
                    else f"write @{name} without quotes, as {kind}(@{name})"
                )
            else:
                fix = f"write @{name} without quotes"
            problems.append(
                f"{written} is a string, not the parameter (parameters are never replaced inside quotes); {fix}"
            )
    return list(dict.fromkeys(problems))


def _function_name(node: exp.Expr) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    if isinstance(node, exp.Func):
        return node.sql_name()
    return type(node).__name__.upper()


def _depth(expression: exp.Expr) -> int:
    """How deep the syntax tree goes, walked without recursion (`a AND b AND …` nests one level per AND)."""
    deepest = 0
    pending = [(expression, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in node.iter_expressions())
    return deepest


def referenced_tables(expression: exp.Expr) -> list[str]:
    from sqlglot import exp

    ctes = {cte.alias_or_name for cte in expression.find_all(exp.CTE)}
    refs = set()
    for table in expression.find_all(exp.Table):
        if not table.db and table.name in ctes:
            continue
        refs.add(f"{table.db}.{table.name}" if table.db else table.name)
    return sorted(refs)


def parameters(expression: exp.Expr) -> list[str]:
    from sqlglot import exp

    names = set()
    for param in expression.find_all(exp.Parameter):
        names.add(param.name)
    for placeholder in expression.find_all(exp.Placeholder):
        names.add(placeholder.name or "?")
    return sorted(names)


_FILTERS = ("Where", "Join", "Having", "Qualify")
"""The clauses in which a comparison with a window parameter filters rows (not a SELECT list's CASE WHEN)."""


def window_columns(expression: exp.Expr) -> tuple[str, ...]:
    """`dataset.table.column` of every column a filter compares with `@window_start` or `@window_end`, sorted.

    A comparison counts when one side holds the column (possibly inside functions or casts: `DATE(p.paid_at)`)
    and no parameter, and the other side holds a window parameter. The column is traced through its table alias
    to the table read, or through a CTE's or subquery's output column to what that one reads. An unqualified
    column is traced when its SELECT reads one table; with several, qualify it with its alias.
    """
    from sqlglot.errors import SqlglotError
    from sqlglot.optimizer.scope import traverse_scope

    try:
        scopes = traverse_scope(expression)
    except (SqlglotError, RecursionError):
        return ()  # informative, like lineage: a construct the scope walk cannot follow must not block loading
    found: set[str] = set()
    for scope in scopes:
        for column in scope.columns:
            if _compared_with_window(column):
                found.update(_trace(scope, column.table, column.name))
    return tuple(sorted(found))


def _compared_with_window(column: exp.Column) -> bool:
    from sqlglot import exp

    filters = tuple(getattr(exp, name) for name in _FILTERS)
    node: exp.Expr = column
    while node.parent is not None and not isinstance(node.parent, exp.Predicate | exp.Select):
        if isinstance(node.parent, exp.Connector | exp.Not | exp.Subquery):
            return False  # a whole operand of AND/OR, or a subquery's output: not compared here
        node = node.parent
    predicate = node.parent
    if not isinstance(predicate, exp.Predicate) or _has_window_parameter(node):
        return False
    if not isinstance(predicate.find_ancestor(exp.Select, *filters), filters):
        return False  # in a SELECT list (`CASE WHEN ts < @window_end`), not a filter
    return any(_has_window_parameter(o) for o in predicate.iter_expressions() if o is not node)


def _has_window_parameter(node: exp.Expr) -> bool:
    from sqlglot import exp

    return any(p.name in WINDOW_PARAMETERS for p in node.find_all(exp.Parameter))


def _trace(scope: Scope, alias: str, name: str, depth: int = 0) -> set[str]:
    """Where `alias.name` in `scope` comes from, as `dataset.table.column` refs (none when it cannot be told)."""
    from sqlglot import exp

    sources = scope.selected_sources
    if depth > MAX_SQL_DEPTH or (not alias and len(sources) != 1):
        return set()
    found = sources.get(alias or next(iter(sources)))
    if found is None:
        return set()
    source = found[1]
    if isinstance(source, exp.Table):
        return {f"{source.db}.{source.name}.{name}"} if source.db else set()
    refs: set[str] = set()
    for branch in source.union_scopes or [source]:
        for select in getattr(branch.expression, "selects", []):
            target = select.this if isinstance(select, exp.Alias) else select
            if select.alias_or_name == name and isinstance(target, exp.Column):
                refs |= _trace(branch, target.table, target.name, depth + 1)
    return refs


def analyse(sql: str) -> SqlAnalysis:
    """Parse a query and find what it reads and which parameters it uses (no schema needed)."""
    expression = parse(sql)
    depth = _depth(expression)
    if depth > MAX_SQL_DEPTH:
        raise SqlProblem(_too_deep(f" ({depth:,} levels; at most {MAX_SQL_DEPTH})"))
    problems = forbidden_sources(expression) + quoted_parameters(expression)
    if problems:
        raise SqlProblem("\n".join(problems))  # one problem per line
    return SqlAnalysis(
        sql,
        referenced_tables(expression),
        parameters(expression),
        parsed=expression,
        window_columns=window_columns(expression),
    )


def resolve_columns(analysis: SqlAnalysis, schema: Schema) -> SqlAnalysis:
    """Expand stars and qualify columns against known tables to get output columns and their lineage.

    Only the tables this query reads go into the sqlglot schema, built once: normalizing the whole project's schema
    for every query (and every column) made loading 1,000 specs take minutes.
    """
    from sqlglot.schema import MappingSchema

    reads = read_schema(analysis.reads, schema)
    qualified = _qualify(analysis.expression, MappingSchema(reads, dialect=SPEC_DIALECT))
    return resolved(analysis, list(qualified.named_selects), reads, qualified)


def read_schema(refs: list[str], schema: Schema) -> Schema:
    """The part of `schema` that the tables `refs` (`dataset.name`) are in: what a query is resolved against."""
    reads: Schema = {}
    for ref in refs:
        dataset, _, name = ref.partition(".")
        if name in schema.get(dataset, {}):
            reads.setdefault(dataset, {})[name] = schema[dataset][name]
    return reads


def resolved(
    analysis: SqlAnalysis, outputs: list[str], reads: Schema, qualified: exp.Query | None = None
) -> SqlAnalysis:
    """`analysis` resolved against `reads`, with these output columns (`resolve_columns`, or the spec cache)."""
    return SqlAnalysis(
        analysis.sql,
        analysis.reads,
        analysis.parameters,
        outputs,
        reads,
        parsed=analysis.parsed,
        resolved=qualified,
        normalized=analysis.normalized,
        window_columns=analysis.window_columns,
    )


def _qualify(expression: exp.Expr, mapping: MappingSchema) -> exp.Query:
    from sqlglot import exp
    from sqlglot.errors import OptimizeError
    from sqlglot.optimizer.qualify import qualify

    try:
        qualified = qualify(
            expression.copy(), schema=mapping, dialect=SPEC_DIALECT, validate_qualify_columns=True
        )
    except OptimizeError as exc:
        raise SqlProblem(f"cannot resolve the query's columns: {exc}") from exc
    except RecursionError as exc:
        raise SqlProblem(_too_deep()) from exc
    assert isinstance(qualified, exp.Query)
    return qualified


def _lineage(qualified: exp.Query, mapping: MappingSchema) -> dict[str, list[tuple[str, str]]]:
    """Output column -> the source columns it is computed from; all columns in one pass over one scope."""
    from sqlglot import exp
    from sqlglot.errors import SqlglotError
    from sqlglot.lineage import lineage
    from sqlglot.optimizer.scope import build_scope

    try:
        nodes = lineage(None, qualified, schema=mapping, dialect=SPEC_DIALECT, scope=build_scope(qualified))
    except (SqlglotError, RecursionError):
        return {}  # lineage is informative; a construct sqlglot cannot trace must not block loading
    result: dict[str, list[tuple[str, str]]] = {}
    for column, node in nodes.items():
        deps = set()
        for leaf in node.walk():
            if leaf.downstream or not isinstance(leaf.source, exp.Table):
                continue
            table = leaf.source
            deps.add((f"{table.db}.{table.name}", leaf.name.split(".")[-1].strip('"`')))
        result[column] = sorted(deps)
    return result


def transpile(expression: exp.Expr, dialect: str) -> str:
    """Render the query in a warehouse's dialect; parameters stay parameters (`$name` in DuckDB)."""
    import sqlglot
    from sqlglot.errors import SqlglotError

    if dialect == SPEC_DIALECT:
        return expression.sql(SPEC_DIALECT, pretty=True)
    try:
        return expression.sql(dialect, pretty=True, unsupported_level=sqlglot.ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise SqlProblem(f"the query cannot be translated to {dialect}: {exc}") from exc
    except RecursionError as exc:
        raise SqlProblem(_too_deep()) from exc
