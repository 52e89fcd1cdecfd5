"""The shipped project's Python tables: warehouse tables whose rows a Python function computes.

Each is declared with `derive_assets.factory.python_assets.python_table` beside the YAML specs' tables it reads;
`python_tables(project)` returns those whose inputs the spec project has (a project built from other specs, as in
many tests, gets none of them rather than an asset reading tables that do not exist).
"""

from __future__ import annotations

from derive_assets.factory.python_assets import PythonTable
from derive_assets.python_tables.features import region_scores
from derive_assets.specs.project import SpecProject

PYTHON_TABLES: tuple[PythonTable, ...] = (region_scores,)


def python_tables(project: SpecProject) -> list[PythonTable]:
    """The Python tables whose every input is a table of `project` (replicated or built by a spec)."""
    refs = {t.spec.ref for t in project.tables} | {rt.ref for rt in project.replicated}
    return [t for t in PYTHON_TABLES if set(t.inputs) <= refs]
