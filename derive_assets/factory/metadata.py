"""Definition and materialization metadata shared by the asset builders."""

from __future__ import annotations

from dagster import (
    AssetKey,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableColumnDep,
    TableColumnLineage,
    TableSchema,
)

from derive_assets.specs.models import Column


def column_schema(columns: list[Column]) -> TableSchema:
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
