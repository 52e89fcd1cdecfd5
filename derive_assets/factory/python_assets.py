"""Python assets that write a warehouse table: a function returns the rows, the warehouse writes them.

A SQL table's spec says what its query's rows are and how they are written; a Python table declares the same,
minus the SQL, with `python_table`. Its function receives its inputs (warehouse tables, each just the run's window
when partitioned) as pandas DataFrames, and returns a DataFrame or an Arrow table; the warehouse IO manager
writes it with the declared strategy through `Warehouse.write`, under the same rules and error texts as a SQL
table (see `resources/io_manager.py`). The declaration is a `TableSpec` without `sql`, so it is validated by the
same model when the module is imported: a merge needs `unique_key`, an append a window and partition, a
partition key must be a declared time column, at most four cluster keys.

Example:
    ```python
    @python_table(
        name="region_scores", dataset="features", owner="team-ml@example.com",
        columns=[{"name": "day", "type": "DATE", "constraints": {"not_null": True}}, ...],
        strategy={"type": "merge", "unique_key": ["day", "region"]},
        window={"size": "1d", "start": "2026-01-01"}, partition={"key": "day"}, cluster=["region"],
        inputs={"daily": "analytics.daily_payments_by_region"},
    )
    def region_scores(daily: pd.DataFrame) -> pd.DataFrame:
        return daily.assign(score=...)
    ```
"""
# No `from __future__ import annotations`: Dagster inspects the compute function's annotations.

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster import AssetIn, AssetKey, AssetsDefinition, AssetSpec, multi_asset
from pydantic import Field, ValidationError

from derive_assets.factory.kubernetes_tags import k8s_op_tags
from derive_assets.factory.metadata import column_schema
from derive_assets.factory.policies import backfill_policy, step_retry_policy
from derive_assets.factory.pools import table_pool
from derive_assets.specs.errors import format_loc, show
from derive_assets.specs.models import MergeStrategy, TableSpec
from resources.io_manager import (
    CLUSTER_METADATA,
    COLUMN_SCHEMA_METADATA,
    PARTITION_EXPIRATION_METADATA,
    PARTITION_GRANULARITY_METADATA,
    PARTITION_KEY_METADATA,
    PARTITION_KEY_TYPE_METADATA,
    REQUIRE_PARTITION_FILTER_METADATA,
    STRATEGY_METADATA,
    UNIQUE_KEY_METADATA,
)

IO_MANAGER_KEY = "warehouse_io_manager"


class PythonTableSpec(TableSpec):
    """A table spec whose rows come from a Python function instead of SQL."""

    sql: str = Field(default="", exclude=True)
    """Unused: the function computes the rows."""


class PythonTableError(ValueError):
    """A `python_table` declaration breaks a spec rule; raised when the module defining it is imported."""


@dataclass(frozen=True)
class PythonTable:
    """A Python table's validated spec and its function; the factory makes its asset (through the translator)."""

    spec: PythonTableSpec
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    """The `dataset.table` refs the function reads."""
    params: tuple[str, ...]
    """The function's parameter receiving each of `inputs`, in the same order."""

    @property
    def key(self) -> AssetKey:
        """The default translator's key (`dataset/name`)."""
        return AssetKey([self.spec.dataset, self.spec.name])

    @property
    def path(self) -> Path:
        """The module that declares it (what its errors and its asset's node name)."""
        module = getattr(self.fn, "__module__", "") or ""
        return Path(*module.split(".")).with_suffix(".py") if module else Path(self.spec.ref)

    @cached_property
    def asset(self) -> AssetsDefinition:
        """Its asset as the default translator makes it, reading its inputs under their default keys: for a table
        declared outside `derive_assets/python_tables` (tests), to add to a project's definitions."""
        from derive_assets.translator import DeriveNode, DeriveTranslator

        node = DeriveNode("python_table", self.spec.ref, self.path, self)
        ins = {param: AssetKey(ref.split(".")) for param, ref in zip(self.params, self.inputs, strict=True)}
        return build_python_asset(self, DeriveTranslator().get_asset_spec(node), ins)


def python_table(
    *, inputs: Mapping[str, str] | None = None, **spec: Any
) -> Callable[[Callable[..., Any]], PythonTable]:
    """Declare the table a Python function writes. `spec` takes a table spec's fields (everything but `sql`);
    `inputs` maps each parameter of the function to the `dataset.table` it receives."""
    inputs = dict(inputs or {})
    table = _validated(spec)

    def decorate(fn: Callable[..., Any]) -> PythonTable:
        return PythonTable(table, fn, tuple(inputs.values()), tuple(inputs))

    return decorate


def build_python_asset(
    table: PythonTable, asset_spec: AssetSpec, in_keys: Mapping[str, AssetKey]
) -> AssetsDefinition:
    """The asset `asset_spec` (from the translator) computed by `table`'s function, which receives each input
    (`in_keys`: parameter -> the upstream asset's key) from the warehouse IO manager, which writes its result."""
    partitions_def = asset_spec.partitions_def
    # Dagster wants every input among the spec's deps.
    declared = {dep.asset_key for dep in asset_spec.deps}
    deps = [*asset_spec.deps, *(key for key in in_keys.values() if key not in declared)]
    return multi_asset(
        name=asset_spec.key.to_python_identifier(),
        specs=[asset_spec.replace_attributes(deps=deps).with_io_manager_key(IO_MANAGER_KEY)],
        ins={param: AssetIn(key=key) for param, key in in_keys.items()},
        # A backfill of many windows runs as one write (or in chunks: `spec.backfill`).
        backfill_policy=backfill_policy(table.spec, partitions_def),
        pool=table_pool(table.spec.ref),
        retry_policy=step_retry_policy(),
        op_tags=k8s_op_tags(table.spec.kubernetes),  # its own block (no directory defaults)
    )(table.fn)


def _validated(spec: Mapping[str, Any]) -> PythonTableSpec:
    ref = f"{spec.get('dataset', '?')}.{spec.get('name', '?')}"
    if "sql" in spec:
        raise PythonTableError(
            f"python table {ref}: `sql` is not a field of a Python table (its function computes the rows); "
            "remove it, or write the table as a YAML spec instead"
        )
    try:
        return PythonTableSpec.model_validate(dict(spec))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = format_loc(error["loc"])
            shown = "" if error["type"] == "value_error" else f" (got {show(error['input'])})"
            # A cross-field rule reports every problem it found, one per line.
            for line in error["msg"].removeprefix("Value error, ").splitlines():
                problems.append(f"{where}: {line}{shown}" if where else f"{line}{shown}")
        problems_text = "; ".join(problems)
        raise PythonTableError(f"python table {ref}: {problems_text}") from None


def python_metadata(table: PythonTableSpec) -> dict[str, Any]:
    """The definition metadata the IO manager reads the target from (keys defined in `resources/io_manager.py`)."""
    metadata: dict[str, Any] = {
        COLUMN_SCHEMA_METADATA: column_schema(table.columns),
        STRATEGY_METADATA: table.strategy.type,
    }
    if isinstance(table.strategy, MergeStrategy):
        metadata[UNIQUE_KEY_METADATA] = list(table.strategy.unique_key)
    if table.cluster:
        metadata[CLUSTER_METADATA] = list(table.cluster)
    partition = table.partition
    if partition is not None:
        metadata[PARTITION_KEY_METADATA] = partition.key
        metadata[PARTITION_KEY_TYPE_METADATA] = next(c.type for c in table.columns if c.name == partition.key)
        metadata[PARTITION_GRANULARITY_METADATA] = partition.granularity
        metadata[REQUIRE_PARTITION_FILTER_METADATA] = partition.require_filter
        if partition.expiration_days is not None:
            metadata[PARTITION_EXPIRATION_METADATA] = partition.expiration_days
    return metadata
