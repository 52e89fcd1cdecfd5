"""Definition and materialization metadata shared by the asset builders.

A table asset's definition metadata in Dagster's standard keys (`dagster/column_schema`, `dagster/table_name`) is
built here through Dagster's `TableMetadataSet`; every key, Derive's and Dagster's, is named in
`derive_assets.metadata_keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetKey,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableColumnDep,
    TableColumnLineage,
    TableSchema,
)
from dagster._core.definitions.metadata import TableMetadataSet

from derive_assets.specs.models import Column


def table_metadata(columns: Sequence[Column], relation_identifier: str | None = None) -> dict[str, Any]:
    """Definition metadata of a warehouse table's asset: its declared columns (`dagster/column_schema`) and, when
    given, its real name in the warehouse (`Warehouse.relation_identifier`) as `dagster/table_name`.

    Dagster renamed `dagster/relation_identifier` to `dagster/table_name` in 2024 (dagster-io/dagster#25400):
    `TableMetadataSet` writes the new key, and Dagster (the UI, `TableMetadataSet.extract`) still reads the old
    one. The identifier is a table name only (`project.dataset.table`, `catalog.dataset.table`), never a URL, so no secret can reach it.

    Example:
        ```python
        metadata = {**table_metadata(spec.columns, warehouse.relation_identifier(spec.ref)), K.SPEC_FILE: ...}
        ```
    """
    return dict(TableMetadataSet(column_schema=column_schema(columns), table_name=relation_identifier))


def column_schema(columns: Sequence[Column]) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(
                name=c.name,
                type=c.type,
                description=c.description or None,
                constraints=TableColumnConstraints(
                    nullable=not c.constraints.not_null,
                    unique=c.constraints.unique,
                    other=[f"accepted_values: {c.constraints.accepted_values}"]
                    if c.constraints.accepted_values
                    else [],
                ),
            )
            for c in columns
        ]
    )


def column_lineage(lineage: dict[str, list[tuple[str, str]]]) -> TableColumnLineage:
    return TableColumnLineage(
        deps_by_column={
            column: [
                TableColumnDep(asset_key=AssetKey(ref.split(".")), column_name=name) for ref, name in deps
            ]
            for column, deps in lineage.items()
            if deps
        }
    )


def sql_block(sql: str) -> MetadataValue:
    return MetadataValue.md(f"```sql\n{sql}\n```")
