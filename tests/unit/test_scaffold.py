"""`derive new`: the skeleton it writes passes `derive validate` as written (`load_project` of the whole specs
directory), for every strategy with and without a window; `--from` copies a table's declared columns, `--sql`
declares the types the project's own type check computes; every refusal is one clear line and writes nothing.

Each test scaffolds into a copy of the shipped `table_specs/` in `tmp_path`, so `--from` and `--sql` name real tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from derive_assets import cli, scaffold
from derive_assets.commands import new as new_command
from derive_assets.scaffold import ScaffoldError, clean_sql
from derive_assets.scaffold_text import NewColumn, Skeleton, check_reads_back, render
from derive_assets.settings import PROJECT_ROOT
from derive_assets.specs.models import TableSpec
from derive_assets.specs.project import SpecProject, load_project

TODAY = dt.date(2026, 12, 2)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    copy = tmp_path / "table_specs"
    shutil.copytree(PROJECT_ROOT / "table_specs", copy)
    return copy


@pytest.fixture
def shipped() -> SpecProject:
    return load_project(PROJECT_ROOT / "table_specs")


def new(root: Path, target: str = "analytics/fresh", **options: Any) -> tuple[Path, TableSpec, str]:
    """Scaffold, then load the whole directory strictly, as `derive validate` does: (path, the loaded spec, text)."""
    done = scaffold.scaffold(root, target, today=TODAY, **options)
    project = load_project(
        root
    )  # raises SpecValidationError, listing every problem, if the skeleton is invalid
    dataset, _, name = target.partition("/")
    return done.path, project.table(f"{dataset}.{name}").spec, done.path.read_text()


def columns(spec: TableSpec) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in spec.columns]


# ---------------------------------------------------------------------------------------------- every strategy


@pytest.mark.parametrize("window", [None, "1d", "1h", "1w", "1mo"])
@pytest.mark.parametrize("strategy", [None, "merge", "append", "replace"])
def test_every_strategy_with_and_without_a_window_validates_as_written(
    root: Path, strategy: str | None, window: str | None
) -> None:
    if strategy == "replace" and window is not None:
        with pytest.raises(ScaffoldError, match=r"--strategy replace .* cannot have --window"):
            scaffold.scaffold(root, "analytics/fresh", strategy=strategy, window=window, today=TODAY)
        assert not (root / "analytics" / "fresh.yaml").exists()
        return
    path, spec, text = new(root, strategy=strategy, window=window)
    assert path == root / "analytics" / "fresh.yaml"
    assert spec.strategy.type == (strategy or ("merge" if window else "replace"))
    expected_window = window or ("1d" if strategy == "append" else None)
    assert (spec.window.size if spec.window else None) == expected_window
    assert (spec.window.start if spec.window else None) == (dt.date(2026, 9, 1) if expected_window else None)
    if expected_window:
        assert spec.partition is not None and spec.partition.key in spec.column_names
        assert "@window_start" in spec.sql
    first = text.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (path.parent / first.split("=", 1)[1]).resolve() == PROJECT_ROOT / "docs" / "spec.schema.json"


@pytest.mark.parametrize(
    ("today", "start"),
    [
        (dt.date(2026, 12, 2), dt.date(2026, 9, 1)),
        (dt.date(2027, 1, 31), dt.date(2026, 10, 1)),
        (dt.date(2027, 3, 1), dt.date(2026, 12, 1)),
        (dt.date(2027, 4, 15), dt.date(2027, 1, 1)),
    ],
)
def test_a_window_starts_three_whole_months_back(today: dt.date, start: dt.date) -> None:
    assert scaffold.first_window_start(today) == start


def test_the_optional_fields_shown_commented_out_validate_once_uncommented(root: Path) -> None:
    path, _, text = new(root, from_="payments.payments", window="1d", strategy="merge")
    optional = (
        "# schedule:",
        "# lookback:",
        "# backfill:",
        "# cluster:",
        "# checks:",
        "#   ",
        "#     ",
        "#       ",
    )
    lines = [line[2:] if line.startswith(optional) else line for line in text.splitlines()]
    path.write_text("\n".join(lines) + "\n")
    spec = load_project(root).table("analytics.fresh").spec
    assert spec.schedule == "30 0 * * *" and spec.lookback == 3 and spec.backfill is not None
    assert spec.cluster == ["payment_id"]
    assert spec.checks.row_count is not None and spec.checks.freshness is not None
    assert [c.name for c in spec.checks.sql] == ["payment_id_is_set"]


# ---------------------------------------------------------------------------------------------- --from


def test_from_a_replicated_source_table_copies_its_columns_and_merges_by_its_primary_key(
    root: Path, shipped: SpecProject
) -> None:
    source = next(rt.table for rt in shipped.replicated if rt.ref == "payments.payments")
    _, spec, _ = new(root, from_="payments.payments", strategy="merge", window="1d")
    assert columns(spec) == [(c.name, c.type) for c in source.columns]
    assert [c.description for c in spec.columns] == [c.description for c in source.columns]
    assert spec.strategy.type == "merge" and spec.strategy.unique_key == source.primary_key
    assert source.event_time and spec.partition is not None
    assert spec.partition.key == source.event_time[0]  # the event time, not the replication cursor
    assert re.search(
        rf"\b{source.event_time[0]} >= @window_start AND {source.event_time[0]} < @window_end", spec.sql
    )


def test_from_a_core_table_copies_its_columns_and_selects_them(root: Path, shipped: SpecProject) -> None:
    source = shipped.table("core.user_detail").spec
    _, spec, _ = new(root, "core/user_copy", from_="core/user_detail")
    assert columns(spec) == columns(source)
    assert spec.strategy.type == "replace" and spec.window is None
    assert "FROM core.user_detail" in spec.sql and "@window" not in spec.sql


def test_from_a_table_spec_merges_by_its_unique_key_and_filters_a_date_column_as_a_date(
    root: Path, shipped: SpecProject
) -> None:
    source = shipped.table("analytics.daily_payments_by_region").spec
    assert source.strategy.type == "merge" and source.partition is not None
    _, spec, _ = new(root, from_="analytics.daily_payments_by_region", window="1d")
    assert columns(spec) == columns(source)
    assert spec.strategy.type == "merge" and spec.strategy.unique_key == source.strategy.unique_key
    key = source.partition.key
    assert spec.partition is not None and spec.partition.key == key
    assert f"{key} >= DATE(@window_start) AND {key} < DATE(@window_end)" in spec.sql


def test_hourly_windows_never_partition_by_a_date(root: Path) -> None:
    """daily_payments_by_region has only a DATE column: hourly merge windows read without a partition; append
    cannot be built at all."""
    _, spec, text = new(root, from_="analytics.daily_payments_by_region", window="1h")
    assert spec.window is not None and spec.window.size == "1h" and spec.partition is None
    assert "TODO: analytics.daily_payments_by_region has no DATE, DATETIME or TIMESTAMP column" in text
    with pytest.raises(
        ScaffoldError, match=r"append partitions the table by .* \(DATETIME or TIMESTAMP for 1h"
    ):
        scaffold.scaffold(
            root,
            "analytics/other",
            from_="analytics.daily_payments_by_region",
            window="1h",
            strategy="append",
        )


def test_the_merge_key_is_the_read_table_s_key_else_a_guess_with_a_comment_to_change_it(root: Path) -> None:
    _, spec, text = new(root, from_="analytics.order_facts", strategy="merge", window="1d")
    assert spec.strategy.type == "merge"
    assert spec.strategy.unique_key == ["order_id"]  # declared `unique: true` in order_facts
    _, spec, text = new(root, "analytics/other", from_="core.user_detail", strategy="merge")
    assert spec.strategy.unique_key == ["user_id"]
    _, spec, text = new(
        root, "analytics/fourth", sql="SELECT region, user_id FROM core.user_detail", window="1d"
    )
    assert spec.strategy.type == "merge" and spec.strategy.unique_key == ["region"]
    assert "TODO: the columns that identify a row; 'region' is a guess, change it" in text
    grouped = "SELECT COUNT(*) AS n, DATE(signed_up_at) AS day, u.region AS r FROM core.user_detail AS u GROUP BY 2, u.region"
    _, spec, text = new(root, "analytics/fifth", sql=grouped, strategy="merge")
    assert spec.strategy.unique_key == ["day", "r"]
    assert "the GROUP BY columns of the query" in text
    _, spec, _ = new(
        root,
        "analytics/sixth",
        sql=grouped.replace("GROUP BY 2, u.region", "GROUP BY 2, u.region, u.country"),
        strategy="merge",
    )
    assert spec.strategy.unique_key == ["n"]  # grouped by a column it does not output: no key known


def test_an_unknown_from_table_suggests_the_nearest(root: Path) -> None:
    with pytest.raises(
        ScaffoldError,
        match=r"no table spec or replicated source table defines 'payments.payment'; did you mean payments.payments",
    ):
        scaffold.scaffold(root, "analytics/fresh", from_="payments.payment")
    assert not (root / "analytics" / "fresh.yaml").exists()


# ---------------------------------------------------------------------------------------------- --sql


def test_sql_columns_get_the_types_the_type_check_computes(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = """
        SELECT
          DATE(p.paid_at) AS day,
          p.method,
          COUNT(*) AS payments,
          SUM(p.amount) AS revenue,
          AVG(p.amount) AS average,
          MAX(p.paid_at) AS last_paid_at,
          DATETIME(MAX(p.paid_at)) AS last_paid_local,
          COUNT(*) > 1 AS repeated,
          NULL AS note,
          CURRENT_TIME() AS checked_at
        FROM payments.payments AS p
        WHERE p.paid_at >= @window_start AND p.paid_at < @window_end
        GROUP BY day, p.method
    """
    done = scaffold.scaffold(root, "analytics/fresh", sql=sql, window="1d", today=TODAY)
    spec = load_project(root).table("analytics.fresh").spec
    assert columns(spec) == [
        ("day", "DATE"),
        ("method", "STRING"),
        ("payments", "INT64"),
        ("revenue", "NUMERIC"),
        ("average", "NUMERIC"),  # BigQuery's AVG of a NUMERIC (DuckDB's is a DOUBLE)
        ("last_paid_at", "TIMESTAMP"),
        ("last_paid_local", "DATETIME"),
        ("repeated", "BOOL"),
        ("note", "STRING"),
        ("checked_at", "STRING"),
    ]
    assert spec.sql == clean_sql(sql)  # the query exactly as given (dedented)
    assert spec.partition is not None and spec.partition.key == "day"
    assert spec.strategy.type == "merge" and spec.strategy.unique_key == ["day", "method"]  # the GROUP BY
    text = done.path.read_text()
    assert "type: STRING                        # TODO: the SQL gives a bare NULL" in text
    assert "# TODO: the SQL computes TIME, which a spec cannot declare" in text
    assert [n for n in done.notes if n.startswith("column")] == [
        "column 'note': the SQL gives a bare NULL, whose type cannot be inferred; declare what it will hold",
        "column 'checked_at': the SQL computes TIME, which a spec cannot declare: stored as text",
    ]


def test_sql_select_star_declares_the_table_s_columns(root: Path, shipped: SpecProject) -> None:
    source = next(rt.table for rt in shipped.replicated if rt.ref == "orders.orders")
    _, spec, _ = new(root, sql="SELECT * FROM orders.orders")
    assert columns(spec) == [(c.name, c.type) for c in source.columns]


@pytest.mark.parametrize(
    ("sql", "options", "message"),
    [
        (
            "SELECT [1, 2] AS ids",
            {},
            r"'ids' is ARRAY, which no spec column type holds .* TO_JSON\(<expression>\) AS ids",
        ),
        (
            "SELECT COUNT(*) FROM payments.payments",
            {},
            r"the output column `COUNT\(\*\)` has no name; name it with AS",
        ),
        ("SELECT * FROM payments.payment", {}, r"reads 'payments.payment', .*did you mean payments.payments"),
        (
            "SELECT user_id, user_id AS user_id FROM payments.payments",
            {},
            r"outputs \['user_id'\] more than once",
        ),
        (
            "SELECT @window_start AS t",
            {},
            r"uses @window_start/@window_end, but the table has no window; pass --window",
        ),
        (
            "SELECT user_id FROM payments.payments",
            {"strategy": "append"},
            r"append partitions the table by .* and the query has none",
        ),
        (
            "SELECT NET.HOST(currency) AS h FROM payments.payments",
            {},
            r"--sql: function HOST has no DuckDB equivalent",
        ),
        ("SELECT nope FROM payments.payments", {}, r"--sql: cannot resolve the query's columns"),
        ("DELETE FROM payments.payments WHERE TRUE", {}, r"--sql: sql must be exactly one SELECT query"),
        ("  \n ", {}, r"--sql is empty"),
    ],
)
def test_a_query_that_cannot_be_declared_is_refused_and_nothing_is_written(
    root: Path, sql: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScaffoldError, match=message):
        scaffold.scaffold(root, "analytics/fresh", sql=sql, **options)
    assert not (root / "analytics" / "fresh.yaml").exists()


def test_names_descriptions_and_sql_that_yaml_would_misread_are_written_safely(root: Path) -> None:
    """Column names YAML 1.1 reads as booleans or null, descriptions with `: ` and ` #`, SQL with `#` comments,
    quotes and an indented first line: the file reads back as given, and validates."""
    source = yaml.safe_load((root / "sources" / "orders.yaml").read_text())
    table = source["tables"][0]
    table["columns"] += [
        {"name": "on", "type": "BOOL", "description": "Flag: on or off # not a comment"},
        {"name": "null", "type": "STRING", "description": "'quoted' and \"double\" and a trailing space "},
        {
            "name": "yes",
            "type": "INT64",
            "description": "- a dash, *star, &amp, !bang, {brace}, [bracket], 100%",
        },
    ]
    (root / "sources" / "orders.yaml").write_text(yaml.safe_dump(source, sort_keys=False))
    _, spec, _ = new(root, from_="orders.orders", window="1d", strategy="append")
    assert columns(spec)[-3:] == [("on", "BOOL"), ("null", "STRING"), ("yes", "INT64")]
    assert [c.description for c in spec.columns[-3:]] == [c["description"] for c in table["columns"][-3:]]
    sql = "    SELECT `on`, -- the flag: on\n  'it''s: # not a comment' AS text # a BigQuery comment\nFROM orders.orders\n"
    _, spec, text = new(root, "analytics/other", sql=sql)
    assert spec.sql == clean_sql(sql) and spec.sql.startswith("    SELECT `on`")
    assert "\nsql: |2\n      SELECT `on`, -- the flag: on\n    'it''s" in text  # a block, readable as written
    assert columns(spec) == [("on", "BOOL"), ("text", "STRING")]


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("daily_revenue", r"'daily_revenue' is not <dataset>/<name>"),
        (
            "analytics/daily-revenue",
            r"name 'daily-revenue' is not a plain identifier; allowed: letters, digits and _",
        ),
        ("9lives/daily", r"dataset '9lives' is not a plain identifier; allowed:"),
        (
            "dev__analytics/daily",
            r"dataset 'dev__analytics' contains '__', which Derive reserves for environments",
        ),
        ("payments/payments", r"payments.payments is already defined in table_specs/sources/payments.yaml"),
        ("analytics/top_spenders", r"table_specs/analytics/top_spenders.yaml already exists; .* --force"),
    ],
)
def test_a_bad_or_taken_target_is_refused(root: Path, target: str, message: str) -> None:
    before = sorted(p.read_bytes() for p in root.rglob("*.yaml"))
    with pytest.raises(ScaffoldError, match=message):
        scaffold.scaffold(root, target)
    assert sorted(p.read_bytes() for p in root.rglob("*.yaml")) == before


def test_force_overwrites_the_file_it_names_and_only_that(root: Path) -> None:
    _, spec, text = new(root, "analytics/top_spenders", from_="payments.payments", force=True)
    assert (
        spec.ref == "analytics.top_spenders" and "scaffolded by `derive new` from payments.payments" in text
    )
    with pytest.raises(
        ScaffoldError, match=r"payments.payments is already defined in table_specs/sources/payments"
    ):
        scaffold.scaffold(root, "payments/payments", force=True)
    (root / "core" / "user_copy.yml").write_text("name: user_copy\n")
    with pytest.raises(
        ScaffoldError, match=r"user_copy.yml already defines this file's table; edit it, or delete"
    ):
        scaffold.scaffold(root, "core/user_copy", force=True)
    assert not (root / "core" / "user_copy.yaml").exists()


def test_another_spec_s_errors_do_not_block_a_new_table(root: Path) -> None:
    (root / "analytics" / "broken.yaml").write_text("name: broken\ndataset: analytics\n")
    done = scaffold.scaffold(root, "analytics/fresh", from_="orders.orders", today=TODAY)
    project = load_project(root, strict=False)
    assert [str(e.file) for e in project.errors] == ["table_specs/analytics/broken.yaml"] * len(
        project.errors
    )
    assert (
        project.table("analytics.fresh").path
        == Path("table_specs/analytics/fresh.yaml")
        == Path(root.name, *done.path.relative_to(root).parts)
    )


def test_from_a_table_whose_spec_has_errors_says_so(root: Path) -> None:
    (root / "analytics" / "broken.yaml").write_text("name: broken\ndataset: analytics\n")
    with pytest.raises(
        ScaffoldError, match=r"--from analytics.broken: its spec table_specs/analytics/broken.yaml has errors"
    ):
        scaffold.scaffold(root, "analytics/fresh", from_="analytics.broken")


def test_a_table_scaffolded_from_itself_is_refused(root: Path) -> None:
    before = (root / "analytics" / "top_spenders.yaml").read_text()
    with pytest.raises(
        ScaffoldError, match=r"--from analytics/top_spenders: a table cannot be built from itself"
    ):
        scaffold.scaffold(root, "analytics/top_spenders", from_="analytics/top_spenders", force=True)
    assert (root / "analytics" / "top_spenders.yaml").read_text() == before


def test_a_skeleton_that_would_not_validate_is_refused_by_the_load_with_it(root: Path) -> None:
    """What only the whole project's load finds (here: SQL over the 100,000 characters a spec may hold) refuses
    the file before anything is written."""
    sql = "SELECT 1 AS x -- " + "a" * 100_000
    with pytest.raises(ScaffoldError) as info:
        scaffold.scaffold(root, "analytics/fresh", sql=sql)
    first, second = str(info.value).splitlines()
    assert (
        first == "table_specs/analytics/fresh.yaml would not pass `derive validate`, so nothing was written:"
    )
    assert second.startswith(
        "  table_specs/analytics/fresh.yaml: sql: String should have at most 100000 characters"
    )
    assert not (root / "analytics" / "fresh.yaml").exists()


def test_a_text_that_reads_back_otherwise_than_meant_is_refused() -> None:
    """The last guard before the validation: the text must read back as the skeleton (the SQL byte for byte)."""
    skeleton = Skeleton("analytics", "x", "replace", (NewColumn("on", "BOOL"),), "SELECT TRUE AS `on`\n")
    text = render(skeleton)
    check_reads_back(text, skeleton)
    assert '- name: "on"' in text
    for wrong in ("- name: on", "- name: off"):  # YAML 1.1 reads a plain on/off as true/false
        with pytest.raises(ScaffoldError, match=r"the skeleton of analytics.x does not read back as written"):
            check_reads_back(text.replace('- name: "on"', wrong), skeleton)
    with pytest.raises(ScaffoldError, match=r"does not read back as written"):
        check_reads_back(text.replace("SELECT TRUE", "SELECT  TRUE"), skeleton)


def test_from_and_sql_together_are_refused(root: Path) -> None:
    with pytest.raises(ScaffoldError, match=r"give --from or --sql, not both"):
        scaffold.scaffold(root, "analytics/fresh", from_="payments.payments", sql="SELECT 1 AS x")


def test_the_command_s_choices_are_the_specs(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    new_command.register(parser.add_subparsers())
    actions = {a.dest: a for a in parser._subparsers._group_actions[0].choices["new"]._actions}  # type: ignore[union-attr]
    assert tuple(actions["strategy"].choices) == scaffold.STRATEGIES
    assert tuple(actions["window"].choices) == scaffold.WINDOW_SIZES


# ---------------------------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(root))
    monkeypatch.setenv("DERIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DERIVE_ENV", "dev_tester")
    return root


def test_cli_writes_the_file_and_prints_the_next_steps(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["new", "analytics/daily_revenue", "--from", "payments.payments", "--window", "1d"]) == 0
    out, err = capsys.readouterr()
    path = cli_env / "analytics" / "daily_revenue.yaml"
    assert out.splitlines()[0] == (
        f"wrote {path} (analytics.daily_revenue: merge, 1d windows, 9 columns from payments.payments)"
    )
    for step in (
        "derive validate",
        "derive plan analytics/daily_revenue",
        "derive build analytics/daily_revenue --env dev_tester",
    ):
        assert step in out
    assert err == ""
    assert cli.main(["validate", str(cli_env)]) == 0


def test_cli_prints_what_it_could_not_infer_on_stderr(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(["new", "analytics/notes", "--sql", "SELECT user_id, NULL AS note FROM payments.payments"])
        == 0
    )
    _, err = capsys.readouterr()
    assert err == (
        "derive new: note: column 'note': the SQL gives a bare NULL, whose type cannot be inferred; declare what "
        "it will hold\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["analytics/top_spenders"],
            r"derive new: .*top_spenders.yaml already exists; edit it, or pass --force",
        ),
        (
            ["analytics/x", "--from", "orders.order"],
            r"derive new: --from orders.order: .*did you mean orders.orders",
        ),
        (["ana-lytics/x"], r"derive new: dataset 'ana-lytics' is not a plain identifier"),
        (["a__b/x"], r"derive new: dataset 'a__b' contains '__'"),
        (
            ["analytics/x", "--strategy", "replace", "--window", "1d"],
            r"derive new: --strategy replace rebuilds",
        ),
        (
            ["analytics/x", "--dir", "/nonexistent/specs"],
            r"derive new: specs directory /nonexistent/specs does not exist",
        ),
    ],
)
def test_cli_refusals_are_one_line_with_exit_2(
    cli_env: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    before = sorted(str(p) for p in cli_env.rglob("*"))
    assert cli.main(["new", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and re.match(message, err), err
    assert "Traceback" not in err
    assert sorted(str(p) for p in cli_env.rglob("*")) == before


def test_cli_from_and_sql_are_mutually_exclusive(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["new", "analytics/x", "--from", "orders.orders", "--sql", "SELECT 1 AS x"])
    assert info.value.code == 2
    assert "argument --sql: not allowed with argument --from" in capsys.readouterr().err


DOCS = PROJECT_ROOT / "docs" / "scaffold.md"


@pytest.mark.parametrize(
    "argv",
    [
        ["analytics/top_spenders"],
        ["payments/payments"],
        ["dev__analytics/daily"],
        ["analytics/x", "--from", "orders.order"],
        ["analytics/x", "--strategy", "replace", "--window", "1d"],
    ],
)
def test_the_refusals_docs_scaffold_md_shows_are_what_the_command_prints(
    cli_env: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert cli.main(["new", *argv]) == 2
    line = capsys.readouterr().err.strip().replace(f"{cli_env.parent}/", "")
    assert f"\n{line}\n" in DOCS.read_text()
