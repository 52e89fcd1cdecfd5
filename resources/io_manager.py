"""The IO manager of Python assets: warehouse tables in, warehouse tables out, through the warehouse's strategies.

Core/derived tables are built by SQL inside the warehouse, and replicated tables by the replication asset itself;
neither passes a value through here (their assets return a `MaterializeResult`, or None). A Python asset - an ML
feature job, say - is where rows really pass through Python, both ways:

- going in, `load_input` reads an upstream warehouse table (or, when the upstream is partitioned, just this run's
  window of it) as a pandas DataFrame or, when the input is annotated `pa.Table`, an Arrow table;
- going out, `handle_output` takes the `pd.DataFrame` or `pa.Table` the asset returned and writes it with
  `Warehouse.write` into the table the asset declares in its definition metadata (the `derive/...` keys below,
  set by `derive_assets.factory.python_assets.python_table`): its columns and types, strategy, merge key, partition key
  and cluster keys. It is the same write as a SQL table's: partitioned by day (or the declared unit), clustered,
  a merge or append scoped to the run's window, with the same rules and error texts (duplicate or NULL keys, rows
  outside the window, NULLs in not_null columns), in one transaction.
"""

# No `from __future__ import annotations`: Dagster resolves the `ResourceDependency` annotation at class creation.

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from dagster import ConfigurableIOManager, InputContext, OutputContext, ResourceDependency, TableSchema

from resources.lazy_import import lazy_module
from resources.metadata_sets import (
    COLUMN_SCHEMA_METADATA_KEY,
    ROW_COUNT_METADATA_KEY,
    TableLayoutMetadata,
    WriteMetadata,
)
from resources.reads import TableSlice, WindowBound
from resources.schema import COLUMN_TYPES, ColumnDef, ColumnType
from resources.warehouse import TargetTable, TimeWindow, Warehouse, WriteRequest

if TYPE_CHECKING:
    # pandas only where a DataFrame passes: every step process imports this module, and pandas is ~0.5 s of it.
    import pandas as pd
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")

# The definition metadata this module reads, declared once as fields of `TableLayoutMetadata`
# (`resources.metadata_sets`, where each field's docstring says what it holds); the names are kept for callers.
PARTITION_KEY_METADATA = TableLayoutMetadata.key("partition_key")
PARTITION_KEY_TYPE_METADATA = TableLayoutMetadata.key("partition_key_type")
COLUMN_SCHEMA_METADATA = COLUMN_SCHEMA_METADATA_KEY
STRATEGY_METADATA = TableLayoutMetadata.key("strategy")
UNIQUE_KEY_METADATA = TableLayoutMetadata.key("unique_key")
CLUSTER_METADATA = TableLayoutMetadata.key("cluster")
PARTITION_GRANULARITY_METADATA = TableLayoutMetadata.key("partition_granularity")
PARTITION_EXPIRATION_METADATA = TableLayoutMetadata.key("partition_expiration_days")
REQUIRE_PARTITION_FILTER_METADATA = TableLayoutMetadata.key("require_partition_filter")
STRATEGIES = ("merge", "append", "replace")


class PythonAssetError(ValueError):
    """A Python asset's output or declaration cannot be written; nothing was written."""


class WarehouseIOManager(ConfigurableIOManager):
    """Loads warehouse tables into Python assets, and writes what they return into the warehouse.

    Example:
        ```python
        resources = {"warehouse": wh, "warehouse_io_manager": WarehouseIOManager(warehouse=wh)}
        ```
    """

    warehouse: ResourceDependency[Warehouse]

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is None:
            return  # a SQL-built or replicated table: already written inside the warehouse
        name = context.asset_key.to_user_string()
        if isinstance(obj, pa.Table):
            table = obj
        else:
            import pandas as pd  # a DataFrame exists only once pandas is imported: then this costs nothing

            if not isinstance(obj, pd.DataFrame):
                raise PythonAssetError(
                    f"{name}: a Python asset on the warehouse IO manager returns a pandas DataFrame or a pyarrow "
                    f"Table (or None when it wrote its table itself), got {type(obj).__name__}. Return the rows "
                    "as a DataFrame."
                )
            table = pa.Table.from_pandas(obj, preserve_index=False)
        target, strategy, unique_key = target_of(name, context.asset_key.path, context.definition_metadata)
        declared = {c.name.lower() for c in target.columns}
        extra = [c for c in table.column_names if c.lower() not in declared]
        if extra:
            raise PythonAssetError(
                f"{name}: the function returned columns its table does not declare: {extra} (declared: "
                f"{[c.name for c in target.columns]}). Declare them in the python_table's columns, or drop them "
                "before returning. Nothing was written."
            )
        window = None
        if context.has_asset_partitions:
            tw = context.asset_partitions_time_window
            window = TimeWindow(tw.start, tw.end)
        request = WriteRequest(target, None, {}, strategy, unique_key, window)
        started = time.perf_counter()
        result = self.warehouse.write(request, table.to_batches())
        written = WriteMetadata(
            window_start=window.start.isoformat() if window else None,  # kept as None when unpartitioned
            window_end=window.end.isoformat() if window else None,
            rows_read=result.rows_read,
            rows_inserted=result.rows_inserted,
            rows_updated=result.rows_updated,
            rows_deleted=result.rows_deleted,
            duration_seconds=round(time.perf_counter() - started, 3),
        )
        context.add_output_metadata(
            {**written.entries(), ROW_COUNT_METADATA_KEY: self.warehouse.row_count(target.ref)}
        )

    def load_input(self, context: InputContext) -> "pd.DataFrame | pa.Table":
        key = context.asset_key.path
        ref = f"{key[-2]}.{key[-1]}"
        window = None
        upstream_meta = context.upstream_output.definition_metadata if context.upstream_output else {}
        partition_key = upstream_meta.get(PARTITION_KEY_METADATA) if upstream_meta else None
        key_type = upstream_meta.get(PARTITION_KEY_TYPE_METADATA) if upstream_meta else None
        if partition_key and key_type in COLUMN_TYPES and context.has_asset_partitions:
            tw = context.asset_partitions_time_window
            window = WindowBound(str(partition_key), cast(ColumnType, key_type), TimeWindow(tw.start, tw.end))
        table = self.warehouse.read_slice(TableSlice(ref, window=window))
        if context.dagster_type.typing_type is pa.Table:
            return table
        return table.to_pandas()


def target_of(
    name: str, key: Sequence[str], metadata: Mapping[str, Any]
) -> tuple[TargetTable, Any, tuple[str, ...]]:
    """The table a Python asset declares in its definition metadata: (target, strategy, unique_key).

    The table is `<dataset>.<name>` from the asset key's last two parts, like every warehouse asset."""
    schema = metadata.get(COLUMN_SCHEMA_METADATA)
    strategy = metadata.get(STRATEGY_METADATA)
    if len(key) < 2 or not isinstance(schema, TableSchema) or strategy not in STRATEGIES:
        raise PythonAssetError(
            f"{name}: a Python asset that returns rows declares the table they go to: an asset key "
            "[dataset, table], and definition metadata with its columns ('dagster/column_schema') and strategy "
            f"('derive/strategy': one of {list(STRATEGIES)}, got {strategy!r}). Declare it with "
            "derive_assets.factory.python_assets.python_table(...), or return None if the asset writes its table itself."
        )
    columns = []
    for column in schema.columns:
        if column.type not in COLUMN_TYPES:
            raise PythonAssetError(
                f"{name}: column '{column.name}' has the type {column.type!r}; declare one of "
                f"{sorted(COLUMN_TYPES)}."
            )
        nullable = column.constraints.nullable if column.constraints else True
        columns.append(
            ColumnDef(column.name, cast(ColumnType, column.type), not nullable, column.description or "")
        )
    partition_key = metadata.get(PARTITION_KEY_METADATA)
    expiration = metadata.get(PARTITION_EXPIRATION_METADATA)
    target = TargetTable(
        key[-2],
        key[-1],
        tuple(columns),
        tuple(metadata.get(CLUSTER_METADATA) or ()),
        str(partition_key) if partition_key else None,
        str(metadata.get(PARTITION_GRANULARITY_METADATA) or "day"),
        int(expiration) if expiration is not None else None,
        bool(metadata.get(REQUIRE_PARTITION_FILTER_METADATA, False)),
    )
    return target, strategy, tuple(metadata.get(UNIQUE_KEY_METADATA) or ())
