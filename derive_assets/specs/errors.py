"""Spec errors that name the file, the field path, the offending value and what is allowed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class SpecError:
    file: Path
    field: str
    """Dotted path to the field, e.g. `strategy.unique_key` or `columns[2].type`; empty for the whole file."""
    message: str
    value: Any = _MISSING

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else str(self.file)
        shown = "" if self.value is _MISSING else f" (got {_show(self.value)})"
        return f"{where}: {self.message}{shown}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


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
