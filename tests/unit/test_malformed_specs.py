"""Every case of the malformed-spec corpus (`tests/unit/malformed_specs/`) through `derive validate`.

Each case is loaded together with the corpus's `_base/` source, exactly as `derive validate <dir>` loads a specs
directory, and must exit 1 (or 0 under `valid/`) with its expected errors: the file, the field path, a message
matching the case's regex, no traceback, no over-long line, and no error in a file that expects none. How to add
a case is in the corpus's README. Hostile cases run in a subprocess limited to 1 GB of address space and 20 s.
"""

from __future__ import annotations

import ctypes
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from derive_assets import cli

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "malformed_specs"
BASE = CORPUS / "_base"
MEMORY_LIMIT = 1 << 30
TIME_LIMIT_SECONDS = 20
MAX_LINE = 2_000
"""No line of `derive validate`'s output may be longer: every echoed value is cut before it is rendered."""
_FIELD_PREFIX = re.compile(r"[A-Za-z_][\w.\[\]]*: ")


@dataclass
class Expect:
    file: str
    """The error's file as `derive validate` prints it, e.g. `table_specs/yaml/empty.yaml`."""
    field: str
    """The field path, or `-` for an error about the whole file."""
    pattern: str


@dataclass
class Case:
    name: str
    source: Path
    expects: list[Expect] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    hostile: bool = False
    valid: bool = False
    prepare: Callable[[Path], None] | None = None
    """Generated cases: make the file-system oddity under the specs root."""
    drop_read_access: bool = False


def _header_lines(path: Path) -> list[str]:
    sidecar = path.with_name(path.name + ".expect")
    raw = sidecar.read_bytes() if sidecar.exists() else path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    lines = []
    for line in raw.splitlines():
        if not line.startswith(b"#"):
            break
        lines.append(line[1:].decode("utf-8", errors="replace").strip())
    return lines


def _read_expectations(case: Case, path: Path, shown: str) -> None:
    for line in _header_lines(path):
        key, _, rest = line.partition(":")
        if line == "hostile":
            case.hostile = True
        elif line == "valid":
            case.valid = True
        elif key == "expect":
            where, _, pattern = rest.partition(" | ")
            case.expects.append(Expect(shown, where.strip(), pattern.strip()))
        elif key == "expect-none":
            case.forbidden.append(rest.strip())


def discover() -> list[Case]:
    cases = []
    for group in sorted(p for p in CORPUS.iterdir() if p.is_dir() and p.name != "_base"):
        for entry in sorted(group.iterdir()):
            if entry.name.endswith(".expect"):
                continue
            case = Case(f"{group.name}/{entry.name}", entry)
            files = sorted(entry.rglob("*.y*ml")) if entry.is_dir() else [entry]
            for path in files:
                _read_expectations(case, path, f"table_specs/{path.relative_to(CORPUS)}")
            cases.append(case)
    return cases


def _write_big_file(root: Path) -> None:
    (root / "huge.yaml").write_bytes(b"# padding\n" * 300_000)


def _write_long_value(root: Path) -> None:
    (root / "long_value.yaml").write_text(f"name: t\nowner: {'x' * 900_000}\n")


def _write_wide_list(root: Path) -> None:
    (root / "wide.yaml").write_text("name: [" + ",".join(["1"] * 200_000) + "]\n")


def _write_many_columns(root: Path) -> None:
    columns = "".join(f"  - {{name: c{i}, type: VARCHAR}}\n" for i in range(10_000))
    (root / "many.yaml").write_text(
        f"name: t\ndataset: d\nowner: team:a\nstrategy: replace\ncolumns:\n{columns}sql: x\n"
    )


def _make_directory(root: Path) -> None:
    (root / "views.yaml").mkdir()
    (root / "views.yaml" / "notes.txt").write_text("not a spec")


def _make_symlink_loop(root: Path) -> None:
    (root / "loop.yaml").symlink_to("loop.yaml")


def _make_dangling_symlink(root: Path) -> None:
    (root / "gone.yaml").symlink_to("moved_away.yaml")


def _make_directory_link_loop(root: Path) -> None:
    (root / "again").symlink_to(".", target_is_directory=True)
    (root / "sources" / "up").symlink_to("..", target_is_directory=True)


def _make_editor_lock(root: Path) -> None:
    (root / ".#daily.yaml").symlink_to("someone@host.1234")


def _make_fifo(root: Path) -> None:
    os.mkfifo(root / "pipe.yaml")


def _make_unreadable(root: Path) -> None:
    path = root / "secret.yaml"
    path.write_text("name: t\n")
    path.chmod(0)


def _generated(
    name: str,
    prepare: Callable[[Path], None],
    expect: str = "",
    *,
    hostile: bool = False,
    valid: bool = False,
) -> Case:
    """A case made by `prepare`; `expect` is `<file> | <field> | <regex>` like a corpus file's header."""
    expects = []
    if expect:
        file, where, pattern = expect.split(" | ", 2)
        expects.append(Expect(f"table_specs/{file}", where, pattern))
    return Case(
        f"generated/{name}",
        BASE,
        expects,
        hostile=hostile,
        valid=valid,
        prepare=prepare,
        drop_read_access=prepare is _make_unreadable,
    )


GENERATED = [
    _generated(
        "file-over-a-megabyte",
        _write_big_file,
        r"huge.yaml | - | is 3,000,000 bytes; a spec file may be at most 1,000,000 bytes",
        hostile=True,
    ),
    _generated(
        "900-kb-value", _write_long_value, r"long_value.yaml | owner | \(got 'xxxxx+\.\.\.\)$", hostile=True
    ),
    _generated(
        "200000-element-list",
        _write_wide_list,
        "wide.yaml | - | expands to more than 100,000 values",
        hostile=True,
    ),
    _generated(
        "10000-bad-columns", _write_many_columns, "many.yaml | - | and 9,950 more errors", hostile=True
    ),
    _generated(
        "directory-named-yaml", _make_directory, "views.yaml | - | is a directory, but its name ends like"
    ),
    _generated("symlink-loop", _make_symlink_loop, "loop.yaml | - | symbolic link that loops back on itself"),
    _generated(
        "dangling-symlink",
        _make_dangling_symlink,
        "gone.yaml | - | symbolic link to a file that does not exist",
    ),
    _generated("fifo", _make_fifo, "pipe.yaml | - | is not a regular file", hostile=True),
    _generated("unreadable", _make_unreadable, "secret.yaml | - | permission denied", hostile=True),
    _generated("directory-link-loop", _make_directory_link_loop, hostile=True, valid=True),
    _generated("editor-lock-file-ignored", _make_editor_lock, valid=True),
]
CASES = discover() + GENERATED


def _specs_dir(tmp_path: Path, case: Case) -> Path:
    root = tmp_path / "table_specs"
    shutil.copytree(BASE, root, symlinks=True)
    if case.source != BASE:
        dest = root / case.source.relative_to(CORPUS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if case.source.is_dir():
            shutil.copytree(case.source, dest)
        else:
            shutil.copyfile(case.source, dest)
    if case.valid and case.prepare is not None:
        shutil.copyfile(CORPUS / "valid" / "replace-without-window.yaml", root / "order_status.yaml")
    if case.prepare is not None:
        case.prepare(root)
    return root


def _bounded() -> None:
    """In the child process: at most 1 GB of address space."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _bounded_without_root_reads() -> None:
    """Also, as root, give up reading files whatever their permissions, so a mode-000 file is unreadable."""
    _bounded()
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: dropped from what exec grants root
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _validate_in_subprocess(root: Path, case: Case) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "derive_assets.cli", "validate", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT_SECONDS,
        preexec_fn=_bounded_without_root_reads if case.drop_read_access else _bounded,
    )
    return result.returncode, result.stdout, result.stderr


def _error_lines(stderr: str) -> list[tuple[str, str]]:
    """(file, rest) of each `  - <file>: <rest>` line."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("  - "):
            file, _, rest = line[4:].partition(": ")
            out.append((file, rest))
    return out


def _matches(expect: Expect, file: str, rest: str) -> bool:
    if file != expect.file:
        return False
    if expect.field == "-":
        return not _FIELD_PREFIX.match(rest) and re.search(expect.pattern, rest) is not None
    prefix = f"{expect.field}: "
    return rest.startswith(prefix) and re.search(expect.pattern, rest[len(prefix) :]) is not None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _specs_dir(tmp_path, case)
    if case.hostile:
        code, out, err = _validate_in_subprocess(root, case)
    else:
        code = cli.main(["validate", str(root)])
        out, err = capsys.readouterr()
    output = out + err
    assert "Traceback" not in output, output
    assert all(len(line) <= MAX_LINE for line in output.splitlines()), "an output line is not bounded"
    if case.valid:
        assert code == 0, err
        assert "OK" in out
        return
    assert code == 1, f"exit {code}; stdout: {out}\nstderr: {err}"
    assert case.expects, f"{case.name} has no `# expect:` line"
    errors = _error_lines(err)
    for expect in case.expects:
        assert any(_matches(expect, file, rest) for file, rest in errors), (
            f"no error `{expect.file}: {expect.field}: …{expect.pattern}…` in:\n{err}"
        )
    expected_files = {e.file for e in case.expects}
    unexpected = [f"{file}: {rest}" for file, rest in errors if file not in expected_files]
    assert not unexpected, "errors in files that expect none:\n" + "\n".join(unexpected)
    for pattern in case.forbidden:
        assert not re.search(pattern, output), f"{pattern!r} appears in the output:\n{output}"


def test_corpus_is_large_and_two_sided() -> None:
    files = [p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml")]
    assert len(files) - len(list(BASE.rglob("*.yaml"))) >= 80
    assert sum(c.valid for c in CASES) >= 5, "the corpus must also hold specs that are accepted"
    assert sum(c.hostile for c in CASES) >= 5


def test_a_file_given_as_the_specs_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "one.yaml"
    shutil.copyfile(CORPUS / "valid" / "replace-without-window.yaml", spec)
    assert cli.main(["validate", str(spec)]) == 1
    assert (
        f"{spec}: is a file, not a directory; set DERIVE_SPECS_DIR or pass the directory"
        in capsys.readouterr().err
    )


def test_an_unreadable_specs_directory(tmp_path: Path) -> None:
    root = tmp_path / "table_specs"
    shutil.copytree(BASE, root)
    root.chmod(0)
    try:
        code, _, err = _validate_in_subprocess(root, Case("unreadable-root", BASE, drop_read_access=True))
    finally:
        root.chmod(0o755)
    assert code == 1
    assert f"{root}: specs directory cannot be read (Permission denied); make it readable" in err
    assert "Traceback" not in err
