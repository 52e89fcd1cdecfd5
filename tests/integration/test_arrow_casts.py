"""Casts done in Arrow (`resources.arrow_conform`) keep every value exact, through a real replication run from a
real PostgreSQL and MariaDB into DuckDB: decimals at the edge of their precision and scale, negative, zero and
NULL; timestamps at microsecond precision, naive DATETIME read as UTC, TIMESTAMPTZ. The expected value is
DuckDB's own CAST of the source value (what the load did before the casts moved to Arrow). A tenth decimal place
that is not zero never reaches a load (the row guard refuses it); its DuckDB rounding is pinned in
tests/unit/test_arrow_conform.py. The first run is a direct first load, the second a staged merge."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa
import yaml
from dagster import DagsterInstance

from derive_assets.demo.generate import sqlalchemy_url
from derive_assets.factory.build import build_definitions
from derive_assets.settings import DeriveSettings

UTC = dt.UTC
ENV = "DERIVE_IT_CASTS_URL"
COLUMNS = [
    {"name": "id", "type": "INT64"},
    {"name": "price", "type": "NUMERIC"},  # numeric(12,2): connectorx sends decimal128(38, 10)
    {"name": "big", "type": "NUMERIC"},  # numeric(27,9): 18 integer digits and 9 places, the most 38,10 holds
    {"name": "rate", "type": "NUMERIC"},  # numeric(20,10): ten places, the tenth always 0
    {"name": "at", "type": "TIMESTAMP"},
    {"name": "wall", "type": "DATETIME"},
    {"name": "updated_at", "type": "TIMESTAMP"},
]
T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
ROWS: list[tuple[Any, ...]] = [
    (1, Decimal("9999999999.99"), Decimal("999999999999999999.999999999"), Decimal("0.1234567890"),
     T0, dt.datetime(2026, 1, 2, 3, 4, 5, 123456)),
    (2, Decimal("-9999999999.99"), Decimal("-999999999999999999.999999999"), Decimal("-0.1234567890"),
     dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), dt.datetime(1969, 12, 31, 23, 59, 59, 999999)),
    (3, Decimal("0.00"), Decimal("0E-9"), Decimal("0E-10"),
     dt.datetime(1970, 1, 1, tzinfo=UTC), dt.datetime(1970, 1, 1)),
    (4, Decimal("0.01"), Decimal("0.000000001"), Decimal("9999999999.9999999990"),
     dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), dt.datetime(1000, 1, 1, 0, 0, 0, 1)),
    (5, None, None, None, None, None),
]  # fmt: skip
"""(id, price, big, rate, at, wall): `at` is TIMESTAMPTZ / naive DATETIME(6) in MariaDB, `wall` a wall clock."""
CHANGED: tuple[Any, ...] = (
    3, Decimal("-0.01"), Decimal("123456789012345678.000000001"), Decimal("-9999999999.9999999990"),
    dt.datetime(2026, 6, 1, 12, 0, 0, 1, tzinfo=UTC), dt.datetime(2026, 6, 1, 12, 0, 0, 999999),
)  # fmt: skip

DDL = {
    "postgres": (
        "CREATE TABLE casts (id bigint PRIMARY KEY, price numeric(12,2), big numeric(27,9), rate numeric(20,10), "
        "at timestamptz, wall timestamp, updated_at timestamptz NOT NULL)"
    ),
    "mysql": (
        "CREATE TABLE casts (id bigint PRIMARY KEY, price decimal(12,2), big decimal(27,9), rate decimal(20,10), "
        "at datetime(6), wall datetime(6), updated_at datetime(6) NOT NULL)"
    ),
}


@pytest.fixture(params=["postgres", "mysql"])
def server(request: pytest.FixtureRequest) -> tuple[str, str]:
    url = request.getfixturevalue("postgres_url" if request.param == "postgres" else "mysql_url")
    return request.param, url


def _source_value(kind: str, value: Any) -> Any:
    """As the source column holds it: MariaDB's DATETIME(6) holds naive UTC."""
    if kind == "mysql" and isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value


def _write(engine: sa.Engine, kind: str, rows: list[tuple[Any, ...]], updated_at: dt.datetime) -> None:
    names = [c["name"] for c in COLUMNS]
    insert = sa.text(f"INSERT INTO casts ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})")
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM casts WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True)),
                     {"ids": [r[0] for r in rows]})  # fmt: skip
        for row in rows:
            values = dict(zip(names, (*row, updated_at), strict=True))
            conn.execute(insert, {k: _source_value(kind, v) for k, v in values.items()})


def _expected(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """What DuckDB's own casts make of the source values (DECIMAL(38, 9), TIMESTAMPTZ, TIMESTAMP in UTC)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    out = []
    for row in rows:
        decimals = [
            None
            if v is None
            else con.execute("SELECT CAST(CAST(? AS VARCHAR) AS DECIMAL(38, 9))", [str(v)]).fetchone()[0]  # type: ignore[index]
            for v in row[1:4]
        ]
        out.append((row[0], *decimals, row[4], row[5]))
    return out


def _warehouse(home: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return [tuple(r) for r in con.execute('SELECT id, price, big, rate, "at", wall FROM casts.casts ORDER BY id').fetchall()]  # fmt: skip
    finally:
        con.close()


def test_arrow_casts_keep_every_value_exact_through_a_real_replication(
    server: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind, url = server
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(DDL[kind]))
    first = dt.datetime(2026, 1, 1, tzinfo=UTC)
    _write(engine, kind, ROWS, first)
    spec = {
        "kind": "source",
        "name": "casts",
        "type": kind,
        "connection_env": ENV,
        "owner": "team-data@example.com",
        "tables": [
            {
                "name": "casts",
                "primary_key": ["id"],
                "cursor": "updated_at",
                "cursor_overlap": 0,
                "wait_for_open_transactions": False,
                "columns": COLUMNS,
            }
        ],
    }
    (tmp_path / "specs" / "sources").mkdir(parents=True)
    (tmp_path / "specs" / "sources" / "casts.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    monkeypatch.setenv(ENV, url)
    home = tmp_path / "home"
    defs = build_definitions(DeriveSettings(specs_dir=tmp_path / "specs", home=home))
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("replicate_casts")

    assert job.execute_in_process(instance=instance, raise_on_error=True).success  # a direct first load
    assert _warehouse(home) == _expected(ROWS)

    _write(engine, kind, [CHANGED], first + dt.timedelta(days=1))
    assert job.execute_in_process(instance=instance, raise_on_error=True).success  # staged, then merged
    assert _warehouse(home) == _expected([CHANGED if r[0] == CHANGED[0] else r for r in ROWS])
    engine.dispose()
