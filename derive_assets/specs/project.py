"""Cross-file validation: every table a query reads exists, no cycles, outputs match declarations."""

from __future__ import annotations

from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from derive_assets.specs.duckdb_check import duckdb_errors
from derive_assets.specs.errors import SpecError, SpecValidationError
from derive_assets.specs.loader import LoadedExport, LoadedSource, LoadedTable, default_specs_dir, read_specs
from derive_assets.specs.models import Column, ExportSpec, SourceSpec, SourceTable, TableSpec, Window
from derive_assets.specs.sql_analysis import (
    WINDOW_PARAMETERS,
    Schema,
    SqlAnalysis,
    SqlProblem,
    analyse,
    resolve_columns,
)

_SKIP = SpecError(Path(), "", "reads a table whose spec has errors")
"""Marks a table that cannot be checked further because one it reads failed; never reported itself."""


@dataclass(frozen=True)
class Table:
    """A validated core/derived table spec with what its SQL reads and outputs."""

    path: Path
    spec: TableSpec
    analysis: SqlAnalysis


@dataclass(frozen=True)
class ReplicatedTable:
    path: Path
    source: SourceSpec
    table: SourceTable

    @property
    def ref(self) -> str:
        return f"{self.source.target_dataset}.{self.table.name}"


@dataclass(frozen=True)
class Export:
    """A validated export with the declared columns (and types) of the table it exports."""

    path: Path
    spec: ExportSpec
    columns: list[Column]
    """The exported columns, in order, with the warehouse table's declared types."""
    window: Window | None
    """The exported table's window: an export run writes one window's rows (None: the whole table)."""
    partition_key: str | None


@dataclass(frozen=True)
class SpecProject:
    root: Path
    replicated: list[ReplicatedTable]
    tables: list[Table]
    """Core and derived tables in dependency order (a table comes after everything it reads)."""
    exports: list[Export] = field(default_factory=list)

    def export(self, name: str) -> Export:
        found = next((e for e in self.exports if e.spec.name == name), None)
        if found is None:
            raise KeyError(f"no export named '{name}'; exports: {sorted(e.spec.name for e in self.exports)}")
        return found

    def sources(self) -> list[SourceSpec]:
        seen: dict[str, SourceSpec] = {}
        for r in self.replicated:
            seen.setdefault(r.source.name, r.source)
        return list(seen.values())

    def table(self, ref: str) -> Table:
        return next(t for t in self.tables if t.spec.ref == ref)


def load_project(root: Path | None = None) -> SpecProject:
    """Load and validate a specs directory; raise `SpecValidationError` listing every problem found."""
    raw = read_specs(root or default_specs_dir())
    errors = list(raw.errors)
    replicated = [ReplicatedTable(s.path, s.spec, t) for s in raw.sources for t in s.spec.tables]
    errors += _duplicate_refs(raw.sources, raw.tables)

    schema: Schema = {}
    for r in replicated:
        schema.setdefault(r.source.target_dataset, {})[r.table.name] = {
            c.name: c.type for c in r.table.columns
        }
    for t in raw.tables:
        schema.setdefault(t.spec.dataset, {})[t.spec.name] = {c.name: c.type for c in t.spec.columns}
    known = {r.ref for r in replicated} | {t.spec.ref for t in raw.tables}

    parsed: dict[str, tuple[LoadedTable, SqlAnalysis]] = {}
    for loaded in raw.tables:
        try:
            analysis = analyse(loaded.spec.sql)
        except SqlProblem as exc:
            errors += [SpecError(loaded.path, "sql", line) for line in str(exc).splitlines()]
            continue
        problems = _reference_errors(loaded, analysis, known, raw.failed_refs)
        errors += [p for p in problems if p is not _SKIP]
        if not problems:
            parsed[loaded.spec.ref] = (loaded, analysis)

    order = _dependency_order(parsed, errors)
    tables = []
    for ref in order:
        loaded, analysis = parsed[ref]
        try:
            resolved = resolve_columns(analysis, schema)
        except SqlProblem as exc:
            errors.append(SpecError(loaded.path, "sql", str(exc)))
            continue
        declared = loaded.spec.column_names
        if resolved.output_columns != declared:
            errors.append(
                SpecError(
                    loaded.path,
                    "columns",
                    f"the SQL outputs {resolved.output_columns} but columns declares {declared}; "
                    "declare exactly the query's output columns, in the same order",
                )
            )
            continue
        tables.append(Table(loaded.path, loaded.spec, resolved))
    if not errors:
        errors += duckdb_errors(schema, [(t.path, t.spec.ref, t.analysis) for t in tables])
    defined = {r.ref for r in replicated} | {t.spec.ref for t in raw.tables} | raw.failed_refs
    exports = _exports(raw.exports, replicated, tables, defined, errors)
    if errors:
        raise SpecValidationError(errors)
    return SpecProject(raw.root, replicated, tables, exports)


def _exports(
    loaded: list[LoadedExport],
    replicated: list[ReplicatedTable],
    tables: list[Table],
    defined: set[str],
    errors: list[SpecError],
) -> list[Export]:
    """Each export must name a known table, and its columns and keys must be that table's columns.

    `defined` holds every table some spec defines, valid or not: an export of a table whose own spec failed is
    skipped quietly, since that spec's errors already say what is wrong.
    """
    known: dict[str, tuple[list[Column], Window | None, str | None]] = {
        r.ref: (list(r.table.columns), None, None) for r in replicated
    }
    for t in tables:
        known[t.spec.ref] = (
            list(t.spec.columns),
            t.spec.window,
            t.spec.partition.key if t.spec.partition else None,
        )
    exports, names = [], set()
    for e in loaded:
        spec = e.spec
        if spec.name in names:
            errors.append(SpecError(e.path, "name", "another export has this name", spec.name))
        names.add(spec.name)
        if spec.table not in known:
            if spec.table in defined:
                continue
            errors.append(
                SpecError(
                    e.path,
                    "table",
                    f"no table spec or source defines it; known tables: {sorted(defined)}",
                    spec.table,
                )
            )
            continue
        columns, window, partition_key = known[spec.table]
        by_name = {c.name: c for c in columns}
        wanted = spec.columns or list(by_name)
        problems = [
            (where, [c for c in names_ if c not in by_name])
            for where, names_ in (
                ("columns", wanted),
                ("partition_key", spec.partition_key),
                ("clustering", spec.clustering),
            )
        ]
        bad = [(where, missing) for where, missing in problems if missing]
        for where, missing in bad:
            errors.append(
                SpecError(
                    e.path, where, f"{missing} are not columns of {spec.table}; allowed: {list(by_name)}"
                )
            )
        if spec.cursor is not None and not bad:
            cursor = by_name.get(spec.cursor)
            if cursor is None or cursor.type not in ("INT64", "DATE", "DATETIME", "TIMESTAMP"):
                bad.append(("cursor", [spec.cursor]))
                errors.append(
                    SpecError(
                        e.path,
                        "cursor",
                        f"must be an INT64, DATE, DATETIME or TIMESTAMP column of {spec.table}",
                        spec.cursor,
                    )
                )
            elif window is not None:
                bad.append(("cursor", [spec.cursor]))
                errors.append(
                    SpecError(
                        e.path,
                        "cursor",
                        f"{spec.table} has a window: each export run writes one window, "
                        "so a cursor is not needed; remove it",
                        spec.cursor,
                    )
                )
        if not bad:
            exports.append(Export(e.path, spec, [by_name[c] for c in wanted], window, partition_key))
    return exports


def _duplicate_refs(sources: list[LoadedSource], tables: list[LoadedTable]) -> list[SpecError]:
    seen: dict[str, Path] = {}
    errors = []
    entries = [(s.path, f"{s.spec.target_dataset}.{t.name}") for s in sources for t in s.spec.tables]
    entries += [(t.path, t.spec.ref) for t in tables]
    for path, ref in entries:
        if ref in seen:
            errors.append(SpecError(path, "name", f"table '{ref}' is already defined in {seen[ref]}", ref))
        else:
            seen[ref] = path
    return errors


def _reference_errors(
    loaded: LoadedTable, analysis: SqlAnalysis, known: set[str], failed: set[str]
) -> list[SpecError]:
    """Problems with what the query reads; a table whose own spec failed is not "undefined" (and, being
    unknown, leaves this table out of the later column checks quietly)."""
    errors = []
    for ref in analysis.reads:
        if "." not in ref:
            errors.append(SpecError(loaded.path, "sql", "refer to tables as `dataset.name`", ref))
        elif ref in failed and ref not in known:
            errors.append(_SKIP)
        elif ref not in known:
            errors.append(
                SpecError(
                    loaded.path,
                    "sql",
                    f"reads table '{ref}', which no table spec or source defines; known tables: {sorted(known)}",
                )
            )
    unknown = [p for p in analysis.parameters if p not in WINDOW_PARAMETERS]
    if unknown:
        errors.append(
            SpecError(
                loaded.path,
                "sql",
                f"unknown query parameters {unknown}; allowed: {['@' + p for p in WINDOW_PARAMETERS]}",
            )
        )
    if loaded.spec.window is None and any(p in WINDOW_PARAMETERS for p in analysis.parameters):
        errors.append(
            SpecError(
                loaded.path,
                "sql",
                "uses @window_start/@window_end but the spec has no `window`; "
                "add a window or remove the parameters",
            )
        )
    if loaded.spec.ref in analysis.reads:
        errors.append(SpecError(loaded.path, "sql", "a table cannot read itself", loaded.spec.ref))
    return errors


def _dependency_order(
    parsed: dict[str, tuple[LoadedTable, SqlAnalysis]], errors: list[SpecError]
) -> list[str]:
    """Tables in dependency order; each cycle is reported once by each of its tables and left out, and the
    rest are still ordered (and checked), so a cycle reports only itself."""
    graph = {ref: [r for r in analysis.reads if r in parsed] for ref, (_, analysis) in parsed.items()}
    while True:
        try:
            return list(TopologicalSorter(graph).static_order())
        except CycleError as exc:
            cycle = exc.args[1]
            members = list(dict.fromkeys(cycle))
            for ref in members:
                errors.append(
                    SpecError(
                        parsed[ref][0].path,
                        "sql",
                        f"dependency cycle: {' -> '.join(cycle)}; "
                        "a table cannot depend on itself through other tables",
                    )
                )
            graph = {
                ref: [r for r in deps if r not in members]
                for ref, deps in graph.items()
                if ref not in members
            }
