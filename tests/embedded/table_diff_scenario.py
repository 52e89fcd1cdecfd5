"""The `derive diff` scenario, seeded the same on DuckDB and on the BigQuery emulator (each through its own client).

`analytics.order_facts` (merge by `order_id`, daily windows on `day`) and its environment copy
`alice__analytics.order_facts` differ by exactly:

- schema: `legacy` only in production, `channel` only in the environment, `qty` INT64 -> NUMERIC (still compared
  by value), `code` INT64 -> STRING (not compared);
- inside the windows 2026-11-01 and 2026-11-02: order 2's amount 20 -> 25, order 3's status NULL -> 'refunded',
  order 1's weight 1.5 -> 1.5000000000000002 (one ulp: floats compare exactly), order 4 only in production,
  order 5 only in the environment;
- outside them (2026-11-03): order 6's amount 60 -> 61.

`analytics.order_events` (append, no key) and `alice__analytics.order_events` differ, inside the windows, by one
copy of a duplicated row, a changed amount (3 -> 3.5) and a new row; a row holding NULL is the same on both sides
(NULL-safe); outside the windows, one more change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from derive_assets.specs.models import TableSpec
from resources.warehouse import TimeWindow

PROD, ENV = "analytics", "alice__analytics"
FACTS, EVENTS = "order_facts", "order_events"
D1, D2, D3 = dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)
ULP = 1.5000000000000002


def window(day: dt.date) -> TimeWindow:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return TimeWindow(start, start + dt.timedelta(days=1))


WINDOWS = (window(D1), window(D2))


def facts_spec() -> TableSpec:
    return TableSpec.model_validate(
        {
            "name": FACTS,
            "dataset": PROD,
            "owner": "team:shop",
            "strategy": {"type": "merge", "unique_key": ["order_id"]},
            "window": {"size": "1d", "start": "2026-11-01"},
            "partition": {"key": "day"},
            "columns": [
                {"name": "order_id", "type": "INT64"},
                {"name": "day", "type": "DATE"},
                {"name": "amount", "type": "NUMERIC"},
                {"name": "status", "type": "STRING"},
                {"name": "qty", "type": "NUMERIC"},
                {"name": "weight", "type": "FLOAT64"},
                {"name": "code", "type": "STRING"},
                {"name": "channel", "type": "STRING"},
            ],
            "sql": "SELECT 1 AS order_id",
        }
    )


def events_spec() -> TableSpec:
    return TableSpec.model_validate(
        {
            "name": EVENTS,
            "dataset": PROD,
            "owner": "team:shop",
            "strategy": "append",
            "window": {"size": "1d", "start": "2026-11-01"},
            "partition": {"key": "day"},
            "columns": [
                {"name": "day", "type": "DATE"},
                {"name": "kind", "type": "STRING"},
                {"name": "amount", "type": "NUMERIC"},
            ],
            "sql": "SELECT 1 AS day",
        }
    )


FACTS_PROD_COLUMNS = [
    ("order_id", "INT64"),
    ("day", "DATE"),
    ("amount", "NUMERIC"),
    ("status", "STRING"),
    ("qty", "INT64"),
    ("weight", "FLOAT64"),
    ("code", "INT64"),
    ("legacy", "STRING"),
]
FACTS_ENV_COLUMNS = [
    ("order_id", "INT64"),
    ("day", "DATE"),
    ("amount", "NUMERIC"),
    ("status", "STRING"),
    ("qty", "NUMERIC"),
    ("weight", "FLOAT64"),
    ("code", "STRING"),
    ("channel", "STRING"),
]


def _facts(columns: Sequence[tuple[str, str]], rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip([c for c, _ in columns], r, strict=True)) for r in rows]


FACTS_PROD = _facts(
    FACTS_PROD_COLUMNS,
    [
        (1, D1, Decimal("10.5"), "paid", 1, 1.5, 7, "x"),
        (2, D1, Decimal("20"), "paid", 2, 2.25, 8, "x"),
        (3, D2, Decimal("30"), None, 3, 0.5, 9, "x"),
        (4, D2, Decimal("40"), "open", 4, 4.0, 10, "x"),
        (6, D3, Decimal("60"), "paid", 6, 6.0, 12, "x"),
    ],
)
FACTS_ENV = _facts(
    FACTS_ENV_COLUMNS,
    [
        (1, D1, Decimal("10.5"), "paid", Decimal("1"), ULP, "7", "web"),
        (2, D1, Decimal("25"), "paid", Decimal("2"), 2.25, "8", "web"),
        (3, D2, Decimal("30"), "refunded", Decimal("3"), 0.5, "9", "app"),
        (5, D2, Decimal("50"), "open", Decimal("5"), 5.0, "11", "app"),
        (6, D3, Decimal("61"), "paid", Decimal("6"), 6.0, "12", "app"),
    ],
)

EVENTS_COLUMNS = [("day", "DATE"), ("kind", "STRING"), ("amount", "NUMERIC")]
EVENTS_PROD = _facts(
    EVENTS_COLUMNS,
    [
        (D1, "a", Decimal("1")),
        (D1, "a", Decimal("1")),
        (D1, "b", None),
        (D2, "c", Decimal("3")),
        (D3, "d", Decimal("4")),
    ],
)
EVENTS_ENV = _facts(
    EVENTS_COLUMNS,
    [
        (D1, "a", Decimal("1")),
        (D1, "b", None),
        (D2, "c", Decimal("3.5")),
        (D2, "e", Decimal("5")),
        (D3, "d", Decimal("9")),
    ],
)

CreateTable = Callable[[str, Sequence[tuple[str, str]], Sequence[dict[str, Any]]], None]
"""(ref, spec-typed columns, rows) -> a table holding those rows, made through the engine's own client."""


def seed(create: CreateTable) -> None:
    """Both tables of both specs, production and environment."""
    create(f"{PROD}.{FACTS}", FACTS_PROD_COLUMNS, FACTS_PROD)
    create(f"{ENV}.{FACTS}", FACTS_ENV_COLUMNS, FACTS_ENV)
    create(f"{PROD}.{EVENTS}", EVENTS_COLUMNS, EVENTS_PROD)
    create(f"{ENV}.{EVENTS}", EVENTS_COLUMNS, EVENTS_ENV)
