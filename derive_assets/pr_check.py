"""What a pull request changed in the specs, by code version: the tables its CI builds (`deployments/ci/check-pr.sh`).

A spec file that changed but kept its code version (a description, an owner, a check, a comment, SQL reformatted)
changes no row, so it is not built; a spec whose version differs from the base's, or that the base does not have,
is. The base is the merge base of `--base` and HEAD (what `git diff BASE...HEAD` compares), its specs read from
git (`git archive`) into a temporary directory and loaded leniently (a base with a broken spec still compares).

    python -m derive_assets.pr_check changed --base origin/main [--specs table_specs]
    python -m derive_assets.pr_check env-name

`changed` prints one asset to build per line (`dataset/name`: core/derived tables and replicated tables) on
stdout and what it found on stderr (changed exports are listed but not built: environments do not build exports).
`env-name` prints the PR environment's name from the CI's variables (see `pr_env_name`).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

BUILDABLE = ("table", "source")
"""Kinds `derive build --env` builds; exports are compared but not built."""


class PrCheckError(RuntimeError):
    """git could not answer (an unknown base revision, not a repository); the message says what to do."""


@dataclass(frozen=True)
class Versioned:
    key: str
    """The asset key as `derive build` selects it: `dataset/name` (an export: `export:<name>`)."""
    kind: str
    """table | source | export"""
    version: str
    path: Path
    """The spec file, relative to the specs directory."""


@dataclass
class Changes:
    new: list[Versioned] = field(default_factory=list)
    changed: list[Versioned] = field(default_factory=list)
    same_version: list[Versioned] = field(default_factory=list)
    """In a changed file, but with the base's code version: not built."""
    removed: list[str] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)

    def to_build(self) -> list[Versioned]:
        return [v for v in self.new + self.changed if v.kind in BUILDABLE]

    def report(self) -> str:
        lines = [f"{len(self.changed_files)} spec file(s) changed against the base"]
        lines += [f"  new:          {v.key} ({v.path})" for v in self.new]
        lines += [f"  changed:      {v.key} ({v.path}, code version {v.version})" for v in self.changed]
        lines += [
            f"  same version: {v.key} ({v.path}): the change writes no other rows, not built"
            for v in self.same_version
        ]
        lines += [f"  removed:      {key}" for key in self.removed]
        lines += [
            f"  not built:    {v.key}: environments do not build exports"
            for v in self.new + self.changed
            if v.kind not in BUILDABLE
        ]
        return "\n".join(lines)


def versions(specs_dir: Path, strict: bool) -> dict[str, Versioned]:
    """Every asset's code version in a specs directory, by key."""
    from derive_assets.specs.project import load_project
    from derive_assets.specs.version import export_code_version, source_code_version

    project = load_project(specs_dir, strict=strict)
    found: dict[str, Versioned] = {}
    for t in project.tables:
        key = f"{t.spec.dataset}/{t.spec.name}"
        found[key] = Versioned(key, "table", t.code_version, _relative(t.path, specs_dir))
    for r in project.replicated:
        key = r.ref.replace(".", "/", 1)
        found[key] = Versioned(
            key, "source", source_code_version(r.source, r.table), _relative(r.path, specs_dir)
        )
    for e in project.exports:
        key = f"export:{e.spec.name}"
        found[key] = Versioned(key, "export", export_code_version(e.spec), _relative(e.path, specs_dir))
    return found


def changes(specs_dir: Path, base: str) -> Changes:
    """What HEAD's specs (the working tree at `specs_dir`, loaded strictly) change against the merge base of
    `base` and HEAD."""
    specs_dir = specs_dir.resolve()
    top = Path(_git(specs_dir, "rev-parse", "--show-toplevel").strip())
    inside = specs_dir.relative_to(top.resolve()).as_posix()
    merge_base = _git(top, "merge-base", base, "HEAD").strip()
    files = _git(top, "diff", "--name-only", f"{merge_base}...HEAD", "--", inside).split()
    files += _git(top, "diff", "--name-only", "--", inside).split()  # uncommitted edits count too
    files += _git(top, "ls-files", "--others", "--exclude-standard", "--", inside).split()
    head = versions(specs_dir, strict=True)
    with tempfile.TemporaryDirectory(prefix="derive-base-") as tmp:
        base_dir = _extract(top, merge_base, inside, Path(tmp))
        before = versions(base_dir, strict=False) if base_dir is not None else {}
    touched = {Path(f).relative_to(inside).as_posix() if inside != "." else f for f in files}
    result = Changes(changed_files=sorted(set(files)))
    for key, now in sorted(head.items()):
        was = before.get(key)
        if was is None:
            result.new.append(now)
        elif was.version != now.version:
            result.changed.append(now)
        elif now.path.as_posix() in touched:
            result.same_version.append(now)
    result.removed = sorted(set(before) - set(head))
    return result


def pr_env_name(environ: Mapping[str, str]) -> str:
    """The PR environment: `DERIVE_PR_ENV` as given, else `pr_<number>` (`DERIVE_PR_NUMBER`, GitLab's
    `CI_MERGE_REQUEST_IID`, GitHub's `refs/pull/<n>/merge` in `GITHUB_REF`), else `pr_<branch>` (GitHub's
    `GITHUB_HEAD_REF`, GitLab's `CI_MERGE_REQUEST_SOURCE_BRANCH_NAME` or `CI_COMMIT_REF_NAME`, else git's)."""
    from derive_assets.environments import sanitize, validate_name

    if environ.get("DERIVE_PR_ENV"):
        return validate_name(environ["DERIVE_PR_ENV"])
    ref = environ.get("GITHUB_REF", "")
    from_ref = ref.split("/")[2] if ref.startswith("refs/pull/") and ref.count("/") >= 3 else ""
    number = environ.get("DERIVE_PR_NUMBER") or environ.get("CI_MERGE_REQUEST_IID") or from_ref
    if number:
        return validate_name(sanitize(f"pr_{number}"))
    branch = (
        environ.get("GITHUB_HEAD_REF")
        or environ.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
        or environ.get("CI_COMMIT_REF_NAME")
        or _git(Path.cwd(), "rev-parse", "--abbrev-ref", "HEAD").strip()
    )
    if branch == "HEAD":  # a detached checkout: the commit names it
        branch = _git(Path.cwd(), "rev-parse", "--short", "HEAD").strip()
    return validate_name(sanitize(f"pr_{branch}"))


def _extract(top: Path, rev: str, inside: str, into: Path) -> Path | None:
    """The specs directory of `rev`, written under `into`; None when `rev` has none."""
    listed = _git(top, "ls-tree", "-d", "--name-only", rev, "--", inside).strip()
    if not listed and inside != ".":
        return None
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "--", inside], cwd=top, capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise PrCheckError(f"git archive {rev} -- {inside} failed: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / inside


def _git(cwd: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
        )
    except OSError as exc:
        raise PrCheckError(
            f"git could not run ({exc}); install git, or run the check inside a clone"
        ) from None
    if out.returncode != 0:
        hint = (
            " Fetch the base branch first (a shallow clone has no merge base: `git fetch origin main`, or "
            "actions/checkout with fetch-depth: 0), or set DERIVE_PR_BASE to a revision this clone has."
            if args[0] in ("merge-base", "diff", "ls-tree")
            else ""
        )
        raise PrCheckError(f"git {' '.join(args)} failed: {out.stderr.strip() or out.stdout.strip()}.{hint}")
    return out.stdout


def _relative(path: Path, root: Path) -> Path:
    """A spec's path (as the loader shows it: from the specs directory's parent) relative to the specs directory."""
    full = path if path.is_absolute() else root.parent / path
    try:
        return full.resolve().relative_to(root.resolve())
    except ValueError:
        return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m derive_assets.pr_check",
        description="What a pull request changed in the specs, by code version (deployments/ci/check-pr.sh).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    changed = sub.add_parser(
        "changed", help="the assets to build: new, or with another code version than the base"
    )
    changed.add_argument("--base", default=None, help="default: $DERIVE_PR_BASE or origin/main")
    changed.add_argument(
        "--specs", type=Path, default=None, help="default: $DERIVE_SPECS_DIR or table_specs/"
    )
    sub.add_parser("env-name", help="the PR environment's name from the CI's variables")
    args = parser.parse_args(argv)

    from derive_assets.environments import EnvironmentNameError
    from derive_assets.specs.errors import SpecValidationError

    try:
        if args.command == "env-name":
            from derive_assets.settings import pr_variables

            print(pr_env_name(pr_variables()))
            return 0
        from derive_assets.settings import DeriveSettings, pr_base

        found = changes(args.specs or DeriveSettings.from_env().specs_dir, args.base or pr_base())
    except SpecValidationError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (PrCheckError, EnvironmentNameError) as exc:
        print(f"pr_check: {exc}", file=sys.stderr)
        return 2
    print(found.report(), file=sys.stderr)
    for v in found.to_build():
        print(v.key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
