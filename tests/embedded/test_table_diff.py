"""`derive_assets.table_diff` on a real DuckDB file: the seeded differences of `table_diff_scenario`, exactly, and
nothing else (a difference outside the compared windows is not reported)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from embedded.table_diff_scenario import (
    D1,
    D2,
    D3,
    ENV,
    EVENTS,
    FACTS,
    PROD,
    ULP,
    WINDOWS,
    CreateTable,
    events_spec,
    facts_spec,
    seed,
    window,
)

from derive_assets.table_diff import (
    Column,
    ColumnChanges,
    ColumnSum,
    OneSided,
    SampleRow,
    TableDiffError,
    TableMissing,
    TypeChange,
    ValueChange,
    diff_tables,
    environment_summary,
    render_diff,
)
from resources.duckdb_warehouse import DuckDBWarehouse
from resources.sql_text import DUCKDB_TYPES


def duckdb_creator(path: Path):
    def create(ref: str, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]) -> None:
        dataset, _ = ref.split(".")
        cols = ", ".join(f'"{n}" {DUCKDB_TYPES[t]}' for n, t in columns)
        with duckdb.connect(str(path)) as con:
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{dataset}"')
            con.execute(f"CREATE TABLE {ref} ({cols})")
            marks = ", ".join("?" for _ in columns)
            con.executemany(f"INSERT INTO {ref} VALUES ({marks})", [list(r.values()) for r in rows])

    return create


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    path = tmp_path / "wh.duckdb"
    seed(duckdb_creator(path))
    return DuckDBWarehouse(path=str(path))


@pytest.fixture
def create_table(warehouse: DuckDBWarehouse) -> CreateTable:
    """Another table in the test's warehouse, made through the engine's own client."""
    return duckdb_creator(Path(warehouse.path))


def test_by_key_over_the_windows_finds_exactly_the_seeded_differences(warehouse: DuckDBWarehouse) -> None:
    diff = diff_tables(warehouse, facts_spec(), f"{PROD}.{FACTS}", f"{ENV}.{FACTS}", WINDOWS)

    assert diff.key == ("order_id",)
    assert diff.windows == (window(D1).__class__(WINDOWS[0].start, WINDOWS[1].end),)  # merged into one range
    assert diff.schema.only_in_production == (Column("legacy", "STRING"),)
    assert diff.schema.only_in_shadow == (Column("channel", "STRING"),)
    assert diff.schema.type_changes == (
        TypeChange("qty", "INT64", "NUMERIC"),
        TypeChange("code", "INT64", "STRING"),
    )
    assert diff.compared == ("order_id", "day", "amount", "status", "qty", "weight")
    assert [c for c, _ in diff.not_compared] == ["code"]
    assert (diff.production_rows, diff.shadow_rows) == (4, 4)
    assert diff.only_in_production == OneSided(1, (SampleRow((4,)),))
    assert diff.only_in_shadow == OneSided(1, (SampleRow((5,)),))
    assert diff.changed_rows == 3
    assert diff.changed_columns == (
        ColumnChanges("amount", 1, (ValueChange((2,), Decimal("20"), Decimal("25")),)),
        ColumnChanges("status", 1, (ValueChange((3,), None, "refunded"),)),
        ColumnChanges("weight", 1, (ValueChange((1,), 1.5, ULP),)),
    )
    sums = {s.column: s for s in diff.sums}
    assert list(sums) == ["amount", "qty", "weight"]
    assert sums["amount"] == ColumnSum("amount", Decimal("100.5"), Decimal("115.5"))
    assert sums["amount"].difference == Decimal("15")
    assert (sums["qty"].production, sums["qty"].shadow, sums["qty"].difference) == (10, 11, 1)
    assert sums["weight"].production == 8.25
    assert sums["weight"].shadow == pytest.approx(9.25)
    assert not diff.identical


def test_a_difference_outside_the_windows_is_not_reported_but_the_whole_table_shows_it(
    warehouse: DuckDBWarehouse,
) -> None:
    spec = facts_spec()
    only_first = diff_tables(warehouse, spec, f"{PROD}.{FACTS}", f"{ENV}.{FACTS}", [window(D1)])
    assert (only_first.production_rows, only_first.shadow_rows) == (2, 2)
    assert only_first.only_in_production.count == only_first.only_in_shadow.count == 0
    assert [(c.column, c.rows) for c in only_first.changed_columns] == [("amount", 1), ("weight", 1)]

    whole = diff_tables(warehouse, spec, f"{PROD}.{FACTS}", f"{ENV}.{FACTS}", None)
    assert whole.windows is None and (whole.production_rows, whole.shadow_rows) == (5, 5)
    amount = next(c for c in whole.changed_columns if c.column == "amount")
    assert amount.rows == 2
    assert [v.key for v in amount.sample] == [(2,), (6,)]
    assert amount.sample[1] == ValueChange((6,), Decimal("60"), Decimal("61"))

    outside = diff_tables(warehouse, spec, f"{PROD}.{FACTS}", f"{ENV}.{FACTS}", [window(D3)])
    assert [(c.column, c.rows) for c in outside.changed_columns] == [("amount", 1)]


def test_samples_are_capped(warehouse: DuckDBWarehouse) -> None:
    spec = facts_spec()
    none = diff_tables(warehouse, spec, f"{PROD}.{FACTS}", f"{ENV}.{FACTS}", None, sample=0)
    assert none.only_in_production == OneSided(1) and all(not c.sample for c in none.changed_columns)
    one = diff_tables(warehouse, spec, f"{PROD}.{FACTS}", f"{ENV}.{FACTS}", None, sample=1)
    amount = next(c for c in one.changed_columns if c.column == "amount")
    assert (amount.rows, len(amount.sample)) == (2, 1)


def test_without_a_key_whole_rows_are_compared_null_safe(warehouse: DuckDBWarehouse) -> None:
    diff = diff_tables(warehouse, events_spec(), f"{PROD}.{EVENTS}", f"{ENV}.{EVENTS}", WINDOWS)

    assert diff.key == ()
    assert diff.schema.empty and diff.not_compared == ()
    assert (diff.production_rows, diff.shadow_rows) == (4, 4)
    # one extra copy of (D1, a, 1) and the old (D2, c, 3); the NULL row is equal on both sides
    assert diff.only_in_production == OneSided(
        2, (SampleRow((D1, "a", Decimal("1")), 1), SampleRow((D2, "c", Decimal("3")), 1))
    )
    assert diff.only_in_shadow == OneSided(
        2, (SampleRow((D2, "c", Decimal("3.5")), 1), SampleRow((D2, "e", Decimal("5")), 1))
    )
    assert diff.changed_columns == () and diff.changed_rows == 0
    assert diff.sums == (ColumnSum("amount", Decimal("5"), Decimal("9.5")),)
    assert not diff.identical

    outside = diff_tables(warehouse, events_spec(), f"{PROD}.{EVENTS}", f"{ENV}.{EVENTS}", [window(D3)])
    assert outside.only_in_production == OneSided(1, (SampleRow((D3, "d", Decimal("4")), 1),))


def test_identical_tables_say_so(warehouse: DuckDBWarehouse, tmp_path: Path) -> None:
    with duckdb.connect(warehouse.path) as con:
        con.execute(f"CREATE SCHEMA bob__{PROD}")
        con.execute(f"CREATE TABLE bob__{PROD}.{EVENTS} AS SELECT * FROM {PROD}.{EVENTS}")

    diff = diff_tables(warehouse, events_spec(), f"{PROD}.{EVENTS}", f"bob__{PROD}.{EVENTS}", WINDOWS)

    assert diff.identical
    assert diff.summary_line() == (
        f"{PROD}.{EVENTS} in bob: identical (4 rows, day in [2026-11-01, 2026-11-03))"
    )
    assert render_diff(diff).endswith("result: identical")


def test_a_missing_table_is_named_with_the_command_that_builds_it(warehouse: DuckDBWarehouse) -> None:
    spec = facts_spec()
    with pytest.raises(
        TableMissing,
        match=r"^carol__analytics\.order_facts does not exist: build it first with "
        r"`derive build --env carol analytics/order_facts`$",
    ) as raised:
        diff_tables(warehouse, spec, f"{PROD}.{FACTS}", f"carol__{PROD}.{FACTS}", None)
    assert raised.value.side == "shadow"
    with pytest.raises(TableMissing, match=r"analytics\.nothing does not exist in production") as raised:
        diff_tables(warehouse, spec, f"{PROD}.nothing", f"{ENV}.{FACTS}", None)
    assert raised.value.side == "production"


def test_windows_need_a_partition_column(warehouse: DuckDBWarehouse) -> None:
    spec = facts_spec().model_copy(update={"partition": None})
    with pytest.raises(TableDiffError, match="has no partition column"):
        diff_tables(warehouse, spec, f"{PROD}.{FACTS}", f"{ENV}.{FACTS}", WINDOWS)


def test_render_is_plain_text_with_every_difference(warehouse: DuckDBWarehouse) -> None:
    diff = diff_tables(warehouse, facts_spec(), f"{PROD}.{FACTS}", f"{ENV}.{FACTS}", WINDOWS)

    text = render_diff(diff)

    assert "\x1b" not in text and max(len(line) for line in text.splitlines()) <= 120
    for line in [
        "diff analytics.order_facts (production) -> alice__analytics.order_facts (environment alice)",
        "  compared: day in [2026-11-01, 2026-11-03) (start inclusive, end exclusive)",
        "  matched by key [order_id]",
        "  only in production: legacy STRING",
        "  only in alice: channel STRING",
        "  type changed: qty INT64 -> NUMERIC",
        "  not compared: code (type INT64 -> STRING: values of different types are not compared)",
        "rows: production 4, alice 4 (+0)",
        "keys only in production: 1",
        "  4",
        "keys only in alice: 1",
        "  5",
        "changed rows: 3",
        "  amount: 1 row",
        "    2: 20 -> 25",
        "    3: NULL -> 'refunded'",
        "    1: 1.5 -> 1.5000000000000002",
        "  amount: production 100.5, alice 115.5, difference 15  <- differs",
        "result: different",
    ]:
        assert line in text.splitlines(), line
    assert diff.summary_line() == (
        "analytics.order_facts in alice: differs (day in [2026-11-01, 2026-11-03)): "
        "1 key only in production; 1 key only in alice; 3 changed rows (amount 1, status 1, weight 1); "
        "schema: -legacy STRING, +channel STRING, qty INT64 -> NUMERIC, code INT64 -> STRING; not compared: code"
    )


def test_json_values_compare_as_their_text(warehouse, create_table: CreateTable) -> None:
    columns = [("order_id", "INT64"), ("day", "DATE"), ("payload", "JSON")]
    create_table(f"{PROD}.payloads", columns, [payload(1, '{"a":1}'), payload(2, None), payload(3, "[1,2]")])
    create_table(f"{ENV}.payloads", columns, [payload(1, '{"a":2}'), payload(2, None), payload(3, "[1,2]")])
    spec = facts_spec().model_copy(update={"name": "payloads"})

    by_key = diff_tables(warehouse, spec, f"{PROD}.payloads", f"{ENV}.payloads", WINDOWS)
    assert [(c.column, c.rows, [v.key for v in c.sample]) for c in by_key.changed_columns] == [
        ("payload", 1, [(1,)])
    ]
    change = by_key.changed_columns[0].sample[0]
    assert (change.before.replace(" ", ""), change.after.replace(" ", "")) == ('{"a":1}', '{"a":2}')

    spec = events_spec().model_copy(update={"name": "payloads"})
    whole_rows = diff_tables(warehouse, spec, f"{PROD}.payloads", f"{ENV}.payloads", WINDOWS)
    assert whole_rows.only_in_production.count == whole_rows.only_in_shadow.count == 1
    assert [s.values[0] for s in whole_rows.only_in_shadow.sample] == [1]


def payload(i: int, value: str | None) -> dict[str, Any]:
    return {"order_id": i, "day": D1, "payload": value}


def test_environment_summary_is_one_line_even_without_a_diff(warehouse: DuckDBWarehouse) -> None:
    facts = facts_spec()
    assert environment_summary(warehouse, facts, "alice", [window(D1)]) == (
        "analytics.order_facts in alice: differs (day in [2026-11-01, 2026-11-02)): 2 changed rows (amount 1, "
        "weight 1); schema: -legacy STRING, +channel STRING, qty INT64 -> NUMERIC, code INT64 -> STRING; not "
        "compared: code"
    )
    assert environment_summary(warehouse, facts, "carol", None) == (
        "analytics.order_facts in carol: not built (`derive build --env carol analytics/order_facts`)"
    )
    new = facts.model_copy(update={"name": "brand_new"})
    with duckdb.connect(warehouse.path) as con:
        con.execute(f"CREATE TABLE {ENV}.brand_new AS SELECT * FROM {ENV}.{FACTS}")
    assert environment_summary(warehouse, new, "alice", None) == (
        "analytics.brand_new in alice: new table (no production table to compare with)"
    )
    unpartitioned = facts.model_copy(update={"partition": None})
    assert environment_summary(warehouse, unpartitioned, "alice", WINDOWS).startswith(
        "analytics.order_facts in alice: not compared: analytics.order_facts has no partition column"
    )
