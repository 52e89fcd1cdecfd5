"""`derive_assets.retention` on a PostgreSQL-backed instance: old runs go, every event Derive reads back stays.

Real runs (`materialize`) of a replication-like asset carrying a watermark, of a daily-partitioned asset and of a
job recording a checkpoint observation, on a fresh database of the test server; the prune is planned as if nine
days had passed, applied, and the instance is read back the way Derive reads it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from dagster import (
    AssetKey,
    AssetObservation,
    DagsterEventType,
    DagsterInstance,
    DailyPartitionsDefinition,
    MaterializeResult,
    asset,
    job,
    materialize,
    op,
)
from psycopg import sql

from derive_assets import metadata_keys as K
from derive_assets import retention
from derive_assets.retention import RetentionError, plan_prune, prune

pytestmark = pytest.mark.integration

REPLICATED = AssetKey(["shop", "orders"])
DAILY = AssetKey(["analytics", "daily"])
days = DailyPartitionsDefinition(start_date="2026-01-01")


@pytest.fixture
def instance(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DagsterInstance]:
    monkeypatch.setenv(
        "DAGSTER_HOME", str(tmp_path)
    )  # `python -m derive_assets.retention` opens this instance
    name = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(postgres_server_url)
    url = parts._replace(scheme="postgresql+psycopg2", path=f"/{name}").geturl()
    (tmp_path / "dagster.yaml").write_text(
        yaml.safe_dump({"storage": {"postgres": {"postgres_url": url}}, "telemetry": {"enabled": False}})
    )
    try:
        with DagsterInstance.from_config(str(tmp_path)) as opened:
            yield opened
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _replicate(instance: DagsterInstance, watermark: str) -> str:
    @asset(key=REPLICATED)
    def orders() -> MaterializeResult:
        return MaterializeResult(metadata={K.WATERMARK: watermark, K.READ_FLOOR: watermark})

    return materialize([orders], instance=instance).run_id


def _daily(instance: DagsterInstance, partition: str) -> str:
    @asset(key=DAILY, partitions_def=days)
    def daily() -> MaterializeResult:
        return MaterializeResult(metadata={K.WINDOW_START: partition})

    return materialize([daily], instance=instance, partition_key=partition).run_id


def _checkpoint(instance: DagsterInstance) -> str:
    @op
    def chunk(context) -> None:
        context.log_event(AssetObservation(asset_key=REPLICATED, metadata={K.SNAPSHOT_CHUNKS: 1}))

    @job
    def snapshot_chunk() -> None:
        chunk()

    result = snapshot_chunk.execute_in_process(instance=instance)
    return result.run_id


def test_prune_keeps_watermarks_partitions_and_checkpoints(instance: DagsterInstance) -> None:
    old_watermarks = [_replicate(instance, f"2026-03-0{i} 00:00:00+00:00") for i in (1, 2)]
    latest_watermark = _replicate(instance, "2026-03-03 00:00:00+00:00")
    checkpoint = _checkpoint(instance)
    rerun_a = _daily(instance, "2026-02-01")
    latest_a = _daily(instance, "2026-02-01")
    only_b = _daily(instance, "2026-02-02")
    [before] = instance.fetch_materializations(REPLICATED, limit=1).records
    partitions = instance.get_materialized_partitions(DAILY)

    plan = plan_prune(instance, keep_days=7, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=9))

    assert sorted(plan.delete) == sorted([*old_watermarks, rerun_a])
    assert set(plan.kept) == {latest_watermark, checkpoint, latest_a, only_b}
    assert "latest materialization of shop/orders" in plan.kept[latest_watermark]
    assert "partition of analytics/daily" in plan.kept[latest_a]
    assert "latest materialization of analytics/daily" in plan.kept[only_b]
    assert "observation of shop/orders after its latest materialization" in plan.kept[checkpoint]

    assert prune(instance, plan) == 3
    for run_id in plan.delete:
        assert instance.get_run_by_id(run_id) is None
        assert instance.all_logs(run_id) == []
    [after] = instance.fetch_materializations(REPLICATED, limit=1).records
    assert after.storage_id == before.storage_id and after.run_id == latest_watermark
    event = instance.get_latest_materialization_event(REPLICATED)  # what a replication run reads
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.metadata[K.WATERMARK].value == "2026-03-03 00:00:00+00:00"
    assert instance.get_materialized_partitions(DAILY) == partitions == {"2026-02-01", "2026-02-02"}
    by_partition = instance.get_latest_storage_id_by_partition(DAILY, DagsterEventType.ASSET_MATERIALIZATION)
    assert set(by_partition) == {"2026-02-01", "2026-02-02"}
    assert len(instance.fetch_observations(REPLICATED, limit=10).records) == 1

    # Nothing left to prune: a second plan deletes nothing.
    assert plan_prune(instance, keep_days=7, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=9)).delete == []


def test_prune_refuses_to_keep_less_than_a_week(instance: DagsterInstance) -> None:
    with pytest.raises(RetentionError, match=r"keep_days=3 is under 7: the late-data sensor .* rule 5"):
        plan_prune(instance, keep_days=3)


def test_recent_runs_are_never_candidates(instance: DagsterInstance) -> None:
    runs = [_replicate(instance, f"2026-03-0{i} 00:00:00+00:00") for i in (1, 2)]
    plan = plan_prune(instance, keep_days=7)
    assert plan.delete == [] and plan.kept == {}
    assert all(instance.get_run_by_id(r) is not None for r in runs)


def test_the_command_lists_by_default_and_deletes_only_with_apply(
    instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m derive_assets.retention --keep-days N [--apply]`, as docs/retention.md gives it (nine days on)."""
    old = _replicate(instance, "2026-03-01 00:00:00+00:00")
    latest = _replicate(instance, "2026-03-02 00:00:00+00:00")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=9)
    monkeypatch.setattr(retention, "plan_prune", lambda opened, days: plan_prune(opened, days, now=later))

    assert retention.main(["--keep-days", "7"]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("1 finished runs last updated before ") and "1 kept" in listed
    assert "nothing deleted: run again with --apply" in listed
    assert instance.get_run_by_id(old) is not None

    assert retention.main(["--keep-days", "7", "--apply"]) == 0
    assert "deleted 1 runs and their events" in capsys.readouterr().out
    assert instance.get_run_by_id(old) is None and instance.get_run_by_id(latest) is not None

    with pytest.raises(SystemExit) as refused:
        retention.main(["--keep-days", "3"])
    assert refused.value.code == 2
    assert "keep_days=3 is under 7" in capsys.readouterr().err
