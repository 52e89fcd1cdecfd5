"""Neutral column definitions: what an engine needs to know about a column, and nothing about specs.

`resources/` is a leaf package (it never imports `derive_assets`): the factory maps each spec's columns to
`ColumnDef`s (`derive_assets.factory.targets`), and engines and online stores read only these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

ColumnType = Literal[
    "STRING", "INT64", "FLOAT64", "NUMERIC", "BOOL", "DATE", "DATETIME", "TIMESTAMP", "JSON", "BYTES"
]
"""Column types use BigQuery's names, the production dialect; each engine maps them to its own."""

COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)


@dataclass(frozen=True)
class ColumnDef:
    """One declared column: name, type (BigQuery's name), whether it is REQUIRED, and its description."""

    name: str
    type: ColumnType
    not_null: bool = False
    description: str = ""
