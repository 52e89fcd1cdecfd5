"""Does each spec's SQL, translated from BigQuery to DuckDB, really run on DuckDB?

sqlglot translates what it knows and passes the rest through unchanged (`FARM_FINGERPRINT`, `NET.HOST`, UDFs),
so a translation that "succeeds" can still name a function DuckDB does not have. Each query is bound, not run,
against empty tables of the declared schemas in an in-memory DuckDB: a missing function or a type clash is then
a load-time error naming the spec, instead of a failed run. The bind (`DESCRIBE`) also gives each output column's
type, which is checked against the declared one in the same pass.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from derive_assets.specs.errors import SpecError
from derive_assets.specs.sql_analysis import TOO_DEEP, Schema, SqlAnalysis, SqlProblem, transpile
from derive_assets.specs.type_check import type_errors
from resources.sql_text import DUCKDB_TYPES, quote

_PROBE_WINDOW = {
    "window_start": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    "window_end": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
}


def duckdb_errors(schema: Schema, tables: list[tuple[Path, str, SqlAnalysis]]) -> list[SpecError]:
    """Bind every (path, ref, analysis) query on DuckDB; return one error per query that does not bind, and one
    per output column whose bound type its declared type (`schema[dataset][name]`) cannot take losslessly
    (`derive_assets.specs.type_check`)."""
    errors: list[SpecError] = []
    read = {ref for _, _, analysis in tables for ref in analysis.reads}
    with _probe(schema, read) as con:
        for path, ref, analysis in tables:
            try:
                bound = _describe(con, analysis)
            except SqlProblem as exc:
                errors.append(SpecError(path, "sql", str(exc)))
                continue
            dataset, _, name = ref.partition(".")
            declared = list(schema.get(dataset, {}).get(name, {}).items())
            errors += type_errors(path, analysis, declared, bound)
    return errors


def bound_types(schema: Schema, analysis: SqlAnalysis) -> list[str]:
    """The DuckDB type of each output column of one resolved query, bound as `duckdb_errors` binds it (what
    `derive new --sql` declares the columns from); a query that does not bind raises `SqlProblem` saying why."""
    with _probe(schema, set(analysis.reads)) as con:
        return _describe(con, analysis)


@contextmanager
def _probe(schema: Schema, read: set[str]) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB holding an empty table of the declared schema for each of `read` (`dataset.name`)."""
    # No extension downloads: a function that needs one counts as missing (the warehouse cannot fetch it either).
    config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    with duckdb.connect(config=config) as con:  # type: ignore[arg-type]
        con.execute("SET TimeZone = 'UTC'")
        for dataset, dataset_tables in schema.items():
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(dataset, 'duckdb')}")
            for name, columns in dataset_tables.items():
                if f"{dataset}.{name}" not in read:
                    continue  # only the tables some query reads need to exist
                cols = ", ".join(f"{quote(c, 'duckdb')} {DUCKDB_TYPES[t]}" for c, t in columns.items())
                con.execute(f"CREATE TABLE {quote(dataset, 'duckdb')}.{quote(name, 'duckdb')} ({cols})")
        yield con


def _describe(con: duckdb.DuckDBPyConnection, analysis: SqlAnalysis) -> list[str]:
    """The bound DuckDB type of each output column of the query, translated from BigQuery; `SqlProblem` when it
    does not translate or bind."""
    try:
        sql = transpile(analysis.expression, "duckdb")
    except SqlProblem as exc:
        hint = "" if str(exc).startswith(TOO_DEEP) else "; write it with functions DuckDB also has"
        raise SqlProblem(f"{exc}{hint}") from None
    params = {k: v for k, v in _PROBE_WINDOW.items() if k in analysis.parameters}
    try:
        described = con.execute(f"DESCRIBE {sql}", params).fetchall()
    except duckdb.Error as exc:
        raise SqlProblem(_explain(exc)) from None
    return [str(row[1]) for row in described]


def _explain(exc: duckdb.Error) -> str:
    first = str(exc).splitlines()[0]
    function = re.search(r'Function with name "?([\w.]+)"? (does not exist|is not in the catalog)', first)
    if function:
        return (
            f"function {function[1].upper()} has no DuckDB equivalent, so this spec cannot run on the embedded "
            "warehouse (specs must run on DuckDB and BigQuery alike); use a function both have, e.g. a "
            f"standard SQL expression (DuckDB said: {first})"
        )
    return f"after translation to DuckDB the query does not run there: {first}"
