"""Spec errors that name the file, the field path, the offending value and what is allowed.

A value echoed in a message is rendered with a budget (`show`): a spec can hold a huge or deeply shared structure
(a YAML alias bomb, a 100,000-digit integer), and `repr()` of it before truncating took minutes and gigabytes.
Anything that looks like a secret (a URL's password, `password=…`) is masked in every rendered message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MISSING = object()
SHOWN_CHARS = 120
"""At most this many characters of an echoed value appear in a message."""


@dataclass(frozen=True)
class SpecError:
    file: Path
    field: str
    """Dotted path to the field, e.g. `strategy.unique_key` or `columns[2].type`; empty for the whole file."""
    message: str
    value: Any = _MISSING

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else str(self.file)
        shown = "" if self.value is _MISSING else f" (got {show(self.value)})"
        # Each part masked on its own: a field path ending in `secret` (a Secret reference) is no `secret: <value>`.
        return f"{mask_secrets(where)}: {mask_secrets(self.message)}{mask_secrets(shown)}"


def show(value: Any, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)` cut to `limit` characters, computed without ever rendering more than that."""
    out: list[str] = []
    _render(value, out, [limit + 1], 0)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _render(value: Any, out: list[str], budget: list[int], depth: int) -> None:
    """Append pieces of `repr(value)` to `out` until `budget[0]` characters are spent."""
    if budget[0] <= 0:
        return
    if depth > 20:
        piece = "..."
    elif isinstance(value, str):
        value = mask_secrets(value)  # before cutting: a cut could fall inside a password, before its '@'
        piece = repr(value[: budget[0]]) if len(value) > budget[0] else repr(value)
    elif isinstance(value, bool) or value is None:
        piece = repr(value)
    elif isinstance(value, int):
        # str() of an int beyond 4,300 digits raises ValueError; bit_length() is cheap.
        piece = (
            repr(value)
            if value.bit_length() < 1000
            else f"<an integer of about {value.bit_length() * 3 // 10} digits>"
        )
    elif isinstance(value, dict | list | tuple | set | frozenset):
        opening, closing = ("{", "}") if isinstance(value, dict | set | frozenset) else ("[", "]")
        if isinstance(value, tuple):
            opening, closing = "(", ")"
        out.append(opening)
        budget[0] -= 1
        items = value.items() if isinstance(value, dict) else value
        for i, item in enumerate(items):
            if budget[0] <= 0:
                return
            if i:
                out.append(", ")
                budget[0] -= 2
            if isinstance(value, dict):
                key, val = item
                _render(key, out, budget, depth + 1)
                out.append(": ")
                budget[0] -= 2
                _render(val, out, budget, depth + 1)
            else:
                _render(item, out, budget, depth + 1)
        piece = closing
    else:
        text = repr(value)  # dates, floats, bytes: short by nature
        piece = text[: budget[0]]
    out.append(piece)
    budget[0] -= len(piece)


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s'\"]*")
"""The scheme's length is bounded: with `*` the search was quadratic (a 1 MB value took minutes)."""
_KEY_VALUE_SECRET = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api[_-]?key)(?:=|'?:\s*'?))(?P<secret>[^\s&;,'\"]+)",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """Replace the password of every URL (`scheme://user:secret@host`) and every `password=…` with `***`."""
    text = _URL.sub(_mask_url, text)
    return _KEY_VALUE_SECRET.sub(lambda m: f"{m['key']}***", text)


def _mask_url(match: re.Match[str]) -> str:
    # The host follows the *last* '@': a password may itself hold '@' or '/' (unencoded), so no URL parser is
    # trusted to split it (urlsplit raises on some inputs, e.g. `[::1`).
    url = match[0]
    scheme, _, rest = url.partition("://")
    if "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


class SpecValidationError(Exception):
    """All the errors found in a specs directory, reported together."""

    def __init__(self, errors: list[SpecError]):
        self.errors = errors
        count = len(errors)
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{count} spec error{'s' if count != 1 else ''}:\n{lines}")


def format_loc(loc: tuple[Any, ...]) -> str:
    """Turn a pydantic location into `columns[2].type`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
