"""Hostile SQLite values through Derive into DuckDB: each arrives exactly, or the run fails naming the column.

SQLite stores whatever it is given, whatever a column's declared type: the values below are its edge cases
(1 MB strings, emoji, combining marks, right-to-left text, control characters, ±inf and -0.0, years 1, 1969 and
9999, text with a UTC offset, NUMERIC text at the edges of DECIMAL(38, 9), empty strings beside NULLs,
zero-length BLOBs, the ends of INT64, booleans spelled as text). A real replication run loads them, and every
cell is compared with what was inserted, in a form neither side can round (epoch microseconds, days, decimal
text, repr() of floats). A value the declared type cannot hold ('abc' in an INT64 column, an eleventh decimal
place, bytes that are not UTF-8 in a TEXT column) must fail the run naming source, table, column and key, with
nothing written. (SQLite itself stores NaN as NULL, and -0.0 in a REAL column as 0, so neither reaches Derive.)
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from support import execute

from derive_assets.factory.build import build_definitions
from derive_assets.settings import DeriveSettings

SOURCE = "edge"
ENV = "DERIVE_EMBEDDED_EDGE_URL"
BAD_KEY = 7001
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

LONG = ("ø😀" * 200_000) + "end"
UNICODE = (
    "e\u0301 n\u0303 \U0001f469\u200d\U0001f4bb \U0001f1e9\U0001f1ea \u05e9\u05dc\u05d5\u05dd "
    "\u0645\u0631\u062d\u0628\u0627 \u202eevil\u202c \ufeff\x01\x1f\x7f\t\n\r \u2028 \U0010fffd"
)


@dataclass(frozen=True)
class Col:
    name: str
    type: str
    """Derive's declared type."""
    sql: str = ""
    """The SQLite column's declared type ('' = no affinity: values stay as inserted)."""


COLS = [
    Col("id", "INT64", "INTEGER"),
    Col("s", "STRING", "TEXT"),
    Col("f", "FLOAT64"),  # no affinity: a REAL column would store -0.0 as the integer 0
    Col("ts", "TIMESTAMP", "TEXT"),
    Col("dtm", "DATETIME", "TEXT"),
    Col("d", "DATE", "TEXT"),
    Col("n", "NUMERIC", "TEXT"),
    Col("b", "BYTES", "BLOB"),
    Col("big", "INT64", "INTEGER"),
    Col("flag", "BOOL"),
]
ROWS: list[dict[str, Any]] = [
    {"id": 1, "s": LONG, "f": float("inf"), "ts": "0001-01-01 00:00:00", "dtm": "0001-01-01 00:00:00",
     "d": "0001-01-01", "n": "0.000000001", "b": b"", "big": 2**63 - 1, "flag": "false"},
    {"id": 2, "s": UNICODE, "f": float("-inf"), "ts": "1969-12-31 23:59:59.999999",
     "dtm": "1969-12-31 23:59:59.999999", "d": "1969-12-31", "n": "999999999999999999.999999999",
     "b": b"\x00\xff\x00", "big": -(2**63), "flag": "0"},
    {"id": 3, "s": "", "f": -0.0, "ts": "9999-12-31 23:59:59.999999", "dtm": "9999-12-31 23:59:59.999999",
     "d": "9999-12-31", "n": "-1234567890123456789.5", "big": 0, "flag": 0},
    {"id": 4},
    {"id": 5, "s": " ", "f": 5e-324, "ts": "2026-11-30 09:00:00-05:00", "dtm": "2026-11-30T09:00:00",
     "d": "2026-11-30", "n": "1.50", "flag": "no"},
    {"id": 6, "f": 1.7976931348623157e308, "ts": "1900-02-28T23:59:59.5+14:00", "n": "-0.000000001", "flag": "true",
     "big": 1},
]  # fmt: skip


def expected_cell(value: Any, col: Col) -> Any:
    """What the warehouse must hold for an inserted value, in `canonical` form, worked out from the value."""
    if value is None:
        return None
    if col.type == "FLOAT64":
        return repr(float(value))
    if col.type == "NUMERIC":
        return Decimal(str(value))
    if col.type in ("TIMESTAMP", "DATETIME"):
        moment = dt.datetime.fromisoformat(value)
        moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
        delta = moment - EPOCH
        return str((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    if col.type == "DATE":
        return str((dt.date.fromisoformat(value) - dt.date(1970, 1, 1)).days)
    if col.type == "BOOL":
        return {"false": False, "0": False, 0: False, "no": False, "true": True, 1: True}[value]
    return value


def canonical(row: Sequence[Any], cols: Sequence[Col]) -> tuple[Any, ...]:
    out = []
    for value, col in zip(row, cols, strict=True):
        if value is None:
            out.append(None)
        elif col.type == "FLOAT64":
            out.append(repr(float(value)))
        elif col.type == "NUMERIC":
            out.append(Decimal(str(value)))
        elif col.type == "BYTES":
            out.append(bytes(value))
        else:
            out.append(value)
    return tuple(out)


def warehouse_expr(c: Col) -> str:
    q = f'"{c.name}"'
    if c.type in ("TIMESTAMP", "DATETIME"):
        return f"CASE WHEN isfinite({q}) THEN CAST(epoch_us({q}) AS VARCHAR) ELSE CAST({q} AS VARCHAR) END"
    if c.type == "DATE":
        return f"CAST(date_diff('day', DATE '1970-01-01', {q}) AS VARCHAR)"
    if c.type == "NUMERIC":
        return f"CAST({q} AS VARCHAR)"
    return q


class Project:
    """A SQLite source file, a one-table spec project on it, its DuckDB warehouse and a Dagster instance."""

    def __init__(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, cols: Sequence[Col]
    ) -> None:
        self.db = tmp_path / "edge.db"
        self.table, self.cols = table, list(cols)
        monkeypatch.setenv(ENV, f"sqlite:///{self.db}")
        ddl = ", ".join(f'"{c.name}" {c.sql}'.strip() for c in cols)
        with sqlite3.connect(self.db) as con:
            con.execute(f'CREATE TABLE "{table}" ({ddl}, PRIMARY KEY (id))')
        self.specs = tmp_path / "table_specs"
        self.home = tmp_path / "home"
        self.write_spec()

    def write_spec(self, **table_options: Any) -> None:
        (self.specs / "sources").mkdir(parents=True, exist_ok=True)
        spec = {
            "kind": "source",
            "name": SOURCE,
            "type": "sqlite",
            "connection_env": ENV,
            "owner": "team:platform",
            "tables": [
                {
                    "name": self.table,
                    "primary_key": ["id"],
                    "cursor": table_options.pop("cursor", "id"),
                    **table_options,
                    "columns": [{"name": c.name, "type": c.type} for c in self.cols],
                }
            ],
        }
        (self.specs / "sources" / f"{SOURCE}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        self.settings = DeriveSettings(specs_dir=self.specs, home=self.home)
        self.defs = build_definitions(self.settings)
        self.instance = getattr(self, "instance", None) or DagsterInstance.ephemeral()

    def insert(self, rows: Sequence[dict[str, Any]], raw: dict[str, str] | None = None) -> None:
        """Rows with bound values; `raw` gives SQL expressions for cells no Python value can bind (bad UTF-8)."""
        with sqlite3.connect(self.db) as con:
            for row in rows:
                names = list(row) + list(raw or {})
                marks = ["?"] * len(row) + list((raw or {}).values())
                columns = ", ".join(f'"{n}"' for n in names)
                con.execute(
                    f'INSERT INTO "{self.table}" ({columns}) VALUES ({", ".join(marks)})', list(row.values())
                )

    def source_raw(self) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as con:
            names = ", ".join(f'"{c.name}"' for c in self.cols)
            return con.execute(f'SELECT {names} FROM "{self.table}" ORDER BY id').fetchall()

    def run(self) -> tuple[bool, str]:
        """Run the source's job: (success, the messages of its errors and their causes, without stacks or step
        names, so that what they name is what the error itself says)."""
        outcome = execute(self.defs, self.instance, f"replicate_{SOURCE}")
        self.full_text = outcome.logs
        """Every log message and error with its stack: where a secret must not appear."""
        return outcome.success, outcome.errors

    def warehouse(self) -> list[tuple[Any, ...]] | None:
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
            exprs = ", ".join(warehouse_expr(c) for c in self.cols)
            rows = con.execute(f'SELECT {exprs} FROM "{SOURCE}"."{self.table}" ORDER BY id').fetchall()
        return [canonical(row, self.cols) for row in rows]

    def watermark(self) -> Any:
        event = self.instance.get_latest_materialization_event(AssetKey([SOURCE, self.table]))
        if event is None or event.asset_materialization is None:
            return None
        entry = event.asset_materialization.metadata.get("derive/watermark")
        return getattr(entry, "value", entry)


def assert_same(
    got: list[tuple[Any, ...]] | None, expected: list[tuple[Any, ...]], cols: Sequence[Col]
) -> None:
    assert got is not None, "the warehouse has no such table"
    assert len(got) == len(expected), f"{len(got)} rows in the warehouse, {len(expected)} in the source"
    for g, e in zip(got, expected, strict=True):
        for col, gv, ev in zip(cols, g, e, strict=True):
            assert gv == ev, (
                f"row id={e[0]} column '{col.name}': warehouse {str(gv)[:120]!r}, expected {str(ev)[:120]!r}"
            )


def test_sqlite_edge_values_arrive_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    project = Project(tmp_path, monkeypatch, "edge_values", COLS)
    project.insert(ROWS)
    inserted = [tuple(row.get(c.name) for c in COLS) for row in ROWS]
    assert project.source_raw() == inserted  # SQLite kept every value as given (-0.0 == 0.0: checked below)
    ok, text = project.run()
    assert ok, text[-3000:]
    expected = [tuple(expected_cell(v, c) for v, c in zip(row, COLS, strict=True)) for row in inserted]
    assert expected[2][2] == "-0.0" and expected[4][3] == str(
        int((dt.datetime(2026, 11, 30, 14, tzinfo=dt.UTC) - EPOCH).total_seconds()) * 10**6
    )
    assert_same(project.warehouse(), expected, COLS)


WIDE_NUMERICS = [
    "99999999999999999999999999999.999999999",
    "-12345678901234567890.5",
    "12345678901234567890123456789",
]
"""Values DECIMAL(38, 9) holds exactly: up to 29 digits before the point and 9 after."""


def test_sqlite_numeric_at_the_width_of_decimal_38_9_arrives_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    cols = [Col("id", "INT64", "INTEGER"), Col("v", "NUMERIC", "TEXT")]
    project = Project(tmp_path, monkeypatch, "wide", cols)
    project.insert([{"id": i, "v": v} for i, v in enumerate(WIDE_NUMERICS, 1)])
    ok, text = project.run()
    assert ok, text[-3000:]
    assert project.warehouse() == [(i, Decimal(v)) for i, v in enumerate(WIDE_NUMERICS, 1)]


BAD: dict[str, tuple[Col, Any, Any]] = {
    # case: (column, a good value, the bad value)
    "int_text": (Col("v", "INT64"), 1, "abc"),
    "int_fraction": (Col("v", "INT64"), 1, 1.5),
    "int_beyond_int64": (Col("v", "INT64"), 1, 1e19),
    "int_text_beyond_int64": (Col("v", "INT64"), 1, str(2**63)),
    "float_text": (Col("v", "FLOAT64"), 1.5, "abc"),
    "int_arabic_digits": (Col("v", "INT64"), 1, "\u0661\u0662\u0663"),  # '١٢٣': int() reads it as 123
    "float_underscore": (Col("v", "FLOAT64"), 1.5, "1_0.5"),  # float() reads it as 10.5
    "numeric_underscore": (Col("v", "NUMERIC"), "1.5", "1_000"),  # Decimal() reads it as 1000
    "numeric_ten_places": (Col("v", "NUMERIC"), "1.5", "0.0000000001"),
    "numeric_nan": (Col("v", "NUMERIC"), "1.5", "NaN"),
    "numeric_1e30": (Col("v", "NUMERIC"), "1.5", "1e30"),
    "numeric_real_places": (Col("v", "NUMERIC"), "1.5", 0.1234567890123),  # a REAL with 13 places
    "timestamp_text": (Col("v", "TIMESTAMP"), "2026-01-01 00:00:00", "yesterday"),
    "timestamp_number": (Col("v", "TIMESTAMP"), "2026-01-01 00:00:00", 1767225600),
    "date_feb_30": (Col("v", "DATE"), "2026-01-01", "2026-02-30"),
    "date_with_time": (Col("v", "DATE"), "2026-01-01", "2026-01-01 10:30:00"),
    "bool_maybe": (Col("v", "BOOL"), "true", "maybe"),
    "bool_two": (Col("v", "BOOL"), 1, 2),
    "bytes_text": (Col("v", "BYTES"), b"\x01", "abc"),
    "string_blob": (Col("v", "STRING"), "ok", b"\x00\xff"),
    "json_invalid": (Col("v", "JSON"), '{"a": 1}', "{not json"),
}
"""One bad cell (row `BAD_KEY`) beside a good row: the run must fail naming source, table, column and key."""
RAW_BAD = {
    "text_invalid_utf8": (Col("v", "STRING", "TEXT"), "ok", "CAST(X'61FF62' AS TEXT)"),
    "text_lone_surrogate": (Col("v", "STRING", "TEXT"), "ok", "CAST(X'EDA080' AS TEXT)"),
}
"""Bytes that are not UTF-8 in TEXT cells (SQLite allows them; no Python str can carry them)."""
XFAIL: dict[str, str] = {}
"""Cases that still fail for a known bug: strict xfail with the exact reason (none at present)."""


def _params(cases: dict[str, Any]) -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=XFAIL[name]))
        if name in XFAIL
        else name
        for name in cases
    ]


def assert_named_failure(project: Project, ok: bool, text: str) -> None:
    assert not ok, f"the run succeeded; the warehouse holds {project.warehouse()}"
    needles = {"source": f"'{SOURCE}'", "table": project.table, "column": "'v'", "key": str(BAD_KEY)}
    missing = [what for what, needle in needles.items() if needle not in text]
    assert not missing, f"the failure does not name the {missing}:\n{text[-3000:]}"
    assert not project.warehouse(), "a failed run wrote rows"
    assert project.watermark() is None


@pytest.mark.parametrize("case", _params(BAD))
def test_sqlite_value_its_type_cannot_hold_fails_naming_the_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
):
    col, good, bad = BAD[case]
    project = Project(tmp_path, monkeypatch, case, [Col("id", "INT64", "INTEGER"), col])
    project.insert([{"id": 1, "v": good}, {"id": BAD_KEY, "v": bad}])
    ok, text = project.run()
    assert_named_failure(project, ok, text)


@pytest.mark.parametrize("case", _params(RAW_BAD))
def test_sqlite_text_that_is_not_utf8_fails_naming_the_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
):
    col, good, raw = RAW_BAD[case]
    project = Project(tmp_path, monkeypatch, case, [Col("id", "INT64", "INTEGER"), col])
    project.insert([{"id": 1, "v": good}])
    project.insert([{"id": BAD_KEY}], raw={"v": raw})
    ok, text = project.run()
    assert_named_failure(project, ok, text)


def test_sqlite_quarantine_sets_the_bad_row_aside_and_loads_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    project = Project(tmp_path, monkeypatch, "mixed", [Col("id", "INT64", "INTEGER"), Col("v", "NUMERIC")])
    project.write_spec(on_invalid="quarantine")
    project.insert([{"id": 1, "v": "1.5"}, {"id": BAD_KEY, "v": "0.0000000001"}, {"id": 3, "v": "-2"}])
    ok, text = project.run()
    assert ok, text[-3000:]
    assert project.warehouse() == [(1, Decimal("1.5")), (3, Decimal("-2"))]
    with duckdb.connect(str(project.settings.duckdb_path), read_only=True) as con:
        [(key, error)] = con.execute(f'SELECT "_id", error FROM "{SOURCE}"."mixed__quarantine"').fetchall()
    assert str(BAD_KEY) in key and "'v'" in error and "0.0000000001" in error


def test_pre_1970_timestamp_cursor_round_trips_through_the_watermark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Old data is valid data: a cursor before the epoch (negative epoch seconds) must read incrementally, and a
    row one microsecond after the watermark must not be lost to a comparison's rounding."""
    cols = [Col("id", "INT64", "INTEGER"), Col("at", "TIMESTAMP", "TEXT")]
    project = Project(tmp_path, monkeypatch, "old", cols)
    project.write_spec(cursor="at", cursor_overlap=0)
    project.insert([{"id": 1, "at": "1901-01-01 00:00:00"}, {"id": 2, "at": "1969-12-31 23:59:59.999998"}])
    ok, text = project.run()
    assert ok, text[-3000:]
    mark = dt.datetime(1969, 12, 31, 23, 59, 59, 999998, tzinfo=dt.UTC)
    assert dt.datetime.fromisoformat(project.watermark()) == mark
    project.insert([{"id": 3, "at": "1969-12-31 23:59:59.999999"}, {"id": 4, "at": "1969-12-31 23:00:00"}])
    ok, text = project.run()
    assert ok, text[-3000:]
    assert {1, 2, 3} <= {row[0] for row in project.warehouse() or []}, (
        "the row 1 µs after the watermark was lost"
    )
    assert dt.datetime.fromisoformat(project.watermark()) == mark + dt.timedelta(microseconds=1)
    project.write_spec(cursor="at", cursor_overlap=7200)  # id 4 committed late, an hour behind the watermark
    ok, text = project.run()
    assert ok, text[-3000:]
    assert project.warehouse() == [(1, "-2177452800000000"), (2, "-2"), (3, "-1"), (4, "-3600000000")]
    assert dt.datetime.fromisoformat(project.watermark()) == mark + dt.timedelta(microseconds=1)
