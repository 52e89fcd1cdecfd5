"""`derive plan` on DuckDB: per table the code version and schema diff against the warehouse and what the next
run does (add a column with the windows to backfill; refuse a rename until `derive rebuild`), selections as
Dagster reads them, replications from their watermark, exports, and orphaned tables. Plan never writes."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from lifecycle_world import DAILY, DAILY_SPEC, World, build_world, copy_world, days_ago


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> World:
    return build_world(World(tmp_path_factory.mktemp("plan") / "world"))


@pytest.fixture
def world(base: World, tmp_path) -> World:
    return copy_world(base, tmp_path / "world")


def section(text: str, header: str) -> str:
    """The lines of one `== header` block of the plan."""
    start = text.index(f"== {header}")
    end = text.find("\n== ", start + 1)
    return text[start : end if end != -1 else None]


def test_an_unchanged_table_plans_nothing(world: World):
    result = world.derive("plan", DAILY)
    assert result.returncode == 0, result.stderr
    daily = section(result.stdout, DAILY)
    assert "-- spec: unchanged" in daily
    assert "-- will: nothing" in daily
    assert "-- partitions: 3" in daily


def test_an_added_column_plans_add_column_and_the_windows_to_backfill(world: World):
    world.add_avg_amount()
    result = world.derive("plan", DAILY)
    assert result.returncode == 0, result.stderr
    daily = section(result.stdout, DAILY)
    assert "-- spec: changed" in daily
    assert "-- will: add column avg_amount NUMERIC (old rows hold NULL)" in daily
    # From the first partition (never materialized) to the last materialized one.
    first, last = days_ago(2), days_ago(1)
    assert f"-- backfill: 2 window(s) {first} .. {last} hold NULL in the new column" in daily
    assert f"--partition-range {first}...{last}" in daily
    assert f"`derive rebuild {DAILY}`" in daily
    assert "avg_amount" not in world.columns(DAILY)  # plan never writes


def test_a_renamed_column_plans_a_refusal_and_the_rebuild(world: World):
    world.rename_payers()
    result = world.derive("plan", DAILY)
    assert result.returncode == 0, result.stderr
    daily = section(result.stdout, DAILY)
    assert (
        "-- will: refuse before writing: rebuild needed (column payers INT64 is in the table but not in "
        in daily
    )
    assert f"run `derive rebuild {DAILY}`" in daily
    assert "add column distinct_payers INT64" in daily  # the whole diff is shown


def headers(out: str) -> list[str]:
    """The planned assets, in order."""
    return [line.split(" ")[1] for line in out.splitlines() if line.startswith("== ") and "(" in line]


def test_selections_are_read_as_dagster_reads_them(world: World):
    every = world.derive("plan", "analytics/*")
    assert every.returncode == 0, every.stderr
    assert headers(every.stdout) == [
        "analytics.daily_payments_by_region",
        "analytics.order_facts",
        "analytics.top_spenders",
    ]

    parents = world.derive("plan", "+analytics.daily_payments_by_region")
    assert parents.returncode == 0, parents.stderr
    assert headers(parents.stdout) == ["core.user_detail", DAILY, "payments.payments"]

    children = world.derive("plan", "analytics/daily_payments_by_region+")
    assert headers(children.stdout) == [DAILY, "features.region_scores", "online/region_payments_online"]


def test_an_unknown_selection_is_one_message_naming_near_keys(world: World):
    result = world.derive("plan", "analytics/daily_payment_by_region")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "derive plan: 'analytics/daily_payment_by_region' selects no asset; did you mean "
    )
    assert "analytics/daily_payments_by_region" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_replications_plan_the_source_query_from_the_watermark_and_exports_their_slice(world: World):
    result = world.derive("plan", "payments/payments", "online/*")
    assert result.returncode == 0, result.stderr
    payments = section(result.stdout, "payments.payments (replication)")
    found = re.search(r"rows with updated_at > (\S+) \(read floor (\S+) less cursor_overlap 600\)", payments)
    assert found, payments
    since, floor = (dt.datetime.fromisoformat(v) for v in found.groups())
    assert floor - since == dt.timedelta(seconds=600)  # the query reads from the floor less the overlap
    assert f"-- parameters: ['{since.isoformat(sep=' ')[:19]}" in payments  # the bound value of the `?`
    assert 'CREATE TABLE IF NOT EXISTS "payments"."payments"' in payments
    assert 'FROM "payments" WHERE JULIANDAY("updated_at") > JULIANDAY(?)' in payments
    online = section(result.stdout, "online/region_payments_online")
    assert f"next window {days_ago(1)}T00:00:00+00:00" in online
    assert 'CREATE TABLE IF NOT EXISTS "derive_online"."region_payments_online"' in online
    assert 'PRIMARY KEY (("region"), "day")' in online
    profile = section(result.stdout, "online/user_profile_online")
    assert "every row (no export watermark yet; later runs: rows with a newer updated_at)" in profile


def test_a_deleted_spec_is_listed_as_an_orphan_and_a_hand_made_table_never(world: World):
    world.execute("CREATE TABLE analytics.hand_made (x INTEGER)")
    (world.specs / "analytics" / "top_spenders.yaml").unlink()
    result = world.derive("plan", DAILY)
    assert result.returncode == 0, result.stderr
    orphans = section(result.stdout, "orphaned tables")
    assert "1 table(s) Derive created that no spec owns" in orphans
    assert "  analytics.top_spenders" in orphans
    assert "hand_made" not in result.stdout
    assert world.query("SELECT count(*) FROM analytics.top_spenders")[0][0] == 100  # plan never writes


def test_a_first_plan_creates_the_table_and_reads_everything(tmp_path):
    """No warehouse, no Dagster instance: every table is new and every replication a first load."""
    world = World(tmp_path)
    import shutil

    from derive_assets.settings import PROJECT_ROOT

    shutil.copytree(PROJECT_ROOT / "table_specs", world.specs)
    result = world.derive("plan")
    assert result.returncode == 0, result.stderr
    assert "-- will: create the table" in section(result.stdout, DAILY)
    auth = section(result.stdout, "accounts.auth (replication)")
    assert "first load (no table in the warehouse yet)" in auth
    assert "WHERE" not in auth
    assert "== orphaned tables: none" in result.stdout
    assert not world.warehouse.exists()  # plan never writes, not even an empty warehouse file
    assert not world.dagster_home.exists()


def test_the_spec_under_test_starts_three_days_ago(base: World):
    """The fixture's premise: three complete windows, the last two materialized."""
    assert f"start: {days_ago(3)}" in (base.specs / DAILY_SPEC).read_text()
    days = sorted(str(r[0]) for r in base.query(f"SELECT DISTINCT day FROM {DAILY}"))
    assert days and set(days) <= {days_ago(2), days_ago(1)}


def test_a_python_table_is_planned_by_its_schema(world: World):
    result = world.derive("plan", "features/*")
    assert result.returncode == 0, result.stderr
    scores = section(result.stdout, "features.region_scores (python table, merge)")
    assert "-- will: create the table" in scores  # the world never materialized it
    assert 'CREATE TABLE IF NOT EXISTS "features"."region_scores"' in scores
