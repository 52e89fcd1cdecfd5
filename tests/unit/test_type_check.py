"""Declared column types are checked against what the SQL computes, before anything runs.

The matrix (`conversion`) and the DuckDB/sqlglot type names are pure; the end-to-end cases load a specs directory
(one source, one table whose last column is the one under test) through `load_project`, as `derive validate`
does, and pin the message: file, `columns[i].type`, the SQL's type, the declared type and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlglot import exp
from support import shop_source

from derive_assets.specs.errors import SpecValidationError
from derive_assets.specs.project import load_project
from derive_assets.specs.type_check import NULL, conversion, from_duckdb, from_sqlglot

TABLE_FILE = "table_specs/analytics/daily_orders.yaml"

SOURCE: dict[str, Any] = shop_source(
    (
        ("order_id", "INT64"),
        ("status", "STRING"),
        ("amount", "NUMERIC"),
        ("ratio", "FLOAT64"),
        ("paid", "BOOL"),
        ("payload", "JSON"),
        ("created_at", "TIMESTAMP"),
        ("local_at", "DATETIME"),
        ("updated_at", "TIMESTAMP"),
    )
)


def specs(tmp_path: Path, expression: str, declared: str, *, group: bool = True) -> Path:
    """A windowed merge table `day, status, v`: `v` is `expression AS v`, declared `declared`."""
    root = tmp_path / "table_specs"
    table = {
        "name": "daily_orders",
        "dataset": "analytics",
        "owner": "team:analytics",
        "strategy": {"type": "merge", "unique_key": ["day", "status"]},
        "window": {"size": "1d", "start": "2026-01-01"},
        "partition": {"key": "day"},
        "columns": [
            {"name": "day", "type": "DATE"},
            {"name": "status", "type": "STRING"},
            {"name": "v", "type": declared},
        ],
        "sql": (
            f"SELECT DATE(created_at) AS day, status, {expression} AS v\nFROM shop.orders\n"
            "WHERE created_at >= @window_start AND created_at < @window_end\n"
            + ("GROUP BY day, status\n" if group else "")
        ),
    }
    for name, spec in (("sources/shop.yaml", SOURCE), ("analytics/daily_orders.yaml", table)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def type_error(tmp_path: Path, expression: str, declared: str, *, group: bool = True) -> str:
    with pytest.raises(SpecValidationError) as info:
        load_project(specs(tmp_path, expression, declared, group=group))
    (error,) = info.value.errors
    assert (str(error.file), error.field) == (TABLE_FILE, "columns[2].type"), str(error)
    return str(error)


# ---------------------------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize(
    ("computed", "declared", "expected"),
    [
        ("INT64", "INT64", "same"),
        ("INT64", "NUMERIC", "widening"),
        ("INT64", "FLOAT64", "widening"),
        ("INT64", "STRING", "widening"),
        ("NUMERIC", "FLOAT64", "widening"),
        ("DATE", "TIMESTAMP", "widening"),
        ("DATE", "DATETIME", "widening"),
        ("DATETIME", "TIMESTAMP", "widening"),
        ("TIMESTAMP", "DATETIME", "widening"),
        ("BOOL", "STRING", "widening"),
        (NULL, "TIMESTAMP", "widening"),
        (NULL, "JSON", "widening"),
        ("NUMERIC", "INT64", "lossy"),
        ("FLOAT64", "INT64", "lossy"),
        ("FLOAT64", "NUMERIC", "lossy"),
        ("TIMESTAMP", "DATE", "lossy"),
        ("DATETIME", "DATE", "lossy"),
        ("INT64", "TIMESTAMP", "impossible"),
        ("INT64", "DATE", "impossible"),
        ("INT64", "BOOL", "impossible"),
        ("STRING", "INT64", "impossible"),
        ("STRING", "JSON", "impossible"),
        ("BOOL", "DATE", "impossible"),
        ("JSON", "STRING", "impossible"),
        ("BYTES", "STRING", "impossible"),
        ("ARRAY", "STRING", "impossible"),
        ("STRUCT", "JSON", "impossible"),
        ("DATE", "INT64", "impossible"),
        ("TIMESTAMP", "INT64", "impossible"),
    ],
)
def test_conversion_matrix(computed: str, declared: str, expected: str) -> None:
    assert conversion(computed, declared) == expected


@pytest.mark.parametrize(
    ("duckdb_type", "spec_type"),
    [
        ("BIGINT", "INT64"),
        ("HUGEINT", "INT64"),  # SUM(BIGINT)
        ("INTEGER", "INT64"),
        ("UBIGINT", "INT64"),
        ("DECIMAL(38,9)", "NUMERIC"),
        ("DECIMAL(2,1)", "NUMERIC"),
        ("DOUBLE", "FLOAT64"),
        ("FLOAT", "FLOAT64"),
        ("VARCHAR", "STRING"),
        ("UUID", "STRING"),
        ("BOOLEAN", "BOOL"),
        ("DATE", "DATE"),
        ("TIMESTAMP", "DATETIME"),
        ("TIMESTAMP_NS", "DATETIME"),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP"),
        ("JSON", "JSON"),
        ("BLOB", "BYTES"),
        ("BIGINT[]", "ARRAY"),
        ("VARCHAR[3]", "ARRAY"),
        ("STRUCT(x INTEGER)", "STRUCT"),
        ("MAP(VARCHAR, INTEGER)", "STRUCT"),
        ("INTERVAL", "INTERVAL"),
        ('"NULL"', NULL),
    ],
)
def test_duckdb_types_in_the_spec_vocabulary(duckdb_type: str, spec_type: str) -> None:
    assert from_duckdb(duckdb_type) == spec_type


def test_sqlglot_types_in_the_spec_vocabulary() -> None:
    def build(name: str) -> exp.DataType:
        return exp.DataType.build(name, dialect="bigquery")

    assert [from_sqlglot(build(t)) for t in ("INT64", "NUMERIC", "FLOAT64", "TIMESTAMP", "DATETIME")] == [
        "INT64",
        "NUMERIC",
        "FLOAT64",
        "TIMESTAMP",
        "DATETIME",
    ]
    assert from_sqlglot(exp.DataType.build("UNKNOWN")) is None
    assert from_sqlglot(None) is None


# ---------------------------------------------------------------------------------------------- the cases


def test_sum_of_numeric_declared_int64_is_refused(tmp_path: Path) -> None:
    message = type_error(tmp_path, "SUM(amount)", "INT64")
    assert message == (
        f"{TABLE_FILE}: columns[2].type: column 'v' is declared INT64 but the SQL computes NUMERIC (SUM(amount)); "
        "stored as INT64, every value would be rounded to a whole number: write CAST(SUM(amount) AS INT64) in "
        "the SQL if that is meant, or declare `type: NUMERIC` (got 'INT64')"
    )


def test_count_declared_timestamp_is_refused(tmp_path: Path) -> None:
    message = type_error(tmp_path, "COUNT(*)", "TIMESTAMP")
    assert message == (
        f"{TABLE_FILE}: columns[2].type: column 'v' is declared TIMESTAMP but the SQL computes INT64 (COUNT(*)); "
        "INT64 does not convert to TIMESTAMP implicitly: declare `type: INT64` if that is what the column holds, "
        "or compute TIMESTAMP_SECONDS(COUNT(*)) (or _MILLIS/_MICROS) in the SQL (got 'TIMESTAMP')"
    )


def test_explicit_cast_is_the_authors_decision(tmp_path: Path) -> None:
    load_project(specs(tmp_path, "CAST(SUM(amount) AS INT64)", "INT64"))


def test_the_error_is_one_line_through_the_whole_load(tmp_path: Path) -> None:
    with pytest.raises(SpecValidationError, match=r"^1 spec error:\n  - table_specs/analytics/daily_orders\.yaml: "
                       r"columns\[2\]\.type: column 'v' is declared INT64 but the SQL computes NUMERIC"):  # fmt: skip
        load_project(specs(tmp_path, "SUM(amount)", "INT64"))


@pytest.mark.parametrize(
    ("expression", "declared", "pattern"),
    [
        ("MAX(created_at)", "DATE", r"computes TIMESTAMP \(MAX\(created_at\)\); stored as DATE, the time of day "
         r"would be dropped: write CAST\(MAX\(created_at\) AS DATE\)"),
        ("AVG(order_id)", "INT64", r"computes FLOAT64 .*rounded to a whole number"),
        ("SUM(ratio)", "NUMERIC", r"computes FLOAT64 .*digits beyond the 9th"),
        ("MAX(status)", "INT64", r"STRING does not convert to INT64 implicitly: declare `type: STRING` if that is "
         r"what the column holds, or compute CAST\(MAX\(status\) AS INT64\) in the SQL"),
        ("LOGICAL_OR(paid)", "DATE", r"computes BOOL .*BOOL does not convert to DATE"),
        ("TO_HEX(MD5(MAX(status)))", "BYTES", r"computes STRING"),
        ("MD5(MAX(status))", "STRING", r"computes BYTES .*compute TO_HEX\(MD5\(MAX\(status\)\)\)"),
        ("ARRAY_AGG(order_id)", "STRING", r"computes ARRAY .*compute TO_JSON_STRING\(ARRAY_AGG\(order_id\)\)"),
        ("MAX(status)", "JSON", r"compute PARSE_JSON\(MAX\(status\)\)"),
        ("MAX(local_at)", "DATE", r"computes DATETIME .*time of day would be dropped"),
        ("DATE_DIFF(DATE(@window_end), DATE(@window_start), DAY)", "DATE", r"computes INT64"),
    ],
)  # fmt: skip
def test_lossy_and_impossible_conversions_are_refused(
    tmp_path: Path, expression: str, declared: str, pattern: str
) -> None:
    assert re.search(pattern, type_error(tmp_path, expression, declared))


@pytest.mark.parametrize(
    ("expression", "declared"),
    [
        ("COUNT(*)", "NUMERIC"),
        ("COUNT(*)", "FLOAT64"),
        ("COUNT(*)", "STRING"),
        ("SUM(amount)", "FLOAT64"),
        ("SUM(order_id)", "INT64"),  # DuckDB's SUM(BIGINT) is a HUGEINT
        ("COUNTIF(paid)", "INT64"),
        ("MIN(DATE(created_at))", "TIMESTAMP"),
        ("MAX(created_at)", "DATETIME"),  # UTC wall-clock time
        ("MAX(local_at)", "TIMESTAMP"),  # read as UTC
        ("NULL", "TIMESTAMP"),  # DuckDB binds a bare NULL as INTEGER
        ("NULL", "JSON"),
        ("CAST(NULL AS STRING)", "STRING"),
        ("ROUND(SUM(amount), 2)", "NUMERIC"),
        ("CAST(AVG(ratio) AS NUMERIC)", "NUMERIC"),
        ("AVG(amount)", "NUMERIC"),  # NUMERIC in BigQuery; DuckDB's DOUBLE is the translation's
        ("DATE_TRUNC(MIN(DATE(created_at)), MONTH)", "DATE"),  # DATE in BigQuery, TIMESTAMP in DuckDB
        ("SAFE_DIVIDE(SUM(amount), COUNT(*))", "NUMERIC"),
        ("SUM(amount) / COUNT(*)", "NUMERIC"),
        ("TIMESTAMP_TRUNC(MAX(created_at), HOUR)", "TIMESTAMP"),
        ("MAX(@window_start)", "TIMESTAMP"),
        ("DATE(@window_start)", "DATE"),
        ("ANY_VALUE(payload)", "JSON"),
        ("TO_JSON_STRING(ANY_VALUE(payload))", "STRING"),
        ("FORMAT_DATE('%Y-%m', MIN(DATE(created_at)))", "STRING"),
        ("CAST(MAX(status) AS INT64)", "INT64"),
        ("IF(LOGICAL_OR(paid), SUM(amount), 0)", "NUMERIC"),
        ("COALESCE(SUM(amount), 0)", "NUMERIC"),
        ("GENERATE_UUID()", "STRING"),
    ],
)
def test_lossless_and_explicit_conversions_pass(tmp_path: Path, expression: str, declared: str) -> None:
    load_project(specs(tmp_path, expression, declared))


def test_every_mismatch_of_a_table_is_reported(tmp_path: Path) -> None:
    root = specs(tmp_path, "SUM(amount)", "INT64")
    path = root / "analytics" / "daily_orders.yaml"
    path.write_text(path.read_text().replace("type: STRING", "type: DATE", 1))
    with pytest.raises(SpecValidationError) as info:
        load_project(root)
    assert [e.field for e in info.value.errors] == ["columns[1].type", "columns[2].type"]


def test_union_is_checked_on_the_unified_type(tmp_path: Path) -> None:
    root = specs(tmp_path, "COUNT(*)", "INT64")
    path = root / "analytics" / "daily_orders.yaml"
    text = path.read_text()
    union = (
        "SELECT DATE(created_at) AS day, status, COUNT(*) AS v FROM shop.orders GROUP BY day, status "
        "UNION ALL SELECT DATE(created_at) AS day, status, SUM(amount) AS v FROM shop.orders GROUP BY day, status"
    )
    spec = yaml.safe_load(text)
    spec["sql"], spec["window"], spec["partition"] = union, None, None
    spec["strategy"] = "replace"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SpecValidationError, match=r"columns\[2\]\.type: column 'v' is declared INT64 but the SQL "
                       r"computes NUMERIC; .*write CAST\(<expression> AS INT64\)"):  # fmt: skip
        load_project(root)


def test_the_project_specs_validate() -> None:
    load_project(Path(__file__).resolve().parents[2] / "table_specs")


def test_a_star_is_expanded_before_the_column_is_named(tmp_path: Path) -> None:
    root = specs(tmp_path, "SUM(amount)", "INT64")
    path = root / "analytics" / "daily_orders.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["sql"] = (
        "WITH t AS (SELECT DATE(created_at) AS day, status FROM shop.orders "
        "WHERE created_at >= @window_start AND created_at < @window_end)\n"
        "SELECT *, NULL AS v FROM t"
    )
    spec["columns"][2]["type"] = "TIMESTAMP"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    load_project(root)  # the NULL is found at its expanded position
    spec["sql"] = spec["sql"].replace("NULL AS v", "COUNT(*) OVER () AS v")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SpecValidationError, match=r"columns\[2\]\.type: column 'v' is declared TIMESTAMP but the "
                       r"SQL computes INT64 \(COUNT\(\*\) OVER \(\)\)"):  # fmt: skip
        load_project(root)


@pytest.mark.parametrize(
    "select",
    [
        "WITH t AS ({inner}) SELECT day, status, v FROM t",
        "WITH t AS ({inner}), u AS (SELECT * FROM t) SELECT u.day, u.status, u.v AS v FROM u",
        "SELECT s.day, s.status, s.v FROM ({inner}) AS s",
    ],
)
def test_a_null_through_ctes_and_subqueries_takes_any_type(tmp_path: Path, select: str) -> None:
    root = specs(tmp_path, "NULL", "TIMESTAMP")
    path = root / "analytics" / "daily_orders.yaml"
    spec = yaml.safe_load(path.read_text())
    inner = (
        "SELECT DATE(created_at) AS day, status, NULL AS v FROM shop.orders "
        "WHERE created_at >= @window_start AND created_at < @window_end"
    )
    spec["sql"] = select.format(inner=inner)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    load_project(root)
    spec["sql"] = spec["sql"].replace("NULL AS v", "order_id AS v")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(
        SpecValidationError, match=r"columns\[2\]\.type: .* declared TIMESTAMP but the SQL computes INT64"
    ):
        load_project(root)
