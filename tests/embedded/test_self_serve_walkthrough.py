"""The README's self-serve walkthrough, as a new team would run it (docs/environments.md): scaffold a table, validate
it, plan and build it into an environment; change an existing table's SQL and let `derive diff` find exactly the
rows the change changes; then clean up. All through the `derive` commands, on DuckDB."""

from __future__ import annotations

from embedded.lifecycle_world import DAILY, DAILY_SPEC, World, build_world, days_ago


def test_scaffold_build_diff_and_drop_in_an_environment(tmp_path):
    world = build_world(World(tmp_path / "world"))

    # 1. scaffold a new table from a query, fix its window filter as the TODO says, validate
    query = (
        "SELECT DATE(o.created_at) AS day, u.country, COUNT(*) AS orders FROM orders.orders AS o "
        "JOIN core.user_detail AS u USING (user_id) GROUP BY 1, 2"
    )
    new = world.derive(
        "new", "analytics/orders_by_country", "--strategy", "merge", "--window", "1d", "--sql", query
    )
    assert new.returncode == 0, new.stderr
    spec = world.specs / "analytics" / "orders_by_country.yaml"
    text = spec.read_text()
    assert "unique_key: [day, country]" in text
    spec.write_text(
        text.replace(
            "USING (user_id) GROUP BY",
            "USING (user_id)\n  WHERE o.created_at >= @window_start AND o.created_at < @window_end\n  GROUP BY",
        )
    )
    assert world.derive("validate").returncode == 0

    # 2. plan and build it into the team's environment; production gets nothing
    planned = world.derive("plan", "analytics/orders_by_country", "--env", "team_a")
    assert planned.returncode == 0, planned.stderr
    assert "== analytics.orders_by_country [new] -> team_a__analytics.orders_by_country" in planned.stdout
    built = world.derive("build", "analytics/orders_by_country", "--env", "team_a", "--last", "2")
    assert built.returncode == 0, built.stderr
    # production never replicated orders: the environment replicates them first, and reads its own copy
    assert "team_a__orders.orders  [new]  all rows" in built.stdout
    rows = world.query("SELECT sum(orders) FROM team_a__analytics.orders_by_country")[0][0]
    expected = world.query(
        "SELECT count(*) FROM team_a__orders.orders AS o JOIN core.user_detail AS u USING (user_id) "
        f"WHERE o.created_at >= TIMESTAMPTZ '{days_ago(2)} 00:00:00+00' AND o.created_at < TIMESTAMPTZ '{days_ago(0)} 00:00:00+00'"
    )[0][0]
    assert rows == expected > 0
    assert not world.query(
        "SELECT * FROM duckdb_tables() WHERE schema_name = 'analytics' AND table_name = 'orders_by_country'"
    )

    # 3. a seeded change to an existing table: eu revenue doubled; the diff finds exactly those rows
    world.edit(
        DAILY_SPEC,
        "SUM(p.amount) AS revenue",
        "SUM(p.amount) * IF(COALESCE(u.region, 'unknown') = 'eu', 2, 1) AS revenue",
    )
    assert world.derive("build", DAILY, "--env", "team_a", "--last", "2").returncode == 0
    diff = world.derive("diff", DAILY, "--env", "team_a")
    assert diff.returncode == 1, diff.stdout + diff.stderr  # different
    eu_rows = world.query(
        f"SELECT count(*) FROM {DAILY} WHERE region = 'eu' AND day BETWEEN DATE '{days_ago(2)}' AND DATE '{days_ago(1)}'"
    )[0][0]
    assert eu_rows > 0
    report = diff.stdout
    assert f"changed rows: {eu_rows}\n  revenue: {eu_rows} rows\n" in report, (
        report
    )  # that column, those rows
    assert "keys only in production: 0\nkeys only in team_a: 0\n" in report
    for day, region in world.query(
        f"SELECT day, region FROM {DAILY} WHERE region = 'eu' AND day >= DATE '{days_ago(2)}'"
    ):
        assert f"({day}, '{region}'):" in report
    assert "payments: production" in report and "revenue: production" in report
    assert report.count("<- differs") == 1  # only the revenue sum moved
    planned = world.derive("plan", DAILY, "--env", "team_a")
    assert f"{eu_rows} changed rows (revenue {eu_rows})" in planned.stdout

    # 4. clean up: only the environment's tables go
    production = world.query(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name NOT LIKE '%\\_\\_%' ESCAPE '\\'"
    )
    dropped = world.derive("env", "drop", "team_a", "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert not world.query(
        "SELECT * FROM duckdb_tables() WHERE schema_name LIKE 'team\\_a\\_\\_%' ESCAPE '\\'"
    )
    assert (
        world.query("SELECT count(*) FROM duckdb_tables() WHERE schema_name NOT LIKE '%\\_\\_%' ESCAPE '\\'")
        == production
    )
