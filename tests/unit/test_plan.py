"""`derive plan` shows each table's next window, rendered SQL, DDL and estimate."""

import datetime as dt

from derive_assets.plan import plan, render
from derive_assets.settings import PROJECT_ROOT
from derive_assets.specs.project import load_project
from resources.duckdb_warehouse import DuckDBWarehouse


def test_plan_renders_next_window_in_the_warehouse_dialect(tmp_path):
    project = load_project(PROJECT_ROOT / "table_specs")
    now = dt.datetime(2026, 3, 5, 0, 30, tzinfo=dt.UTC)
    entries = {e.ref: e for e in plan(project, DuckDBWarehouse(path=str(tmp_path / "w.duckdb")), now)}

    daily = entries["analytics.daily_payments_by_region"]
    assert daily.window is not None
    assert (daily.window.start, daily.window.end) == (
        dt.datetime(2026, 3, 4, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 5, tzinfo=dt.UTC),
    )
    assert "$window_start" in daily.sql and "@window_start" not in daily.sql
    assert daily.params["window_end"] == dt.datetime(2026, 3, 5, tzinfo=dt.UTC)
    assert 'CREATE TABLE IF NOT EXISTS "analytics"."daily_payments_by_region"' in daily.ddl
    assert entries["analytics.top_spenders"].window is None

    text = render(list(entries.values()))
    assert "== analytics.order_facts (append) — next window: 2026-03-04T00:00:00+00:00" in text
    assert "duckdb gives no estimate" in text
    assert not (tmp_path / "w.duckdb").exists()  # planning writes nothing
