"""The code location `dg` loads for this repository ([tool.dg.project] in pyproject.toml): its defs folder."""

from __future__ import annotations

from dagster import Definitions, definitions, load_from_defs_folder

from derive_assets.settings import PROJECT_ROOT


@definitions
def defs() -> Definitions:
    return load_from_defs_folder(path_within_project=PROJECT_ROOT)
