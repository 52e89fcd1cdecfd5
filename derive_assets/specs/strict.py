"""The base of every spec model: unknown keys forbidden, frozen, each field's docstring its description."""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Forbids unknown keys, frozen; each field's docstring is its `description` (the user documentation).

    pydantic's `use_attribute_docstrings` would give the same descriptions, but on Python < 3.13 it finds each
    class's source by walking the stack with `inspect.getmodule`, whose first call resolves the file of every
    loaded module: ~0.1 s of CPU in every process that loads the definitions (each step's), half of this module's
    import. `_attribute_docstrings` reads them from the class's source instead, before the (deferred) schema is
    built from the fields, so descriptions and JSON schema are unchanged.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        docstrings = _attribute_docstrings(cls)
        for name, info in cls.__pydantic_fields__.items():
            if info.description is None and name in docstrings:
                info.description = docstrings[name]


def _attribute_docstrings(cls: type) -> dict[str, str]:
    """Field name -> the docstring right below its annotation in `cls`'s own body (pydantic's rule: the string
    statement that follows an annotated assignment), cleaned with `inspect.cleandoc`; {} when the class's source
    is not found (e.g. a class made in a function)."""
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    if not filename or "<locals>" in cls.__qualname__:
        return {}
    body: list[ast.stmt] = _module_ast(filename).body
    for part in cls.__qualname__.split("."):
        found = [node for node in body if isinstance(node, ast.ClassDef) and node.name == part]
        if not found:
            return {}
        body = found[-1].body  # the last definition of a name is the one the module holds
    docs = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


@functools.cache
def _module_ast(filename: str) -> ast.Module:
    return ast.parse(Path(filename).read_text(encoding="utf-8"), filename=filename)
