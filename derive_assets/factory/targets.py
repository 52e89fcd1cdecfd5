"""Specs -> the neutral engine types of `resources/` (`ColumnDef`, `TargetTable`): the one place they meet."""

from __future__ import annotations

from collections.abc import Iterable

from derive_assets.specs.models import Column, SourceTable, TableSpec
from resources.schema import ColumnDef
from resources.warehouse import TargetTable


def column_defs(columns: Iterable[Column]) -> tuple[ColumnDef, ...]:
    return tuple(ColumnDef(c.name, c.type, c.constraints.not_null, c.description) for c in columns)


def table_target(spec: TableSpec) -> TargetTable:
    """A derived or core table's target: its columns, cluster keys and partitioning."""
    partition = spec.partition
    return TargetTable(
        spec.dataset,
        spec.name,
        column_defs(spec.columns),
        tuple(spec.cluster),
        partition.key if partition else None,
        partition.granularity if partition else "day",
        partition.expiration_days if partition else None,
        partition.require_filter if partition else False,
    )


def source_target(dataset: str, table: SourceTable) -> TargetTable:
    """A replicated table's target: clustered by its primary key, never partitioned."""
    return TargetTable(dataset, table.name, column_defs(table.columns), tuple(table.primary_key))
