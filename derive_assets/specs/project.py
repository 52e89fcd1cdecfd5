"""Cross-file validation: every table a query reads exists, no cycles, outputs match declarations."""

from __future__ import annotations

from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from derive_assets.specs.duckdb_check import duckdb_errors
from derive_assets.specs.errors import SpecError, SpecValidationError
from derive_assets.specs.loader import LoadedSource, LoadedTable, default_specs_dir, read_specs
from derive_assets.specs.models import SourceSpec, SourceTable, TableSpec
from derive_assets.specs.sql_analysis import (
    WINDOW_PARAMETERS,
    Schema,
    SqlAnalysis,
    SqlProblem,
    analyse,
    resolve_columns,
)


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
class SpecProject:
    root: Path
    replicated: list[ReplicatedTable]
    tables: list[Table]
    """Core and derived tables in dependency order (a table comes after everything it reads)."""

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
            errors.append(SpecError(loaded.path, "sql", str(exc)))
            continue
        problems = _reference_errors(loaded, analysis, known)
        errors += problems
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
    if errors:
        raise SpecValidationError(errors)
    return SpecProject(raw.root, replicated, tables)


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


def _reference_errors(loaded: LoadedTable, analysis: SqlAnalysis, known: set[str]) -> list[SpecError]:
    errors = []
    for ref in analysis.reads:
        if "." not in ref:
            errors.append(SpecError(loaded.path, "sql", "refer to tables as `dataset.name`", ref))
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
    graph = {ref: [r for r in analysis.reads if r in parsed] for ref, (_, analysis) in parsed.items()}
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = exc.args[1]
        for ref in dict.fromkeys(cycle):
            errors.append(
                SpecError(
                    parsed[ref][0].path,
                    "sql",
                    f"dependency cycle: {' -> '.join(cycle)}; "
                    "a table cannot depend on itself through other tables",
                )
            )
        return []
