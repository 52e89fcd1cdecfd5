"""Replication batches to one Parquet file for a BigQuery load job: streamed, typed for the staging table."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from resources.arrow_conform import BIGQUERY_ARROW_TYPES, conform_array
from resources.warehouse import TargetTable
from resources.warehouse_rules import declared_columns

WIRE_TYPES: dict[str, tuple[pa.DataType, str]] = {
    "STRING": (pa.string(), "STRING"),
    "INT64": (pa.int64(), "INT64"),
    "FLOAT64": (pa.float64(), "FLOAT64"),
    "NUMERIC": (pa.string(), "STRING"),
    "BOOL": (pa.bool_(), "BOOL"),
    "DATE": (pa.date32(), "DATE"),
    "DATETIME": (pa.string(), "STRING"),
    "TIMESTAMP": (pa.timestamp("us", tz="UTC"), "TIMESTAMP"),
    "JSON": (pa.string(), "STRING"),
    "BYTES": (pa.binary(), "BYTES"),
}
"""Spec type -> (Arrow type in the Parquet file, BigQuery type of the staging column). NUMERIC travels as
exact decimal text (drivers send DECIMAL(38, 10), floats or strings; `CAST` rounds to 9 places), DATETIME as
text (Parquet timestamps load as TIMESTAMP), JSON as text (`PARSE_JSON` in the merge). A column the source
sends as text travels as text whatever its type, and BigQuery's `CAST` parses it (e.g. SQLite's timestamps
without a zone, read as UTC like DuckDB does)."""


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    target: TargetTable,
    path: Path,
    origin: Literal["source", "rows"] = "source",
) -> tuple[int, dict[str, str]]:
    """Stream batches into one Parquet file (one row group per batch, bounded memory).

    Returns the rows written and the staging table's schema (declared column -> BigQuery type). The first non-empty batch fixes the wire types; later batches are cast to them.
    """
    rows = 0
    writer: pq.ParquetWriter | None = None
    wire: list[tuple[pa.DataType, str]] = [WIRE_TYPES[c.type] for c in target.columns]
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            columns = declared_columns(batch, target, origin)
            if writer is None:
                wire = [_wire_type(col, c.type) for col, c in zip(columns, target.columns, strict=True)]
                fields = [(c.name, arrow) for c, (arrow, _) in zip(target.columns, wire, strict=True)]
                writer = pq.ParquetWriter(path, pa.schema(fields))
            arrays = [
                _to_wire(col, c.type, arrow)
                for col, c, (arrow, _) in zip(columns, target.columns, wire, strict=True)
            ]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=writer.schema))
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows, {c.name: bq_type for c, (_, bq_type) in zip(target.columns, wire, strict=True)}


def _wire_type(array: pa.Array, spec_type: str) -> tuple[pa.DataType, str]:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return pa.string(), "STRING"
    return WIRE_TYPES[spec_type]


def _to_wire(array: pa.Array, spec_type: str, wire: pa.DataType) -> pa.Array:
    """An Arrow column as its wire type; naive timestamps count as UTC (as in DuckDB's session). The exact casts
    of `resources.arrow_conform` come first (a driver's DECIMAL(38, 10) as NUMERIC's (38, 9), so the text the
    staging table gets has BigQuery's nine places; a lossy one stays as it came, for BigQuery's rounding CAST)."""
    array = conform_array(array, BIGQUERY_ARROW_TYPES.get(spec_type))
    kind = array.type
    if spec_type == "DATETIME" and (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        array = pc.cast(array, pa.timestamp("us"), safe=False)  # aware -> UTC wall clock; ns -> us
    elif pa.types.is_timestamp(kind) and pa.types.is_timestamp(wire):
        return pc.cast(array, wire, safe=False)  # naive is UTC; ns -> us as BigQuery keeps microseconds
    return array if array.type == wire else pc.cast(array, wire)
