"""Load every YAML file under a specs directory into validated models, collecting all errors."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from derive_assets.settings import specs_dir_from_env
from derive_assets.specs.defaults import DirectoryDefaults, is_defaults_file, note_inherited
from derive_assets.specs.errors import SHOWN_CHARS, SpecError, SpecValidationError, format_loc, show
from derive_assets.specs.models import (
    MAX_CLUSTER_KEYS,
    AppendStrategy,
    ExportSpec,
    MergeStrategy,
    ReplaceStrategy,
    SourceSpec,
    SourceTable,
    TableSpec,
    source_table_ref,
)
from derive_assets.specs.yaml_read import YamlProblem, parse_yaml_bytes, read_spec_bytes, read_yaml_file

if TYPE_CHECKING:
    from derive_assets.specs.cache import SpecCache

SPECS_DIR_ENV = "DERIVE_SPECS_DIR"
SPEC_SUFFIXES = (".yaml", ".yml")
MAX_ERRORS_PER_FILE = 50
"""A file with thousands of bad entries reports the first ones and a count, not a wall of text."""
KINDS = {"table": TableSpec, "source": SourceSpec, "export": ExportSpec}


@dataclass(frozen=True)
class LoadedSource:
    path: Path
    spec: SourceSpec


@dataclass(frozen=True)
class LoadedTable:
    path: Path
    spec: TableSpec


@dataclass(frozen=True)
class LoadedExport:
    path: Path
    spec: ExportSpec


@dataclass(frozen=True)
class RawSpecs:
    """Files parsed and validated one by one, before the cross-file checks of `derive_assets.specs.project`."""

    root: Path
    sources: list[LoadedSource]
    tables: list[LoadedTable]
    errors: list[SpecError]
    exports: list[LoadedExport] = field(default_factory=list)
    failed_refs: set[str] = field(default_factory=set)
    """`dataset.name` of the tables that files which failed validation appear to define: a query or export that
    reads one of them is not reported again ("no spec defines it"); the file's own errors say what to fix."""
    failed_files: dict[str, Path] = field(default_factory=dict)
    """Each of `failed_refs` -> the (first) failed file that appears to define it."""

    def source_tables(self) -> dict[str, tuple[LoadedSource, SourceTable]]:
        return {source_table_ref(s.spec, t): (s, t) for s in self.sources for t in s.spec.tables}


def default_specs_dir() -> Path:
    """`DERIVE_SPECS_DIR` or the project's `table_specs/`, as the settings (the one reader of the environment) say."""
    return specs_dir_from_env()


def spec_files(root: Path) -> list[Path]:
    """Every `*.yaml`/`*.yml` path under `root`, whatever it is (a directory or a broken link so named is reported
    when read). Directory links are followed, each directory once, so a link loop cannot recurse forever."""
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            info = directory.stat()
            if (info.st_dev, info.st_ino) in visited:
                continue
            visited.add((info.st_dev, info.st_ino))
            entries = list(os.scandir(directory))
        except OSError:
            continue  # an unreadable or looping directory: read_specs reports the root; deeper ones hold no spec
        for entry in entries:
            path = Path(entry.path)
            if path.suffix in SPEC_SUFFIXES:
                if not entry.name.startswith(".#"):  # an editor's lock file (a dangling link), never a spec
                    found.append(path)
            elif _is_dir(entry):
                pending.append(path)
    return sorted(found)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def read_specs(root: Path, cache: SpecCache | None = None) -> RawSpecs:
    """Parse and validate each file; never raises for a bad file, it records the errors instead.

    With a `cache`, each file's YAML values come from its entry when the file's bytes are unchanged (and are kept
    in it otherwise); they are validated by the models either way."""
    if not root.is_dir():
        what = "is a file, not a directory" if root.exists() else "specs directory not found"
        raise SpecValidationError(
            [SpecError(root, "", f"{what}; set {SPECS_DIR_ENV} or pass the directory that holds the specs")]
        )
    try:
        with os.scandir(root) as entries:
            next(entries, None)
    except OSError as exc:
        raise SpecValidationError(
            [SpecError(root, "", f"specs directory cannot be read ({exc.strerror}); make it readable")]
        ) from None
    sources: list[LoadedSource] = []
    tables: list[LoadedTable] = []
    exports: list[LoadedExport] = []
    errors: list[SpecError] = []
    failed_refs: set[str] = set()
    failed_files: dict[str, Path] = {}
    files = spec_files(root)
    defaults = DirectoryDefaults(root, [p for p in files if is_defaults_file(p)], errors, _check, _shown)
    for path in files:
        if is_defaults_file(path):
            continue
        shown = _shown(path, root)
        data, error = _read_yaml(path, shown, cache)
        if error:
            errors.extend(error)
            continue
        alone = data
        data, inherited, broken = defaults.apply(path, data)
        if broken is not None:
            errors.append(
                SpecError(
                    shown,
                    "kubernetes",
                    f"not loaded: the directory defaults {broken} apply to it and have errors (listed with that "
                    "file); fix them and this spec loads with its defaults",
                )
            )
            intended = _intended_refs(data.get("kind", "table"), data)
            failed_refs |= intended
            for ref in sorted(intended):
                failed_files.setdefault(ref, shown)
            continue
        kind = data.get("kind", "table")
        model = KINDS.get(kind) if isinstance(kind, str) else None
        if model is None:
            errors.append(SpecError(shown, "kind", f"unknown kind; allowed: {sorted(KINDS)}", kind))
            continue
        hint = _missing_kind(data) if "kind" not in data else None
        if hint:
            errors.append(SpecError(shown, "kind", hint))
            continue
        try:
            spec = model.model_validate(data)
        except ValidationError as exc:
            own_errors = _pydantic_errors(shown, model, exc)
            errors.extend(
                _at_most(shown, note_inherited(own_errors, inherited, partial(_check, shown, model, alone)))
            )
            intended = _intended_refs(kind, data)
            failed_refs |= intended
            for ref in sorted(intended):
                failed_files.setdefault(ref, shown)
            continue
        if isinstance(spec, SourceSpec):
            sources.append(LoadedSource(shown, spec))
        elif isinstance(spec, ExportSpec):
            exports.append(LoadedExport(shown, spec))
        else:
            tables.append(LoadedTable(shown, spec))
    if not sources and not tables and not errors:
        errors.append(SpecError(root, "", "no *.yaml spec files found"))
    return RawSpecs(root, sources, tables, errors, exports, failed_refs, failed_files)


def _check(shown: Path, model: type[BaseModel], data: Any) -> list[SpecError]:
    """`data` validated by `model`: its errors as this loader words them (none: valid)."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return _at_most(shown, _pydantic_errors(shown, model, exc))
    return []


def _shown(path: Path, root: Path) -> Path:
    """How errors name a spec file: from the specs directory's parent (`table_specs/core/x.yaml`)."""
    try:
        return path.relative_to(root.parent)  # ~4x faster than testing `root.parent in path.parents` first
    except ValueError:
        return path


def _intended_refs(kind: str, data: dict[str, Any]) -> set[str]:
    """The tables an invalid table or source file was meant to define, as far as its names can be read."""
    name, dataset = data.get("name"), data.get("dataset")
    if kind == "table":
        return {f"{dataset}.{name}"} if isinstance(name, str) and isinstance(dataset, str) else set()
    if kind != "source":
        return set()
    dataset = dataset if isinstance(dataset, str) else name
    tables = data.get("tables")
    if not isinstance(dataset, str) or not isinstance(tables, list):
        return set()
    return {
        f"{dataset}.{t['name']}" for t in tables if isinstance(t, dict) and isinstance(t.get("name"), str)
    }


_KIND_FIELDS = {"source": ("connection_env", "tables"), "export": ("keyspace", "partition_key")}
"""Fields only a source or an export has: a file with them but no `kind` was meant to be one."""


def _missing_kind(data: dict[str, Any]) -> str | None:
    for kind, fields in _KIND_FIELDS.items():
        present = [f for f in fields if f in data]
        if present:
            return (
                f"required for this spec: it has {kind} fields ({', '.join(present)}); add `kind: {kind}` "
                "(without `kind`, a file is read as a table)"
            )
    return None


def _read_yaml(path: Path, shown: Path, cache: SpecCache | None) -> tuple[dict[str, Any], list[SpecError]]:
    data, problems = _yaml_values(path, shown, cache)
    if problems:
        return {}, _at_most(shown, [SpecError(shown, p.field, p.message) for p in problems])
    if data is None:
        return {}, [
            SpecError(
                shown,
                "",
                "the file is empty (or only comments); write the spec as YAML `key: value` lines "
                "(`name: …`, `dataset: …`) or delete the file",
            )
        ]
    if not isinstance(data, dict):
        return {}, [SpecError(shown, "", "a spec file must be a YAML mapping (key: value pairs)", data)]
    return data, []


def _yaml_values(path: Path, shown: Path, cache: SpecCache | None) -> tuple[Any, list[YamlProblem]]:
    """The file's YAML values: from its cache entry when there is one for these bytes, else read now."""
    if cache is None or not cache.enabled:
        if cache is not None:
            cache.stats.yaml.append(shown)
        return read_yaml_file(path)
    raw, problem = read_spec_bytes(path)
    if problem is not None:
        return None, [problem]
    entry = cache.open(shown, raw)
    if entry.has_data:
        return entry.data, []
    cache.stats.yaml.append(shown)
    data, problems = parse_yaml_bytes(raw)
    if not problems:
        entry.set_data(data)
    return data, problems


def _at_most(path: Path, errors: list[SpecError]) -> list[SpecError]:
    if len(errors) <= MAX_ERRORS_PER_FILE:
        return errors
    more = len(errors) - MAX_ERRORS_PER_FILE
    return [*errors[:MAX_ERRORS_PER_FILE], SpecError(path, "", f"and {more:,} more errors in this file")]


def _pydantic_errors(path: Path, model: type[BaseModel], exc: ValidationError) -> list[SpecError]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # Discriminated unions put the tag into the location (`strategy.merge.unique_key`); users never wrote it.
        loc = tuple(p for p in loc if p not in ("merge", "append", "replace") or loc.index(p) == 0)
        loc = loc[:-1] if loc[-1:] == ("[key]",) else loc  # a mapping's key: the path names the key itself
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_fields(model, loc[:-1])
            message = f"unknown field; allowed: {allowed}" if allowed else "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "union_tag_invalid" and "strategy" in loc:
            message = f"unknown strategy type; allowed: {['merge', 'append', 'replace']}"
        elif err["type"] == "union_tag_not_found":
            message = "needs a `type`: one of ['merge', 'append', 'replace']"
        elif err["type"] == "string_pattern_mismatch" and "pattern" in err.get("ctx", {}):
            pattern = str(err.get("ctx", {})["pattern"])
            message = "must be a plain identifier: letters, digits and _, not starting with a digit"
            if "A-Z0-9" in pattern:
                message = "must be an environment variable name: UPPER_CASE letters, digits and _"
            elif loc[-1:] == ("path",):
                message = "must be a dot path of field names, e.g. `settings.timezone`"
            elif r"\." in pattern:
                message = "must be `dataset.name`: two plain identifiers joined by a dot"
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type") and "kubernetes" in loc:
            allowed = _allowed_fields(model, loc)
            message = "must be a mapping (key: value pairs)" + (
                f"; allowed fields: {allowed}" if allowed else ""
            )
        elif err["type"] == "model_attributes_type" and loc == ("strategy",):
            message = (
                "must be `merge`, `append`, `replace` or a mapping with a `type` "
                "(and, for merge, a `unique_key`)"
            )
        elif err["type"] == "literal_error":
            expected = str(err.get("ctx", {}).get("expected", ""))
            allowed_values = re.findall(r"'([^']*)'", expected)
            message = f"unknown value; allowed: {allowed_values or expected}"
        elif err["type"] == "too_long" and loc == ("cluster",):
            message = (
                f"at most {MAX_CLUSTER_KEYS} cluster keys: BigQuery allows at most four clustering columns; "
                "keep the ones most queries filter on"
            )
        value = err.get("input")
        if err["type"] == "union_tag_invalid" and "tag" in err.get("ctx", {}):
            # Show the strategy's `type`, not the whole (maybe shorthand-expanded) mapping.
            value = err.get("ctx", {})["tag"]
        field = format_loc(loc)
        if err["type"] == "value_error" and isinstance(value, dict):
            # A model validator's message starts with the field it is about (`cursor: ...`); the input is the
            # whole mapping, and the message already quotes the offending value.
            # Several rule problems arrive as one message, one problem per line.
            for line in message.split("\n"):
                line_field, match = field, _FIELD_PREFIX.match(line)
                if match:
                    line_field = f"{field}.{match[1]}" if field else match[1]
                    line = line[match.end() :]
                out.append(SpecError(path, line_field, line))
        elif err["type"] == "missing" or (isinstance(value, dict) and len(show(value)) >= SHOWN_CHARS):
            out.append(SpecError(path, field, message))
        else:
            out.append(SpecError(path, field, message, value))
    return out


_FIELD_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\[\]]*): ")


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Walk the model along a location to list the fields allowed where an unknown key was found."""
    current: Any = model
    key_next = False
    for part in loc:
        if isinstance(part, int) or key_next:  # a list index, or a key of a mapping of models (`secret_env`)
            key_next = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_in(field.annotation)
        key_next = get_origin(field.annotation) is dict
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    if current == "strategy":
        return sorted(
            {*MergeStrategy.model_fields, *AppendStrategy.model_fields, *ReplaceStrategy.model_fields}
        )
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = get_args(annotation)
    models = [a for a in (_model_in(a) for a in args) if a is not None]
    if len(models) == 1:
        return models[0]
    if any(m in (MergeStrategy, AppendStrategy, ReplaceStrategy) for m in models):
        return "strategy"
    if get_origin(annotation) is list and models:
        return models[0]
    return None
