"""A specs directory's `_defaults.yaml` files: read and checked once per load, merged per directory.

A `_defaults.yaml` (or `_defaults.yml`) holds only `kubernetes:` (`derive_assets.specs.kubernetes.DefaultsFile`)
and applies to every spec file in its directory and below. For each directory the loader asks for the merged
values (`DirectoryDefaults.apply`): the specs root's file first, each directory's down to the spec's, and the
spec's own block last, field by field (`kubernetes.merge_data`), before the spec's model validates it. A defaults
file's mistakes are reported once, with its own name; a spec it applies to is then not loaded (the loader says so)
rather than loaded without its defaults. Nothing here is cached: the files are small, and a changed one takes
effect at the next load even when every spec comes from the spec cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from derive_assets.specs import kubernetes as k8s
from derive_assets.specs.errors import SpecError
from derive_assets.specs.yaml_read import read_yaml_file

DEFAULTS_NAMES = ("_defaults.yaml", "_defaults.yml")

Check = Callable[[Path, type[BaseModel], Any], list[SpecError]]
"""Validate values by a model: the errors as the loader words them, for the file given (none: valid)."""
Chain = tuple[Any, list[Path], Path | None]


def is_defaults_file(path: Path) -> bool:
    """`_defaults.yaml`/`_defaults.yml`: a directory's defaults, not a spec."""
    return path.name in DEFAULTS_NAMES


class DirectoryDefaults:
    """The `_defaults.yaml` files of one load: each read and checked once (its errors name it), and merged per
    directory from the specs root down, the nearest file winning field by field."""

    def __init__(
        self,
        root: Path,
        paths: list[Path],
        errors: list[SpecError],
        check: Check,
        shown: Callable[[Path, Path], Path],
    ):
        """`paths`: the defaults files under `root`; their errors are appended to `errors`; `shown(path, root)`
        names a file in errors."""
        self.root = root
        self.errors = errors
        self.check = check
        self.own: dict[Path, tuple[Path, Any]] = {}
        """Directory -> (its defaults file as errors name it, its `kubernetes` values)."""
        self.broken: dict[Path, Path] = {}
        """Directory -> its defaults file, which has errors."""
        self._chains: dict[Path, Chain] = {}
        for path in paths:
            name = shown(path, root)
            if path.parent in self.own or path.parent in self.broken:
                first = self.own[path.parent][0] if path.parent in self.own else self.broken[path.parent]
                self._fail(path.parent, name, f"{first} is this directory's defaults file too; keep only one")
                continue
            self._read(path, name)

    def _fail(self, directory: Path, shown: Path, message: str, value: Any = None) -> None:
        self.errors.append(
            SpecError(shown, "", message) if value is None else SpecError(shown, "", message, value)
        )
        self.own.pop(directory, None)
        self.broken.setdefault(directory, shown)

    def _read(self, path: Path, shown: Path) -> None:
        data, problems = read_yaml_file(path)
        if problems:
            self.errors.extend(SpecError(shown, p.field, p.message) for p in problems)
            self.broken[path.parent] = shown
        elif data is None:
            self._fail(
                path.parent,
                shown,
                "the defaults file is empty (or only comments); write `kubernetes:` and the settings every spec "
                "of this directory inherits, or delete the file",
            )
        elif not isinstance(data, dict):
            self._fail(path.parent, shown, "a defaults file must be a YAML mapping with `kubernetes:`", data)
        elif errors := self.check(shown, k8s.DefaultsFile, data):
            self.errors.extend(errors)
            self.broken[path.parent] = shown
        else:
            self.own[path.parent] = (shown, data.get("kubernetes"))

    def chain(self, directory: Path) -> Chain:
        """(the merged `kubernetes` values for specs in `directory`, the defaults files merged, root first; the
        first broken defaults file on the way, if any)."""
        if directory in self._chains:
            return self._chains[directory]
        if directory == self.root or self.root not in directory.parents:
            parent: Chain = (None, [], None)
        else:
            parent = self.chain(directory.parent)
        values, files, broken = parent
        if broken is None and directory in self.broken:
            broken = self.broken[directory]
        elif broken is None and directory in self.own:
            shown, own = self.own[directory]
            merged = own if values is None else k8s.merge_data(values, own) if own is not None else values
            # Each file was valid alone; merged, a limit of one may be below a request of another.
            errors = self.check(shown, k8s.DefaultsFile, {"kubernetes": merged}) if files else []
            if errors:
                alone = {"kubernetes": own}
                self.errors.extend(
                    note_inherited(errors, files, lambda: self.check(shown, k8s.DefaultsFile, alone))
                )
                broken = shown
            values, files = merged, [*files, shown]
        self._chains[directory] = (values, files, broken)
        return self._chains[directory]

    def apply(self, path: Path, data: dict[str, Any]) -> tuple[dict[str, Any], list[Path], Path | None]:
        """The spec's values with the defaults merged under its `kubernetes`; the files merged; a broken one."""
        values, files, broken = self.chain(path.parent)
        if broken is not None or values is None:
            return data, [], broken
        own = data.get("kubernetes")
        if own is not None and not isinstance(own, dict):
            return data, files, None  # not a mapping: the model says so, about the spec's own value
        return {**data, "kubernetes": values if own is None else k8s.merge_data(values, own)}, files, None


def note_inherited(
    errors: list[SpecError], files: list[Path], alone: Callable[[], list[SpecError]]
) -> list[SpecError]:
    """Say which defaults files were merged under a file's `kubernetes` block on each error about it that the file
    alone (`alone()`: its errors without the defaults) does not have: one the merge made (a limit below a
    request)."""
    if not files:
        return errors
    own = {(e.field, e.message) for e in alone()}
    merged = ", ".join(str(f) for f in files)
    return [
        replace(e, message=f"{e.message} (with the directory defaults {merged} merged under this block)")
        if (e.field == "kubernetes" or e.field.startswith("kubernetes.")) and (e.field, e.message) not in own
        else e
        for e in errors
    ]
