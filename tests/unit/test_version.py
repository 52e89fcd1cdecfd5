"""Spec versions change exactly when the data would: the SQL's meaning, columns, strategy, window, partition."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from derive_assets.specs.models import ExportSpec, SourceSpec, TableSpec
from derive_assets.specs.version import (
    VERSION_CHARS,
    code_version,
    export_code_version,
    normalized_sql,
    source_code_version,
)

TABLE: dict[str, Any] = {
    "name": "daily_orders",
    "dataset": "analytics",
    "owner": "analytics@example.com",
    "description": "Orders per day and status.",
    "schedule": "0 1 * * *",
    "strategy": {"type": "merge", "unique_key": ["day", "status"]},
    "window": {"size": "1d", "start": "2026-01-01"},
    "partition": {"key": "day"},
    "cluster": ["status"],
    "columns": [
        {"name": "day", "type": "DATE", "constraints": {"not_null": True}},
        {"name": "status", "type": "STRING", "description": "Order status."},
        {"name": "orders", "type": "INT64"},
    ],
    "sql": (
        "SELECT DATE(created_at) AS day, status, COUNT(*) AS orders\n"
        "FROM shop.orders\n"
        "WHERE created_at >= @window_start AND created_at < @window_end\n"
        "GROUP BY day, status\n"
    ),
}

SOURCE: dict[str, Any] = {
    "kind": "source",
    "name": "shop",
    "type": "postgres",
    "connection_env": "SHOP_URL",
    "owner": "team:shop",
    "schedule": "*/5 * * * *",
    "tables": [
        {
            "name": "orders",
            "primary_key": ["order_id"],
            "cursor": "updated_at",
            "columns": [
                {"name": "order_id", "type": "INT64"},
                {"name": "amount", "type": "NUMERIC"},
                {"name": "updated_at", "type": "TIMESTAMP"},
            ],
        }
    ],
}

EXPORT: dict[str, Any] = {
    "kind": "export",
    "name": "orders_online",
    "table": "analytics.daily_orders",
    "owner": "team:analytics",
    "keyspace": "derive",
    "partition_key": ["day"],
    "clustering": ["status"],
}


def _table(change=None) -> TableSpec:
    data = copy.deepcopy(TABLE)
    if change:
        change(data)
    return TableSpec.model_validate(data)


def _set(path: str, value: Any):
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


BASE = code_version(_table())


def test_version_is_short_hex_and_stable() -> None:
    assert len(BASE) == VERSION_CHARS and int(BASE, 16) >= 0
    assert code_version(_table()) == BASE


def test_versions_are_pinned() -> None:
    """A changed version marks every deployed asset stale: an upgrade of Derive (a new optional field, a new
    sqlglot) must not change the version of an unchanged spec. Update these only on purpose."""
    assert BASE == "680331d7b933"
    assert SOURCE_BASE == "a405a84de402"
    assert export_code_version(ExportSpec.model_validate(EXPORT)) == "4a4c5b0d2419"


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("whitespace and line breaks", _set("sql", " ".join(TABLE["sql"].split()))),
        (
            "keyword case",
            _set("sql", TABLE["sql"].replace("SELECT", "select").replace("GROUP BY", "group by")),
        ),
        ("a comment", _set("sql", "-- orders per day\n" + TABLE["sql"].replace("FROM", "FROM /* src */"))),
        ("the description", _set("description", "Something else.")),
        ("a column description", _set("columns.1.description", "Other words.")),
        ("the owner", _set("owner", "team:other")),
        ("the schedule", _set("schedule", "0 5 * * *")),
        ("a unique check", _set("columns.2.constraints", {"unique": True})),
        ("accepted values", _set("columns.1.constraints", {"accepted_values": ["a", "b"]})),
        ("a default written out", _set("partition", {"key": "day", "granularity": "day"})),
        ("delete_missing written as false", _set("strategy.delete_missing", False)),
        ("lower-case type name", _set("columns.2.type", "int64")),
    ],
)
def test_what_does_not_change_the_data_keeps_the_version(why: str, change) -> None:
    assert code_version(_table(change)) == BASE, why


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("the query's logic", _set("sql", TABLE["sql"].replace("COUNT(*)", "COUNT(DISTINCT status)"))),
        ("a filter", _set("sql", TABLE["sql"].replace("GROUP BY", "AND status != 'x' GROUP BY"))),
        ("a column type", _set("columns.2.type", "NUMERIC")),
        ("a column name", _set("columns.2.name", "n")),
        ("not_null", _set("columns.2.constraints", {"not_null": True})),
        ("the unique key", _set("strategy.unique_key", ["day", "status", "orders"])),
        ("delete_missing", _set("strategy.delete_missing", True)),
        ("the window size", _set("window.size", "1w")),
        ("the window start", _set("window.start", "2025-01-01")),
        ("the window end", _set("window.end", "2027-01-01")),
        ("the partition granularity", _set("partition.granularity", "month")),
        ("partition expiration", _set("partition.expiration_days", 30)),
        ("the cluster keys", _set("cluster", [])),
    ],
)
def test_what_changes_the_data_changes_the_version(why: str, change) -> None:
    assert code_version(_table(change)) != BASE, why


def test_strategy_change_changes_the_version() -> None:
    def to_append(data: dict[str, Any]) -> None:
        data["strategy"] = "append"

    assert code_version(_table(to_append)) != BASE


def test_normalized_sql_ignores_layout_but_not_string_contents() -> None:
    assert normalized_sql("select 1 as a -- x\n") == normalized_sql("SELECT\n  1  AS a")
    assert normalized_sql("SELECT 'a' AS x") != normalized_sql("SELECT 'A' AS x")
    assert normalized_sql("SELECT (") == "SELECT ("  # never raises on SQL that does not parse


def _source(change=None) -> SourceSpec:
    data = copy.deepcopy(SOURCE)
    if change:
        change(data)
    return SourceSpec.model_validate(data)


def _source_version(change=None) -> str:
    spec = _source(change)
    return source_code_version(spec, spec.tables[0])


SOURCE_BASE = _source_version()


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("the schedule", _set("schedule", "0 * * * *")),
        ("the owner", _set("owner", "team:other")),
        ("the connection variable", _set("connection_env", "OTHER_URL")),
        ("the cursor overlap", _set("tables.0.cursor_overlap", 60)),
        ("waiting for open transactions", _set("tables.0.wait_for_open_transactions", False)),
        ("how a first load is chunked", _set("tables.0.snapshot", {"chunk_rows": 5000, "parallel": 2})),
        ("a table description", _set("tables.0.description", "Orders.")),
    ],
)
def test_source_version_ignores_what_does_not_change_rows(why: str, change) -> None:
    assert _source_version(change) == SOURCE_BASE, why


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("a column type", _set("tables.0.columns.1.type", "FLOAT64")),
        ("a new column", lambda data: data["tables"][0]["columns"].append({"name": "s", "type": "STRING"})),
        ("the primary key", _set("tables.0.primary_key", ["order_id", "amount"])),
        ("the cursor", _set("tables.0.cursor", "order_id")),
        ("on_invalid", _set("tables.0.on_invalid", "quarantine")),
        ("the engine", _set("type", "mysql")),
        ("the target dataset", _set("dataset", "shop_raw")),
    ],
)
def test_source_version_changes_with_what_is_replicated(why: str, change) -> None:
    assert _source_version(change) != SOURCE_BASE, why


def test_export_version() -> None:
    base = export_code_version(ExportSpec.model_validate(EXPORT))
    same = {**EXPORT, "description": "x", "owner": "team:y", "schedule": "0 1 * * *", "consistency": "ONE"}
    assert export_code_version(ExportSpec.model_validate(same)) == base
    assert export_code_version(ExportSpec.model_validate({**EXPORT, "cql_table": "orders_online"})) == base
    for change in (
        {"ttl_seconds": 60},
        {"columns": ["day", "status"]},
        {"partition_key": ["status"], "clustering": []},
        {"keyspace": "other"},
        {"table": "analytics.other"},
    ):
        assert export_code_version(ExportSpec.model_validate({**EXPORT, **change})) != base, change


def test_the_factorys_parsed_sql_gives_the_same_version_as_the_text(tmp_path) -> None:
    """The factory hands `code_version` the SQL it already parsed; every spec of the project (and after the
    definitions are built from them, which must leave the parsed SQL as it was) gets the version of its text."""
    from derive_assets.factory.build import build_definitions
    from derive_assets.settings import PROJECT_ROOT, DeriveSettings
    from derive_assets.specs.project import load_project

    project = load_project(PROJECT_ROOT / "table_specs")
    build_definitions(DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=tmp_path), project)
    for table in project.tables:
        assert code_version(table.spec, table.analysis.expression) == code_version(table.spec), table.spec.ref
