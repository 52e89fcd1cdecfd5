"""The history benchmark (`benchmarks/history.py`) at three days on the PostgreSQL test server.

It runs the whole scenario (generate through Dagster's storage API, measure, drop the databases) and checks what
was written and read, never how fast: exactly `per_day` materializations a day in each instance, the latest
events the same on the one-day and full instances, Derive's real metadata on them (a watermark that reads back,
the source query, a table window's SQL and lineage), and every measured read answering as the UI or a run would.
The full year runs in `python -m benchmarks.history` (see benchmarks/README.md).
"""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, MetadataValue
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from derive_assets import metadata_keys as K
from derive_assets.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

END = dt.datetime(2026, 6, 15, 12, tzinfo=dt.UTC)
"""Inside the demo's partitions (daily from 2026-01-01), so every stream writes on each of the three days."""
DAYS = 3
REPLICATED = AssetKey(["orders", "orders"])  # declares `event_time: [created_at]`


def _inspect(instance: DagsterInstance, partition_key: AssetKey, partition: str) -> dict[str, Any]:
    keys = instance.get_asset_keys()
    counts = {key: len(instance.fetch_materializations(key, limit=10_000).records) for key in keys}
    latest = instance.get_latest_materialization_event(REPLICATED)
    window = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=partition_key, asset_partitions=[partition]), limit=1
    ).records
    return {
        "database": instance.event_log_storage.postgres_url.rsplit("/", 1)[-1],  # type: ignore[attr-defined]
        "events": sum(counts.values()),
        "keys": len(keys),
        "latest": latest.asset_materialization if latest else None,
        "window": window[0].asset_materialization if window else None,
    }


def _value(metadata: dict[str, Any], key: str) -> Any:
    value = metadata[key]
    return value.value if isinstance(value, MetadataValue) else value


def test_three_days_of_history_on_postgres(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))  # benchmarks/ is not an installed package
    history = importlib.import_module("benchmarks.history")
    # run_history points the in-process workspace at the demo specs through these; restored after the test.
    monkeypatch.setenv("DERIVE_SPECS_DIR", "")
    monkeypatch.setenv("DERIVE_HOME", "")
    defs, project = history._demo_definitions(tmp_path / "defs")
    expected = history.targets(defs, project, END - dt.timedelta(days=DAYS), END)
    facts: dict[str, dict[str, Any]] = {}

    def keep(name: str, instance: DagsterInstance) -> None:
        facts[name] = _inspect(instance, expected.partitioned_key, expected.partition)

    result = history.run_history(
        postgres_server_url, tmp_path, days=DAYS, extra_keys=40, repeats=1, end=END, keep=keep, parts=1
    )

    # ~4,000 materializations a day at the default size: the Discord figure.
    default = [
        *history.demo_streams(defs, project),
        *history.extra_streams(project, history.DEFAULT_EXTRA_KEYS),
    ]
    assert 3_800 <= history.per_day(default) <= 4_500
    assert len(default) == 11 + history.DEFAULT_EXTRA_KEYS

    # Every materialization reached the storage, each day's exactly once.
    per_day = result["per_day"]
    assert result["keys"] == 11 + 40 and result["demo_keys"] == 11
    assert facts["empty"]["events"] == 0
    assert facts["one_day"]["events"] == per_day
    assert facts["full"]["events"] == result["events"] == DAYS * per_day
    assert facts["full"]["keys"] == facts["one_day"]["keys"] == 51
    assert set(result["events_by_kind"]) == {"replication", "table", "export", "python"}

    # The latest replication event is the same on the one-day and full instances, and it is a real watermark.
    full, one_day = facts["full"]["latest"], facts["one_day"]["latest"]
    assert full is not None and one_day is not None
    assert full.metadata == one_day.metadata
    watermark = _value(full.metadata, K.WATERMARK)
    assert END - dt.timedelta(minutes=15) <= dt.datetime.fromisoformat(watermark) < END
    assert _value(full.metadata, K.READ_FLOOR) is not None
    assert 'FROM "orders"' in _value(full.metadata, K.SOURCE_QUERY)
    assert _value(full.metadata, K.event_time("created_at"))["rows"] >= 20
    assert {K.ROWS_READ, K.ROWS_INSERTED, K.ROW_COUNT, K.WATERMARK_BEFORE} <= set(full.metadata)
    assert DATA_VERSION_TAG in (full.tags or {})

    # The partition read finds the window's own event, with the table run's SQL and column lineage.
    window = facts["full"]["window"]
    assert window is not None and window.partition == expected.partition
    assert _value(window.metadata, K.WINDOW_START).startswith(expected.partition)
    assert "SELECT" in _value(window.metadata, K.RENDERED_SQL).upper()
    assert K.COLUMN_LINEAGE in window.metadata and K.UPSTREAM_TABLES in window.metadata

    # What each measured read saw: the same watermark on one-day and full, nothing on empty.
    seen = {name: result["instances"][name]["seen"] for name in history.INSTANCES}
    assert seen["empty"]["watermark"] is None
    assert seen["full"]["watermark"] == seen["one_day"]["watermark"] is not None
    assert seen["full"]["partition_found"] and not seen["empty"]["partition_found"]
    assert seen["empty"]["page_events_replication"] == 0
    assert seen["one_day"]["page_events_replication"] == 96  # every 15 minutes
    assert seen["full"]["page_events_replication"] == 100  # the page's limit
    assert seen["full"]["page_events"] > seen["one_day"]["page_events"] > 0
    assert seen["full"]["late_data_partitions"] > seen["one_day"]["late_data_partitions"] > 0
    automated = [
        k
        for k in defs.resolve_asset_graph().get_all_asset_keys()
        if defs.resolve_asset_graph().get(k).automation_condition
    ]
    assert seen["full"]["evaluated"] == len(automated)

    # A ratio for every read, from medians of every instance; the plans say which index served the reads.
    rows = {row["what"]: row for row in history.ratios(result)}
    assert set(rows) == {*history.MEASURED, *history.ALSO}
    assert all(row["full_over_empty"] > 0 for row in rows.values())
    plans = result["explain_full"]
    assert any(
        "idx_events_by_asset_partition" in line for p in plans["watermark_partition"] for line in p["plan"]
    )

    # Its databases are gone.
    with psycopg.connect(postgres_server_url) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert not names & {f["database"] for f in facts.values()}
