"""The metadata Derive's resources read and write, declared as Dagster metadata sets (namespace `derive`).

Each key is a field of a `NamespacedMetadataSet` subclass: `TableLayoutMetadata.key("strategy")` is
`"derive/strategy"`, and `TableLayoutMetadata.extract(asset.metadata)` reads the fields back, typed. The sets here
are the ones the IO manager needs (`resources` may not import `derive_assets`); `derive_assets.metadata_keys`
builds its sets on them and derives every module-level key constant from their fields.

Dagster exports `NamespacedMetadataSet` and `TableMetadataSet` from `dagster._core.definitions.metadata` only, not
from `dagster` itself (1.13); its own integrations (dagster-dbt, dagster-sling, dagster-dlt) import them from there
too. Splatting a set (`{**my_set}`) drops every field whose value is None; `entries()` keeps a field that was set
explicitly, so an unpartitioned run still records `derive/window_start: None`.

Example:
    ```python
    context.add_output_metadata(WriteMetadata(window_start=None, window_end=None, rows_read=3).entries())
    # {"derive/window_start": None, "derive/window_end": None, "derive/rows_read": 3}
    ```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from dagster._core.definitions.metadata import NamespacedMetadataSet, TableMetadataSet
from dagster._core.definitions.metadata.metadata_set import NamespacedKVSet
from dagster._core.definitions.metadata.metadata_value import JsonMetadataValue, MetadataValue
from pydantic import BeforeValidator

NAMESPACE = "derive"


def _as_json(value: Any) -> Any:
    if isinstance(value, MetadataValue):  # a record, which is a Sequence too
        return value
    if isinstance(value, Mapping):
        return MetadataValue.json(dict(value))
    if isinstance(value, Sequence) and not isinstance(value, str):
        return MetadataValue.json(list(value))
    return value


Json = Annotated[JsonMetadataValue | None, BeforeValidator(_as_json)]
"""The field type of a list or dict value (None when unset): Dagster stores both as JSON metadata, and a set
built with a plain list or dict wraps it."""


def key_of(metadata_set: type[NamespacedKVSet], field: str) -> str:
    """The namespaced key of one field of a metadata or tag set (Dagster's `TableMetadataSet` included):
    `key_of(TableMetadataSet, "row_count")` is `"dagster/row_count"`. An unknown field is a `KeyError`."""
    if field not in metadata_set.model_fields:
        raise KeyError(f"{metadata_set.__name__} has no field {field!r}: {sorted(metadata_set.model_fields)}")
    return f"{metadata_set.namespace()}/{field}"


class DeriveMetadataSet(NamespacedMetadataSet):
    """The base of every Derive metadata set: namespace `derive`."""

    @classmethod
    def namespace(cls) -> str:
        return NAMESPACE

    @classmethod
    def key(cls, field: str) -> str:
        """`derive/<field>`, for a field this set declares."""
        return key_of(cls, field)

    def entries(self) -> dict[str, Any]:
        """The fields set when the set was built, under their keys, None values included (a splat drops them)."""
        return {
            self.key(name): getattr(self, name) for name in self.model_fields if name in self.model_fields_set
        }


class TableLayoutMetadata(DeriveMetadataSet):
    """Definition metadata: the table a warehouse asset writes, as the IO manager reads it back (its columns are
    Dagster's `dagster/column_schema`)."""

    partition_key: str | None = None
    """The column that holds a table's partition (a run's window lies on it)."""
    partition_key_type: str | None = None
    """That column's declared type (DATE, TIMESTAMP, ...)."""
    strategy: str | None = None
    """merge | append | replace."""
    unique_key: Json = None
    """A merge's key columns."""
    cluster: Json = None
    """Cluster keys, in order."""
    partition_granularity: str | None = None
    """hour | day | month | year (BigQuery's time-partitioning unit)."""
    partition_expiration_days: int | None = None
    """Days after which BigQuery drops a partition (absent: never)."""
    require_partition_filter: bool | None = None
    """Whether BigQuery refuses queries of the table without a partition filter."""


class WriteMetadata(DeriveMetadataSet):
    """Materialization metadata of every write: the run's window (None for an unpartitioned run) and counts."""

    window_start: str | None = None
    window_end: str | None = None
    rows_read: int | None = None
    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_deleted: int | None = None
    duration_seconds: float | None = None


COLUMN_SCHEMA_METADATA_KEY = key_of(TableMetadataSet, "column_schema")
"""`dagster/column_schema`: Dagster's key for a table's declared columns, their types and nullability."""
ROW_COUNT_METADATA_KEY = key_of(TableMetadataSet, "row_count")
"""`dagster/row_count`: Dagster's key for the rows of the table after a run."""
