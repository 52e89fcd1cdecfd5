"""Read one spec file into plain Python values, refusing what a spec never needs and a parser should not try.

PyYAML's `safe_load` alone accepts a great deal that hurts here: a 1 KB "billion laughs" document whose aliases
expand to 10^9 values (pydantic then walks every one: minutes and gigabytes), duplicate keys that silently keep
the last value (a second `name:` renamed a table), keys that YAML 1.1 reads as booleans (`on:`), dates such as
`2026-13-01` that crash its timestamp constructor, and bytes that are not UTF-8. Each of these becomes a
`YamlProblem` naming the line and, where one exists, the field path; nothing here raises anything else.

The file is parsed twice with libyaml (both passes are fast): first as an event stream, to bound nesting depth
and the alias-expanded size before any tree is built, then composed into nodes that are checked for duplicate and
non-text keys before they are turned into Python values.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 1_000_000
"""Spec files are a few kilobytes; anything past a megabyte is not a spec."""
MAX_VALUES = 100_000
"""The most values (mapping, list and scalar nodes) a document may hold once its aliases are expanded."""
MAX_DEPTH = 50
"""The deepest nesting of mappings and lists; real specs nest about six levels."""
MAX_INT_DIGITS = 30
"""Integers longer than this are no count, size or id a spec needs (and Python refuses 4,300+ digits)."""

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_INT = "tag:yaml.org,2002:int"
_KEY_KINDS = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean (YAML 1.1 reads yes, no, on, off, true and false so)",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date",
}


@dataclass(frozen=True)
class YamlProblem:
    """Why a file cannot be read as a spec; `field` is a path such as `tables[0].name`, or empty."""

    message: str
    field: str = ""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loading (libyaml when built in, ~10x faster), with dates left as text for pydantic to parse."""


# `2026-13-01` made PyYAML's timestamp constructor raise a bare ValueError; as text, pydantic reports it with
# its field path, and a date-valued field (`window.start`) still parses `2026-01-01`.
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def read_yaml_file(path: Path) -> tuple[Any, list[YamlProblem]]:
    """The file's single YAML document as Python values, or the problems that stop it from being read."""
    raw, problem = read_spec_bytes(path)
    if problem is not None:
        return None, [problem]
    return parse_yaml_bytes(raw)


def read_spec_bytes(path: Path) -> tuple[bytes, YamlProblem | None]:
    """The bytes of a spec file, or why it cannot be read as one (a directory, too big, unreadable)."""
    return _read_bytes(path)


def parse_yaml_bytes(raw: bytes) -> tuple[Any, list[YamlProblem]]:
    """A spec file's bytes (`read_spec_bytes`) as Python values, or the problems that stop them from being read."""
    text, problem = _decode(raw)
    if problem is not None:
        return None, [problem]
    try:
        problem = _check_events(text)
        if problem is not None:
            return None, [problem]
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, []
            problems = _check_nodes(node)
            if problems:
                return None, problems
            return loader.construct_document(node), []
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        return None, [_yaml_problem(exc)]
    except (ValueError, TypeError, OverflowError) as exc:
        # A constructor given a value its tag cannot hold, e.g. `!!int abc`; PyYAML raises these bare.
        return None, [
            YamlProblem(f"a value cannot be read: {exc}; remove the explicit `!!` tag or fix the value")
        ]


def _read_bytes(path: Path) -> tuple[bytes, YamlProblem | None]:
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            return b"", YamlProblem(
                "is a directory, but its name ends like a spec file; rename it (spec files are *.yaml files)"
            )
        if not stat.S_ISREG(info.st_mode):
            return b"", YamlProblem(
                "is not a regular file (a device, FIFO or socket); a spec is a *.yaml text file"
            )
        if info.st_size > MAX_FILE_BYTES:
            return b"", _too_big(info.st_size)
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return b"", YamlProblem(_os_problem(path, exc))
    if len(raw) > MAX_FILE_BYTES:
        return b"", _too_big(len(raw))
    return raw, None


def _too_big(size: int) -> YamlProblem:
    return YamlProblem(
        f"is {size:,} bytes; a spec file may be at most {MAX_FILE_BYTES:,} bytes (specs are a few KB): "
        "split it, or move what is not a spec out of the specs directory"
    )


def _os_problem(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "cannot be read: it is a symbolic link that loops back on itself; point it at a real file"
    if exc.errno == errno.ENOENT and path.is_symlink():
        return (
            f"is a symbolic link to a file that does not exist ({os.readlink(path)}); fix or remove the link"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read: permission denied; make it readable by the user that runs Derive"
    return f"cannot be read: {exc.strerror or exc}"


def _decode(raw: bytes) -> tuple[str, YamlProblem | None]:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark, as some Windows editors write
    if b"\x00" in raw:
        return "", YamlProblem(
            "contains NUL bytes: it is a binary file (or UTF-16 text), not YAML; save specs as UTF-8 text"
        )
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return "", YamlProblem(
            f"line {line}, column {column}: is not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be decoded); "
            "save the file as UTF-8"
        )


def _check_events(text: str) -> YamlProblem | None:
    """Bound depth and alias-expanded size from the event stream, before any node tree exists."""
    loader = _Loader(text)
    try:
        anchors: dict[str, int] = {}  # anchor -> number of values it stands for, once its node is complete
        open_nodes: list[list[Any]] = []  # [anchor, values so far] for each open mapping or list
        total = 0
        while loader.check_event():
            event = loader.get_event()
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, yaml.CollectionStartEvent):
                if len(open_nodes) >= MAX_DEPTH:
                    return YamlProblem(
                        f"line {line}: mappings and lists nest more than {MAX_DEPTH} levels deep; "
                        "a spec nests a few levels (tables → columns → constraints)"
                    )
                open_nodes.append([event.anchor, 1])
                total += 1
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, size = open_nodes.pop()
            elif isinstance(event, yaml.ScalarEvent):
                anchor, size = event.anchor, 1
                total += 1
            elif isinstance(event, yaml.AliasEvent):
                if any(a == event.anchor for a, _ in open_nodes):
                    return YamlProblem(
                        f"line {line}: alias *{event.anchor} refers to a value that contains it, which never "
                        "ends; a spec cannot be recursive"
                    )
                anchor, size = None, anchors.get(event.anchor, 1)  # an unknown anchor fails when composing
                total += size
            else:
                continue
            if anchor is not None:
                anchors[anchor] = size
            if open_nodes:
                open_nodes[-1][1] += size
            if total > MAX_VALUES:
                return YamlProblem(
                    f"line {line}: the document expands to more than {MAX_VALUES:,} values (each alias `*name` "
                    "repeats its anchored value); a spec holds a few hundred: remove the aliases that "
                    "multiply each other"
                )
        return None
    finally:
        loader.dispose()


def _check_nodes(root: Node) -> list[YamlProblem]:
    """Duplicate keys, keys that are not text, and integers too long to be meant, with their field paths."""
    problems: list[YamlProblem] = []
    seen: set[int] = set()  # aliased nodes are shared: check each once
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            digits = len(str(node.value).lstrip("+-0"))
            if node.tag == _INT and digits > MAX_INT_DIGITS:
                problems.append(
                    YamlProblem(
                        f"line {node.start_mark.line + 1}: an integer of {digits} digits is larger than any "
                        f"count, size or id a spec holds (at most {MAX_INT_DIGITS} digits)",
                        path,
                    )
                )
        elif isinstance(node, SequenceNode):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(node.value))))
        elif isinstance(node, MappingNode):
            lines: dict[str, int] = {}
            children = []
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if key_node.tag == _MERGE:
                    children.append((value_node, path))
                    continue
                if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                    problems.append(_key_problem(key_node, path, line))
                    continue
                key = str(key_node.value)
                child = f"{path}.{key}" if path else key
                if key in lines:
                    problems.append(
                        YamlProblem(
                            f"key '{key}' appears twice in the same mapping, on line {lines[key]} and line {line}; "
                            "YAML would silently keep only the last one: remove one (or rename it)",
                            child,
                        )
                    )
                lines.setdefault(key, line)
                children.append((value_node, child))
            stack.extend(reversed(children))
    return problems


def _key_problem(key_node: Node, path: str, line: int) -> YamlProblem:
    if isinstance(key_node, ScalarNode):
        kind = _KEY_KINDS.get(key_node.tag, f"of type {key_node.tag}")
        written = str(key_node.value)[:40]
        return YamlProblem(
            f"line {line}: key '{written}' is read by YAML as {kind}, not text; keys are field names: fix the key, "
            f"or quote it ('{written}':) if it is meant",
            path,
        )
    return YamlProblem(
        f"line {line}: a key is a {'list' if isinstance(key_node, SequenceNode) else 'mapping'}; "
        "keys are field names (text)",
        path,
    )


def _yaml_problem(exc: yaml.YAMLError) -> YamlProblem:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return YamlProblem(f"{where}not valid YAML: {problem}")
