"""Declared column types against the types the SQL computes: a lossy or impossible conversion is a spec error.

Every run casts the query's output to the declared types (`resources.sql_text.cast_select`), so a mismatch never
fails loudly: `SUM(amount)` (NUMERIC) declared INT64 silently stored `141428` for `141427.83`, and `COUNT(*)`
declared TIMESTAMP failed only at run time, in the warehouse, without naming the spec. This module decides, for
each (computed, declared) pair, whether the cast is harmless:

| computed \\ declared | allowed without a CAST                          | lossy (values change)   |
| ------------------- | ----------------------------------------------- | ----------------------- |
| INT64               | NUMERIC, FLOAT64, STRING                        |                         |
| NUMERIC             | FLOAT64, STRING                                 | INT64                   |
| FLOAT64             | STRING                                          | INT64, NUMERIC          |
| DATE                | DATETIME, TIMESTAMP (midnight UTC), STRING      |                         |
| DATETIME            | TIMESTAMP (read as UTC), STRING                 | DATE                    |
| TIMESTAMP           | DATETIME (its UTC wall-clock time), STRING      | DATE                    |
| BOOL                | STRING                                          |                         |
| NULL (a bare NULL)  | anything                                        |                         |

Every other pair is *impossible*: the warehouse cannot, or should not silently, turn one into the other (INT64 ->
TIMESTAMP, STRING -> INT64, BOOL -> DATE, JSON -> STRING, BYTES -> STRING, an ARRAY or STRUCT into anything).
TIMESTAMP <-> DATETIME passes because Derive runs in UTC on both warehouses: no value changes, only the label.
INT64 -> FLOAT64 and NUMERIC -> FLOAT64 pass as the widenings BigQuery itself applies (a FLOAT64 holds integers
exactly up to 2^53). An explicit `CAST(... AS <declared>)` in the SQL is the author's decision: its type is then
the declared one, so it always passes.

The computed type comes from two places, because specs are BigQuery SQL checked on DuckDB: the DuckDB bind of the
translated query (`derive_assets.specs.duckdb_check`), and sqlglot's type annotation of the BigQuery query. They
disagree where the translation changes a type (BigQuery's `AVG(numeric)` is NUMERIC, DuckDB's is DOUBLE;
`DATE_TRUNC(date, MONTH)` is a DATE in BigQuery, a TIMESTAMP in DuckDB), so a column is refused only when both
refuse it, or when DuckDB refuses it and sqlglot cannot tell its type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.scope import Scope, build_scope

from derive_assets.specs.errors import SpecError
from derive_assets.specs.sql_analysis import SPEC_DIALECT, SqlAnalysis

Conversion = Literal["same", "widening", "lossy", "impossible"]

NULL = "NULL"
"""The type of a bare `NULL` (DuckDB binds it as INTEGER; the check looks at the expression instead)."""

_WIDENINGS: dict[str, set[str]] = {
    "INT64": {"NUMERIC", "FLOAT64", "STRING"},
    "NUMERIC": {"FLOAT64", "STRING"},
    "BIGNUMERIC": {"FLOAT64", "STRING"},
    "FLOAT64": {"STRING"},
    "DATE": {"DATETIME", "TIMESTAMP", "STRING"},
    "DATETIME": {"TIMESTAMP", "STRING"},
    "TIMESTAMP": {"DATETIME", "STRING"},
    "BOOL": {"STRING"},
    "TIME": {"STRING"},
    "INTERVAL": {"STRING"},
}
_LOSSY: dict[str, set[str]] = {
    "NUMERIC": {"INT64"},
    "BIGNUMERIC": {"INT64", "NUMERIC"},
    "FLOAT64": {"INT64", "NUMERIC"},
    "DATETIME": {"DATE"},
    "TIMESTAMP": {"DATE"},
}
_WHAT_IS_LOST = {
    ("NUMERIC", "INT64"): "every value would be rounded to a whole number",
    ("BIGNUMERIC", "INT64"): "every value would be rounded to a whole number",
    ("BIGNUMERIC", "NUMERIC"): "digits beyond NUMERIC's 38 (9 after the point) would be lost",
    ("FLOAT64", "INT64"): "every value would be rounded to a whole number",
    ("FLOAT64", "NUMERIC"): "digits beyond the 9th after the point would be lost, and values over 10^29 fail",
    ("DATETIME", "DATE"): "the time of day would be dropped",
    ("TIMESTAMP", "DATE"): "the time of day would be dropped",
}
_CONVERSIONS = {
    # computed -> declared: how to write it in the SQL when a CAST is not how BigQuery converts it.
    ("INT64", "TIMESTAMP"): "TIMESTAMP_SECONDS(<expr>) (or _MILLIS/_MICROS)",
    ("STRING", "JSON"): "PARSE_JSON(<expr>)",
    ("JSON", "STRING"): "TO_JSON_STRING(<expr>) (or JSON_VALUE(<expr>) for a JSON string)",
    ("BYTES", "STRING"): "TO_HEX(<expr>) (or TO_BASE64)",
    ("ARRAY", "JSON"): "TO_JSON(<expr>)",
    ("STRUCT", "JSON"): "TO_JSON(<expr>)",
    ("ARRAY", "STRING"): "TO_JSON_STRING(<expr>) (or ARRAY_TO_STRING(<expr>, ','))",
    ("STRUCT", "STRING"): "TO_JSON_STRING(<expr>)",
    ("INT64", "JSON"): "TO_JSON(<expr>)",
    ("NUMERIC", "JSON"): "TO_JSON(<expr>)",
    ("FLOAT64", "JSON"): "TO_JSON(<expr>)",
    ("BOOL", "JSON"): "TO_JSON(<expr>)",
}
_CASTABLE = {
    ("STRING", t) for t in ("INT64", "NUMERIC", "FLOAT64", "BOOL", "DATE", "DATETIME", "TIMESTAMP", "BYTES")
} | {("BOOL", "INT64"), ("INT64", "BOOL")}
"""Impossible implicitly, but a CAST in BigQuery (and DuckDB) does it: the fix is `CAST(<expr> AS <declared>)`."""


def conversion(computed: str, declared: str) -> Conversion:
    """How the warehouse's cast from the SQL's type to the declared type treats the values."""
    if computed == declared:
        return "same"
    if computed == NULL or declared in _WIDENINGS.get(computed, set()):
        return "widening"
    if declared in _LOSSY.get(computed, set()):
        return "lossy"
    return "impossible"


def allowed(computed: str, declared: str) -> bool:
    return conversion(computed, declared) in ("same", "widening")


# ---------------------------------------------------------------------------------------------- type names

_DUCKDB_SCALARS = {
    "VARCHAR": "STRING",
    "UUID": "STRING",
    "BOOLEAN": "BOOL",
    "DOUBLE": "FLOAT64",
    "FLOAT": "FLOAT64",
    "DATE": "DATE",
    "TIMESTAMP": "DATETIME",
    "TIMESTAMP_S": "DATETIME",
    "TIMESTAMP_MS": "DATETIME",
    "TIMESTAMP_NS": "DATETIME",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "JSON": "JSON",
    "BLOB": "BYTES",
    "TIME": "TIME",
    "TIME WITH TIME ZONE": "TIME",
    "INTERVAL": "INTERVAL",
    '"NULL"': NULL,
    "NULL": NULL,
}
_DUCKDB_INTEGERS = {
    f"{u}{t}" for u in ("", "U") for t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
}


def from_duckdb(duckdb_type: str) -> str:
    """A DuckDB type name (as `DESCRIBE` prints it) in the spec's vocabulary (`BIGINT` -> `INT64`).

    Types the spec vocabulary lacks come back as BigQuery would name them (`ARRAY`, `STRUCT`, `TIME`,
    `INTERVAL`) or, for the rest, as DuckDB names them.
    """
    name = duckdb_type.strip().upper()
    if name.endswith("]"):
        return "ARRAY"
    if name.startswith(("STRUCT", "MAP", "UNION")):
        return "STRUCT"
    if name.startswith("DECIMAL") or name in ("BIGNUM", "VARINT"):
        return "NUMERIC"
    if name in _DUCKDB_INTEGERS:
        return "INT64"
    if name.startswith("ENUM"):
        return "STRING"
    return _DUCKDB_SCALARS.get(name, name)


_SQLGLOT_TYPES = {
    exp.DType.BIGINT: "INT64",
    exp.DType.INT: "INT64",
    exp.DType.SMALLINT: "INT64",
    exp.DType.TINYINT: "INT64",
    exp.DType.DECIMAL: "NUMERIC",
    exp.DType.BIGDECIMAL: "BIGNUMERIC",
    exp.DType.DOUBLE: "FLOAT64",
    exp.DType.FLOAT: "FLOAT64",
    exp.DType.VARCHAR: "STRING",
    exp.DType.TEXT: "STRING",
    exp.DType.CHAR: "STRING",
    exp.DType.BOOLEAN: "BOOL",
    exp.DType.DATE: "DATE",
    exp.DType.DATETIME: "DATETIME",
    exp.DType.TIMESTAMP: "DATETIME",
    exp.DType.TIMESTAMPTZ: "TIMESTAMP",
    exp.DType.JSON: "JSON",
    exp.DType.VARBINARY: "BYTES",
    exp.DType.BINARY: "BYTES",
    exp.DType.ARRAY: "ARRAY",
    exp.DType.STRUCT: "STRUCT",
    exp.DType.TIME: "TIME",
    exp.DType.INTERVAL: "INTERVAL",
}
"""sqlglot's types of BigQuery expressions, in the spec vocabulary (BigQuery's TIMESTAMP is sqlglot's TIMESTAMPTZ,
its DATETIME sqlglot's DATETIME)."""


def from_sqlglot(data_type: exp.DataType | None) -> str | None:
    """sqlglot's annotated type in the spec vocabulary; None when sqlglot does not know it."""
    if data_type is None:
        return None
    return _SQLGLOT_TYPES.get(data_type.this)


# ---------------------------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class Mismatch:
    index: int
    column: str
    computed: str
    declared: str
    expression: str
    """The column's expression as written (BigQuery SQL), or '' when it is too long to quote."""

    @property
    def kind(self) -> Conversion:
        return conversion(self.computed, self.declared)

    def message(self) -> str:
        quoted = f" ({self.expression})" if self.expression else ""
        head = (
            f"column '{self.column}' is declared {self.declared} but the SQL computes {self.computed}{quoted}"
        )
        expr = self.expression or "<expression>"
        declare = f"declare `type: {self.computed}`" if self.computed in _DECLARABLE else ""
        if self.kind == "lossy":
            lost = _WHAT_IS_LOST.get((self.computed, self.declared), "values would change")
            fix = f"write CAST({expr} AS {self.declared}) in the SQL if that is meant"
            return f"{head}; stored as {self.declared}, {lost}: {fix}, or {declare or 'change the SQL'}"
        special = _CONVERSIONS.get((self.computed, self.declared))
        if special:
            how = special.replace("<expr>", expr)
        elif (self.computed, self.declared) in _CASTABLE:
            how = f"CAST({expr} AS {self.declared})"
        else:
            how = f"an expression of type {self.declared}"
        fix = f"compute {how} in the SQL"
        if declare:
            fix = f"{declare} if that is what the column holds, or {fix}"
        return f"{head}; {self.computed} does not convert to {self.declared} implicitly: {fix}"

    def error(self, path: Path) -> SpecError:
        return SpecError(path, f"columns[{self.index}].type", self.message(), self.declared)


_DECLARABLE = {
    "STRING",
    "INT64",
    "FLOAT64",
    "NUMERIC",
    "BOOL",
    "DATE",
    "DATETIME",
    "TIMESTAMP",
    "JSON",
    "BYTES",
}
MAX_QUOTED_EXPRESSION = 80


def mismatches(
    analysis: SqlAnalysis, declared: list[tuple[str, str]], duckdb_types: list[str]
) -> list[Mismatch]:
    """The declared columns (name, type) whose type the query's output (DuckDB bind types) cannot take.

    `duckdb_types` are the bound output types in column order; `analysis` has been through `resolve_columns`
    (its output columns are the declared ones, in order).
    """
    refused = [
        (i, name, want, from_duckdb(got))
        for i, ((name, want), got) in enumerate(zip(declared, duckdb_types, strict=False))
        if not allowed(from_duckdb(got), want)
    ]
    if not refused:
        return []
    projections = _projections(analysis.expression)
    if len(projections) != len(declared) or any(isinstance(p, exp.Star) for p in projections):
        # `SELECT *, …`: only the qualified query (stars expanded) lines up with the columns.
        projections = _projections(analysis.qualified) if analysis.qualified is not None else []
    bigquery = _bigquery_types(analysis)
    nulls = _null_columns(analysis)
    out = []
    for i, name, want, duck in refused:
        projection = projections[i] if i < len(projections) else None
        if i in nulls:
            continue  # a bare NULL takes any type (DuckDB binds it as INTEGER, BigQuery as INT64)
        computed = bigquery[i] if i < len(bigquery) else None
        if computed is not None and allowed(computed, want):
            continue  # BigQuery's type fits; only the DuckDB translation differs
        text = projection.sql(SPEC_DIALECT) if projection is not None else ""
        shown = text if len(text) <= MAX_QUOTED_EXPRESSION and _is_single_select(analysis) else ""
        out.append(Mismatch(i, name, computed or duck, want, shown))
    return out


def computed_types(analysis: SqlAnalysis, duckdb_types: list[str]) -> list[tuple[str, str | None]]:
    """Each output column's type as `mismatches` sees it: (DuckDB's bound type in the spec vocabulary, sqlglot's
    BigQuery type or None where sqlglot cannot tell); `(NULL, NULL)` for a bare NULL, which takes any type.

    `analysis` has been through `resolve_columns`; `duckdb_types` are its bound output types, in column order.
    `derive new --sql` declares its columns from these."""
    bigquery = _bigquery_types(analysis)
    nulls = _null_columns(analysis)
    return [
        (NULL, NULL) if i in nulls else (from_duckdb(duck), bigquery[i] if i < len(bigquery) else None)
        for i, duck in enumerate(duckdb_types)
    ]


def type_errors(
    path: Path, analysis: SqlAnalysis, declared: list[tuple[str, str]], duckdb_types: list[str]
) -> list[SpecError]:
    """One `columns[i].type` error per declared column the query's output cannot take."""
    return [m.error(path) for m in mismatches(analysis, declared, duckdb_types)]


def _null_columns(analysis: SqlAnalysis) -> set[int]:
    """Output columns that are a bare NULL, also through CTEs and subqueries (`WITH t AS (SELECT NULL AS v …)
    SELECT v FROM t`)."""
    query = analysis.qualified
    if not isinstance(query, exp.Select):
        return set()  # a UNION's column is NULL only if every branch's is; DuckDB's unified type says it
    try:
        scope = build_scope(query)
    except (SqlglotError, RecursionError):
        return set()
    return {i for i, s in enumerate(query.selects) if _is_null(s.unalias(), scope, 0)}


def _is_null(expression: exp.Expr, scope: Scope | None, depth: int) -> bool:
    if isinstance(expression, exp.Null):
        return True
    if depth > MAX_NULL_DEPTH or scope is None or not isinstance(expression, exp.Column):
        return False
    source = scope.sources.get(expression.table)
    if not isinstance(source, Scope) or not isinstance(source.expression, exp.Select):
        return False
    for select in source.expression.selects:
        if select.alias_or_name == expression.name:
            return _is_null(select.unalias(), source, depth + 1)
    return False


MAX_NULL_DEPTH = 32
"""How many CTEs and subqueries deep a NULL is followed (a query nests a few)."""


def _is_single_select(analysis: SqlAnalysis) -> bool:
    return isinstance(analysis.expression, exp.Select)


def _projections(expression: exp.Expr) -> list[exp.Expr]:
    """Each output column's expression without its alias (of the first SELECT of a UNION)."""
    query = expression
    while isinstance(query, exp.SetOperation):
        query = query.this
    if not isinstance(query, exp.Query):
        return []
    return [s.unalias() if isinstance(s, exp.Alias) else s for s in query.selects]


def _bigquery_types(analysis: SqlAnalysis) -> list[str | None]:
    """sqlglot's BigQuery type of each output column (None where unknown); the window parameters are TIMESTAMPs."""
    if analysis.qualified is None:
        return []
    query = analysis.qualified.copy()
    for parameter in list(query.find_all(exp.Parameter)):
        if re.fullmatch(r"window_(start|end)", parameter.name or ""):
            parameter.replace(
                exp.cast(parameter.copy(), exp.DataType.build("TIMESTAMP", dialect=SPEC_DIALECT))
            )
    try:
        annotated = annotate_types(query, schema=analysis.schema, dialect=SPEC_DIALECT)
    # sqlglot documents no error types for annotation; these are what its type coercion raises on a construct
    # it does not model. The annotation is only a second opinion: without it the DuckDB type stands alone.
    except (SqlglotError, RecursionError, KeyError, ValueError, TypeError, AttributeError):
        return []
    branches = [[from_sqlglot(s.type) for s in query.selects] for query in _branches(annotated)]
    # A UNION's column type is its branches' common supertype, which sqlglot does not compute: known only
    # when every branch agrees.
    return [t[0] if len(set(t)) == 1 else None for t in zip(*branches, strict=False)] if branches else []


def _branches(expression: exp.Expr) -> list[exp.Query]:
    """The SELECTs of a query: itself, or each side of a UNION/INTERSECT/EXCEPT, recursively."""
    if isinstance(expression, exp.SetOperation):
        return _branches(expression.this) + _branches(expression.expression)
    return [expression] if isinstance(expression, exp.Query) else []
