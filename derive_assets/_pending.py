"""TEMPORARY stand-ins for interfaces other helpers are adding in issue 11 (W1, S, G2); removed once they land.

Each function calls the real interface when it is there and otherwise degrades to what can be known without it.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterable
from typing import Any

from derive_assets.specs.models import TableSpec
from resources.warehouse import TargetTable, Warehouse, WarehouseError

FULL_REFRESH_TAG = "derive/full_refresh"


def full_refresh_tag() -> str:
    from derive_assets import metadata_keys

    return getattr(metadata_keys, "FULL_REFRESH_TAG", FULL_REFRESH_TAG)


def code_version(spec: TableSpec) -> str:
    try:
        module = importlib.import_module("derive_assets.specs.version")
    except ImportError:
        return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:12]
    return module.code_version(spec)


def source_code_version(source: Any, table: Any) -> str | None:
    try:
        module = importlib.import_module("derive_assets.specs.version")
    except ImportError:
        return None
    return module.source_code_version(source, table)


def describe(warehouse: Warehouse, ref: str) -> Any:
    method = getattr(warehouse, "describe", None)
    return method(ref) if method else None


def schema_diff(warehouse: Warehouse, target: TargetTable) -> Any:
    method = getattr(warehouse, "schema_diff", None)
    return method(target) if method else None


def managed_tables(warehouse: Warehouse, datasets: Iterable[str]) -> list[str]:
    method = getattr(warehouse, "managed_tables", None)
    return method(datasets) if method else []


def drop_table(warehouse: Warehouse, ref: str) -> None:
    method = getattr(warehouse, "drop_table", None)
    if method is None:
        raise WarehouseError(f"{ref}: this warehouse cannot drop tables yet")
    method(ref)
