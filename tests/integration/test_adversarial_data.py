"""Hostile source values through Derive into DuckDB: each arrives exactly, or the run fails naming the column.

PostgreSQL, MariaDB and FerretDB (MongoDB wire) each hold a table of edge values the warehouse can represent
(1 MB strings, emoji and combining marks, right-to-left text, control characters, NaN and ±inf floats where the
source allows them, years 1, 1969 and 9999, BC dates, NUMERIC at its edges, empty strings beside NULLs,
zero-length bytes, the ends of INT64). Replicated by a real run, every cell is compared with the source, cell by
cell, in a form neither side can round: epoch microseconds and days for times, decimal text for NUMERIC, repr()
for floats. Values the warehouse cannot hold (NaN in a NUMERIC column, 1e30, an eleventh decimal place, an
unsigned 2^64-1, a zero date) must fail the run with a message naming source, table, column and the row's key,
with nothing written: a value changed in silence is the one outcome these tests never accept.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import duckdb
import psycopg
import pymongo
import pytest
import yaml
from bson import ObjectId
from dagster import AssetKey, DagsterInstance
from support import execute

from derive_assets.factory.build import build_definitions
from derive_assets.settings import DeriveSettings

SOURCE = "edge"
ENV = "DERIVE_IT_EDGE_URL"
BAD_KEY = 7001
"""The key of the one bad row in each failing case: the error must name it."""

LONG = ("ø😀" * 200_000) + "end"  # 1 MB of UTF-8, 2- and 4-byte characters
UNICODE = (
    "e\u0301 n\u0303 \U0001f469\u200d\U0001f4bb \U0001f1e9\U0001f1ea \u05e9\u05dc\u05d5\u05dd "
    "\u0645\u0631\u062d\u0628\u0627 \u202eevil\u202c \ufeff\x01\x1f\x7f\t\n\r \u2028 \U0010fffd"
)
"""Combining marks, a ZWJ sequence, a flag, Hebrew and Arabic (RTL), an RTL override, a BOM, NUL-free control
characters, a line separator and the last private-use code point."""


@dataclass(frozen=True)
class Col:
    name: str
    type: str
    """Derive's declared type."""
    sql: str
    """The source column's type."""


# ------------------------------------------------------------------------------------------- sources


class Source(Protocol):
    """A source database: DDL, inserts with bound values, and each cell read back in canonical form."""

    type: str
    url: str

    def create(self, table: str, cols: Sequence[Col], rows: Sequence[dict[str, Any]]) -> None: ...

    def create_rows(self, table: str, cols: Sequence[Col], rows: Sequence[dict[str, Any]]) -> None: ...

    def canonical(self, table: str, cols: Sequence[Col]) -> list[tuple[Any, ...]]: ...


class Postgres:
    type = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url

    def create(self, table: str, cols: Sequence[Col], rows: Sequence[dict[str, Any]]) -> None:
        ddl = ", ".join(f'"{c.name}" {c.sql}' for c in cols)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE TABLE "{table}" ({ddl}, PRIMARY KEY (id))')  # type: ignore[arg-type]
        self.create_rows(table, cols, rows)

    def create_rows(self, table: str, cols: Sequence[Col], rows: Sequence[dict[str, Any]]) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            for row in rows:
                names = [c for c in cols if c.name in row]
                # Values travel as bound text/bytes and the server casts them: 'NaN', 'infinity', BC dates.
                marks = ", ".join(f"%s::{c.sql}" for c in names)
                columns = ", ".join(f'"{c.name}"' for c in names)
                conn.execute(
                    f'INSERT INTO "{table}" ({columns}) VALUES ({marks})',  # type: ignore[arg-type]
                    [row[c.name] for c in names],
                )

    def canonical(self, table: str, cols: Sequence[Col]) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            exprs = ", ".join(self._expr(c) for c in cols)
            rows = conn.execute(f'SELECT {exprs} FROM "{table}" ORDER BY id').fetchall()  # type: ignore[arg-type]
        return [normalise(row, cols) for row in rows]

    @staticmethod
    def _expr(c: Col) -> str:
        q = f'"{c.name}"'
        if c.type in ("TIMESTAMP", "DATETIME"):
            return (
                f"CASE WHEN isfinite({q}) THEN round(extract(epoch FROM {q}) * 1000000)::text "
                f"ELSE {q}::text END"
            )
        if c.type == "DATE":
            return f"CASE WHEN isfinite({q}) THEN ({q} - DATE '1970-01-01')::text ELSE {q}::text END"
        if c.type == "NUMERIC":
            return f"{q}::text"
        return q


class MariaDB:
    type = "mysql"

    def __init__(self, url: str, connect: Callable[[str], Any]) -> None:
        self.url = url
        self.connect = connect

    def create(self, table: str, cols: Sequence[Col], rows: Sequence[dict[str, Any]]) -> None:
        ddl = ", ".join(f"`{c.name}` {c.sql}" for c in cols)
        with self.connect(self.url) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = ''")  # admits zero dates, as legacy MySQL data has them
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute(f"CREATE TABLE `{table}` ({ddl}, PRIMARY KEY (id))")
        self.create_rows(table, cols, rows)

    def create_rows(self, table: str, cols: Sequence[Col], rows: Sequence[dict[str, Any]]) -> None:
        with self.connect(self.url) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = ''")
            cur.execute("SET SESSION time_zone = '+00:00'")
            for row in rows:
                names = [c.name for c in cols if c.name in row]
                marks = ", ".join(["%s"] * len(names))
                columns = ", ".join(f"`{n}`" for n in names)
                cur.execute(f"INSERT INTO `{table}` ({columns}) VALUES ({marks})", [row[n] for n in names])
                assert not cur.connection.show_warnings(), cur.connection.show_warnings()  # stored as given

    def canonical(self, table: str, cols: Sequence[Col]) -> list[tuple[Any, ...]]:
        with self.connect(self.url) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute(f"SELECT {', '.join(self._expr(c) for c in cols)} FROM `{table}` ORDER BY id")
            rows = cur.fetchall()
        return [normalise(row, cols) for row in rows]

    @staticmethod
    def _expr(c: Col) -> str:
        q = f"`{c.name}`"
        if c.sql.startswith("TIMESTAMP"):
            return f"CAST(CAST(UNIX_TIMESTAMP({q}) * 1000000 AS SIGNED) AS CHAR)"
        if c.type in ("TIMESTAMP", "DATETIME"):
            micros = f"TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {q})"
            return f"CAST(COALESCE({micros}, CAST({q} AS CHAR)) AS CHAR)"  # zero dates: as text
        if c.type == "DATE":
            return f"CAST(COALESCE(DATEDIFF({q}, '1970-01-01'), CAST({q} AS CHAR)) AS CHAR)"
        if c.type == "NUMERIC":
            return f"CAST({q} AS CHAR)"
        return q


def normalise(row: Sequence[Any], cols: Sequence[Col]) -> tuple[Any, ...]:
    """Cells in a form that compares exactly: repr() of floats (NaN equals NaN, -0.0 differs from 0.0),
    Decimal of NUMERIC text (trailing zeros do not matter, digits do), bytes of binaries."""
    out = []
    for value, col in zip(row, cols, strict=True):
        if value is None:
            out.append(None)
        elif col.type == "FLOAT64":
            out.append(repr(float(value)))
        elif col.type == "NUMERIC":
            out.append(
                Decimal(str(value))
                if str(value).lower() not in ("nan", "infinity", "-infinity")
                else str(value)
            )
        elif col.type == "BYTES":
            out.append(bytes(value))
        elif col.type in ("TIMESTAMP", "DATETIME", "DATE"):
            out.append(str(value))
        else:
            out.append(value)
    return tuple(out)


def warehouse_expr(c: Col) -> str:
    q = f'"{c.name}"'
    if c.type in ("TIMESTAMP", "DATETIME"):
        return f"CASE WHEN isfinite({q}) THEN CAST(epoch_us({q}) AS VARCHAR) ELSE CAST({q} AS VARCHAR) END"
    if c.type == "DATE":
        return (
            f"CASE WHEN isfinite({q}) THEN CAST(date_diff('day', DATE '1970-01-01', {q}) AS VARCHAR) "
            f"ELSE CAST({q} AS VARCHAR) END"
        )
    if c.type == "NUMERIC":
        return f"CAST({q} AS VARCHAR)"
    return q


# ------------------------------------------------------------------------------------------- project


class Project:
    """A one-table spec project on the source, its DuckDB warehouse and a Dagster instance."""

    def __init__(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source_type: str, url: str, table: dict[str, Any],
        database: str | None = None,
    ) -> None:  # fmt: skip
        monkeypatch.setenv(ENV, url)
        specs = tmp_path / "table_specs"
        (specs / "sources").mkdir(parents=True)
        spec: dict[str, Any] = {
            "kind": "source",
            "name": SOURCE,
            "type": source_type,
            "connection_env": ENV,
            "owner": "team:platform",
            "tables": [table],
        }
        if database:
            spec["database"] = database
        (specs / "sources" / f"{SOURCE}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        self.settings = DeriveSettings(specs_dir=specs, home=tmp_path / "home")
        self.defs = build_definitions(self.settings)
        self.instance = DagsterInstance.ephemeral()
        self.table = table["name"]
        self.url = url

    def run(self) -> tuple[bool, str]:
        """Run the source's job: (success, the messages of its errors and their causes, without stacks or step
        names, so that what they name is what the error itself says)."""
        outcome = execute(self.defs, self.instance, f"replicate_{SOURCE}")
        self.full_text = outcome.logs
        """Every log message and error with its stack: where a secret must not appear."""
        return outcome.success, outcome.errors

    def warehouse(self, cols: Sequence[Col]) -> list[tuple[Any, ...]] | None:
        """The replicated table's cells in canonical form; None when the table does not exist."""
        if not self.settings.duckdb_path.exists():
            return None
        with duckdb.connect(str(self.settings.duckdb_path), read_only=True) as con:
            con.execute("SET TimeZone = 'UTC'")
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                [SOURCE, self.table],
            ).fetchone()
            if not found or not found[0]:
                return None
            exprs = ", ".join(warehouse_expr(c) for c in cols)
            rows = con.execute(f'SELECT {exprs} FROM "{SOURCE}"."{self.table}" ORDER BY id').fetchall()
        return [normalise(row, cols) for row in rows]

    def watermark(self) -> str | None:
        event = self.instance.get_latest_materialization_event(AssetKey([SOURCE, self.table]))
        if event is None or event.asset_materialization is None:
            return None
        value = getattr(event.asset_materialization.metadata.get("derive/watermark"), "value", None)
        return value if isinstance(value, str) else None


def table_spec(name: str, cols: Sequence[Col]) -> dict[str, Any]:
    return {
        "name": name,
        "primary_key": ["id"],
        "cursor": "id",
        "columns": [{"name": c.name, "type": c.type} for c in cols],
    }


def assert_same(
    got: list[tuple[Any, ...]] | None, expected: list[tuple[Any, ...]], cols: Sequence[Col]
) -> None:
    """Cell by cell, naming the first cell that differs (values shortened: some are a megabyte)."""
    assert got is not None, "the warehouse has no such table"
    assert len(got) == len(expected), f"{len(got)} rows in the warehouse, {len(expected)} in the source"
    for g, e in zip(got, expected, strict=True):
        for col, gv, ev in zip(cols, g, e, strict=True):
            assert gv == ev, (
                f"row id={e[0]} column '{col.name}': warehouse {str(gv)[:120]!r}, source {str(ev)[:120]!r}"
            )


def assert_exact_or_named_failure(
    project: Project, source: Source, cols: Sequence[Col], ok: bool, text: str, secret: str | None
) -> None:
    """The issue's rule for a value at the edge: it arrives exactly, or the run fails naming source, table,
    column and key, and writes nothing. A changed value, or a failure that names none of them, fails."""
    expected = source.canonical(project.table, cols)
    if ok:
        assert_same(project.warehouse(cols), expected, cols)
        return
    bad = cols[-1].name
    missing = [
        what
        for what, needle in (
            ("source", f"'{SOURCE}'"), ("table", project.table), ("column", f"'{bad}'"), ("key", str(BAD_KEY)),
        )
        if needle not in text
    ]  # fmt: skip
    assert not missing, f"the failure does not name the {missing}:\n{text[-3000:]}"
    assert "PanicException" not in text and "pyo3_runtime" not in text, text[-3000:]
    assert secret is None or f":{secret}@" not in project.full_text, (
        "the source URL's password is in the logs"
    )
    assert not project.warehouse(cols), "a failed run wrote rows"
    assert project.watermark() is None


def password(url: str) -> str | None:
    return urlsplit(url).password


# ------------------------------------------------------------------------------------------- PostgreSQL

PG_COLS = [
    Col("id", "INT64", "bigint"),
    Col("s", "STRING", "text"),
    Col("f", "FLOAT64", "double precision"),
    Col("ts", "TIMESTAMP", "timestamptz"),
    Col("tsn", "DATETIME", "timestamp"),
    Col("d", "DATE", "date"),
    Col("n", "NUMERIC", "numeric"),
    Col("b", "BYTES", "bytea"),
    Col("big", "INT64", "bigint"),
]
PG_ROWS = [
    {"id": 1, "s": LONG, "f": "NaN", "ts": "0001-01-01 00:00:00+00", "tsn": "0001-01-01 00:00:00",
     "d": "0001-01-01", "n": "0.000000001", "b": b"", "big": str(2**63 - 1)},
    {"id": 2, "s": UNICODE, "f": "Infinity", "ts": "1969-12-31 23:59:59.999999+00",
     "tsn": "1969-12-31 23:59:59.999999", "d": "1969-12-31", "n": "999999999999999999.999999999",
     "b": b"\x00\xff\x00", "big": str(-(2**63))},
    {"id": 3, "s": "", "f": "-Infinity", "ts": "9999-12-31 23:59:59.999999+00",
     "tsn": "9999-12-31 23:59:59.999999", "d": "9999-12-31", "n": "-999999999999999999.999999999", "big": "0"},
    {"id": 4, "f": "-0", "ts": "1900-01-01 00:00:00+00", "tsn": "1900-02-28 12:00:00", "d": "1900-03-01",
     "n": "0"},
    {"id": 5, "f": "5e-324", "n": "-0.000000001"},
    {"id": 6, "s": " ", "f": "1.7976931348623157e308", "ts": "2026-12-01 09:00:00.000001+09",
     "tsn": "2026-12-01 09:00:00.000001", "d": "2026-12-01", "n": "12345.678900000"},
]  # fmt: skip

PG_BAD = {
    "numeric_nan": (Col("v", "NUMERIC", "numeric"), "NaN"),
    "numeric_infinity": (Col("v", "NUMERIC", "numeric"), "Infinity"),
    "numeric_1e30": (Col("v", "NUMERIC", "numeric"), "1e30"),
    "numeric_ten_places": (Col("v", "NUMERIC", "numeric"), "0.0000000001"),
    "numeric_eleven_places": (Col("v", "NUMERIC", "numeric"), "0.12345678901"),
    "numeric_twenty_digits": (Col("v", "NUMERIC", "numeric"), "12345678901234567890.5"),
    "numeric_max": (Col("v", "NUMERIC", "numeric"), "99999999999999999999999999999.999999999"),
    "timestamp_infinity": (Col("v", "TIMESTAMP", "timestamptz"), "infinity"),
    "timestamp_year_294276": (Col("v", "TIMESTAMP", "timestamptz"), "294276-12-31 00:00:00+00"),
    "date_infinity": (Col("v", "DATE", "date"), "-infinity"),
    "timestamp_bc": (Col("v", "TIMESTAMP", "timestamptz"), "0044-03-15 12:00:00+00 BC"),
    "datetime_bc": (Col("v", "DATETIME", "timestamp"), "4713-01-01 00:00:00 BC"),
    "date_bc": (Col("v", "DATE", "date"), "4713-01-01 BC"),
}
"""One bad value (row `BAD_KEY`) beside a good row: each must arrive exactly or fail naming the column."""
PG_GOOD = {
    "NUMERIC": "1.5",
    "TIMESTAMP": "2026-01-01 00:00:00+00",
    "DATETIME": "2026-01-01",
    "DATE": "2026-01-01",
}
PG_XFAIL: dict[str, str] = {}
"""Cases still failing for a known bug (strict xfail with the exact reason): none at present."""


@pytest.fixture
def pg(postgres_url: str) -> Postgres:
    return Postgres(postgres_url)


def test_postgres_edge_values_arrive_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg: Postgres):
    pg.create("edge_values", PG_COLS, PG_ROWS)
    expected = pg.canonical("edge_values", PG_COLS)
    assert (
        expected[0][1] == LONG and expected[1][1] == UNICODE and expected[2][1] == ""
    )  # the source kept them
    assert [r[2] for r in expected[:4]] == ["nan", "inf", "-inf", "-0.0"]
    project = Project(tmp_path, monkeypatch, "postgres", pg.url, table_spec("edge_values", PG_COLS))
    ok, text = project.run()
    assert ok, text[-3000:]
    assert_same(project.warehouse(PG_COLS), expected, PG_COLS)


def _xfail_params(cases: dict[str, Any], reasons: dict[str, str]) -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reasons[name]))
        if name in reasons
        else name
        for name in cases
    ]


@pytest.mark.parametrize("case", _xfail_params(PG_BAD, PG_XFAIL))
def test_postgres_edge_value_arrives_exactly_or_fails_naming_the_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg: Postgres, case: str
):
    col, value = PG_BAD[case]
    cols = [Col("id", "INT64", "bigint"), col]
    pg.create(case, cols, [{"id": 1, "v": PG_GOOD[col.type]}, {"id": BAD_KEY, "v": value}])
    project = Project(tmp_path, monkeypatch, "postgres", pg.url, table_spec(case, cols))
    ok, text = project.run()
    assert_exact_or_named_failure(project, pg, cols, ok, text, password(pg.url))


# ------------------------------------------------------------------------------------------- MariaDB

MY_COLS = [
    Col("id", "INT64", "BIGINT"),
    Col("s", "STRING", "LONGTEXT"),
    Col("f", "FLOAT64", "DOUBLE"),
    Col("dt", "DATETIME", "DATETIME(6)"),
    Col("ts", "TIMESTAMP", "TIMESTAMP(6) NULL"),
    Col("d", "DATE", "DATE"),
    Col("n", "NUMERIC", "DECIMAL(38, 9)"),
    Col("b", "BYTES", "VARBINARY(64)"),
    Col("big", "INT64", "BIGINT"),
]
MY_ROWS = [
    {"id": 1, "s": LONG, "f": 1.7976931348623157e308, "dt": "1000-01-01 00:00:00", "ts": "1970-01-01 00:00:01",
     "d": "1000-01-01", "n": "0.000000001", "b": b"", "big": 2**63 - 1},
    {"id": 2, "s": UNICODE, "f": -5e-324, "dt": "1969-12-31 23:59:59.999999", "ts": "2038-01-19 03:14:07.999999",
     "d": "1969-12-31", "n": "999999999999999999.999999999", "b": b"\x00\xff\x00", "big": -(2**63)},
    {"id": 3, "s": "", "f": 2.2250738585072014e-308, "dt": "9999-12-31 23:59:59.999999",
     "ts": "2026-12-01 00:00:00.000001", "d": "9999-12-31", "n": "-999999999999999999.999999999", "big": 0},
    {"id": 4},
]  # fmt: skip

MY_BAD = {
    "decimal_1e30": (Col("v", "NUMERIC", "DECIMAL(65, 30)"), "1e30"),
    "decimal_thirty_places": (Col("v", "NUMERIC", "DECIMAL(65, 30)"), "0.000000000000000000000000000001"),
    "decimal_max": (Col("v", "NUMERIC", "DECIMAL(38, 9)"), "99999999999999999999999999999.999999999"),
    "unsigned_max": (Col("v", "INT64", "BIGINT UNSIGNED"), str(2**64 - 1)),
    "zero_date": (Col("v", "DATE", "DATE"), "0000-00-00"),
    "zero_datetime": (Col("v", "DATETIME", "DATETIME"), "0000-00-00 00:00:00"),
    "zero_day": (Col("v", "DATE", "DATE"), "2026-02-00"),
}
MY_GOOD = {"NUMERIC": "1.5", "INT64": "1", "DATE": "2026-01-01", "DATETIME": "2026-01-01 00:00:00"}
MY_XFAIL: dict[str, str] = {}
"""Cases still failing for a known bug (strict xfail with the exact reason): none at present."""


@pytest.fixture
def my(mysql_url: str, mysql_connect: Callable[[str], Any]) -> MariaDB:
    return MariaDB(mysql_url, mysql_connect)


def test_mariadb_edge_values_arrive_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, my: MariaDB):
    my.create("edge_values", MY_COLS, MY_ROWS)
    expected = my.canonical("edge_values", MY_COLS)
    assert (
        expected[0][1] == LONG
        and expected[1][1] == UNICODE
        and expected[2][1] == ""
        and expected[3][1] is None
    )
    project = Project(tmp_path, monkeypatch, "mysql", my.url, table_spec("edge_values", MY_COLS))
    ok, text = project.run()
    assert ok, text[-3000:]
    assert_same(project.warehouse(MY_COLS), expected, MY_COLS)


@pytest.mark.parametrize("case", _xfail_params(MY_BAD, MY_XFAIL))
def test_mariadb_edge_value_arrives_exactly_or_fails_naming_the_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, my: MariaDB, case: str
):
    col, value = MY_BAD[case]
    cols = [Col("id", "INT64", "BIGINT"), col]
    my.create(case, cols, [{"id": 1, "v": MY_GOOD[col.type]}, {"id": BAD_KEY, "v": value}])
    project = Project(tmp_path, monkeypatch, "mysql", my.url, table_spec(case, cols))
    ok, text = project.run()
    assert_exact_or_named_failure(project, my, cols, ok, text, password(my.url))


# ------------------------------------------------------------------------------------------- FerretDB

MONGO_COLS = [
    Col("id", "INT64", ""),
    Col("s", "STRING", ""),
    Col("i", "INT64", ""),
    Col("f", "FLOAT64", ""),
    Col("n", "NUMERIC", ""),
    Col("ts", "TIMESTAMP", ""),
    Col("d", "DATE", ""),
    Col("b", "BYTES", ""),
    Col("j", "JSON", ""),
    Col("oid", "STRING", ""),
]
NUMERIC_MAX = "99999999999999999999999999999.999999999"
MONGO_DOCS = [
    {"id": 1, "s": LONG, "i": 2**63 - 1, "f": 1.7976931348623157e308, "n": "0.000000001",
     "ts": dt.datetime(1, 1, 1), "d": "0001-01-01", "b": b"", "j": {"u": UNICODE}},
    {"id": 2, "s": UNICODE, "i": -(2**63), "f": -0.0, "n": NUMERIC_MAX,
     "ts": dt.datetime(1969, 12, 31, 23, 59, 59, 999000), "d": dt.datetime(1969, 12, 31), "b": b"\x00\xff",
     "j": [1, 2**62, None, "", {"k": []}]},
    {"id": 3, "s": "", "i": 0, "f": 5e-324, "n": "-" + NUMERIC_MAX,
     "ts": dt.datetime(9999, 12, 31, 23, 59, 59, 999000), "d": "9999-12-31", "j": {}},
    {"id": 4, "s": None, "n": None, "b": None, "j": None},  # explicit nulls
    {"id": 5},  # every field missing
]  # fmt: skip
"""FerretDB v1 refuses NaN and infinities (and Decimal128) on insert: those cases are in the montydb unit tests."""


def mongo_expected(docs: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What each document must become, in `normalise`'s form, computed from the documents themselves."""
    rows = []
    for doc in docs:
        day = doc.get("d")
        day = day.date() if isinstance(day, dt.datetime) else dt.date.fromisoformat(day) if day else None
        ts = doc.get("ts")
        micros = None
        if ts is not None:
            delta = ts.replace(tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            micros = str((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
        j = doc.get("j")
        rows.append(
            (
                doc["id"], doc.get("s"), doc.get("i"), repr(doc["f"]) if "f" in doc else None,
                Decimal(doc["n"]) if doc.get("n") else None, micros,
                str((day - dt.date(1970, 1, 1)).days) if day else None, doc.get("b"),
                j, str(doc["_id"]),
            )
        )  # fmt: skip
    return rows


def test_ferretdb_edge_values_arrive_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mongodb_server_url: str
):
    database = f"t_{uuid.uuid4().hex[:10]}"
    docs = [{"_id": ObjectId(), **d} for d in MONGO_DOCS]
    table = table_spec("edge_values", MONGO_COLS)
    table["columns"][-1]["path"] = "_id"
    with pymongo.MongoClient(mongodb_server_url) as client:
        try:
            client[database]["edge_values"].insert_many(docs)
            stored = list(client[database]["edge_values"].find({}).sort("id"))  # FerretDB stores -0.0 as 0.0
            project = Project(tmp_path, monkeypatch, "mongodb", mongodb_server_url, table, database=database)
            ok, text = project.run()
        finally:
            client.drop_database(database)
    assert ok, text[-3000:]
    got = project.warehouse(MONGO_COLS)
    assert got is not None
    got = [(*row[:8], None if row[8] is None else json.loads(row[8]), row[9]) for row in got]
    assert_same(got, mongo_expected(stored), MONGO_COLS)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1e30", "more than 29 digits before the point"),
        ("0.0000000001", "more than 9 digits after the point"),
        ("NaN", "not a finite number"),
    ],
)
def test_ferretdb_numeric_the_warehouse_cannot_hold_fails_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mongodb_server_url: str, value: str, reason: str
):
    database = f"t_{uuid.uuid4().hex[:10]}"
    cols = [Col("id", "INT64", ""), Col("n", "NUMERIC", "")]
    with pymongo.MongoClient(mongodb_server_url) as client:
        try:
            client[database]["bad"].insert_many(
                [{"id": 1, "n": "1.5"}, {"_id": BAD_KEY, "id": 2, "n": value}]
            )
            project = Project(
                tmp_path, monkeypatch, "mongodb", mongodb_server_url, table_spec("bad", cols), database
            )
            ok, text = project.run()
        finally:
            client.drop_database(database)
    assert not ok
    assert f"collection {database}.bad: document _id={BAD_KEY}: field 'n' has value '{value}'" in text, text[
        -2000:
    ]
    assert reason in text
    assert project.warehouse(cols) is None and project.watermark() is None


# ------------------------------------------------------------------------------------------- old cursors

OLD_CURSORS = {
    "postgres": (Col("at", "TIMESTAMP", "timestamptz"), ["0001-01-01 00:00:00+00", "1969-12-31 23:59:59.999999+00"],
                 "1970-01-01 00:00:00+00", dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
    "mysql": (Col("at", "DATETIME", "DATETIME(6)"), ["1000-01-01 00:00:00", "1969-12-31 23:59:59.999999"],
              "1970-01-01 00:00:00", dt.datetime(1970, 1, 1)),
}  # fmt: skip
"""Per server: a time cursor column, first rows before 1970 (year 1 or MariaDB's minimum 1000), a later row."""


@pytest.mark.parametrize("server", sorted(OLD_CURSORS))
def test_cursor_before_1970_round_trips_through_the_watermark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, server: str
):
    """Old data is valid data: a watermark at year 1 (whose default overlap would step before year 1) must be
    stored, read back and compared correctly on the next run."""
    source: Source = request.getfixturevalue("pg" if server == "postgres" else "my")
    col, first, later, last = OLD_CURSORS[server]
    cols = [Col("id", "INT64", "bigint" if server == "postgres" else "BIGINT"), col]
    source.create("old", cols, [{"id": i, "at": at} for i, at in enumerate(first[:1], 1)])
    project = Project(tmp_path, monkeypatch, server, source.url, {**table_spec("old", cols), "cursor": "at"})
    ok, text = project.run()
    assert ok, text
    first_mark = project.watermark()
    assert first_mark is not None and dt.datetime.fromisoformat(first_mark).year in (1, 1000)
    source.create_rows("old", cols, [{"id": 2, "at": first[1]}, {"id": 3, "at": later}])
    ok, text = project.run()
    assert ok, text
    assert_same(project.warehouse(cols), source.canonical("old", cols), cols)
    mark = project.watermark()
    assert mark is not None and dt.datetime.fromisoformat(mark) == last
