"""Heavy libraries bound at module level, imported when a run first uses them.

Dagster starts a fresh process for every step (`multiprocess`, one pod per step on `k8s`), and each one imports
Derive and builds the definitions again before it runs anything. Building them needs no SQL rendering and no Arrow
data, yet the modules that render SQL (sqlglot) or move batches (pyarrow) are imported with the warehouse and the
factory. `lazy_module` gives such a module a stand-in for the library, so defining assets costs nothing and the
first attribute read (`exp.select`, `pa.Table`) imports it:

    ```python
    from typing import TYPE_CHECKING

    from resources.lazy_import import lazy_module

    if TYPE_CHECKING:
        import pyarrow as pa
    else:
        pa = lazy_module("pyarrow")
    ```

The type checker sees the real import; only the running process takes the stand-in. Together sqlglot and pyarrow
(with numpy) are ~0.5 s of CPU and ~60 MB per process (`tests/unit/test_import_cost.py` pins which libraries
defining assets leaves out).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    """A stand-in for the module `name` until one of its attributes is read; then imports it, and from then on
    reads resolve as fast as the real module's (its namespace is copied in)."""

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        # Submodules imported later (`pyarrow.compute`) are set on the real module only: read them through it.
        return getattr(module, attribute)


def lazy_module(name: str) -> ModuleType:
    """A stand-in for the module `name` (e.g. "sqlglot.expressions") that imports it on first attribute read.

    An unknown module fails at that first read, with the `ModuleNotFoundError` its import would raise."""
    return LazyModule(name)
