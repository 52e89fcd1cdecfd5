"""The `derive/...` metadata keys are an interface (the event log keeps them; watermarks are read back from old
materializations): their strings never change, and no module writes a key that `metadata_keys` does not define."""

import re
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pytest
from dagster import MetadataValue, build_output_context
from dagster._core.definitions.metadata import TableMetadataSet, normalize_metadata
from dagster._core.definitions.metadata.metadata_value import JsonMetadataValue, MarkdownMetadataValue
from dagster._utils.typing_api import flatten_unions

from derive_assets import metadata_keys as K
from derive_assets.factory.metadata import table_metadata
from derive_assets.specs.models import Column
from resources import io_manager
from resources.warehouse import WriteResult

ROOT = Path(__file__).resolve().parents[2]

# The strings as they were before the keys moved into one module (December 2026); never edit one.
HISTORY = {
    "LAYER": "derive/layer",
    "SPEC_FILE": "derive/spec_file",
    "SQL": "derive/sql",
    "READS": "derive/reads",
    "PRIMARY_KEY": "derive/primary_key",
    "CURSOR": "derive/cursor",
    "ONLINE_TABLE": "derive/online_table",
    "PARTITION_KEY": "derive/partition_key",
    "PARTITION_KEY_TYPE": "derive/partition_key_type",
    "STRATEGY": "derive/strategy",
    "CLUSTER": "derive/cluster",
    "WINDOW_START": "derive/window_start",
    "WINDOW_END": "derive/window_end",
    "ROWS_READ": "derive/rows_read",
    "ROWS_INSERTED": "derive/rows_inserted",
    "ROWS_UPDATED": "derive/rows_updated",
    "ROWS_DELETED": "derive/rows_deleted",
    "DURATION_SECONDS": "derive/duration_seconds",
    "RENDERED_SQL": "derive/rendered_sql",
    "UPSTREAM_TABLES": "derive/upstream_tables",
    "ESTIMATED_BYTES": "derive/estimated_bytes",
    "WATERMARK": "derive/watermark",
    "READ_FLOOR": "derive/read_floor",
    "PENDING_FLOOR": "derive/pending_floor",
    "FENCE": "derive/fence",
    "WATERMARK_BEFORE": "derive/watermark_before",
    "ROWS_INVALID": "derive/rows_invalid",
    "INVALID_ROWS": "derive/invalid_rows",
    "SOURCE": "derive/source",
    "SOURCE_QUERY": "derive/source_query",
    "QUARANTINE_TABLE": "derive/quarantine_table",
    "DOCUMENTS_READ": "derive/documents_read",
    "QUARANTINED_DOCUMENTS": "derive/quarantined_documents",
    "UNDECLARED_FIELDS": "derive/undeclared_fields",
    "UNDECLARED_FIELD_COUNT": "derive/undeclared_field_count",
    "ROWS_WRITTEN": "derive/rows_written",
    "ROWS_IN_SLICE": "derive/rows_in_slice",
    "BATCHES": "derive/batches",
    "WRITE_RETRIES": "derive/write_retries",
    "ROWS_PER_SECOND": "derive/rows_per_second",
    "WATERMARK_HELD": "derive/watermark_held",
}


def defined() -> dict[str, str]:
    return {
        n: v for n, v in vars(K).items() if n.isupper() and isinstance(v, str) and v.startswith("derive/")
    }


def test_every_historical_key_keeps_its_string():
    keys = defined()
    assert {n: keys.get(n) for n in HISTORY} == HISTORY


def test_the_replication_watermark_keys_are_the_same_strings():
    from derive_assets.replication import watermark

    assert (watermark.WATERMARK_KEY, watermark.FLOOR_KEY, watermark.PENDING_KEY, watermark.FENCE_KEY) == (
        K.WATERMARK,
        K.READ_FLOOR,
        K.PENDING_FLOOR,
        K.FENCE,
    )


def test_no_module_writes_a_key_metadata_keys_does_not_define():
    known = set(defined().values())
    written = {
        (str(path.relative_to(ROOT)), key)
        for base in ("derive_assets", "resources")
        for path in (ROOT / base).rglob("*.py")
        for key in re.findall(r"[\"'](derive/[a-z_]+)[\"']", path.read_text())
    }
    unknown = sorted((path, key) for path, key in written if key not in known)
    assert unknown == [], f"keys not in derive_assets/metadata_keys.py: {unknown}"


def test_no_module_writes_a_dagster_key_metadata_keys_does_not_name():
    """Dagster's standard keys are written through `metadata_keys` (or `factory.metadata.table_metadata`), so a
    key Dagster renamed (`dagster/relation_identifier` -> `dagster/table_name`) is changed in one place."""
    known = set(constants().values())
    written = {
        (str(path.relative_to(ROOT)), key)
        for base in ("derive_assets", "resources")
        for path in (ROOT / base).rglob("*.py")
        for key in re.findall(r"[\"'](dagster/[a-z_]+)[\"']", path.read_text())
    }
    unknown = sorted((path, key) for path, key in written if key not in known)
    assert unknown == [], (
        f"Dagster keys not named in derive_assets/metadata_keys.py: {unknown}; use its constants (K.ROW_COUNT, "
        "K.COLUMN_SCHEMA, ...) or derive_assets.factory.metadata.table_metadata(columns, relation_identifier)"
    )


def test_row_counts_and_extra_keys():
    counts = K.row_counts(WriteResult(rows_inserted=1, rows_updated=2, rows_deleted=3, rows_read=4))
    assert counts == {
        "derive/rows_read": 4,
        "derive/rows_inserted": 1,
        "derive/rows_updated": 2,
        "derive/rows_deleted": 3,
    }
    assert K.run_row_counts(WriteResult(rows_inserted=1, rows_updated=2, rows_deleted=3, rows_read=4)) == {
        "derive/run_rows_read": 4,
        "derive/run_rows_inserted": 1,
        "derive/run_rows_updated": 2,
        "derive/run_rows_deleted": 3,
    }
    assert K.extra("soft_deleted_rows_read") == "derive/soft_deleted_rows_read"


# ------------------------------------------------------------------------------------ the metadata sets

TAG_SETS = (K.AssetTags, K.RunTags)
STANDARD = ("COLUMN_SCHEMA", "COLUMN_LINEAGE", "ROW_COUNT", "PARTITION_ROW_COUNT", "TABLE_NAME")


def declared_keys() -> dict[str, list[type]]:
    """Each namespaced key, with every set (metadata or tag, Derive's or Dagster's) that has it as a field."""
    found: dict[str, list[type]] = {}
    for kv_set in (*K.METADATA_SETS, *TAG_SETS, TableMetadataSet):
        for field in kv_set.model_fields:
            found.setdefault(K.key_of(kv_set, field), []).append(kv_set)
    return found


def constants() -> dict[str, str]:
    return {
        n: v
        for n, v in vars(K).items()
        if n.isupper() and isinstance(v, str) and v.startswith(("derive/", "dagster/"))
    }


def test_every_constant_is_a_field_of_a_set():
    keys = declared_keys()
    # Dagster's own run tags and dagster-k8s's step label, not a set's fields
    dagster_tags = {"RANGE_START_TAG", "RANGE_END_TAG", "STEP_OP_LABEL"}
    undeclared = {n: v for n, v in constants().items() if v not in keys and n not in dagster_tags}
    assert undeclared == {}


def test_every_derive_field_has_its_constant():
    named = set(constants().values())
    orphans = sorted(k for k in declared_keys() if k.startswith("derive/") and k not in named)
    assert orphans == []


def test_the_standard_keys_come_from_dagsters_table_metadata_set():
    assert {n: getattr(K, n) for n in STANDARD} == {
        "COLUMN_SCHEMA": "dagster/column_schema",
        "COLUMN_LINEAGE": "dagster/column_lineage",
        "ROW_COUNT": "dagster/row_count",
        "PARTITION_ROW_COUNT": "dagster/partition_row_count",
        "TABLE_NAME": "dagster/table_name",
    }
    assert all(declared_keys()[getattr(K, n)] == [TableMetadataSet] for n in STANDARD)
    assert (K.RANGE_START_TAG, K.RANGE_END_TAG) == (
        "dagster/asset_partition_range_start",
        "dagster/asset_partition_range_end",
    )


def test_each_key_is_declared_once_and_every_set_agrees_on_its_type():
    """A set shares a key by inheriting the set that declares it; two sets declaring one key (even alike)
    would let the two drift apart."""
    declaring: dict[str, list[str]] = {}
    for kv_set in (*K.METADATA_SETS, *TAG_SETS):
        for field in vars(kv_set).get("__annotations__", {}):
            declaring.setdefault(field, []).append(kv_set.__name__)
    assert {f: sets for f, sets in declaring.items() if len(sets) > 1} == {}
    annotations: dict[str, set[str]] = {}
    for kv_set in K.METADATA_SETS:
        for field, info in kv_set.model_fields.items():
            annotations.setdefault(field, set()).add(repr((info.annotation, info.metadata)))
    assert {f: a for f, a in annotations.items() if len(a) > 1} == {}


def test_the_io_managers_keys_are_the_same_fields():
    assert (io_manager.PARTITION_KEY_METADATA, io_manager.STRATEGY_METADATA, io_manager.CLUSTER_METADATA) == (
        K.PARTITION_KEY,
        K.STRATEGY,
        K.CLUSTER,
    )
    assert io_manager.COLUMN_SCHEMA_METADATA == K.COLUMN_SCHEMA


def sample(kv_set: type[K.DeriveMetadataSet]) -> K.DeriveMetadataSet:
    """A set with every field filled with a value of its declared type."""
    values: dict[str, Any] = {}
    for field, info in kv_set.model_fields.items():
        kind = next(t for t in flatten_unions(cast(Any, info.annotation)) if t is not type(None))
        values[field] = {
            str: f"{field} value",
            int: 7,
            float: 1.5,
            bool: True,
            JsonMetadataValue: [field, "b"],
            MarkdownMetadataValue: MetadataValue.md(f"```sql\nselect {field}\n```"),
        }[kind]
    return kv_set(**values)


@pytest.mark.parametrize("kv_set", K.METADATA_SETS, ids=lambda s: s.__name__)
def test_a_set_reads_back_what_dagster_stored(kv_set: type[K.DeriveMetadataSet]):
    """The declared types are the ones Dagster stores: a set survives Dagster's normalization of its entries
    (what the event log and the definition keep), typed."""
    written = sample(kv_set)
    stored = normalize_metadata(written.entries())
    assert set(stored) == {kv_set.key(f) for f in kv_set.model_fields}
    assert kv_set.extract(stored) == written


def test_entries_keep_an_explicit_none_which_a_splat_drops():
    """The window keys of an unpartitioned run are None, and the event log keeps them as such."""
    written = K.WriteMetadata(window_start=None, window_end=None, rows_read=3)
    assert written.entries() == {K.WINDOW_START: None, K.WINDOW_END: None, K.ROWS_READ: 3}
    assert dict(written) == {K.ROWS_READ: 3}  # Dagster's splat: why `entries()` exists


def test_an_unpartitioned_python_asset_write_records_its_window_as_none(tmp_path: Path):
    from dagster import TableColumn, TableSchema

    from resources.duckdb_warehouse import DuckDBWarehouse

    warehouse = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    schema = TableSchema(columns=[TableColumn("user_id", "INT64")])
    context = build_output_context(
        asset_key=["features", "users"], definition_metadata={K.COLUMN_SCHEMA: schema, K.STRATEGY: "replace"}
    )
    io_manager.WarehouseIOManager(warehouse=warehouse).handle_output(context, pa.table({"user_id": [1, 2]}))
    meta = context.get_logged_metadata()
    assert (meta[K.WINDOW_START], meta[K.WINDOW_END]) == (MetadataValue.null(), MetadataValue.null())
    assert (meta[K.ROWS_INSERTED].value, meta[K.ROW_COUNT].value) == (2, 2)


def test_table_metadata_gives_dagsters_schema_and_table_name():
    columns = [Column(name="user_id", type="INT64", description="the user")]
    metadata = table_metadata(columns, "proj.analytics.users")
    assert set(metadata) == {"dagster/column_schema", "dagster/table_name"}
    assert [c.name for c in metadata[K.COLUMN_SCHEMA].columns] == ["user_id"]
    assert TableMetadataSet.extract_normalized_table_name(metadata) == "proj.analytics.users"
    assert set(table_metadata(columns)) == {"dagster/column_schema"}
