"""`derive new`: a commented spec skeleton for a new table that `derive validate` accepts exactly as written.

The skeleton's columns come from an existing table (`--from`: a table spec's or a replicated source table's
declared columns) or from a query (`--sql`: output names and types found by the same bind and type annotation
that check every spec's SQL, `specs/duckdb_check.py` and `specs/type_check.py`), or are two placeholders. This
module decides what the skeleton says (strategy, window, partition column, merge key, SQL) and writes it once the
whole project with it validates; `derive_assets/scaffold_text.py` writes the commented text.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from derive_assets.scaffold_text import (
    STRATEGIES,
    WINDOW_SIZES,
    NewColumn,
    ScaffoldError,
    Skeleton,
    StrategyName,
    check_reads_back,
    clean_sql,
    render,
)
from derive_assets.specs.models import IDENTIFIER, NOT_CLUSTERABLE, TIME_TYPES

if TYPE_CHECKING:
    from derive_assets.specs.models import Column
    from derive_assets.specs.project import SpecProject

__all__ = [
    "STRATEGIES",
    "WINDOW_SIZES",
    "NewColumn",
    "ScaffoldError",
    "Skeleton",
    "clean_sql",
    "render",
    "scaffold",
]

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "spec.schema.json"
KEY_UNFIT = (*NOT_CLUSTERABLE,)
"""Types a merge key should not have (JSON and BYTES do not compare in BigQuery, FLOAT64 keys are a trap)."""
NAME_RULE = "letters, digits and _, not starting with a digit, at most 128 characters"


@dataclass(frozen=True)
class Scaffolded:
    path: Path
    skeleton: Skeleton
    notes: list[str] = field(default_factory=list)
    """What the user should know (types not inferred, defaults taken), one line each, for stderr."""


def parse_target(text: str) -> tuple[str, str]:
    """`dataset/name` (or `dataset.name`) as (dataset, name), or `ScaffoldError` naming what is wrong."""
    dataset, sep, name = text.strip().replace(".", "/", 1).partition("/")
    if not sep or not dataset or not name:
        raise ScaffoldError(
            f"{text!r} is not <dataset>/<name>; name the dataset and the table, e.g. analytics/daily_revenue"
        )
    for what, value in (("dataset", dataset), ("name", name)):
        if not re.match(IDENTIFIER, value) or len(value) > 128:
            raise ScaffoldError(f"{what} {value!r} is not a plain identifier; allowed: {NAME_RULE}")
    if "__" in dataset:
        raise ScaffoldError(
            f"dataset {dataset!r} contains '__', which Derive reserves for environments' datasets "
            f"(<env>__<dataset>); allowed: {NAME_RULE}, without '__', e.g. {re.sub('_+', '_', dataset)!r}"
        )
    return dataset, name


@dataclass(frozen=True)
class _Origin:
    """The columns a skeleton starts from, with what is known about their table."""

    columns: list[NewColumn]
    key: list[str] = field(default_factory=list)
    key_note: str = ""
    time_preferred: list[str] = field(default_factory=list)
    """Columns the window should filter on, best first (event-time columns, the table's partition key)."""
    time_avoided: list[str] = field(default_factory=list)
    """Time columns to filter on only when nothing else is there (a replication cursor: when a row last changed)."""
    table: str = ""


def from_table(project: SpecProject, text: str) -> _Origin:
    """The declared columns of a table spec or replicated source table of `project`."""
    from derive_assets.lifecycle import normalize_ref
    from derive_assets.selection import near

    ref = normalize_ref(text)
    for table in project.tables:
        if table.spec.ref == ref:
            spec = table.spec
            key, note = _table_key(spec.strategy, spec.columns)
            preferred = [spec.partition.key] if spec.partition else []
            return _Origin(_copied(spec.columns), key, note, preferred, table=ref)
    for rt in project.replicated:
        if rt.ref == ref:
            t = rt.table
            avoided = [t.cursor, *([t.soft_delete.column] if t.soft_delete else [])]
            note = f"the primary key of {ref}"
            return _Origin(_copied(t.columns), list(t.primary_key), note, list(t.event_time), avoided, ref)
    broken = next((lo for lo in project.left_out if lo.name == ref), None)
    if broken is not None:
        raise ScaffoldError(
            f"--from {text}: its spec {broken.path} has errors (see `derive validate`); fix them first"
        )
    known = sorted({t.spec.ref for t in project.tables} | {rt.ref for rt in project.replicated})
    raise ScaffoldError(
        f"--from {text}: no table spec or replicated source table defines {ref!r}; {near(ref, known)}"
    )


def _copied(columns: list[Column]) -> list[NewColumn]:
    return [NewColumn(c.name, c.type, c.description) for c in columns]


def _table_key(strategy: Any, columns: list[Column]) -> tuple[list[str], str]:
    """A table spec's key: its merge `unique_key`, else its first column declared unique."""
    if strategy.type == "merge":
        return list(strategy.unique_key), "the unique_key of the table read"
    unique = next((c.name for c in columns if c.constraints.unique), None)
    return ([unique], f"'{unique}' is unique in the table read") if unique else ([], "")


def from_sql(project: SpecProject, sql: str, windowed: bool) -> tuple[_Origin, list[str]]:
    """The query's output columns with their types, found as `derive validate` finds them; notes for stderr."""
    from sqlglot import exp

    from derive_assets.lifecycle import normalize_ref
    from derive_assets.selection import near
    from derive_assets.specs.duckdb_check import bound_types
    from derive_assets.specs.sql_analysis import WINDOW_PARAMETERS, SqlProblem, analyse, resolve_columns
    from derive_assets.specs.type_check import NULL, computed_types

    schema = project_schema(project)
    known = sorted(f"{d}.{n}" for d, tables in schema.items() for n in tables)
    try:
        analysis = analyse(sql)
        for ref in analysis.reads:
            if ref not in known:
                raise ScaffoldError(
                    f"--sql reads {ref!r}, which no table spec or replicated source table defines; "
                    f"{near(normalize_ref(ref), known)} (refer to tables as dataset.name)"
                )
        unknown = [p for p in analysis.parameters if p not in WINDOW_PARAMETERS]
        if unknown:
            raise ScaffoldError(
                f"--sql uses the parameters {unknown}; allowed: @window_start and @window_end (with --window)"
            )
        if analysis.parameters and not windowed:
            raise ScaffoldError(
                "--sql uses @window_start/@window_end, but the table has no window; pass --window (e.g. 1d)"
            )
        analysis = resolve_columns(analysis, schema)
        types = computed_types(analysis, bound_types(schema, analysis))
    except SqlProblem as exc:
        raise ScaffoldError(f"--sql: {exc}") from None
    query = analysis.expression
    while isinstance(query, exp.SetOperation):
        query = query.this
    selects = query.selects if isinstance(query, exp.Query) else []
    for select in selects:
        if not isinstance(select, exp.Alias | exp.Column | exp.Star):
            raise ScaffoldError(
                f"--sql: the output column `{select.sql('bigquery')}` has no name; name it with AS, e.g. "
                f"`{select.sql('bigquery')} AS total`"
            )
    names = analysis.output_columns
    for name in names:
        if not re.match(IDENTIFIER, name):
            raise ScaffoldError(
                f"--sql: the output column {name!r} is not a plain identifier ({NAME_RULE}); rename it with AS"
            )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ScaffoldError(
            f"--sql outputs {twice} more than once; give each output column its own name (AS)"
        )
    columns, notes = [], []
    for name, (duck, bigquery) in zip(names, types, strict=True):
        column, note = _declared(name, duck, bigquery, NULL)
        columns.append(column)
        notes += [note] if note else []
    if windowed and not any(p in WINDOW_PARAMETERS for p in analysis.parameters):
        notes.append("--sql does not filter on @window_start/@window_end: each window's run reads everything")
    filtered = {
        ref.rsplit(".", 1)[-1] for ref in analysis.window_columns
    }  # partition by what the window filters
    key = _grouped_by(query, names)
    note = "the GROUP BY columns of the query: one row per group" if key else ""
    return _Origin(columns, key, note, time_preferred=[n for n in names if n in filtered]), notes


def _grouped_by(query: Any, names: list[str]) -> list[str]:
    """The output columns an aggregate query groups by (a natural merge key), when every GROUP BY item is one
    (by name, alias or position); else []."""
    from sqlglot import exp

    group = query.args.get("group") if isinstance(query, exp.Select) else None
    if group is None or not group.expressions:
        return []
    aliases = {s.unalias().sql("bigquery").lower(): s.alias_or_name.lower() for s in query.selects}
    lowered = {n.lower(): n for n in names}
    key = []
    for item in group.expressions:
        if isinstance(item, exp.Literal) and item.is_int and 0 < int(item.this) <= len(names):
            key.append(names[int(item.this) - 1])
            continue
        found = lowered.get(item.name.lower()) if isinstance(item, exp.Column) else None
        found = found or lowered.get(aliases.get(item.sql("bigquery").lower(), ""))
        if found is None:
            return []
        key.append(found)
    return list(dict.fromkeys(key))


def _declared(name: str, duck: str, bigquery: str | None, null: str) -> tuple[NewColumn, str]:
    """The spec type a column is declared with: BigQuery's type where sqlglot knows one a spec can declare (it is
    the production dialect), else DuckDB's; a column whose type no spec type takes, STRING with a TODO."""
    from resources.schema import COLUMN_TYPES

    if duck == null:
        todo = "TODO: the SQL gives a bare NULL, whose type cannot be inferred; declare what it will hold"
        return NewColumn(name, "STRING", todo=todo), f"column {name!r}: {todo.removeprefix('TODO: ')}"
    for candidate in (bigquery, duck):
        if candidate in COLUMN_TYPES:
            return NewColumn(name, candidate), ""
    computed = bigquery or duck
    if computed in ("TIME", "INTERVAL"):
        todo = f"TODO: the SQL computes {computed}, which a spec cannot declare: stored as text"
        return NewColumn(name, "STRING", todo=todo), f"column {name!r}: {todo.removeprefix('TODO: ')}"
    raise ScaffoldError(
        f"--sql: the output column {name!r} is {computed}, which no spec column type holds (allowed: "
        f"{', '.join(COLUMN_TYPES)}); compute TO_JSON(<expression>) AS {name} for a JSON column"
    )


def project_schema(project: SpecProject) -> dict[str, dict[str, dict[str, str]]]:
    """{dataset: {table: {column: type}}} of every table the project's SQL may read."""
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for rt in project.replicated:
        schema.setdefault(rt.source.target_dataset, {})[rt.table.name] = {
            c.name: c.type for c in rt.table.columns
        }
    for t in project.tables:
        schema.setdefault(t.spec.dataset, {})[t.spec.name] = {c.name: c.type for c in t.spec.columns}
    return schema


def build(
    dataset: str,
    name: str,
    *,
    strategy: str | None,
    window: str | None,
    origin: _Origin | None,
    sql: str | None,
    today: dt.date,
) -> tuple[Skeleton, list[str]]:
    """The skeleton for the user's choices: a strategy and window that validate together, a partition column, a
    merge key and the SQL (the given `sql`, a SELECT of `origin`'s table, or a placeholder)."""
    notes: list[str] = []
    if strategy is not None and strategy not in STRATEGIES:
        raise ScaffoldError(f"--strategy {strategy!r} is unknown; allowed: {', '.join(STRATEGIES)}")
    if window is not None and window not in WINDOW_SIZES:
        raise ScaffoldError(f"--window {window!r} is unknown; allowed: {', '.join(WINDOW_SIZES)}")
    if strategy == "replace" and window is not None:
        raise ScaffoldError(
            f"--strategy replace rebuilds the whole table on every run, so it cannot have --window {window} (each "
            "window's run would delete the others'); use --strategy append or merge with a window, or drop --window"
        )
    if strategy == "append" and window is None:
        window = "1d"
        notes.append("append replaces one window's rows per run, so it needs a window: --window 1d was taken")
    chosen = cast(StrategyName, strategy or ("merge" if window else "replace"))
    placeholder = origin is None
    if origin is None:
        origin = _Origin(
            [NewColumn("id", "INT64", todo="TODO: a placeholder; declare the columns your SQL outputs")]
            + ([NewColumn("event_at", "TIMESTAMP")] if window else [])
        )
    time = _time_column(origin, window) if window else None
    if window and time is None and chosen == "append":
        raise ScaffoldError(
            f"--strategy append partitions the table by the DATE, DATETIME or TIMESTAMP column each window's rows "
            f"are chosen by{' (DATETIME or TIMESTAMP for 1h windows)' if window == '1h' else ''}, and "
            f"{origin.table or 'the query'} has none; output one, or use --strategy merge"
        )
    key: tuple[str, ...] = ()
    key_note = ""
    if chosen == "merge":
        names = [c.name for c in origin.columns]
        if origin.key and all(k in names for k in origin.key):
            key, key_note = tuple(origin.key), origin.key_note
        else:
            fit = next((c.name for c in origin.columns if c.type not in KEY_UNFIT), names[0])
            key, key_note = (fit,), f"TODO: the columns that identify a row; '{fit}' is a guess, change it"
    sql_note = ""
    if sql is None:
        sql, sql_note = _select(origin, time, window, placeholder)
    elif window and time is None:
        sql_note = (
            "TODO: no DATE, DATETIME or TIMESTAMP column to partition by; output one to add `partition`"
        )
    skeleton = Skeleton(
        dataset=dataset,
        name=name,
        strategy=chosen,
        columns=tuple(origin.columns),
        sql=sql,
        window=window,
        start=first_window_start(today) if window else None,
        partition_key=time.name if time else None,
        unique_key=key,
        key_note=key_note,
        origin=origin.table or ("" if placeholder else "the --sql query"),
        sql_note=sql_note,
    )
    if window and time is None:
        notes.append(f"no DATE, DATETIME or TIMESTAMP column to filter on: {skeleton.ref} has no partition")
    return skeleton, notes


HISTORY_MONTHS = 3
"""A new windowed table starts this many whole months back: a few complete windows of every size to build and
compare (`derive build --last 3`), without thousands of hourly partitions."""


def first_window_start(today: dt.date) -> dt.date:
    """The first day of the month `HISTORY_MONTHS` before `today`'s month."""
    months = today.year * 12 + today.month - 1 - HISTORY_MONTHS
    return dt.date(months // 12, months % 12 + 1, 1)


def _time_column(origin: _Origin, window: str | None) -> NewColumn | None:
    """The column the window filters on and the table is partitioned by (a DATE cannot tell hours apart)."""
    fits = ("DATETIME", "TIMESTAMP") if window == "1h" else TIME_TYPES
    by_name = {c.name: c for c in origin.columns}
    order = [*origin.time_preferred, *(c.name for c in origin.columns if c.name not in origin.time_avoided)]
    order += origin.time_avoided
    return next((by_name[n] for n in order if n in by_name and by_name[n].type in fits), None)


_WINDOW_BOUND = {"DATE": "DATE(@{})", "DATETIME": "DATETIME(@{})", "TIMESTAMP": "@{}"}
"""A window bound (a TIMESTAMP) as a value of the column's type: BigQuery compares only like with like."""


def _select(
    origin: _Origin, time: NewColumn | None, window: str | None, placeholder: bool
) -> tuple[str, str]:
    """`SELECT <columns> FROM <table>` filtered on the window, built with sqlglot (identifiers quoted where
    BigQuery needs it); the placeholder selects literals. Returns (sql, a comment for above it)."""
    import sqlglot
    from sqlglot import exp

    if placeholder:
        parts = ["1 AS id"] + (["@window_start AS event_at"] if window else [])
        note = "TODO: replace with your query (BigQuery Standard SQL; tables as dataset.name)"
        return "SELECT\n  " + ",\n  ".join(parts) + "\n", note
    dataset, _, name = origin.table.partition(".")
    query = exp.select(*(exp.column(c.name) for c in origin.columns)).from_(exp.table_(name, db=dataset))
    note = ""
    if window and time is not None:
        column = exp.column(time.name)
        start, end = (
            sqlglot.parse_one(_WINDOW_BOUND[time.type].format(p), read="bigquery")
            for p in ("window_start", "window_end")
        )
        query = query.where(
            exp.and_(exp.GTE(this=column, expression=start), exp.LT(this=column.copy(), expression=end))
        )
    elif window:
        note = (
            f"TODO: {origin.table} has no DATE, DATETIME or TIMESTAMP column: filter on the window yourself"
        )
    return query.sql("bigquery", pretty=True) + "\n", note


def scaffold(
    root: Path,
    target: str,
    *,
    strategy: str | None = None,
    window: str | None = None,
    from_: str | None = None,
    sql: str | None = None,
    force: bool = False,
    today: dt.date | None = None,
    cache_dir: Path | None = None,
) -> Scaffolded:
    """Write `<root>/<dataset>/<name>.yaml` for `target` (`dataset/name`) once the whole project with it validates
    (leniently: other specs' errors are theirs); `ScaffoldError` for every refusal, nothing written then."""
    from derive_assets.specs.errors import SpecValidationError
    from derive_assets.specs.project import load_project

    dataset, name = parse_target(target)
    if from_ is not None and sql is not None:
        raise ScaffoldError("give --from or --sql, not both: the columns come from one of them")
    if not root.is_dir():
        raise ScaffoldError(f"specs directory {root} does not exist; pass --dir (or set DERIVE_SPECS_DIR)")
    path = root / dataset / f"{name}.yaml"
    shown = Path(root.name, dataset, path.name)
    if path.exists() and not force:
        raise ScaffoldError(f"{path} already exists; edit it, or pass --force to overwrite it")
    twin = path.with_suffix(".yml")
    if twin.exists():
        raise ScaffoldError(f"{twin} already defines this file's table; edit it, or delete it first")
    try:
        project = load_project(root, strict=False, cache_dir=cache_dir)
    except SpecValidationError as exc:
        raise ScaffoldError(str(exc)) from None
    _refuse_taken(project, f"{dataset}.{name}", shown)
    notes: list[str] = []
    origin = None
    if from_ is not None:
        origin = from_table(project, from_)
        if origin.table == f"{dataset}.{name}":
            raise ScaffoldError(
                f"--from {from_}: a table cannot be built from itself; name another table to read"
            )
    elif sql is not None:
        sql = clean_sql(sql)
        origin, notes = from_sql(project, sql, windowed=window is not None or strategy == "append")
    skeleton, more = build(
        dataset,
        name,
        strategy=strategy,
        window=window,
        origin=origin,
        sql=sql,
        today=today or dt.datetime.now(dt.UTC).date(),
    )
    skeleton = replace(skeleton, schema_ref=schema_reference(path))
    text = render(skeleton)
    check_reads_back(text, skeleton)
    _check_validates(root, path, text, shown, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return Scaffolded(path, skeleton, notes + more)


def schema_reference(path: Path) -> str:
    """The editor schema (`docs/spec.schema.json`) for the spec at `path`: relative inside the project (as the
    shipped specs have it), else absolute."""
    where = path.parent.resolve()
    if where.is_relative_to(SCHEMA_FILE.parents[1]):
        return os.path.relpath(SCHEMA_FILE, where)
    return str(SCHEMA_FILE)


def _refuse_taken(project: SpecProject, ref: str, shown: Path) -> None:
    """The table must not be defined already, except by the file being overwritten (`--force`)."""
    from derive_assets.python_tables import python_tables

    defined = [(t.spec.ref, t.path) for t in project.tables]
    defined += [(rt.ref, rt.path) for rt in project.replicated]
    defined += [(lo.name, lo.path) for lo in project.left_out]
    defined += [(t.spec.ref, Path("derive_assets/python_tables")) for t in python_tables(project)]
    other = next((p for r, p in defined if r == ref and p != shown), None)
    if other is not None:
        raise ScaffoldError(f"{ref} is already defined in {other}; choose another name (or edit that file)")


def _check_validates(root: Path, path: Path, text: str, shown: Path, cache_dir: Path | None) -> None:
    """Load the project with the new file, in a temporary tree of links to the spec files (nothing is written
    under `root` before it passes); its errors, if any, are the refusal."""
    from derive_assets.specs.loader import spec_files
    from derive_assets.specs.project import load_project

    with tempfile.TemporaryDirectory(prefix="derive-new-") as tmp:
        copy = Path(tmp) / root.name  # same name: errors (and the spec cache) see the same paths
        for existing in spec_files(root):
            link = copy / existing.relative_to(root)
            link.parent.mkdir(parents=True, exist_ok=True)
            try:
                link.symlink_to(existing.resolve())
            except OSError:
                shutil.copyfile(existing, link)
        new = copy / path.relative_to(root)
        new.parent.mkdir(parents=True, exist_ok=True)
        new.unlink(missing_ok=True)
        new.write_text(text)
        project = load_project(copy, strict=False, cache_dir=cache_dir)
    errors = [e for e in project.errors if e.file == shown]
    if errors:
        raise ScaffoldError(
            f"{shown} would not pass `derive validate`, so nothing was written:\n"
            + "\n".join(f"  {e}" for e in errors)
        )


def next_steps(s: Skeleton, env: str) -> Sequence[str]:
    """What to do after the file is written."""
    key = f"{s.dataset}/{s.name}"
    return (
        "next:",
        "  1. edit it: owner, description, the SQL and its columns, constraints (the TODO comments first)",
        "  2. derive validate",
        f"  3. derive plan {key}",
        f"  4. derive build {key} --env {env}   # into your own environment ({env}__{s.dataset}), not production",
    )
