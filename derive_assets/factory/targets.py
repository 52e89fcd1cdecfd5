"""Specs -> the neutral engine types of `resources/` (`ColumnDef`, `TargetTable`): the one place they meet."""

from __future__ import annotations

from collections.abc import Iterable

from derive_assets.specs.models import Column, MergeStrategy, SourceSpec, SourceTable, TableSpec
from derive_assets.specs.version import code_version as spec_version
from derive_assets.specs.version import source_code_version
from resources.schema import ColumnDef
from resources.warehouse import TargetTable


def column_defs(columns: Iterable[Column]) -> tuple[ColumnDef, ...]:
    return tuple(ColumnDef(c.name, c.type, c.constraints.not_null, c.description) for c in columns)


def table_target(spec: TableSpec, code_version: str | None = None) -> TargetTable:
    """A derived or core table's target: its columns, cluster keys, partitioning, merge key, spec version
    (`code_version`, default: the spec's own, `specs.version.code_version`) and `max_bytes_billed`."""
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
        unique_key=unique_key,
        code_version=code_version if code_version is not None else spec_version(spec),
        max_bytes_billed=spec.max_bytes_billed,
    )


def source_target(
    dataset: str, table: SourceTable, source: SourceSpec | None = None, code_version: str | None = None
) -> TargetTable:
    """A replicated table's target: clustered by its primary key, never partitioned; its spec version is
    `code_version`, else the source table's own (`specs.version.source_code_version`) when `source` is given."""
    if code_version is None and source is not None:
        code_version = source_code_version(source, table)
    return TargetTable(
        dataset,
        table.name,
        column_defs(table.columns),
        tuple(table.primary_key),
        code_version=code_version,
    )
