"""Malformed specs fail at load time with errors that name the file, the field, the value and what is allowed.

Each case writes a small, valid specs directory (one source, one windowed merge table), breaks one thing, and
checks the error `load_project` reports for it. The messages asserted here are the ones quoted in
`docs/validation-errors.md`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import shop_source

from derive_assets.specs.errors import SHOWN_CHARS, SpecError, SpecValidationError, mask_secrets, show
from derive_assets.specs.project import load_project

REPO = Path(__file__).resolve().parents[2]

SOURCE: dict[str, Any] = shop_source()

TABLE: dict[str, Any] = {
    "name": "daily_orders",
    "dataset": "analytics",
    "owner": "analytics@example.com",
    "strategy": {"type": "merge", "unique_key": ["day", "status"]},
    "window": {"size": "1d", "start": "2026-01-01"},
    "partition": {"key": "day"},
    "cluster": ["status"],
    "columns": [
        {"name": "day", "type": "DATE"},
        {"name": "status", "type": "STRING"},
        {"name": "orders", "type": "INT64"},
    ],
    "sql": (
        "SELECT DATE(created_at) AS day, status, COUNT(*) AS orders\n"
        "FROM shop.orders\n"
        "WHERE created_at >= @window_start AND created_at < @window_end\n"
        "GROUP BY day, status\n"
    ),
}

SOURCE_FILE = "table_specs/sources/shop.yaml"
TABLE_FILE = "table_specs/analytics/daily_orders.yaml"

Mutation = Callable[[dict[str, Any]], Any]


def write_specs(
    tmp_path: Path,
    *,
    table: Mutation | None = None,
    source: Mutation | None = None,
    files: dict[str, str | dict[str, Any]] | None = None,
) -> Path:
    """Write the valid base specs under `tmp_path/table_specs`, after applying the mutations; add `files`."""
    root = tmp_path / "table_specs"
    source_spec, table_spec = copy.deepcopy(SOURCE), copy.deepcopy(TABLE)
    if source:
        source(source_spec)
    if table:
        table(table_spec)
    contents: dict[str, str | dict[str, Any]] = {
        "sources/shop.yaml": source_spec,
        "analytics/daily_orders.yaml": table_spec,
        **(files or {}),
    }
    for name, content in contents.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text)
    return root


def load_errors(root: Path, match: str | None = None) -> list[SpecError]:
    with pytest.raises(SpecValidationError, match=match) as info:
        load_project(root)
    return info.value.errors


def the_error(errors: list[SpecError], file: str, field: str) -> SpecError:
    found = [e for e in errors if str(e.file) == file and e.field == field]
    assert found, f"no error for {file}: {field} among:\n" + "\n".join(map(str, errors))
    return found[0]


def sql(text: str) -> Mutation:
    return lambda t: t.update(sql=text)


def replace_in_sql(old: str, new: str) -> Mutation:
    return lambda t: t.update(sql=t["sql"].replace(old, new))


def set_column(index: int, **values: Any) -> Mutation:
    return lambda t: t["columns"][index].update(values)


def source_table(**values: Any) -> Mutation:
    return lambda s: s["tables"][0].update(values)


def source_column(index: int, **values: Any) -> Mutation:
    return lambda s: s["tables"][0]["columns"][index].update(values)


def drop(*keys: str) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        for key in keys:
            del spec[key]

    return mutate


def replace_table(**values: Any) -> Mutation:
    """A non-windowed `replace` table, for cases about windows and parameters."""

    def mutate(t: dict[str, Any]) -> None:
        t.update(
            strategy="replace",
            columns=[{"name": "status", "type": "STRING"}, {"name": "orders", "type": "INT64"}],
        )
        t.update(sql="SELECT status, COUNT(*) AS orders FROM shop.orders GROUP BY status")
        for key in ("window", "partition"):
            t.pop(key)
        t.update(values)

    return mutate


# (table mutation, source mutation, file, field, fragments the error must contain)
CASES = [
    # ------------------------------------------------------------------------------------ YAML and shape
    pytest.param(
        lambda t: t.update(owners="x"),
        None,
        TABLE_FILE,
        "owners",
        ["unknown field; allowed: ['kind', 'name', 'dataset', 'layer', 'description', 'owner',", "(got 'x')"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        set_column(0, nullable=True),
        None,
        TABLE_FILE,
        "columns[0].nullable",
        ["unknown field; allowed: ['name', 'type', 'description', 'constraints', 'path']", "(got True)"],
        id="unknown-column-key",
    ),
    pytest.param(
        lambda t: t["strategy"].update(unique_keys=["day"]),
        None,
        TABLE_FILE,
        "strategy.unique_keys",
        ["unknown field; allowed: ['delete_missing', 'type', 'unique_key']", "(got ['day'])"],
        id="unknown-strategy-key",
    ),
    pytest.param(
        lambda t: t["window"].update(length="1d"),
        None,
        TABLE_FILE,
        "window.length",
        ["unknown field; allowed: ['size', 'start', 'end']", "(got '1d')"],
        id="unknown-window-key",
    ),
    pytest.param(
        lambda t: t["partition"].update(column="day"),
        None,
        TABLE_FILE,
        "partition.column",
        [
            "unknown field; allowed: ['key', 'granularity', 'expiration_days', 'require_filter']",
            "(got 'day')",
        ],
        id="unknown-partition-key",
    ),
    pytest.param(
        None,
        source_table(watermark="updated_at"),
        SOURCE_FILE,
        "tables[0].watermark",
        [
            "unknown field; allowed: ['name', 'description', 'primary_key', 'cursor', 'cursor_overlap',",
            "(got",
        ],
        id="unknown-source-table-key",
    ),
    pytest.param(
        drop("owner"),
        None,
        TABLE_FILE,
        "owner",
        ["required field is missing"],
        id="missing-field",
    ),
    pytest.param(
        lambda t: t.update(columns="day"),
        None,
        TABLE_FILE,
        "columns",
        ["Input should be a valid list", "(got 'day')"],
        id="columns-not-a-list",
    ),
    pytest.param(
        None,
        source_table(cursor_overlap=-5),
        SOURCE_FILE,
        "tables[0].cursor_overlap",
        ["Input should be greater than or equal to 0", "(got -5)"],
        id="cursor-overlap-negative",
    ),
    pytest.param(
        set_column(2, name="1bad"),
        None,
        TABLE_FILE,
        "columns[2].name",
        ["must be a plain identifier: letters, digits and _, not starting with a digit", "(got '1bad')"],
        id="invalid-identifier",
    ),
    pytest.param(
        lambda t: t.update(owner="analytics"),
        None,
        TABLE_FILE,
        "owner",
        [
            "not an owner Dagster accepts; allowed: an e-mail address",
            "prefixed with 'team:'",
            "(got 'analytics')",
        ],
        id="bad-owner",
    ),
    pytest.param(
        None,
        lambda s: s.update(owner="team:"),
        SOURCE_FILE,
        "owner",
        ["not an owner Dagster accepts; allowed: an e-mail address", "prefixed with 'team:'"],
        id="bad-source-owner",
    ),
    pytest.param(
        lambda t: t.update(layer="gold"),
        None,
        TABLE_FILE,
        "layer",
        ["unknown value; allowed: ['core', 'derived']", "(got 'gold')"],
        id="unknown-layer",
    ),
    # ------------------------------------------------------------------------------------ columns and types
    pytest.param(
        set_column(1, type="VARCHAR"),
        None,
        TABLE_FILE,
        "columns[1].type",
        [
            "unknown value; allowed: ['STRING', 'INT64', 'FLOAT64', 'NUMERIC', 'BOOL', 'DATE', 'DATETIME', "
            "'TIMESTAMP', 'JSON', 'BYTES']",
            "(got 'VARCHAR')",
        ],
        id="unknown-column-type",
    ),
    pytest.param(
        lambda t: t["columns"].append({"name": "day", "type": "DATE"}),
        None,
        TABLE_FILE,
        "columns",
        ["['day'] declared more than once; each column name must be unique"],
        id="duplicate-column",
    ),
    # ------------------------------------------------------------------------------------ strategies
    pytest.param(
        lambda t: t.update(strategy={"type": "upsert"}),
        None,
        TABLE_FILE,
        "strategy",
        ["unknown strategy type; allowed: ['merge', 'append', 'replace']", "(got 'upsert')"],
        id="unknown-strategy",
    ),
    pytest.param(
        lambda t: t.update(strategy="upsert"),
        None,
        TABLE_FILE,
        "strategy",
        ["unknown strategy type; allowed: ['merge', 'append', 'replace']", "(got 'upsert')"],
        id="unknown-strategy-shorthand",
    ),
    pytest.param(
        lambda t: t.update(strategy={"type": "merge"}),
        None,
        TABLE_FILE,
        "strategy.unique_key",
        ["required field is missing"],
        id="merge-without-unique-key",
    ),
    pytest.param(
        lambda t: t["strategy"].update(unique_key=["dy", "status"]),
        None,
        TABLE_FILE,
        "strategy.unique_key",
        ["['dy'] not declared in columns; allowed: ['day', 'status', 'orders']"],
        id="unique-key-undeclared",
    ),
    pytest.param(
        lambda t: (t.update(strategy="append"), t.pop("window"), t.pop("partition")),
        None,
        TABLE_FILE,
        "strategy",
        ["append needs both `window` and `partition`"],
        id="append-without-window",
    ),
    pytest.param(
        lambda t: (t.update(strategy="append"), t.pop("partition")),
        None,
        TABLE_FILE,
        "strategy",
        ["append needs both `window` and `partition`"],
        id="append-without-partition",
    ),
    # ---------------------------------------------------------------------------- window, partition, cluster
    pytest.param(
        lambda t: t["window"].update(size="2d"),
        None,
        TABLE_FILE,
        "window.size",
        ["unknown value; allowed: ['1h', '1d', '1w', '1mo']", "(got '2d')"],
        id="unknown-window-size",
    ),
    pytest.param(
        lambda t: t["partition"].update(key="ordered_on"),
        None,
        TABLE_FILE,
        "partition.key",
        ["'ordered_on' is not a declared column; allowed: ['day', 'status', 'orders']"],
        id="partition-key-undeclared",
    ),
    pytest.param(
        lambda t: t["partition"].update(key="status"),
        None,
        TABLE_FILE,
        "partition.key",
        ["column 'status' has type STRING; a partition key must be one of ['DATE', 'DATETIME', 'TIMESTAMP']"],
        id="partition-key-not-time",
    ),
    pytest.param(
        lambda t: t.pop("window"),
        None,
        TABLE_FILE,
        "partition",
        ["a partitioned table needs a `window`"],
        id="partition-without-window",
    ),
    pytest.param(
        lambda t: t["window"].update(size="1h"),
        None,
        TABLE_FILE,
        "window.size",
        ["1h is smaller than a day, but partition key 'day' is a DATE", "use a window of 1d, 1w or 1mo"],
        id="date-partition-hourly-window",
    ),
    pytest.param(
        lambda t: t.update(cluster=["day", "status", "orders", "day", "status"]),
        None,
        TABLE_FILE,
        "cluster",
        ["at most 4 cluster keys: BigQuery allows at most four clustering columns", "(got ['day', 'status',"],
        id="too-many-cluster-keys",
    ),
    pytest.param(
        lambda t: t.update(cluster=["region"]),
        None,
        TABLE_FILE,
        "cluster",
        ["['region'] not declared in columns; allowed: ['day', 'status', 'orders']"],
        id="cluster-key-undeclared",
    ),
    pytest.param(
        lambda t: t.update(schedule="every day"),
        None,
        TABLE_FILE,
        "schedule",
        ["'every day' is not a cron expression; write five fields 'minute hour day month weekday'"],
        id="bad-cron",
    ),
    # ------------------------------------------------------------------------------------ SQL
    pytest.param(
        sql("SELECT status, COUNT(*) AS orders\nFROM shop.orders\nWHERE (status = 'placed'\nGROUP BY status"),
        None,
        TABLE_FILE,
        "sql",
        ["line 4, column 8: SQL does not parse as BigQuery Standard SQL (Expecting )) near 'GROUP BY'"],
        id="sql-does-not-parse",
    ),
    pytest.param(
        sql("SELECT 1 AS day; SELECT 2 AS day"),
        None,
        TABLE_FILE,
        "sql",
        ["sql must be exactly one SELECT query (WITH … SELECT is fine); no DDL/DML, no ';' lists"],
        id="sql-two-statements",
    ),
    pytest.param(
        sql("CREATE TABLE analytics.daily_orders AS SELECT * FROM shop.orders"),
        None,
        TABLE_FILE,
        "sql",
        ["sql must be exactly one SELECT query"],
        id="sql-ddl",
    ),
    pytest.param(
        replace_in_sql("FROM shop.orders", "FROM shop.order"),
        None,
        TABLE_FILE,
        "sql",
        [
            "reads table 'shop.order', which no table spec or source defines; "
            "known tables: ['analytics.daily_orders', 'shop.orders']"
        ],
        id="sql-unknown-table",
    ),
    pytest.param(
        replace_in_sql("FROM shop.orders", "FROM orders"),
        None,
        TABLE_FILE,
        "sql",
        ["refer to tables as `dataset.name` (got 'orders')"],
        id="sql-table-without-dataset",
    ),
    pytest.param(
        replace_in_sql("@window_end", "@until"),
        None,
        TABLE_FILE,
        "sql",
        ["unknown query parameters ['until']; allowed: ['@window_start', '@window_end']"],
        id="sql-unknown-parameter",
    ),
    pytest.param(
        replace_table(
            sql="SELECT status, COUNT(*) AS orders FROM shop.orders WHERE created_at < @window_end "
            "GROUP BY status"
        ),
        None,
        TABLE_FILE,
        "sql",
        ["uses @window_start/@window_end but the spec has no `window`"],
        id="sql-window-parameters-without-window",
    ),
    pytest.param(
        replace_in_sql("COUNT(*) AS orders", "COUNT(*) AS n"),
        None,
        TABLE_FILE,
        "columns",
        [
            "the SQL outputs ['day', 'status', 'n'] but columns declares ['day', 'status', 'orders']; "
            "declare exactly the query's output columns, in the same order"
        ],
        id="sql-output-columns-differ",
    ),
    pytest.param(
        replace_in_sql("COUNT(*) AS orders", "COUNT(DISTINCT customer_id) AS orders"),
        None,
        TABLE_FILE,
        "sql",
        ["cannot resolve the query's columns: Column 'customer_id' could not be resolved"],
        id="sql-unknown-column",
    ),
    pytest.param(
        replace_in_sql("FROM shop.orders", "FROM analytics.daily_orders"),
        None,
        TABLE_FILE,
        "sql",
        ["a table cannot read itself (got 'analytics.daily_orders')"],
        id="sql-reads-itself",
    ),
    # ------------------------------------------------------------------------------------ sources
    pytest.param(
        None,
        source_table(cursor="changed_at"),
        SOURCE_FILE,
        "tables[0].cursor",
        ["['changed_at'] not declared in columns; allowed: ['order_id', 'status', 'amount', 'created_at',"],
        id="source-cursor-undeclared",
    ),
    pytest.param(
        None,
        source_table(primary_key=["id"]),
        SOURCE_FILE,
        "tables[0].primary_key",
        ["['id'] not declared in columns; allowed: ['order_id',"],
        id="source-primary-key-undeclared",
    ),
    pytest.param(
        None,
        source_table(soft_delete={"column": "deleted_at"}),
        SOURCE_FILE,
        "tables[0].soft_delete.column",
        ["['deleted_at'] not declared in columns; allowed: ['order_id',"],
        id="source-soft-delete-undeclared",
    ),
    pytest.param(
        None,
        lambda s: source_column(4, type="STRING")(s),
        SOURCE_FILE,
        "tables[0].cursor",
        ["column 'updated_at' has type STRING; a cursor must be INT64, TIMESTAMP, DATETIME or DATE"],
        id="source-cursor-string",
    ),
    pytest.param(
        None,
        lambda s: s.update(connection_env="postgresql://shop@db/shop"),
        SOURCE_FILE,
        "connection_env",
        ["must be an environment variable name: UPPER_CASE letters, digits and _", "(got 'postgresql://"],
        id="source-bad-connection-env",
    ),
    pytest.param(
        None,
        lambda s: s.update(type="oracle"),
        SOURCE_FILE,
        "type",
        ["unknown value; allowed: ['postgres', 'mysql', 'sqlite', 'mongodb']", "(got 'oracle')"],
        id="source-unknown-type",
    ),
    pytest.param(
        None,
        lambda s: s.update(tables=[]),
        SOURCE_FILE,
        "tables",
        ["List should have at least 1 item"],
        id="source-without-tables",
    ),
]


@pytest.mark.parametrize(("table", "source", "file", "field", "fragments"), CASES)
def test_malformed_spec(
    tmp_path: Path,
    table: Mutation | None,
    source: Mutation | None,
    file: str,
    field: str,
    fragments: list[str],
) -> None:
    root = write_specs(tmp_path, table=table, source=source)
    errors = load_errors(root, match=re.escape(f"{file}: {field}: "))
    error = the_error(errors, file, field)
    for fragment in fragments:
        assert fragment in str(error), f"{fragment!r} not in {error}"


# ---------------------------------------------------------------------------------------------- whole files


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    broken = "name: daily_orders\ndataset: analytics\ncluster: [status\nowner: team:analytics\n"
    root = write_specs(tmp_path, files={"analytics/daily_orders.yaml": broken})
    errors = load_errors(root, match=re.escape(f"{TABLE_FILE}: line 4, column 6: not valid YAML:"))
    assert "expected ',' or ']'" in str(errors[0])  # libyaml and pure-Python PyYAML word the rest differently


def test_yaml_list_is_not_a_spec(tmp_path: Path) -> None:
    root = write_specs(
        tmp_path, files={"analytics/daily_orders.yaml": "- name: daily_orders\n- dataset: x\n"}
    )
    load_errors(
        root, match=re.escape(f"{TABLE_FILE}: a spec file must be a YAML mapping (key: value pairs) (got [")
    )


def test_unknown_kind(tmp_path: Path) -> None:
    root = write_specs(tmp_path, table=lambda t: t.update(kind="view"))
    load_errors(
        root,
        match=re.escape(
            f"{TABLE_FILE}: kind: unknown kind; allowed: ['export', 'source', 'table'] (got 'view')"
        ),
    )


def test_duplicate_table_name_across_files(tmp_path: Path) -> None:
    root = write_specs(tmp_path, files={"analytics/daily_orders_copy.yaml": copy.deepcopy(TABLE)})
    errors = load_errors(root, match="already defined")
    error = the_error(errors, "table_specs/analytics/daily_orders_copy.yaml", "name")
    assert str(error).endswith(
        f"name: table 'analytics.daily_orders' is already defined in {TABLE_FILE} "
        "(got 'analytics.daily_orders')"
    )


def test_table_colliding_with_a_replicated_table(tmp_path: Path) -> None:
    clash = {**copy.deepcopy(TABLE), "dataset": "shop", "name": "orders"}
    root = write_specs(tmp_path, files={"shop/orders.yaml": clash})
    errors = load_errors(root, match="already defined")
    assert "table 'shop.orders' is already defined in table_specs/sources/shop.yaml" in str(
        the_error(errors, "table_specs/shop/orders.yaml", "name")
    )


def test_dependency_cycle(tmp_path: Path) -> None:
    def reading(name: str, other: str) -> dict[str, Any]:
        return {
            "name": name,
            "dataset": "analytics",
            "owner": "team:analytics",
            "strategy": "replace",
            "columns": [{"name": "status", "type": "STRING"}],
            "sql": f"SELECT status FROM analytics.{other}",
        }

    root = write_specs(
        tmp_path, files={"analytics/a.yaml": reading("a", "b"), "analytics/b.yaml": reading("b", "a")}
    )
    errors = load_errors(root, match="dependency cycle")
    for name in ("a", "b"):
        error = the_error(errors, f"table_specs/analytics/{name}.yaml", "sql")
        assert re.search(
            r"dependency cycle: analytics\.[ab] -> analytics\.[ab] -> analytics\.[ab]", str(error)
        )
        assert "a table cannot depend on itself through other tables" in str(error)


def test_all_errors_of_all_files_come_back_together(tmp_path: Path) -> None:
    second = {**copy.deepcopy(TABLE), "name": "weekly_orders", "cluster": ["region"]}
    root = write_specs(
        tmp_path,
        table=lambda t: (set_column(1, type="VARCHAR")(t), t.update(schedule="daily")),
        source=lambda s: s.update(connection_env="shop-db"),
        files={
            "analytics/weekly_orders.yaml": second,
            "analytics/broken.yaml": "name: [unclosed\n",
            "analytics/list.yaml": "- 1\n",
        },
    )
    with pytest.raises(SpecValidationError) as info:
        load_project(root)
    where = {(str(e.file), e.field) for e in info.value.errors}
    assert {
        (SOURCE_FILE, "connection_env"),
        (TABLE_FILE, "columns[1].type"),
        (TABLE_FILE, "schedule"),
        ("table_specs/analytics/weekly_orders.yaml", "cluster"),
        ("table_specs/analytics/broken.yaml", ""),
        ("table_specs/analytics/list.yaml", ""),
    } <= where
    message = str(info.value)
    assert message.startswith(f"{len(info.value.errors)} spec errors:\n  - ")
    assert all(str(e) in message for e in info.value.errors)


def test_errors_in_one_file_do_not_hide_the_sql_errors_of_another(tmp_path: Path) -> None:
    other = {
        **copy.deepcopy(TABLE),
        "name": "weekly_orders",
        "sql": TABLE["sql"].replace("@window_end", "@x"),
    }
    root = write_specs(
        tmp_path, table=lambda t: t.update(owner="nobody"), files={"analytics/weekly_orders.yaml": other}
    )
    errors = load_errors(root)
    the_error(errors, TABLE_FILE, "owner")
    the_error(errors, "table_specs/analytics/weekly_orders.yaml", "sql")


# ---------------------------------------------------------------------------------------------- valid specs


def test_base_specs_are_valid(tmp_path: Path) -> None:
    project = load_project(write_specs(tmp_path))
    assert [t.spec.ref for t in project.tables] == ["analytics.daily_orders"]
    assert [r.ref for r in project.replicated] == ["shop.orders"]


@pytest.mark.parametrize("owner", ["team:analytics", "data.team+alerts@example.co.uk"])
def test_accepted_owners(tmp_path: Path, owner: str) -> None:
    load_project(write_specs(tmp_path, table=lambda t: t.update(owner=owner)))


def test_hourly_window_on_a_timestamp_partition_is_fine(tmp_path: Path) -> None:
    def hourly(t: dict[str, Any]) -> None:
        t["window"]["size"] = "1h"
        t["partition"] = {"key": "hour", "granularity": "hour"}
        t["strategy"]["unique_key"] = ["hour", "status"]
        t["columns"][0] = {"name": "hour", "type": "TIMESTAMP"}
        t["sql"] = t["sql"].replace("DATE(created_at) AS day", "TIMESTAMP_TRUNC(created_at, HOUR) AS hour")
        t["sql"] = t["sql"].replace("GROUP BY day", "GROUP BY hour")

    load_project(write_specs(tmp_path, table=hourly))


def test_column_type_is_case_insensitive(tmp_path: Path) -> None:
    project = load_project(write_specs(tmp_path, table=set_column(2, type="int64")))
    assert project.tables[0].spec.columns[2].type == "INT64"


def test_shipped_specs_load_cleanly() -> None:
    project = load_project(REPO / "table_specs")
    refs = [t.spec.ref for t in project.tables]
    assert refs.index("core.user_detail") < refs.index("analytics.top_spenders")
    assert {"accounts.auth", "orders.orders", "payments.payments"} <= {r.ref for r in project.replicated}


def test_every_rule_problem_of_a_file_is_reported_together(tmp_path: Path) -> None:
    spec = """
name: t
dataset: analytics
owner: team:analytics
columns: [{name: a, type: INT64}, {name: a, type: STRING}]
strategy: {type: merge, unique_key: [b]}
cluster: [c]
sql: SELECT 1 AS a, 'x' AS a
"""
    (tmp_path / "t.yaml").write_text(spec)
    with pytest.raises(SpecValidationError) as caught:
        load_project(tmp_path)
    fields = [e.field for e in caught.value.errors]
    assert fields == ["columns", "strategy.unique_key", "cluster"]


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("FARM_FINGERPRINT(status)", "function FARM_FINGERPRINT has no DuckDB equivalent"),
        ("NET.HOST(status)", "has no DuckDB equivalent"),
        ("APPROX_TOP_COUNT(status, 2)", "cannot be translated to duckdb"),
    ],
)
def test_bigquery_function_without_duckdb_equivalent_fails_at_load(
    tmp_path: Path, expression: str, fragment: str
):
    def use_function(spec: dict[str, Any]) -> None:
        spec["sql"] = spec["sql"].replace("COUNT(*) AS orders", f"COUNT(*) AS orders, {expression} AS extra")
        spec["sql"] = spec["sql"].replace("GROUP BY day, status", "GROUP BY day, status, extra")
        spec["columns"].append({"name": "extra", "type": "STRING"})

    root = write_specs(tmp_path, table=use_function)
    errors = load_errors(root)
    error = the_error(errors, TABLE_FILE, "sql")
    assert fragment in str(error)


def test_bigquery_limits_on_cluster_types_and_hourly_date_partitions(tmp_path: Path) -> None:
    def break_limits(spec: dict[str, Any]) -> None:
        spec["columns"][2]["type"] = "FLOAT64"
        spec["cluster"] = ["status", "orders"]
        spec["partition"]["granularity"] = "hour"

    errors = load_errors(write_specs(tmp_path, table=break_limits))
    assert "have types BigQuery cannot cluster by (FLOAT64, JSON, BYTES)" in str(
        the_error(errors, TABLE_FILE, "cluster")
    )
    assert "BigQuery cannot partition DATE column 'day' by hour" in str(
        the_error(errors, TABLE_FILE, "partition.granularity")
    )


# ---------------------------------------------------------------------------------------------- issue 9


@pytest.mark.parametrize("with_partition", [False, True], ids=["window-only", "window-and-partition"])
def test_replace_with_a_window_is_refused(tmp_path: Path, with_partition: bool) -> None:
    """Each window's replace run rebuilt the whole table: after 11-25 then 11-26 only 11-26 was left."""

    def windowed_replace(t: dict[str, Any]) -> None:
        t["strategy"] = "replace"
        if not with_partition:
            t.pop("partition")

    errors = load_errors(
        write_specs(tmp_path, table=windowed_replace), match=re.escape(f"{TABLE_FILE}: strategy: ")
    )
    message = str(the_error(errors, TABLE_FILE, "strategy"))
    assert "replace rebuilds the whole table on every run" in message
    assert (
        "use `append` (with a `partition` on the window's time column) or `merge`, or remove `window`"
        in message
    )


@pytest.mark.parametrize(
    ("cron", "fragment"),
    [
        ("0 0 31 2 *", "'0 0 31 2 *' names 30 or 31 February, which Dagster refuses"),
        ("0 0 30 2 1", "names 30 or 31 February"),
        ("0 0 31 4 *", "'0 0 31 4 *' never fires (no such date within 10 years"),
        ("0 0 2 * * *", "has 6 fields; Dagster schedules take exactly five"),
    ],
)
def test_crons_dagster_refuses_or_that_never_fire_fail_at_load(
    tmp_path: Path, cron: str, fragment: str
) -> None:
    root = write_specs(
        tmp_path, table=lambda t: t.update(schedule=cron), source=lambda s: s.update(schedule=cron)
    )
    errors = load_errors(root)
    assert fragment in str(the_error(errors, TABLE_FILE, "schedule"))
    assert fragment in str(the_error(errors, SOURCE_FILE, "schedule"))


@pytest.mark.parametrize("cron", ["0 3 29 2 *", "@daily", "*/15 * * * *", "0 0 L 2 *"])
def test_crons_that_fire_are_accepted(tmp_path: Path, cron: str) -> None:
    load_project(write_specs(tmp_path, table=lambda t: t.update(schedule=cron)))


def test_impossible_window_start_names_the_field(tmp_path: Path) -> None:
    text = yaml.safe_dump(TABLE, sort_keys=False).replace("start: '2026-01-01'", "start: 2026-13-01")
    assert "start: 2026-13-01" in text
    root = write_specs(tmp_path, files={"analytics/daily_orders.yaml": text})
    load_errors(
        root,
        match=re.escape(
            f"{TABLE_FILE}: window.start: Input should be a valid date or datetime, month value is "
        )
        + r".*\(got '2026-13-01'\)",
    )


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    text = yaml.safe_dump(TABLE, sort_keys=False) + "name: weekly_orders\n"
    root = write_specs(tmp_path, files={"analytics/daily_orders.yaml": text})
    last = text.count("\n")
    load_errors(
        root,
        match=re.escape(
            f"{TABLE_FILE}: name: key 'name' appears twice in the same mapping, on line 1 and line {last}; "
            "YAML would silently keep only the last one"
        ),
    )


def test_table_functions_are_refused_by_name(tmp_path: Path) -> None:
    root = write_specs(
        tmp_path,
        table=replace_table(sql="SELECT content AS status, 1 AS orders FROM read_text('/proc/self/environ')"),
    )
    errors = load_errors(
        root,
        match=re.escape(f"{TABLE_FILE}: sql: table functions and file access are not allowed: READ_TEXT(…)"),
    )
    assert "got ''" not in "\n".join(map(str, errors))


def test_url_in_connection_env_is_echoed_without_its_password(tmp_path: Path) -> None:
    url = "postgresql://shop:canary-Pa55@db:5432/shop"
    root = write_specs(tmp_path, source=lambda s: s.update(connection_env=url))
    with pytest.raises(
        SpecValidationError, match=re.escape("(got 'postgresql://shop:***@db:5432/shop')")
    ) as info:
        load_project(root)
    assert "canary-Pa55" not in str(info.value)


def test_a_cycle_reports_only_itself(tmp_path: Path) -> None:
    def reading(name: str, other: str) -> dict[str, Any]:
        return {
            "name": name,
            "dataset": "analytics",
            "owner": "team:analytics",
            "strategy": "replace",
            "columns": [{"name": "status", "type": "STRING"}],
            "sql": f"SELECT status FROM analytics.{other}",
        }

    export = {
        "kind": "export",
        "name": "a_online",
        "table": "analytics.a",
        "owner": "team:analytics",
        "keyspace": "online",
        "partition_key": ["status"],
    }
    files: dict[str, str | dict[str, Any]] = {
        "analytics/a.yaml": reading("a", "b"),
        "analytics/b.yaml": reading("b", "a"),
        "analytics/c.yaml": reading("c", "a"),
        "exports/a_online.yaml": export,
    }
    errors = load_errors(write_specs(tmp_path, files=files))
    assert sorted((str(e.file), e.field) for e in errors) == [
        ("table_specs/analytics/a.yaml", "sql"),
        ("table_specs/analytics/b.yaml", "sql"),
    ]
    assert all("dependency cycle" in e.message for e in errors)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://derive:canary@127.0.0.1:5432/x", "postgresql://derive:***@127.0.0.1:5432/x"),
        ("mysql://app:p@ss/w0rd@10.0.0.5/shop", "mysql://app:***@10.0.0.5/shop"),
        ("mongodb://:canary@h", "mongodb://:***@h"),
        ("(got 'postgresql://u:canary@[::1')", "(got 'postgresql://u:***@[::1')"),
        ("host=db user=u password=canary dbname=x", "host=db user=u password=*** dbname=x"),
        ("{'password': 'canary'}", "{'password': '***'}"),
        ("postgresql://shop@db/shop", "postgresql://shop@db/shop"),
        ("sqlite:///data/a@b.db", "sqlite:///data/a@b.db"),
    ],
)
def test_secrets_are_masked_in_messages(text: str, shown: str) -> None:
    assert mask_secrets(text) == shown


def test_a_long_url_is_masked_before_it_is_cut() -> None:
    """Cutting first could keep the start of a password whose '@' falls past the cut."""
    url = f"postgresql://u:{'canary' * 40}@db/x"
    rendered = str(SpecError(Path("s.yaml"), "connection_env", "bad", url))
    assert "canary" not in rendered
    assert "postgresql://u:***@db/x" in rendered


def test_echoed_values_are_bounded_before_rendering() -> None:
    shared: list[Any] = ["lol"]
    for _ in range(60):  # 2**60 leaves once expanded: repr() of it would never finish
        shared = [shared, shared]
    for value in (shared, 10**5000, "x" * 1_000_000, {"k": list(range(100_000))}):
        text = show(value)
        assert len(text) <= SHOWN_CHARS
    assert show(10**5000).startswith("<an integer of about ")
    assert show("x" * 200).endswith("...'") or show("x" * 200).endswith("...")
    assert show({"a": 1}) == "{'a': 1}"
