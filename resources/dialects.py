"""What differs between the SQL dialects the warehouses speak, in one registry.

Today that is the style of a named query parameter: DuckDB binds `$name`, BigQuery `@name`. An engine with a
dialect not listed here gets a clear error when it renders its first query, never a guessed style.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resources.lazy_import import lazy_module

if TYPE_CHECKING:
    from sqlglot import exp
else:
    exp = lazy_module("sqlglot.expressions")


PARAM_PREFIX: dict[str, str] = {"duckdb": "$", "bigquery": "@"}
"""sqlglot dialect name -> the prefix of a named parameter in that engine's driver."""


class UnknownDialect(ValueError):
    """An engine renders SQL for a dialect this registry does not know."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        super().__init__(
            f"no parameter style is registered for the SQL dialect {dialect!r} (known: "
            f"{', '.join(sorted(PARAM_PREFIX))}); add it to PARAM_PREFIX in resources/dialects.py with the "
            "prefix its driver binds named parameters with (e.g. '$' for DuckDB, '@' for BigQuery)"
        )


def param_prefix(dialect: str) -> str:
    """`$` or `@`: how `dialect` writes a named parameter; raises `UnknownDialect` for any other dialect."""
    try:
        return PARAM_PREFIX[dialect]
    except KeyError:
        raise UnknownDialect(dialect) from None


def param(name: str, dialect: str) -> str:
    """A named query parameter as text: `$name` in DuckDB, `@name` in BigQuery."""
    return param_prefix(dialect) + name


def placeholder(name: str, dialect: str) -> exp.Expr:
    """A named query parameter as a sqlglot node that renders exactly as `param(name, dialect)`."""
    return exp.Var(this=param(name, dialect))
