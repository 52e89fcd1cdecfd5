"""Quality checks beyond column constraints, through real runs on the embedded engines (SQLite sources, DuckDB):
`min`/`max`, `relationships`, `row_count`, custom `sql` checks and freshness, each failing on bad data and
passing on good; `severity: error` stops the tables downstream (the export too), `warn` never does; and bad check
specs are refused when the project loads, with the file, the field and the fix."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    build_sensor_context,
)
from support import QUIET, execute, execute_assets, materializations, run_assets, run_job

from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import DeriveSettings
from derive_assets.specs.errors import SpecValidationError
from derive_assets.specs.project import load_project

TABLE = AssetKey(["analytics", "daily_payments_by_region"])
EXPORT = AssetKey(["online", "region_payments_online"])
PAYMENTS = AssetKey(["payments", "payments"])
AUTH = AssetKey(["accounts", "auth"])
TABLE_FILE = "analytics/daily_payments_by_region.yaml"
PAYMENTS_FILE = "sources/payments.yaml"
ACCOUNTS_FILE = "sources/accounts.yaml"

Spec = dict[str, Any]


def day(days_ago: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).strftime("%Y-%m-%d")


def edit(specs_dir: Path, name: str, change: Callable[[Spec], Any]) -> None:
    path = specs_dir / name
    spec = yaml.safe_load(path.read_text())
    change(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def column(spec: Spec, name: str) -> Spec:
    """A column of a table spec, or of a source spec's first table."""
    columns = spec["columns"] if "columns" in spec else spec["tables"][0]["columns"]
    return next(c for c in columns if c["name"] == name)


def checks_of(spec: Spec) -> Spec:
    """The `checks` block of a table spec, or of a source spec's first table."""
    target = spec if "columns" in spec else spec["tables"][0]
    return target.setdefault("checks", {})


def evaluations(result: Any, key: AssetKey) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == key}


def values(evaluation: Any, name: str) -> Any:
    return evaluation.metadata[name].value


def prepare_table(defs: Definitions, instance: DagsterInstance) -> None:
    """Replicate the sources and build core.user_detail: what daily_payments_by_region reads."""
    for job in ("replicate_accounts", "replicate_profiles", "replicate_payments"):
        run_job(defs, instance, job)
    run_assets(defs, instance, "core/user_detail")


def run_window(
    defs: Definitions, instance: DagsterInstance, partition: str, keys: list[AssetKey] | None = None
):
    return materialize_keys(
        defs, keys or [TABLE], instance=instance, partition_key=partition, run_config=QUIET
    )


def insert_warehouse_rows(settings: DeriveSettings, rows: list[tuple[str, str, int, int, float]]) -> None:
    """Rows of analytics.daily_payments_by_region written behind the table's back (bad data)."""
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.executemany(
            "INSERT INTO analytics.daily_payments_by_region VALUES (CAST(? AS DATE), ?, ?, ?, ?)", rows
        )


# ------------------------------------------------------------------------------ min, max, relationships


def test_min_max_and_relationships_on_a_replicated_table(settings: DeriveSettings, instance) -> None:
    def constrain(spec: Spec) -> None:
        column(spec, "amount")["constraints"] = {"min": 0, "max": 1_000_000}
        column(spec, "user_id")["constraints"] = {
            "relationships": {"table": "accounts.auth", "column": "user_id"}
        }

    edit(settings.specs_dir, PAYMENTS_FILE, constrain)
    defs = build_definitions(settings)

    first = execute(defs, instance, "replicate_payments")  # accounts.auth is not in the warehouse yet
    assert not first.success
    missing = evaluations(first.result, PAYMENTS)["user_id_relationships"]
    assert not missing.passed
    assert "the referenced table accounts.auth does not exist in the warehouse yet" in (
        missing.description or ""
    )

    run_job(defs, instance, "replicate_accounts")
    good = execute(defs, instance, "replicate_payments")
    assert good.success
    checks = evaluations(good.result, PAYMENTS)
    assert {n: c.passed for n, c in checks.items() if n.startswith(("amount", "user_id"))} == {
        "amount_min": True,
        "amount_max": True,
        "user_id_relationships": True,
    }

    db = settings.embedded_sources_dir / "payments.db"
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(db) as con:  # a refund booked as a negative payment, by a user who does not exist
        con.execute(
            "INSERT INTO payments (payment_id, order_id, user_id, amount, currency, method, status, paid_at, "
            "updated_at) VALUES (9000001, 1, 987654, -12.5, 'EUR', 'card', 'succeeded', ?, ?)",
            [now, now],
        )
    bad = execute(defs, instance, "replicate_payments")
    assert not bad.success
    checks = evaluations(bad.result, PAYMENTS)
    assert not checks["amount_min"].passed and checks["amount_max"].passed
    assert checks["amount_min"].description == "1 rows break `min` on amount"
    assert re.fullmatch(r"-12\.50*", values(checks["amount_min"], "examples")[0])
    assert not checks["user_id_relationships"].passed
    assert values(checks["user_id_relationships"], "examples") == ["987654"]
    assert checks["user_id_relationships"].severity == AssetCheckSeverity.ERROR
    assert re.search(
        r"payments\.yaml: payments\.payments: 2 blocking checks failed: user_id_relationships: 1 rows break "
        r"`relationships` on user_id \(e\.g\. 987654\); amount_min: 1 rows break `min` on amount "
        r"\(e\.g\. -12\.50*\)\. The rows were written",
        bad.logs,
    ), bad.logs


# ------------------------------------------------------------------------------ row_count


def test_row_count_bounds_per_window_and_change_from_the_window_before(
    settings: DeriveSettings, instance
) -> None:
    edit(
        settings.specs_dir,
        TABLE_FILE,
        lambda s: checks_of(s).update(row_count={"min": 1, "max_change_percent": 50}),
    )
    defs = build_definitions(settings)
    prepare_table(defs, instance)

    first = run_window(defs, instance, day(3))
    row_count = evaluations(first, TABLE)["row_count"]
    assert row_count.passed, row_count.description  # the window before was never built: nothing to compare
    rows = values(row_count, "row_counts")[f"{day(3)}T00:00:00+00:00"]
    assert rows >= 1

    # day(3) now holds far more rows than the run left there: day(2) has fewer than half as many
    insert_warehouse_rows(settings, [(day(3), f"x{i}", 1, 1, 1.0) for i in range(3 * rows + 3)])
    second = run_window(defs, instance, day(2))
    assert not second.success
    failed = evaluations(second, TABLE)["row_count"]
    assert not failed.passed
    assert re.fullmatch(
        rf"window {day(2)}T00:00:00\+00:00 has \d+ rows, \d+\.\d% fewer than the {4 * rows + 3} before it "
        r"\(max_change_percent 50\)",
        failed.description or "",
    ), failed.description

    empty = run_window(defs, instance, "2026-01-03")  # before the demo's history: no payments at all
    assert not empty.success
    assert evaluations(empty, TABLE)["row_count"].description == (
        "window 2026-01-03T00:00:00+00:00 has 0 rows, fewer than min 1"
    )


def test_row_count_of_a_table_without_windows_is_its_whole_size(settings: DeriveSettings, instance) -> None:
    edit(
        settings.specs_dir,
        ACCOUNTS_FILE,
        lambda s: checks_of(s).update(row_count={"min": 1, "max": 10, "severity": "warn"}),
    )
    defs = build_definitions(settings)
    outcome = execute(defs, instance, "replicate_accounts")
    assert outcome.success, "a warn check blocked the run"
    check = evaluations(outcome.result, AUTH)["row_count"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert re.fullmatch(r"the table has [\d,]+ rows, more than max 10", check.description or "")


def test_row_count_change_of_a_table_without_windows_is_against_its_previous_materialization(
    settings: DeriveSettings, instance
) -> None:
    edit(
        settings.specs_dir, ACCOUNTS_FILE, lambda s: checks_of(s).update(row_count={"max_change_percent": 50})
    )
    defs = build_definitions(settings)
    first = evaluations(execute(defs, instance, "replicate_accounts").result, AUTH)["row_count"]
    assert first.passed  # no materialization before: nothing to compare
    before = values(first, "row_counts")["table"]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(settings.embedded_sources_dir / "accounts.db") as con:  # the users, twice over
        con.execute(
            "INSERT INTO auth (user_id, email, created_at, updated_at, deleted_at) "
            "SELECT user_id + 1000000, 'copy.' || email, created_at, ?, NULL FROM auth WHERE deleted_at IS NULL",
            [now],
        )
    outcome = execute(defs, instance, "replicate_accounts")
    assert not outcome.success
    failed = evaluations(outcome.result, AUTH)["row_count"]
    assert re.fullmatch(
        rf"the table has [\d,]+ rows, \d+\.\d% more than the {before:,} before it \(max_change_percent 50\)",
        failed.description or "",
    ), failed.description


def check_spec(defs: Definitions, key: AssetKey, name: str) -> Any:
    asset = defs.resolve_assets_def(key)
    return next(s for s in asset.check_specs if s.name == name)


def test_a_warn_column_constraint_reports_without_blocking(settings: DeriveSettings, instance) -> None:
    edit(
        settings.specs_dir,
        ACCOUNTS_FILE,
        lambda s: column(s, "user_id").update(constraints={"max": 10, "severity": "warn"}),
    )
    defs = build_definitions(settings)
    assert check_spec(defs, AUTH, "user_id_max").blocking is False
    outcome = execute(defs, instance, "replicate_accounts")
    assert outcome.success, "a warn check blocked the run"
    check = evaluations(outcome.result, AUTH)["user_id_max"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert re.fullmatch(r"\d+ rows break `max` on user_id", check.description or "")


# ------------------------------------------------------------------------------ custom SQL


NO_NEGATIVE_REVENUE = {
    "name": "no_negative_revenue",
    "description": "revenue is never negative",
    "query": (
        "SELECT day, region, revenue FROM analytics.daily_payments_by_region "
        "WHERE revenue < 0 AND day >= DATE(@window_start) AND day < DATE(@window_end)"
    ),
}


def test_a_custom_sql_check_counts_the_rows_its_query_returns_in_the_runs_window(
    settings: DeriveSettings, instance
) -> None:
    edit(settings.specs_dir, TABLE_FILE, lambda s: checks_of(s).update(sql=[NO_NEGATIVE_REVENUE]))
    defs = build_definitions(settings)
    prepare_table(defs, instance)
    assert evaluations(run_window(defs, instance, day(3)), TABLE)["no_negative_revenue"].passed

    insert_warehouse_rows(settings, [(day(3), "zz", 1, 1, -10.0)])
    assert evaluations(run_window(defs, instance, day(2)), TABLE)["no_negative_revenue"].passed, (
        "a row outside the run's window failed its check"
    )
    bad = evaluations(run_window(defs, instance, day(3)), TABLE)["no_negative_revenue"]
    assert not bad.passed
    assert bad.description == "1 rows break revenue is never negative"
    assert values(bad, "examples") == [f"{day(3)}, zz, -10.000"] or values(bad, "examples")[0].startswith(
        f"{day(3)}, zz, -10"
    )


# ------------------------------------------------------------------------------ severity


@pytest.mark.parametrize("severity", ["error", "warn"])
def test_an_error_check_stops_the_export_and_a_warn_check_does_not(
    settings: DeriveSettings, instance, severity: str
) -> None:
    def one_check(spec: Spec) -> None:
        checks_of(spec).update(sql=[{**NO_NEGATIVE_REVENUE, "severity": severity}])
        column(spec, "region")["constraints"] = {
            "not_null": True
        }  # the bad row's region 'zz' breaks no other

    edit(settings.specs_dir, TABLE_FILE, one_check)
    defs = build_definitions(settings)
    prepare_table(defs, instance)
    run_window(defs, instance, day(3))
    insert_warehouse_rows(settings, [(day(3), "zz", 1, 1, -10.0)])

    outcome = execute_assets(defs, instance, [TABLE, EXPORT], partition=day(3))
    check = evaluations(outcome.result, TABLE)["no_negative_revenue"]
    # automation conditions wait for the blocking checks only (`all_deps_blocking_checks_passed`)
    assert check_spec(defs, TABLE, "no_negative_revenue").blocking is (severity == "error")
    assert not check.passed
    exported = EXPORT.to_user_string() in materializations(outcome.result)
    records = [
        r for r in instance.all_logs(outcome.result.run_id) if "no_negative_revenue" in (r.user_message or "")
    ]
    if severity == "error":
        assert not outcome.success
        assert check.severity == AssetCheckSeverity.ERROR
        assert not exported, "the export ran although its table's blocking check failed"
        assert any(
            r.level == 40
            and "daily_payments_by_region.yaml: analytics.daily_payments_by_region: 1 blocking check failed"
            in r.user_message
            for r in records
        )
    else:
        assert outcome.success, outcome.errors
        assert check.severity == AssetCheckSeverity.WARN
        assert exported, "a warn check stopped the export"
        warned = [r for r in records if "1 warn check failed: no_negative_revenue" in r.user_message]
        assert warned and all(r.level == 30 for r in warned), "a warn check's failure is logged as a warning"
        assert not any(r.level >= 40 for r in records)


# ------------------------------------------------------------------------------ freshness


def test_freshness_checks_come_from_the_schedule_and_window_and_a_running_sensor_evaluates_them(
    settings: DeriveSettings, instance
) -> None:
    edit(settings.specs_dir, TABLE_FILE, lambda s: checks_of(s).update(freshness={"grace": "2h"}))

    def scheduled(spec: Spec) -> None:
        spec["schedule"] = "*/15 * * * *"
        checks_of(spec).update(freshness={"grace": "10m", "severity": "error"})

    edit(settings.specs_dir, ACCOUNTS_FILE, scheduled)
    defs = build_definitions(settings)
    table_check = AssetCheckKey(TABLE, "freshness_check")
    auth_check = AssetCheckKey(AUTH, "freshness_check")
    specs = {s.key: s for c in defs.asset_checks or [] for s in c.check_specs}  # type: ignore[union-attr]
    # the table's schedule (00:30) plus its grace; the source's longest cron interval (15 min) plus its grace
    assert specs[table_check].metadata["dagster/freshness_params"].value == {  # type: ignore[union-attr]
        "timezone": "UTC",
        "deadline_cron": "30 2 * * *",
    }
    assert specs[auth_check].metadata["dagster/freshness_params"].value["lower_bound_delta_seconds"] == 1500  # type: ignore[union-attr,index]
    assert not specs[table_check].blocking and not specs[auth_check].blocking

    sensor = defs.resolve_sensor_def("derive_freshness_checks")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    requests = sensor(build_sensor_context(instance=instance, definitions=defs))
    assert isinstance(requests, RunRequest)
    assert set(requests.asset_check_keys or []) == {table_check, auth_check}

    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={table_check, auth_check}
    )

    def evaluate() -> dict[AssetCheckKey, Any]:
        result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET)
        return {e.asset_check_key: e for e in result.get_asset_check_evaluations()}

    stale = evaluate()
    assert not stale[table_check].passed and not stale[auth_check].passed
    assert stale[auth_check].severity == AssetCheckSeverity.ERROR
    assert stale[table_check].severity == AssetCheckSeverity.WARN

    prepare_table(defs, instance)
    run_window(defs, instance, day(5))  # an old window: the latest complete one is still missing
    assert not evaluate()[table_check].passed
    for days_ago in (1, 2):  # the window due at the last deadline (day(2) before 02:30 UTC, else day(1))
        run_window(defs, instance, day(days_ago))
    fresh = evaluate()
    assert fresh[table_check].passed, fresh[table_check].description
    assert fresh[auth_check].passed, fresh[auth_check].description


# ------------------------------------------------------------------------------ bad check specs


def set_constraints(name: str, **constraints: Any) -> Callable[[Spec], None]:
    return lambda spec: column(spec, name).update(constraints=constraints)


def set_checks(**checks: Any) -> Callable[[Spec], None]:
    return lambda spec: checks_of(spec).update(checks)


BAD_SPECS = [
    pytest.param(
        TABLE_FILE,
        set_constraints("region", min=1),
        r"columns\[1\]\.constraints\.min: 1: column 'region' has type STRING, which has no range; min/max "
        r"apply to INT64, FLOAT64, NUMERIC, DATE, DATETIME and TIMESTAMP columns",
        id="min-on-a-string",
    ),
    pytest.param(
        TABLE_FILE,
        set_constraints("payments", min="2026-01-01"),
        r"columns\[2\]\.constraints\.min: 2026-01-01 does not fit column 'payments' of type INT64; give a number",
        id="date-bound-on-an-int",
    ),
    pytest.param(
        TABLE_FILE,
        set_constraints("day", max=5),
        r"columns\[0\]\.constraints\.max: 5 does not fit column 'day' of type DATE; give a date \(YYYY-MM-DD\)",
        id="number-bound-on-a-date",
    ),
    pytest.param(
        TABLE_FILE,
        set_constraints("payments", min=5, max=1),
        r"columns\[2\]\.constraints\.max: 1 is below min 5; the range is min <= value <= max",
        id="max-below-min",
    ),
    pytest.param(
        TABLE_FILE,
        set_constraints("payments", min=True),
        r"columns\[2\]\.constraints\.min: a bound is a number, or a date or timestamp for a temporal column, "
        r"not true/false",
        id="boolean-bound",
    ),
    pytest.param(
        TABLE_FILE,
        set_constraints("region", relationships={"table": "geo.regions", "column": "region"}),
        r"columns\[1\]\.constraints\.relationships\.table: no table spec or source defines it; known tables: "
        r"\[.*'accounts\.auth'.*\] \(got 'geo\.regions'\)",
        id="relationship-to-an-unknown-table",
    ),
    pytest.param(
        PAYMENTS_FILE,
        set_constraints("user_id", relationships={"table": "accounts.auth", "column": "id"}),
        r"tables\[0\]\.columns\[2\]\.constraints\.relationships\.column: not a column of accounts\.auth; "
        r"allowed: \['user_id', .*\] \(got 'id'\)",
        id="relationship-to-an-unknown-column",
    ),
    pytest.param(
        TABLE_FILE,
        set_constraints("region", relationships={"table": "accounts.auth", "column": "user_id"}),
        r"columns\[1\]\.constraints\.relationships\.column: accounts\.auth\.user_id has type INT64 but column "
        r"'region' is STRING; a relationship compares values",
        id="relationship-of-another-type",
    ),
    pytest.param(
        TABLE_FILE,
        set_constraints("region", severity="fatal"),
        r"columns\[1\]\.constraints\.severity: unknown value; allowed: \['warn', 'error'\] \(got 'fatal'\)",
        id="unknown-severity",
    ),
    pytest.param(
        ACCOUNTS_FILE,
        set_checks(freshness={"grace": "1h"}),
        r"tables\[0\]\.checks\.freshness: the table has no `schedule` \(nor, for a table spec, a `window`\) "
        r"saying when it is due; add one, or remove checks\.freshness",
        id="freshness-without-a-schedule",
    ),
    pytest.param(
        TABLE_FILE,
        set_checks(freshness={"grace": "1d"}),
        r"checks\.freshness\.grace: 1d: the grace plus the schedule's 30 minutes after a window ends \(1470 "
        r"minutes\) is not shorter than one 1d window",
        id="grace-longer-than-the-window",
    ),
    pytest.param(
        TABLE_FILE,
        set_checks(freshness={"grace": "2 hours"}),
        r"checks\.freshness\.grace: '2 hours' is not a duration; write a number and a unit \(d, h, m, s\)",
        id="grace-not-a-duration",
    ),
    pytest.param(
        TABLE_FILE,
        set_checks(row_count={"severity": "warn"}),
        r"checks\.row_count: give at least one of min, max or max_change_percent",
        id="row-count-without-bounds",
    ),
    pytest.param(
        TABLE_FILE,
        set_checks(sql=[{"name": "orphans", "query": "SELECT * FROM geo.regions"}]),
        r"checks\.sql\[0\]\.query: reads table 'geo\.regions', which no table spec or source defines",
        id="sql-check-reads-an-unknown-table",
    ),
    pytest.param(
        ACCOUNTS_FILE,
        set_checks(
            sql=[{"name": "recent", "query": "SELECT * FROM accounts.auth WHERE created_at >= @window_start"}]
        ),
        r"tables\[0\]\.checks\.sql\[0\]\.query: uses @window_start/@window_end but the table has no `window`",
        id="sql-check-with-window-parameters-without-a-window",
    ),
    pytest.param(
        TABLE_FILE,
        set_checks(
            sql=[{"name": "x", "query": "SELECT * FROM analytics.daily_payments_by_region WHERE @since"}]
        ),
        r"checks\.sql\[0\]\.query: unknown query parameters \['since'\]; allowed: \['@window_start', '@window_end'\]",
        id="sql-check-with-an-unknown-parameter",
    ),
    pytest.param(
        TABLE_FILE,
        set_checks(sql=[{"name": "region_min", "query": "SELECT 1"}]),
        r"checks\.sql\[0\]\.name: 'region_min' could be a column check's name \(<column>_<rule>\); choose another",
        id="sql-check-named-like-a-column-check",
    ),
    pytest.param(
        TABLE_FILE,
        set_checks(sql=[{"name": "a", "query": "SELECT 1"}, {"name": "a", "query": "SELECT 2"}]),
        r"checks\.sql: check names \['a'\] are used twice; give each check its own name",
        id="sql-check-names-twice",
    ),
]


@pytest.mark.parametrize(("file", "change", "message"), BAD_SPECS)
def test_bad_check_specs_are_refused_when_the_project_loads(
    specs_dir: Path, file: str, change: Callable[[Spec], None], message: str
) -> None:
    edit(specs_dir, file, change)
    with pytest.raises(SpecValidationError, match=re.escape(file) + ": " + message):
        load_project(specs_dir)
