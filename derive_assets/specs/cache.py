"""The spec cache: each spec file's expensive analysis, kept as plain JSON under `.derive/cache`.

Loading a spec project reads YAML, parses and qualifies every query with sqlglot and binds it on DuckDB; at 1,000
specs that took ~10 s, paid again by every process that loads the definitions (each run, each step, each pod).
What those steps compute depends only on three things, so they are cached per spec file, keyed by them:

- the file's bytes (`Entry.digest`, with the library fingerprint): the YAML's values, and for a table what its SQL
  reads, its parameters and its normalized SQL (what `code_version` hashes);
- the declared columns and types of every table the query reads (`schema_key`): the query's output columns and
  whether it binds on DuckDB (with its column types accepted by `type_check`);
- the libraries and Derive's own analysis code (`library_fingerprint`): a new sqlglot, DuckDB or pydantic, or an
  edited `derive_assets/specs` module, starts a fresh cache.

So a changed spec is analysed again alone, and a changed column list or type also re-resolves the specs that read
that table (their schema key changed); nothing else is. Only outcomes that passed are stored: a query that does
not parse, resolve or bind is analysed again on every load, so its error texts are exactly those of an uncached
load. The cross-file checks (what exists, cycles, exports, lenient leaving-out) always run; they are cheap.

Entries are JSON files named by their digest (`<cache_dir>/specs-v<format>/<digest>.json`), written atomically
(a temporary file renamed over). A missing, unreadable, corrupt or foreign entry is a miss, and a cache directory
that cannot be created or written just means nothing is stored: the cache never turns a load into an error. Stale
entries (of edited specs) stay until the directory is deleted, which is always safe.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from derive_assets.specs.sql_analysis import Schema, SqlAnalysis

CACHE_FORMAT = 2
"""Bump when the shape or meaning of an entry changes (2: an entry's `sql` holds its `window_columns`)."""
LIBRARIES = ("derive", "sqlglot", "duckdb", "pydantic", "pydantic-core", "pyyaml", "croniter")
"""Distributions whose version is part of every key: each changes what the analysis or validation computes."""
MAX_RESOLUTIONS = 8
"""Schema variants kept per entry (a spec read against an upstream's old and new columns, branch to branch)."""
_CODE = (
    Path(__file__).resolve().parent,  # derive_assets/specs: models, loader, analysis, checks
    Path(__file__).resolve().parents[2] / "resources" / "sql_text.py",  # DuckDB type names used by the bind
    Path(__file__).resolve().parents[2] / "resources" / "schema.py",  # the column type vocabulary
)
_MISSING: Any = object()


def library_versions() -> dict[str, str]:
    """The installed version of each of `LIBRARIES` ('' when one is not installed)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = ""
    return versions


@functools.cache
def library_fingerprint() -> str:
    """A hash of the cache format, `library_versions()` and the source of Derive's spec analysis modules (so an
    edited checkout, whose package version does not change, never reads entries its old code wrote)."""
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, library_versions()], sort_keys=True).encode())
    for place in _CODE:
        files = sorted(place.glob("*.py")) if place.is_dir() else [place]
        for path in files:
            try:
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
            except OSError:
                digest.update(path.name.encode() + b"\0?\0")
    return digest.hexdigest()


def schema_key(reads: list[str], schema: Schema) -> str:
    """A hash of the declared columns (names, order, types) of each table in `reads`, and of which are unknown."""
    tables = []
    for ref in reads:
        dataset, _, name = ref.partition(".")
        columns = schema.get(dataset, {}).get(name)
        tables.append([ref, None if columns is None else list(columns.items())])
    return hashlib.sha256(json.dumps(tables).encode()).hexdigest()[:32]


@dataclass
class CacheStats:
    """What one load took from the cache and what it computed (tests count analyses with it)."""

    yaml: list[Path] = field(default_factory=list)
    """Spec files read as YAML (not taken from the cache)."""
    parsed: list[Path] = field(default_factory=list)
    """Table specs whose SQL was parsed and checked."""
    resolved: list[Path] = field(default_factory=list)
    """Table specs whose query was resolved against the schemas it reads."""
    bound: list[Path] = field(default_factory=list)
    """Table specs whose query was bound on DuckDB."""
    stored: int = 0
    """Entries written."""

    @property
    def analysed(self) -> set[Path]:
        """Every table spec any expensive step ran for."""
        return {*self.parsed, *self.resolved, *self.bound}


class Entry:
    """One spec file's cached results (possibly none yet) during one load."""

    def __init__(self, digest: str, stored: dict[str, Any] | None):
        self.digest = digest
        stored = stored or {}
        self.data: Any = stored.get("data", _MISSING)
        self.sql: dict[str, Any] | None = stored.get("sql")
        self.resolutions: dict[str, dict[str, Any]] = stored.get("resolutions", {})
        self.schema_key: str | None = None
        """The schema key this load resolved the query against."""
        self.dirty = False

    @property
    def has_data(self) -> bool:
        return self.data is not _MISSING

    def set_data(self, data: Any) -> None:
        """Keep the file's YAML values, if JSON holds them unchanged (a `!!binary` or `!!set` value is not)."""
        if _plain(data, 0):
            self.data, self.dirty = data, True

    def analysis(self, sql: str) -> SqlAnalysis | None:
        """The cached analysis of the spec's SQL (`sql_analysis.analyse`), without its sqlglot tree."""
        if self.sql is None:
            return None
        return SqlAnalysis(
            sql,
            list(self.sql["reads"]),
            list(self.sql["parameters"]),
            normalized=self.sql["normalized"],
            window_columns=tuple(self.sql["window_columns"]),
        )

    def set_analysis(self, analysis: SqlAnalysis) -> None:
        self.sql = {
            "reads": analysis.reads,
            "parameters": analysis.parameters,
            "normalized": analysis.normalized_sql,
            "window_columns": list(analysis.window_columns),
        }
        self.dirty = True

    def output_columns(self, key: str) -> list[str] | None:
        """The query's output columns when resolved against the schemas of `key`; remembers `key` for `bound`."""
        self.schema_key = key
        found = self.resolutions.get(key)
        return None if found is None else list(found["output_columns"])

    def set_output_columns(self, key: str, columns: list[str]) -> None:
        self.schema_key = key
        self.resolutions.pop(key, None)
        self.resolutions[key] = {"output_columns": columns, "bound": False}
        while len(self.resolutions) > MAX_RESOLUTIONS:
            self.resolutions.pop(next(iter(self.resolutions)))
        self.dirty = True

    @property
    def bound(self) -> bool:
        """Whether the query, resolved against this load's schemas, bound on DuckDB with its declared types."""
        found = self.resolutions.get(self.schema_key or "")
        return bool(found and found["bound"])

    def set_bound(self) -> None:
        found = self.resolutions.get(self.schema_key or "")
        if found is not None and not found["bound"]:
            found["bound"] = True
            self.dirty = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": CACHE_FORMAT, "digest": self.digest}
        if self.has_data:
            out["data"] = self.data
        if self.sql is not None:
            out["sql"] = self.sql
        if self.resolutions:
            out["resolutions"] = self.resolutions
        return out


class SpecCache:
    """One load's view of the cache directory; `SpecCache(None)` caches nothing (and still counts, in `stats`)."""

    def __init__(self, directory: Path | None):
        self.directory = directory / f"specs-v{CACHE_FORMAT}" if directory is not None else None
        self.stats = CacheStats()
        self._entries: dict[Path, Entry] = {}
        self._fingerprint = library_fingerprint() if directory is not None else ""

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def open(self, path: Path, raw: bytes) -> Entry:
        """The entry for the spec file `path` (as the load names it) with these bytes: stored, or new."""
        digest = hashlib.sha256(self._fingerprint.encode() + b"\0" + raw).hexdigest()
        entry = Entry(digest, self._read(digest))
        self._entries[path] = entry
        return entry

    def entry(self, path: Path) -> Entry | None:
        """The entry `open` gave for `path` in this load, if any."""
        return self._entries.get(path)

    def save(self) -> None:
        """Write every entry this load added to (each atomically); stop quietly where the directory is not
        writable."""
        if self.directory is None:
            return
        dirty = [e for e in self._entries.values() if e.dirty]
        if not dirty:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for entry in dirty:
                self._write(entry)
                entry.dirty = False
                self.stats.stored += 1
        except OSError:
            return  # read-only, full or not a directory: the next load analyses again, nothing is wrong

    def _read(self, digest: str) -> dict[str, Any] | None:
        if self.directory is None:
            return None
        try:
            stored = json.loads((self.directory / f"{digest}.json").read_bytes())
        except (OSError, ValueError):  # missing or unreadable; not JSON (ValueError covers bad UTF-8 too)
            return None
        return stored if _valid(stored, digest) else None

    def _write(self, entry: Entry) -> None:
        assert self.directory is not None
        text = json.dumps(entry.to_json(), separators=(",", ":"), allow_nan=False)
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temporary, self.directory / f"{entry.digest}.json")
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _valid(stored: Any, digest: str) -> bool:
    """Whether a decoded entry has the shape this code writes (anything else, e.g. a hand-edited or truncated file
    of another format, is a miss)."""
    if not isinstance(stored, dict) or stored.get("format") != CACHE_FORMAT or stored.get("digest") != digest:
        return False
    sql = stored.get("sql")
    if sql is not None and not (
        isinstance(sql, dict)
        and _strings(sql.get("reads"))
        and _strings(sql.get("parameters"))
        and isinstance(sql.get("normalized"), str)
        and _strings(sql.get("window_columns"))
    ):
        return False
    resolutions = stored.get("resolutions", {})
    return isinstance(resolutions, dict) and all(
        isinstance(r, dict) and _strings(r.get("output_columns")) and isinstance(r.get("bound"), bool)
        for r in resolutions.values()
    )


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _plain(value: Any, depth: int) -> bool:
    """Whether JSON gives `value` back equal and of the same types (YAML's mappings, lists and scalars)."""
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if depth > 100:
        return False
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False  # bytes, sets, tuples (`!!omap`), dates: read from the YAML each time
