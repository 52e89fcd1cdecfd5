"""The whole path through Dagster on embedded engines: SQLite sources -> DuckDB, incremental and all-or-nothing."""

import datetime as dt
import sqlite3

import duckdb
import pytest
from dagster import AssetIn, AssetKey, DagsterInstance, Definitions, asset
from support import QUIET, run_assets, run_job

from derive_assets.demo.generate import apply_activity, embedded_urls
from derive_assets.factory.build import build_definitions
from derive_assets.factory.windows import partitions_for
from derive_assets.settings import DeriveSettings
from derive_assets.specs.models import DEFAULT_TIME_OVERLAP_SECONDS
from derive_assets.specs.project import load_project

AUTH = AssetKey(["accounts", "auth"])


run = run_job


def table(settings: DeriveSettings, ref: str) -> list[tuple]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(f"SELECT * FROM {ref} ORDER BY ALL").fetchall()


def watermark(instance: DagsterInstance, key: AssetKey = AUTH) -> str | None:
    event = instance.get_latest_materialization_event(key)
    assert event is not None and event.asset_materialization is not None
    return event.asset_materialization.metadata["derive/watermark"].value  # type: ignore[return-value]


def recent_day(days_ago: int = 2) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).strftime("%Y-%m-%d")


def source_rows_since(settings: DeriveSettings, mark: str | None, overlap_seconds: int) -> int:
    """Rows of the demo's accounts.auth whose cursor lies after `mark` minus the overlap."""
    assert mark is not None
    since = dt.datetime.fromisoformat(mark) - dt.timedelta(seconds=overlap_seconds)
    path = embedded_urls(settings.embedded_sources_dir).accounts.removeprefix("sqlite:///")
    with sqlite3.connect(path) as con:
        (count,) = con.execute(
            "SELECT count(*) FROM auth WHERE julianday(updated_at) > julianday(?)",
            [since.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")],
        ).fetchone()
    return count


def test_incremental_replication_reads_only_changes(settings, instance):
    defs = build_definitions(settings)
    first = run(defs, instance, "replicate_accounts")
    assert first["accounts/auth"]["derive/rows_read"] == 500
    assert first["accounts/auth"]["derive/watermark_before"] is None
    mark = watermark(instance)

    changes = apply_activity(embedded_urls(settings.embedded_sources_dir), fraction=0.04)
    second = run(defs, instance, "replicate_accounts")["accounts/auth"]
    changed = (
        changes["accounts.auth.inserted"]
        + changes["accounts.auth.updated"]
        + changes["accounts.auth.deleted"]
    )
    # The default overlap of a TIMESTAMP cursor (600 s) re-reads the rows just before the watermark too.
    assert second["derive/rows_read"] == source_rows_since(settings, mark, DEFAULT_TIME_OVERLAP_SECONDS)
    assert second["derive/rows_read"] >= changed
    assert second["derive/watermark_before"] == mark
    assert watermark(instance) > mark
    assert second["derive/rows_deleted"] == changes["accounts.auth.deleted"] > 0
    assert (
        len(table(settings, "accounts.auth"))
        == 500 + changes["accounts.auth.inserted"] - changes["accounts.auth.deleted"]
    )

    before = table(settings, "accounts.auth")
    mark = watermark(instance)
    third = run(defs, instance, "replicate_accounts")["accounts/auth"]
    assert third["derive/rows_read"] == source_rows_since(settings, mark, DEFAULT_TIME_OVERLAP_SECONDS)
    assert third["derive/rows_inserted"] == 0
    assert watermark(instance) == mark
    assert table(settings, "accounts.auth") == before


def test_lost_warehouse_table_means_full_reload(settings, instance):
    defs = build_definitions(settings)
    run(defs, instance, "replicate_accounts")
    settings.duckdb_path.unlink()
    again = run(defs, instance, "replicate_accounts")["accounts/auth"]
    assert again["derive/rows_read"] == 500


def test_derived_window_is_idempotent_and_records_its_run(settings, instance):
    defs = build_definitions(settings)
    for job in ("replicate_accounts", "replicate_profiles", "replicate_payments"):
        run(defs, instance, job)
    run_assets(defs, instance, "core/user_detail")
    day = recent_day()
    meta = run_assets(defs, instance, "analytics/daily_payments_by_region", day)[
        "analytics/daily_payments_by_region"
    ]
    once = table(settings, "analytics.daily_payments_by_region")
    assert once and {r[0].isoformat() for r in once} == {day}
    run_assets(defs, instance, "analytics/daily_payments_by_region", day)
    assert table(settings, "analytics.daily_payments_by_region") == once

    assert meta["derive/window_start"] == f"{day}T00:00:00+00:00"
    assert meta["derive/upstream_tables"] == ["core.user_detail", "payments.payments"]
    assert "$window_start" in meta["derive/rendered_sql"]
    assert meta["derive/rows_inserted"] == len(once)
    lineage = meta["dagster/column_lineage"].deps_by_column
    assert [d.asset_key for d in lineage["revenue"]] == [AssetKey(["payments", "payments"])]


def test_failed_derived_run_changes_nothing(settings, specs_dir, instance):
    defs = build_definitions(settings)
    for job in ("replicate_accounts", "replicate_profiles", "replicate_orders"):
        run(defs, instance, job)
    run_assets(defs, instance, "core/user_detail")
    day = recent_day()
    run_assets(defs, instance, "analytics/order_facts", day)
    before = table(settings, "analytics.order_facts")
    events_before = instance.get_latest_materialization_event(AssetKey(["analytics", "order_facts"]))

    spec = specs_dir / "analytics" / "order_facts.yaml"
    spec.write_text(spec.read_text().replace("o.status,", "CAST(o.status AS INT64) AS status,"))
    broken = build_definitions(settings)
    run_assets(broken, instance, "analytics/order_facts", day, ok=False)
    assert table(settings, "analytics.order_facts") == before
    after = instance.get_latest_materialization_event(AssetKey(["analytics", "order_facts"]))
    assert after is not None and events_before is not None and after.run_id == events_before.run_id


def test_failed_replication_keeps_table_and_watermark(settings, instance):
    defs = build_definitions(settings)
    run(defs, instance, "replicate_accounts")
    before, mark = table(settings, "accounts.auth"), watermark(instance)
    apply_activity(embedded_urls(settings.embedded_sources_dir), fraction=0.04)
    import sqlite3

    with sqlite3.connect(settings.embedded_sources_dir / "accounts.db") as con:
        con.execute("ALTER TABLE auth DROP COLUMN email")
    run(defs, instance, "replicate_accounts", ok=False)
    assert table(settings, "accounts.auth") == before
    assert watermark(instance) == mark


def test_python_asset_downstream_gets_its_window_as_a_dataframe(settings, instance):
    project = load_project(settings.specs_dir)
    base = build_definitions(settings, project)
    daily = project.table("analytics.daily_payments_by_region").spec
    seen = {}

    @asset(
        key=["ml", "region_features"],
        ins={"daily": AssetIn(key=AssetKey(["analytics", "daily_payments_by_region"]))},
        partitions_def=partitions_for(daily.window),
        io_manager_key="warehouse_io_manager",
    )
    def region_features(daily):
        seen["frame"] = daily

    defs = Definitions.merge(base, Definitions(assets=[region_features]))
    for job in ("replicate_accounts", "replicate_profiles", "replicate_payments"):
        run(defs, instance, job)
    run_assets(defs, instance, "core/user_detail")
    day, other = recent_day(2), recent_day(3)
    run_assets(defs, instance, "analytics/daily_payments_by_region", other)
    run_assets(defs, instance, "analytics/daily_payments_by_region", day)
    result = defs.get_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        partition_key=day,
        asset_selection=[AssetKey(["ml", "region_features"])],
        run_config=QUIET,
    )
    assert result.success
    frame = seen["frame"]
    assert len(frame) > 0
    assert {str(d)[:10] for d in frame["day"]} == {day}


@pytest.mark.parametrize("spec_file", ["analytics/daily_payments_by_region.yaml"])
def test_spec_change_is_picked_up_without_code_changes(settings, specs_dir, spec_file):
    path = specs_dir / spec_file
    path.write_text(path.read_text().replace("description: Succeeded payments", "description: Paid"))
    defs = build_definitions(settings)
    spec = defs.resolve_assets_def(AssetKey(["analytics", "daily_payments_by_region"]))
    assert spec.descriptions_by_key[AssetKey(["analytics", "daily_payments_by_region"])].startswith("Paid")
