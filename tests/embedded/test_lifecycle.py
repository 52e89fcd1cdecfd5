"""A table's life on DuckDB through the operator's commands: add a column and rebuild to fill it, rename a column
(refused by the run, then `derive rebuild`), delete a spec (`derive prune` drops its table, never a hand-made one).
"""

from __future__ import annotations

import pytest
from lifecycle_world import DAILY, World, build_world, copy_world, days_ago

from derive_assets.factory.build import build_warehouse
from derive_assets.lifecycle import prune
from resources.warehouse import WarehouseError


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> World:
    return build_world(World(tmp_path_factory.mktemp("lifecycle") / "world"))


@pytest.fixture
def world(base: World, tmp_path) -> World:
    return copy_world(base, tmp_path / "world")


def days(world: World, where: str = "") -> list[str]:
    return sorted(str(r[0]) for r in world.query(f"SELECT DISTINCT day FROM {DAILY} {where}"))


def test_an_added_column_is_added_by_the_next_run_and_rebuild_fills_every_window(world: World):
    world.add_avg_amount()
    assert world.materialize(DAILY, (days_ago(1), days_ago(1)))  # additive: the run adds the column
    assert "avg_amount" in world.columns(DAILY)
    assert days(world, "WHERE avg_amount IS NULL") == [days_ago(2)]  # the old window holds NULL

    result = world.derive("rebuild", DAILY, "--yes")
    assert result.returncode == 0, result.stderr
    rows = world.query(f"SELECT count(*), count(avg_amount) FROM {DAILY}")[0]
    assert rows[0] > 0 and rows[0] == rows[1]  # every window filled
    assert result.stdout.startswith(f"rebuilt {DAILY}: {rows[0]:,} rows in ")
    assert days(world) == [days_ago(3), days_ago(2), days_ago(1)]  # the whole range, the never-run window too


def test_a_renamed_column_is_refused_by_the_run_then_rebuilt(world: World):
    before = world.query(f"SELECT * FROM {DAILY} ORDER BY day, region")
    world.rename_payers()
    assert not world.materialize(DAILY, (days_ago(1), days_ago(1)))  # breaking: refused before writing
    assert world.query(f"SELECT * FROM {DAILY} ORDER BY day, region") == before
    assert "payers" in world.columns(DAILY)

    result = world.derive("rebuild", DAILY, "--yes")
    assert result.returncode == 0, result.stderr
    assert world.columns(DAILY) == ["day", "region", "payments", "distinct_payers", "revenue"]
    after = world.query(
        f"SELECT day, region, payments, distinct_payers, revenue FROM {DAILY} ORDER BY day, region"
    )
    assert [r for r in after if str(r[0]) != days_ago(3)] == before  # same values under the new name
    assert world.materialize(DAILY, (days_ago(1), days_ago(1)))  # and the next run is a normal one again


def test_rebuild_asks_first_and_does_nothing_without_a_yes(world: World):
    world.rename_payers()
    result = world.derive("rebuild", DAILY, stdin="n\n")
    assert result.returncode == 1
    assert "nothing done (answer y, or pass --yes to go on without the question)" in result.stderr
    assert (
        f"rebuild {DAILY} from scratch: one run over 3 window(s) {days_ago(3)} .. {days_ago(1)}? [y/N]"
        in (result.stdout)
    )
    assert "payers" in world.columns(DAILY)
    confirmed = world.derive("rebuild", DAILY, stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "distinct_payers" in world.columns(DAILY)


def test_an_unpartitioned_table_is_rebuilt_in_one_run(world: World):
    world.edit(
        "analytics/top_spenders.yaml",
        "    s.total_spent\n  FROM",
        "    s.total_spent AS total_spent_all\n  FROM",
    )
    world.edit("analytics/top_spenders.yaml", "name: total_spent\n", "name: total_spent_all\n")
    result = world.derive("rebuild", "analytics/top_spenders", "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rebuilt analytics.top_spenders: 100 rows in ")
    assert "total_spent_all" in world.columns("analytics.top_spenders")


def test_rebuild_of_an_unknown_or_a_source_table_says_what_to_do(world: World):
    unknown = world.derive("rebuild", "analytics.daily_payment_by_region", "--yes")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("derive rebuild: no table spec under ")
    assert "defines 'analytics.daily_payment_by_region'; did you mean analytics.daily_payments_by_region" in (
        unknown.stderr
    )


def test_a_source_table_is_rebuilt_from_every_source_row_and_rows_gone_at_the_source_leave(world: World):
    """SQLite cannot be chunked: the rebuild reads every row into payments__snapshot in one pass and swaps it in,
    so a row deleted at the source (which an incremental run never sees) is gone afterwards."""
    import sqlite3

    source_db = world.settings.embedded_sources_dir / "payments.db"
    with sqlite3.connect(source_db) as con:
        gone = con.execute("SELECT min(payment_id) FROM payments").fetchone()[0]
        con.execute("DELETE FROM payments WHERE payment_id = ?", [gone])
        left = con.execute("SELECT count(*) FROM payments").fetchone()[0]
    con.close()
    before = world.query("SELECT count(*) FROM payments.payments")[0][0]
    assert before == left + 1
    rebuilt = world.derive("rebuild", "payments/payments", "--yes")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.startswith(f"rebuilt payments.payments: {left:,} rows")
    assert world.query("SELECT count(*) FROM payments.payments")[0][0] == left
    assert world.query(f"SELECT count(*) FROM payments.payments WHERE payment_id = {gone}")[0][0] == 0
    tables = [r[0] for r in world.query("SELECT table_name FROM information_schema.tables")]
    assert "payments__snapshot" not in tables


def test_prune_drops_the_deleted_specs_table_only_after_a_yes_and_never_a_hand_made_one(world: World):
    world.execute("CREATE TABLE analytics.hand_made (x INTEGER)")
    (world.specs / "analytics" / "top_spenders.yaml").unlink()

    declined = world.derive("prune", stdin="n\n")
    assert declined.returncode == 1
    assert "  analytics.top_spenders\ndrop these 1 table(s)? [y/N]" in declined.stdout
    assert "hand_made" not in declined.stdout
    assert "nothing dropped (answer y, or pass --yes" in declined.stderr
    assert world.query("SELECT count(*) FROM analytics.top_spenders")[0][0] == 100

    pruned = world.derive("prune", "--yes")
    assert pruned.returncode == 0, pruned.stderr
    assert "dropped analytics.top_spenders" in pruned.stdout
    tables = {
        r[0] for r in world.query("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'analytics'")
    }
    assert "top_spenders" not in tables and "hand_made" in tables and "daily_payments_by_region" in tables

    again = world.derive("prune", "--yes")
    assert again.returncode == 0
    assert again.stdout.startswith("no orphaned tables")


def test_prune_refuses_a_table_derive_did_not_create(world: World):
    world.execute("CREATE TABLE analytics.hand_made (x INTEGER)")
    with pytest.raises(WarehouseError, match=r"analytics\.hand_made"):
        prune(build_warehouse(world.settings), ["analytics.hand_made"], say=lambda _: None)
    assert world.query("SELECT count(*) FROM analytics.hand_made")[0][0] == 0
