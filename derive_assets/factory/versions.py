"""Each asset's Dagster `code_version`: the spec's version from `derive_assets.specs.version`.

The hash covers what changes a table's data (SQL, columns, strategy, window, partition), so the UI marks
downstream assets stale when a spec changes. This module is the factory's one door to it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from derive_assets.specs.models import ExportSpec, SourceSpec, SourceTable, TableSpec


def _version_module() -> Any:
    # `specs/version.py` lands with the spec-validation change; until it does, assets have no code version.
    try:
        return import_module("derive_assets.specs.version")
    except ModuleNotFoundError:
        return None


def table_version(spec: TableSpec) -> str | None:
    module = _version_module()
    return module.code_version(spec) if module else None


def source_version(source: SourceSpec, table: SourceTable) -> str | None:
    module = _version_module()
    return module.source_code_version(source, table) if module else None


def export_version(spec: ExportSpec) -> str | None:
    module = _version_module()
    return module.export_code_version(spec) if module else None
