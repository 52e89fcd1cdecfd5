"""The `derive/...` metadata keys are an interface (the event log keeps them; watermarks are read back from old
materializations): their strings never change, and no module writes a key that `metadata_keys` does not define."""

import re
from pathlib import Path

from derive_assets import metadata_keys as K
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


def test_row_counts_and_extra_keys():
    counts = K.row_counts(WriteResult(rows_inserted=1, rows_updated=2, rows_deleted=3, rows_read=4))
    assert counts == {
        "derive/rows_read": 4,
        "derive/rows_inserted": 1,
        "derive/rows_updated": 2,
        "derive/rows_deleted": 3,
    }
    assert K.extra("soft_deleted_rows_read") == "derive/soft_deleted_rows_read"
