"""Cross-file validation: every table a query reads exists, no cycles, outputs match declarations."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from derive_assets.specs.cache import CacheStats, SpecCache, schema_key
from derive_assets.specs.check_refs import check_reference_errors
from derive_assets.specs.errors import SpecError, SpecValidationError
from derive_assets.specs.loader import (
    LoadedExport,
    LoadedSource,
    LoadedTable,
    RawSpecs,
    default_specs_dir,
    read_specs,
)
from derive_assets.specs.models import Column, ExportSpec, SourceSpec, SourceTable, TableSpec, Window
from derive_assets.specs.sql_analysis import (
    WINDOW_PARAMETERS,
    Schema,
    SqlAnalysis,
    SqlProblem,
    analyse,
    read_schema,
    resolve_columns,
    resolved,
)
from derive_assets.specs.version import code_version

_SKIP = SpecError(Path(), "", "reads a table whose spec has errors")
"""Marks a table that cannot be checked further because one it reads failed; never reported itself."""


@dataclass(frozen=True)
class Table:
    """A validated core/derived table spec with what its SQL reads and outputs."""

    path: Path
    spec: TableSpec
    analysis: SqlAnalysis

    @cached_property
    def code_version(self) -> str:
        """The asset's code version (`specs.version.code_version`), from the normalized SQL the analysis (or the
        spec cache) already has: nothing is parsed for it."""
        return code_version(self.spec, normalized=self.analysis.normalized_sql)


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
    errors: list[SpecError] = field(default_factory=list)
    """A lenient load's problems (`load_project(strict=False)`): each invalid file's errors, and one entry for each
    spec left out because it reads or exports a table that is left out; empty after a strict load."""
    left_out: list[LeftOut] = field(default_factory=list)
    """What a lenient load left out, each with the spec file whose errors caused it."""
    cache_stats: CacheStats = field(default_factory=CacheStats, compare=False, repr=False)
    """What this load took from the spec cache and what it analysed (`derive_assets.specs.cache`)."""

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


def load_project(
    root: Path | None = None, strict: bool = True, *, cache_dir: Path | None = None
) -> SpecProject:
    """Load and validate a specs directory.

    `strict` (`derive validate`, `derive plan`, CI): raise `SpecValidationError` listing every problem found.
    Lenient (`strict=False`, the Dagster code location): never raise for a spec mistake; return the valid part,
    with `SpecProject.errors` holding every problem plus one entry for each spec left out because it reads (or
    exports) a table that is itself left out, and `SpecProject.left_out` saying which file caused each. A missing
    or unreadable specs directory is raised in both modes: it is the deployment's mistake, not a spec's.

    `cache_dir` (`DeriveSettings.cache_dir`): keep each spec's analysis there and reuse it while the spec, the
    schemas it reads and the libraries are unchanged (`derive_assets.specs.cache`); the result is the same.
    """
    cache = SpecCache(cache_dir)
    try:
        return _load(root or default_specs_dir(), strict, cache)
    finally:
        cache.save()


def _load(root: Path, strict: bool, cache: SpecCache) -> SpecProject:
    raw = read_specs(root, cache)
    checked = _check(raw, cache)
    if not strict:
        return _lenient(raw, checked, cache)
    errors = checked.errors
    if not errors:
        errors += _bind_errors(checked.schema, checked.tables, cache)
    defined = {r.ref for r in checked.replicated} | {t.spec.ref for t in raw.tables} | raw.failed_refs
    exports = _exports(raw.exports, checked.replicated, checked.tables, defined, errors)
    if errors:
        raise SpecValidationError(errors)
    return SpecProject(raw.root, checked.replicated, checked.tables, exports, cache_stats=cache.stats)


def _bind_errors(schema: Schema, tables: list[Table], cache: SpecCache) -> list[SpecError]:
    """Every check that binds the valid tables' queries against the declared schemas (one engine round trip for
    all of them), in strict and lenient loading alike: add further such checks here.

    A table whose query bound before against the same schemas (its cache entry says so) is not bound again; when
    every one did, DuckDB is not even imported."""
    todo = [t for t in tables if not ((entry := cache.entry(t.path)) and entry.bound)]
    if not todo:
        return []
    from derive_assets.specs.duckdb_check import duckdb_errors

    errors = duckdb_errors(schema, [(t.path, t.spec.ref, t.analysis) for t in todo])
    failed = {e.file for e in errors}
    for t in todo:
        cache.stats.bound.append(t.path)
        if t.path not in failed and (entry := cache.entry(t.path)):
            entry.set_bound()
    return errors


@dataclass
class _Checked:
    """The per-table checks' outcome, before the bind checks and the exports."""

    errors: list[SpecError]
    replicated: list[ReplicatedTable]
    tables: list[Table]
    """The tables that passed every check so far, in dependency order."""
    schema: Schema
    reads: list[tuple[LoadedTable, list[str]]]
    """Every table spec whose SQL parses, with what it reads (lenient loading follows these to dependents)."""
    duplicates: list[SpecError]


def _check(raw: RawSpecs, cache: SpecCache) -> _Checked:
    errors = list(raw.errors)
    replicated = [ReplicatedTable(s.path, s.spec, t) for s in raw.sources for t in s.spec.tables]
    duplicates = _duplicate_refs(raw.sources, raw.tables)
    errors += duplicates

    schema: Schema = {}
    for r in replicated:
        schema.setdefault(r.source.target_dataset, {})[r.table.name] = {
            c.name: c.type for c in r.table.columns
        }
    for t in raw.tables:
        schema.setdefault(t.spec.dataset, {})[t.spec.name] = {c.name: c.type for c in t.spec.columns}
    known = {r.ref for r in replicated} | {t.spec.ref for t in raw.tables}

    parsed: dict[str, tuple[LoadedTable, SqlAnalysis]] = {}
    reads: list[tuple[LoadedTable, list[str]]] = []
    for loaded in raw.tables:
        entry = cache.entry(loaded.path)
        analysis = entry.analysis(loaded.spec.sql) if entry else None
        if analysis is None:
            cache.stats.parsed.append(loaded.path)
            try:
                analysis = analyse(loaded.spec.sql)
            except SqlProblem as exc:
                errors += [SpecError(loaded.path, "sql", line) for line in str(exc).splitlines()]
                continue
            if entry:
                analysis = replace(analysis, normalized=analysis.normalized_sql)
                entry.set_analysis(analysis)
        reads.append((loaded, analysis.reads))
        problems = _reference_errors(loaded, analysis, known, raw.failed_refs)
        errors += [p for p in problems if p is not _SKIP]
        if not problems:
            parsed[loaded.spec.ref] = (loaded, analysis)

    errors += check_reference_errors(raw.sources, raw.tables, schema, raw.failed_refs)
    order = _dependency_order(parsed, errors)
    tables = []
    for ref in order:
        loaded, analysis = parsed[ref]
        try:
            resolved = _resolve(loaded, analysis, schema, cache)
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
    return _Checked(errors, replicated, tables, schema, reads, duplicates)


def _resolve(loaded: LoadedTable, analysis: SqlAnalysis, schema: Schema, cache: SpecCache) -> SqlAnalysis:
    """`resolve_columns`, or its output columns from the cache when the tables read have the same schemas."""
    entry = cache.entry(loaded.path)
    if entry is None:
        cache.stats.resolved.append(loaded.path)
        return resolve_columns(analysis, schema)
    key = schema_key(analysis.reads, schema)
    outputs = entry.output_columns(key)
    if outputs is not None:
        return resolved(analysis, outputs, read_schema(analysis.reads, schema))
    cache.stats.resolved.append(loaded.path)
    result = resolve_columns(analysis, schema)
    entry.set_output_columns(key, result.output_columns)
    return result


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


# ------------------------------------------------------------------------------------------- lenient loading


@dataclass(frozen=True)
class LeftOut:
    """A definition a lenient load left out of the project."""

    name: str
    """`dataset.name` of a table (replicated or built by a spec), or `export <name>`."""
    path: Path
    """Its spec file."""
    cause: Path
    """The spec file whose errors left it out: `path` itself, or the file of a table it reads (transitively)."""


def _lenient(raw: RawSpecs, checked: _Checked, cache: SpecCache) -> SpecProject:
    """The valid part of the project: each spec whose file has errors is left out, and so is everything that reads
    or exports what is left out (each with one error entry naming its own file and the cause)."""
    errors = checked.errors
    out = _Leaving(errors)
    duplicate_ids = {id(e) for e in checked.duplicates}
    failed = {e.file for e in errors if id(e) not in duplicate_ids}

    definitions: dict[str, list[Path]] = {}
    for r in checked.replicated:
        definitions.setdefault(r.ref, []).append(r.path)
    for t in raw.tables:
        definitions.setdefault(t.spec.ref, []).append(t.path)
    for ref, paths in definitions.items():
        if len(paths) > 1:
            # Either definition may be the intended one: both are left out, and each file says so.
            others = ", ".join(str(p) for p in paths[1:])
            errors.append(
                SpecError(
                    paths[0],
                    "name",
                    f"table '{ref}' is also defined in {others}; every definition is left out until only one "
                    "remains (rename or delete the others)",
                    ref,
                )
            )
            for path in paths:
                out.leave(ref, path, path)
    for r in checked.replicated:
        if r.path in failed:
            out.leave(r.ref, r.path, r.path)
    for t in raw.tables:
        if t.path in failed:
            out.leave(t.spec.ref, t.path, t.path)
    for ref, path in raw.failed_files.items():
        if ref not in definitions:  # a failed file's table that no valid file defines instead
            out.leave(ref, path, path)
    out.follow(checked.reads)

    valid = [t for t in checked.tables if t.spec.ref not in out.broken]
    bind = _bind_errors(checked.schema, valid, cache)
    errors += bind
    rejected = {e.file for e in bind}
    for t in valid:
        if t.path in rejected:
            out.leave(t.spec.ref, t.path, t.path)
    out.follow(checked.reads)
    tables = [t for t in valid if t.spec.ref not in out.broken]
    replicated = [r for r in checked.replicated if r.ref not in out.broken]

    candidates = []
    for e in raw.exports:
        if e.spec.table in out.broken:
            out.depend(f"export {e.spec.name}", e.path, "table", f"exports {e.spec.table}", e.spec.table)
        else:
            candidates.append(e)
    export_errors: list[SpecError] = []
    defined = set(definitions) | raw.failed_refs
    exports = _exports(candidates, replicated, tables, defined, export_errors)
    by_name: dict[str, list[Path]] = {}
    for e in candidates:
        by_name.setdefault(e.spec.name, []).append(e.path)
    for name, paths in by_name.items():
        if len(paths) > 1:
            export_errors.append(
                SpecError(
                    paths[0],
                    "name",
                    f"export {', '.join(str(p) for p in paths[1:])} has this name too; every export of this name "
                    "is left out until the names differ",
                    name,
                )
            )
    errors += export_errors
    rejected = {e.file for e in export_errors}
    for e in candidates:
        if e.path in rejected:
            out.leave(f"export {e.spec.name}", e.path, e.path)
    exports = [x for x in exports if x.path not in rejected]
    return SpecProject(
        raw.root,
        replicated,
        tables,
        exports,
        errors=errors,
        left_out=out.left_out,
        cache_stats=cache.stats,
    )


class _Leaving:
    """What a lenient load leaves out so far, and why."""

    def __init__(self, errors: list[SpecError]):
        self.errors = errors
        self.broken: dict[str, Path] = {}
        """`dataset.name` -> the spec file whose errors leave that table out."""
        self.own: set[str] = set()
        """The tables left out for their own file's errors (not for one they read)."""
        self.left_out: list[LeftOut] = []

    def leave(self, ref: str, path: Path, cause: Path) -> None:
        """`ref`, defined in `path`, is left out for the errors of `cause`."""
        if not any(lo.name == ref and lo.path == path for lo in self.left_out):
            self.left_out.append(LeftOut(ref, path, cause))
        self.broken.setdefault(ref, cause)
        if cause == path:
            self.own.add(ref)

    def depend(self, name: str, path: Path, field_: str, what: str, upstream: str) -> None:
        """`name` (in `path`) uses the left-out table `upstream`: leave it out too, with an entry saying why."""
        cause = self.broken[upstream]
        why = (
            f"whose spec has errors ({cause})"
            if upstream in self.own
            else f"which is left out because {cause} has errors"
        )
        self.errors.append(
            SpecError(path, field_, f"{what}, {why}; this spec is left out until that is fixed")
        )
        self.left_out.append(LeftOut(name, path, cause))
        if not name.startswith("export "):
            self.broken[name] = cause

    def follow(self, reads: list[tuple[LoadedTable, list[str]]]) -> None:
        """Leave out every table that reads a left-out one, transitively."""
        changed = True
        while changed:
            changed = False
            for loaded, refs in reads:
                if loaded.spec.ref in self.broken:
                    continue
                upstream = next((r for r in refs if r in self.broken), None)
                if upstream is not None:
                    self.depend(loaded.spec.ref, loaded.path, "sql", f"reads {upstream}", upstream)
                    changed = True
