"""What operators see when a spec is invalid and the code location loaded the rest (lenient loading).

Each spec file with errors becomes a placeholder asset in the `derive_errors` group: its description lists the
file's errors and what was left out with it (the specs that read or export its tables), and materializing it fails
with a `dagster.Failure` whose first line names the file and the first error. The same list is logged once, as a
warning, when the definitions build: `dagster dev` and `dagster asset materialize` show it on stderr, and a
deployment's code server keeps it in its log.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dagster import AssetKey, AssetsDefinition, Failure, MetadataValue, asset

from derive_assets import metadata_keys as K
from derive_assets.specs.errors import SpecError
from derive_assets.specs.project import LeftOut, SpecProject

ERRORS_GROUP = "derive_errors"
ERROR_KIND = "derive-error"
logger = logging.getLogger("derive_assets")


@dataclass(frozen=True)
class BrokenSpec:
    """One spec file with errors, and what its errors left out of the code location."""

    file: Path
    errors: tuple[SpecError, ...]
    left_out: tuple[LeftOut, ...]
    """Its own definitions (tables, exports), then the specs left out because they read or export one of them."""
    key: AssetKey

    @property
    def first_line(self) -> str:
        """The file, its first error, and what to do: the first line of the failure and of the warning."""
        more = len(self.errors) - 1
        also = f" (and {more} more error{'s' if more != 1 else ''})" if more else ""
        return f"{self.errors[0]}{also}; fix this spec and reload the code location"

    @property
    def dependents(self) -> list[LeftOut]:
        return [lo for lo in self.left_out if lo.path != self.file]

    def description(self) -> str:
        lines = [
            f"**`{self.file}` is invalid: its assets are left out of this code location.** Fix the errors below, "
            "then reload the location (`derive validate` lists every error).",
            "",
            *(f"- {error}" for error in self.errors),
        ]
        own = [lo.name for lo in self.left_out if lo.path == self.file]
        if own:
            lines += ["", f"Defines (left out): {', '.join(own)}"]
        if self.dependents:
            lines += [
                "",
                "Also left out, because they read or export what this spec defines:",
                *(f"- {lo.name} ({lo.path})" for lo in self.dependents),
            ]
        return "\n".join(lines)


def broken_specs(project: SpecProject, also_left_out: Sequence[LeftOut] = ()) -> list[BrokenSpec]:
    """One entry per file with errors of its own, in file order; `also_left_out` adds definitions the project does
    not know (Python tables whose inputs are left out)."""
    dependents = {lo.path for lo in project.left_out if lo.path != lo.cause}
    by_file: dict[Path, list[SpecError]] = {}
    for error in project.errors:
        if error.file not in dependents:
            by_file.setdefault(error.file, []).append(error)
    left_out = [*project.left_out, *also_left_out]
    files = sorted(by_file, key=str)
    keys = _keys(files)
    return [
        BrokenSpec(
            file,
            tuple(by_file[file]),
            tuple(lo for lo in left_out if lo.cause == file),
            keys[file],
        )
        for file in files
    ]


def error_asset(broken: BrokenSpec) -> AssetsDefinition:
    """A placeholder for an invalid spec: it carries the errors, and fails clearly when materialized."""

    @asset(
        key=broken.key,
        group_name=ERRORS_GROUP,
        description=broken.description(),
        kinds={ERROR_KIND},
        metadata={K.SPEC_FILE: str(broken.file), "errors": MetadataValue.md(broken.description())},
    )
    def _placeholder() -> None:
        raise Failure(
            description=f"{broken.first_line}\n\n{broken.description()}",
            metadata={K.SPEC_FILE: str(broken.file)},
            allow_retries=False,
        )

    return _placeholder


def warn(broken: Sequence[BrokenSpec]) -> None:
    """One warning for the whole location: each broken file with its first error, and what it left out."""
    if not broken:
        return
    lines = [
        f"{len(broken)} spec file{'s are' if len(broken) != 1 else ' is'} invalid; the code location loaded "
        f"without {'them' if len(broken) != 1 else 'it'} (see the `{ERRORS_GROUP}` asset group; "
        "`derive validate` lists every error):"
    ]
    for b in broken:
        lines.append(f"  - {b.first_line}")
        if b.dependents:
            lines.append(f"    also left out: {', '.join(f'{lo.name} ({lo.path})' for lo in b.dependents)}")
    logger.warning("\n".join(lines))


def _keys(files: list[Path]) -> dict[Path, AssetKey]:
    """`derive_errors/<dir>__<stem>` from the path under the specs directory; stable, and unique (a short hash of
    the path is added to names that would otherwise collide, e.g. `a-b.yaml` and `a_b.yaml`)."""
    names = {file: _name(file) for file in files}
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    out = {}
    for file, name in names.items():
        if counts[name] > 1:
            name = f"{name}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
        out[file] = AssetKey([ERRORS_GROUP, name])
    return out


def _name(file: Path) -> str:
    parts = list(file.with_suffix("").parts)
    if file.is_absolute():
        parts = parts[-1:]  # the specs directory itself (no spec files in it): its name, not where it lives
    elif len(parts) > 1:
        parts = parts[1:]  # the specs directory's own name (`table_specs/...`)
    name = "__".join(re.sub(r"[^A-Za-z0-9_]", "_", p) for p in parts) or "specs"
    return name if not name[0].isdigit() else f"_{name}"
