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

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetIn,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    ScheduleDefinition,
    asset,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from pydantic import Field, ValidationError

from derive_assets.factory.metadata import column_schema
from derive_assets.factory.schedules import job_for, schedule_for, table_job_name
from derive_assets.factory.windows import partitions_for
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
    """A Python table's validated spec, its asset, and the job (and schedule) that materialize it."""

    spec: PythonTableSpec
    asset: AssetsDefinition
    inputs: tuple[str, ...]
    """The `dataset.table` refs the function reads."""
    job: UnresolvedAssetJobDefinition
    schedule: ScheduleDefinition | None

    @property
    def key(self) -> AssetKey:
        return AssetKey([self.spec.dataset, self.spec.name])


def python_table(
    *, inputs: Mapping[str, str] | None = None, **spec: Any
) -> Callable[[Callable[..., Any]], PythonTable]:
    """Declare the table a Python function writes. `spec` takes a table spec's fields (everything but `sql`);
    `inputs` maps each parameter of the function to the `dataset.table` it receives."""
    inputs = dict(inputs or {})
    table = _validated(spec)
    metadata = _metadata(table)

    def decorate(fn: Callable[..., Any]) -> PythonTable:
        partitions_def = partitions_for(table.window)
        # backfill_policy is marked beta; it is what lets a backfill of many windows run as one write.
        warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")
        built = asset(
            key=[table.dataset, table.name],
            ins={param: AssetIn(key=AssetKey(ref.split("."))) for param, ref in inputs.items()},
            group_name=table.dataset,
            description=table.description or fn.__doc__ or None,
            owners=[table.owner],
            kinds={"python", "pandas"},
            tags={"derive/layer": table.layer},
            metadata=metadata,
            partitions_def=partitions_def,
            backfill_policy=BackfillPolicy.single_run() if partitions_def else None,
            io_manager_key=IO_MANAGER_KEY,
        )(fn)
        job = job_for(table_job_name(table.ref), [AssetKey([table.dataset, table.name])], partitions_def)
        schedule = schedule_for(job, table.schedule, partitions_def) if table.schedule else None
        return PythonTable(table, built, tuple(inputs.values()), job, schedule)

    return decorate


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


def _metadata(table: PythonTableSpec) -> dict[str, Any]:
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
