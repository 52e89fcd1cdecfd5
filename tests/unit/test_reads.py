"""How reads and checks described as data (`resources.reads`) render in each dialect: quoted identifiers, values
only as bound parameters in the dialect's style, window bounds cast to the column's engine type."""

import datetime as dt

import pytest

from resources.bigquery_ddl import BIGQUERY_TYPES
from resources.dialects import UnknownDialect, param, param_prefix, placeholder
from resources.reads import (
    CheckQuery,
    CursorRange,
    TableSlice,
    WindowBound,
    count_query,
    max_query,
    select_query,
    violations_query,
)
from resources.sql_text import DUCKDB_TYPES
from resources.warehouse import TimeWindow

UTC = dt.UTC
WINDOW = TimeWindow(dt.datetime(2024, 3, 1, tzinfo=UTC), dt.datetime(2024, 3, 2, tzinfo=UTC))
ENGINES = {"duckdb": DUCKDB_TYPES, "bigquery": BIGQUERY_TYPES}


def test_whole_table_select_and_count():
    s = TableSlice("core.orders")
    assert select_query(s, "duckdb", DUCKDB_TYPES) == ('SELECT * FROM "core"."orders"', {})
    assert select_query(s, "bigquery", BIGQUERY_TYPES) == ("SELECT * FROM `core`.`orders`", {})
    assert count_query(s, "duckdb", DUCKDB_TYPES).sql == 'SELECT COUNT(*) FROM "core"."orders"'
    assert count_query(s, "bigquery", BIGQUERY_TYPES).sql == "SELECT COUNT(*) FROM `core`.`orders`"


def test_columns_are_quoted_in_order():
    s = TableSlice("core.orders", ("zeta", "select", 'we"ird'))
    assert (
        select_query(s, "duckdb", DUCKDB_TYPES).sql
        == 'SELECT "zeta", "select", "we""ird" FROM "core"."orders"'
    )
    assert (
        select_query(s, "bigquery", BIGQUERY_TYPES).sql
        == 'SELECT `zeta`, `select`, `we"ird` FROM `core`.`orders`'
    )


@pytest.mark.parametrize(
    ("dialect", "column_type", "cast"),
    [
        # the same casts as the write path's window predicate (resources.engine_sql.window_between)
        ("duckdb", "DATE", "DATE"),
        ("duckdb", "DATETIME", "TIMESTAMP"),
        ("duckdb", "TIMESTAMP", "TIMESTAMPTZ"),
        ("bigquery", "DATE", "DATE"),
        ("bigquery", "DATETIME", "DATETIME"),
        ("bigquery", "TIMESTAMP", "TIMESTAMP"),
    ],
)
def test_window_bounds_are_cast_to_the_columns_engine_type(dialect, column_type, cast):
    s = TableSlice("core.orders", ("id",), window=WindowBound("day", column_type, WINDOW))
    q = select_query(s, dialect, ENGINES[dialect])
    col = '"day"' if dialect == "duckdb" else "`day`"
    p = param_prefix(dialect)
    assert q.sql.endswith(
        f"WHERE {col} >= CAST({p}window_start AS {cast}) AND {col} < CAST({p}window_end AS {cast})"
    )
    assert q.params == {"window_start": WINDOW.start, "window_end": WINDOW.end}


@pytest.mark.parametrize("dialect", ["duckdb", "bigquery"])
def test_cursor_range_binds_each_bound_given(dialect):
    p = param_prefix(dialect)
    u = "`u`" if dialect == "bigquery" else '"u"'
    both = select_query(TableSlice("a.b", cursor=CursorRange("u", 3, 9)), dialect, ENGINES[dialect])
    assert both.sql.endswith(f"WHERE {u} > {p}cursor_after AND {u} <= {p}cursor_upto")
    assert both.params == {"cursor_after": 3, "cursor_upto": 9}
    lower = select_query(TableSlice("a.b", cursor=CursorRange("u", after=3)), dialect, ENGINES[dialect])
    assert lower.sql.endswith(f"WHERE {u} > {p}cursor_after") and lower.params == {"cursor_after": 3}
    upper = select_query(TableSlice("a.b", cursor=CursorRange("u", upto=9)), dialect, ENGINES[dialect])
    assert upper.sql.endswith(f"WHERE {u} <= {p}cursor_upto") and upper.params == {"cursor_upto": 9}
    open_ = select_query(TableSlice("a.b", cursor=CursorRange("u")), dialect, ENGINES[dialect])
    assert "WHERE" not in open_.sql and open_.params == {}


def test_window_and_cursor_together_and_max():
    s = TableSlice("a.b", window=WindowBound("d", "DATE", WINDOW), cursor=CursorRange("u", after=1))
    q = max_query(s, "u", "duckdb", DUCKDB_TYPES)
    assert q.sql == (
        'SELECT MAX("u") FROM "a"."b" WHERE "d" >= CAST($window_start AS DATE) '
        'AND "d" < CAST($window_end AS DATE) AND "u" > $cursor_after'
    )
    assert q.params == {"window_start": WINDOW.start, "window_end": WINDOW.end, "cursor_after": 1}


def test_check_queries_in_both_dialects():
    s = TableSlice("core.orders", window=WindowBound("d", "DATE", WINDOW))
    win_d = ' AND "d" >= CAST($window_start AS DATE) AND "d" < CAST($window_end AS DATE)'
    win_b = " AND `d` >= CAST(@window_start AS DATE) AND `d` < CAST(@window_end AS DATE)"
    not_null = CheckQuery("not_null", "c", s)
    assert violations_query(not_null, "duckdb", DUCKDB_TYPES).sql == (
        'SELECT COUNT(*) FROM "core"."orders" WHERE "c" IS NULL' + win_d
    )
    assert violations_query(not_null, "bigquery", BIGQUERY_TYPES).sql == (
        "SELECT COUNT(*) FROM `core`.`orders` WHERE `c` IS NULL" + win_b
    )
    accepted = CheckQuery("accepted_values", "c", s, ("eu", "o'brien"))
    q = violations_query(accepted, "bigquery", BIGQUERY_TYPES)
    assert (
        q.sql
        == "SELECT COUNT(*) FROM `core`.`orders` WHERE NOT `c` IS NULL AND NOT `c` IN (@v0, @v1)" + win_b
    )
    assert q.params == {"v0": "eu", "v1": "o'brien", "window_start": WINDOW.start, "window_end": WINDOW.end}
    assert "o'brien" not in q.sql  # values are bound, never pasted
    q = violations_query(accepted, "duckdb", DUCKDB_TYPES)
    assert (
        q.sql
        == 'SELECT COUNT(*) FROM "core"."orders" WHERE NOT "c" IS NULL AND NOT "c" IN ($v0, $v1)' + win_d
    )


def test_unique_ignores_the_window_and_counts_values_seen_twice_or_more():
    s = TableSlice("core.orders", window=WindowBound("d", "DATE", WINDOW), cursor=CursorRange("u", 1, 2))
    q = violations_query(CheckQuery("unique", "c", s), "duckdb", DUCKDB_TYPES)
    assert q.sql == (
        'SELECT COUNT(*) FROM (SELECT "c" FROM "core"."orders" WHERE NOT "c" IS NULL GROUP BY "c" '
        "HAVING COUNT(*) > 1) AS duplicated"
    )
    assert q.params == {}


def test_accepted_values_check_needs_values():
    with pytest.raises(
        ValueError, match=r"core\.orders: the accepted_values check on column 'c' lists no values"
    ):
        CheckQuery("accepted_values", "c", TableSlice("core.orders"))


def test_unknown_dialect_raises_instead_of_guessing_a_parameter_style():
    assert param("x", "duckdb") == "$x" and param("x", "bigquery") == "@x"
    assert placeholder("x", "duckdb").sql("duckdb") == "$x"
    assert placeholder("x", "bigquery").sql("bigquery") == "@x"
    with pytest.raises(
        UnknownDialect, match=r"no parameter style is registered for the SQL dialect 'snowflake'"
    ):
        param("x", "snowflake")
    s = TableSlice("a.b", cursor=CursorRange("u", after=1))
    with pytest.raises(UnknownDialect, match=r"add it to PARAM_PREFIX in resources/dialects\.py"):
        select_query(s, "snowflake", BIGQUERY_TYPES)
