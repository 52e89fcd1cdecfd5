"""Specs -> the neutral engine types of `resources/` (`ColumnDef`, `TargetTable`): the one place they meet."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from derive_assets.factory import versions
from derive_assets.specs.models import Column, MergeStrategy, SourceSpec, SourceTable, TableSpec
from resources.schema import ColumnDef
from resources.warehouse import TargetTable


def column_defs(columns: Iterable[Column]) -> tuple[ColumnDef, ...]:
    return tuple(ColumnDef(c.name, c.type, c.constraints.not_null, c.description) for c in columns)


def table_target(spec: TableSpec, code_version: str | None = None) -> TargetTable:
    """A derived or core table's target: its columns, cluster keys, partitioning, merge key and spec version
    (`code_version`, default: the spec's own, `specs.version.code_version`)."""
    partition = spec.partition
    unique_key = tuple(spec.strategy.unique_key) if isinstance(spec.strategy, MergeStrategy) else ()
    return TargetTable(
        spec.dataset,
        spec.name,
        column_defs(spec.columns),
        tuple(spec.cluster),
        partition.key if partition else None,
        partition.granularity if partition else "day",
        partition.expiration_days if partition else None,
        partition.require_filter if partition else False,
        **_known_fields(
            unique_key=unique_key,
            code_version=code_version if code_version is not None else versions.table_version(spec),
        ),
    )


def source_target(
    dataset: str, table: SourceTable, source: SourceSpec | None = None, code_version: str | None = None
) -> TargetTable:
    """A replicated table's target: clustered by its primary key, never partitioned; its spec version is
    `code_version`, else the source table's own (`specs.version.source_code_version`) when `source` is given."""
    if code_version is None and source is not None:
        code_version = versions.source_version(source, table)
    return TargetTable(
        dataset,
        table.name,
        column_defs(table.columns),
        tuple(table.primary_key),
        **_known_fields(code_version=code_version),
    )


def _known_fields(**fields: Any) -> dict[str, Any]:
    """The fields `TargetTable` has: `unique_key` and `code_version` arrive with the schema-diff change (W1);
    until then they are left out rather than breaking every target."""
    names = {f.name for f in dataclasses.fields(TargetTable)}
    return {name: value for name, value in fields.items() if name in names}
