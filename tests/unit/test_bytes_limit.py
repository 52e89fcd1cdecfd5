"""A spec's `max_bytes_billed`: the field, its path to the write, the decision, the BigQuery error and the plan."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api_core.exceptions import GoogleAPICallError
from google.cloud import bigquery
from google.cloud.bigquery.job.base import (
    _error_result_to_exception,
)  # how the client turns a failed job into one
from pydantic import ValidationError

from derive_assets.factory.targets import table_target
from derive_assets.plan import PlanEntry, plan, render
from derive_assets.specs.models import TableSpec
from derive_assets.specs.project import load_project
from derive_assets.specs.version import code_version
from resources.bigquery_warehouse import BigQuerySession
from resources.bytes_limit import billing_refusal, exceeds, refuse_estimate
from resources.duckdb_warehouse import DuckDBWarehouse
from resources.schema import ColumnDef
from resources.warehouse import BytesBilledLimitExceeded, TargetTable, WriteRequest

SPEC: dict[str, Any] = {
    "name": "big_scan",
    "dataset": "analytics",
    "owner": "team:analytics",
    "strategy": "replace",
    "columns": [{"name": "x", "type": "INT64"}],
    "sql": "SELECT 1 AS x",
}

LIMIT = 10_000_000_000


def target(limit: int | None = LIMIT) -> TargetTable:
    return TargetTable("analytics", "big_scan", (ColumnDef("x", "INT64"),), max_bytes_billed=limit)


# ----------------------------------------------------------------------------------------------- the spec field


def test_the_spec_takes_a_positive_number_of_bytes() -> None:
    assert TableSpec.model_validate(SPEC).max_bytes_billed is None
    assert TableSpec.model_validate({**SPEC, "max_bytes_billed": LIMIT}).max_bytes_billed == LIMIT
    assert TableSpec.model_validate({**SPEC, "max_bytes_billed": "1000"}).max_bytes_billed == 1000


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0, "greater than 0"),
        (-5, "greater than 0"),
        ("10GB", r"whole number of bytes, e\.g\. 10000000000 for 10 GB"),
        ("1TiB", "units like '10GB' are not read"),
        (True, "not true/false"),
        (1.5, "integer"),
        (2**63, "less than or equal to"),
    ],
)
def test_the_spec_refuses_anything_else(value: Any, says: str) -> None:
    with pytest.raises(ValidationError, match=says) as caught:
        TableSpec.model_validate({**SPEC, "max_bytes_billed": value})
    assert caught.value.errors()[0]["loc"][0] == "max_bytes_billed"


def test_the_limit_is_not_part_of_the_code_version() -> None:
    plain = TableSpec.model_validate(SPEC)
    limited = TableSpec.model_validate({**SPEC, "max_bytes_billed": 1})
    assert code_version(limited) == code_version(plain)
    # the version does see a change of the data, so the equality above is not a hash that ignores everything
    assert code_version(TableSpec.model_validate({**SPEC, "sql": "SELECT 2 AS x"})) != code_version(plain)


def test_the_target_carries_the_limit() -> None:
    assert table_target(TableSpec.model_validate({**SPEC, "max_bytes_billed": 123})).max_bytes_billed == 123
    assert table_target(TableSpec.model_validate(SPEC)).max_bytes_billed is None


# ----------------------------------------------------------------------------------------------- the decision


@pytest.mark.parametrize(
    ("estimate", "limit", "over"),
    [
        (101, 100, True),
        (100, 100, False),  # BigQuery allows a job that bills exactly the limit
        (99, 100, False),
        (0, 1, False),  # the emulator's dry runs always say 0
        (None, 100, False),  # no estimate: the job's own maximum_bytes_billed still applies
        (10**15, None, False),  # no limit
    ],
)
def test_over_the_limit_is_strictly_above_it(estimate: int | None, limit: int | None, over: bool) -> None:
    assert exceeds(estimate, limit) is over
    if over:
        with pytest.raises(BytesBilledLimitExceeded):
            refuse_estimate(target(limit), estimate)
    else:
        refuse_estimate(target(limit), estimate)


def test_the_refusal_names_table_estimate_limit_and_fix() -> None:
    with pytest.raises(BytesBilledLimitExceeded) as caught:
        refuse_estimate(target(), 12_345_678_901)
    error = caught.value
    assert (error.ref, error.estimate, error.limit, error.origin) == (
        "analytics.big_scan",
        12_345_678_901,
        LIMIT,
        "estimate",
    )
    message = str(error)
    assert message.startswith(
        "analytics.big_scan: a dry run estimates that the query processes 12,345,678,901 bytes"
    )
    assert "(11.5 GiB)" in message and f"max_bytes_billed ({LIMIT:,} bytes (9.3 GiB))" in message
    assert "nothing was written and nothing billed" in message
    assert "raise max_bytes_billed in the spec" in message and "a shorter window" in message


# ----------------------------------------------------------------------------------------------- BigQuery's refusal


def _failed_job(reason: str, message: str) -> GoogleAPICallError:
    """The exception `QueryJob.result()` raises for a job BigQuery failed with `reason` (the client's own mapping)."""
    error = {"reason": reason, "message": message}
    return _error_result_to_exception(error, [error])


LIMIT_MESSAGE = "Query exceeded limit for bytes billed: 1000. 10485760 or higher required."


def test_bigquerys_own_refusal_becomes_the_same_error() -> None:
    exc = _failed_job("bytesBilledLimitExceeded", LIMIT_MESSAGE)
    refused = billing_refusal(target(1000), exc.errors, exc.message)
    assert isinstance(refused, BytesBilledLimitExceeded)
    assert (refused.estimate, refused.limit, refused.origin) == (10_485_760, 1000, "bigquery")
    assert "BigQuery refused the query job: it would bill at least 10,485,760 bytes (10.0 MiB)" in str(
        refused
    )
    assert "max_bytes_billed (1,000 bytes)" in str(refused)


def test_other_failures_are_not_a_cost_refusal() -> None:
    exc = _failed_job("invalidQuery", "Syntax error: Unexpected end of script")
    assert billing_refusal(target(1000), exc.errors, exc.message) is None
    limited = _failed_job("bytesBilledLimitExceeded", LIMIT_MESSAGE)
    assert billing_refusal(target(None), limited.errors, limited.message) is None  # no limit of ours
    unnamed = billing_refusal(target(1000), [{"reason": "bytesBilledLimitExceeded"}], "")
    assert unnamed is not None and unnamed.estimate is None
    assert "it would bill more, more than" in str(unnamed)


class _RefusingCalls:
    """Stands in for `resources.bigquery_calls.Calls`: records each query job's config, fails as told."""

    project = "p"

    def __init__(self, failure: GoogleAPICallError) -> None:
        self.failure = failure
        self.configs: list[bigquery.QueryJobConfig] = []

    def rows(self, sql: str, config: bigquery.QueryJobConfig, page_size: int | None = None) -> Any:
        self.configs.append(config)
        raise self.failure


@pytest.mark.parametrize(("limit", "sent"), [(1000, 1000), (None, None)])
def test_the_staging_job_carries_the_limit_and_its_refusal_is_mapped(
    limit: int | None, sent: int | None
) -> None:
    calls = _RefusingCalls(_failed_job("bytesBilledLimitExceeded", LIMIT_MESSAGE))
    session = BigQuerySession(calls, None)  # type: ignore[arg-type]
    params: Mapping[str, Any] = {"window_start": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}
    raised = BytesBilledLimitExceeded if limit is not None else GoogleAPICallError
    with pytest.raises(raised):
        session.stage_query(target(limit), "SELECT 1 AS x", params)
    assert [c.maximum_bytes_billed for c in calls.configs] == [sent]
    assert calls.configs[0].query_parameters[0].name == "window_start"


# ----------------------------------------------------------------------------------------------- the plan


def _entry(estimate: int | None, limit: int | None, note: str = "") -> PlanEntry:
    return PlanEntry(
        "analytics.big_scan",
        "replace",
        None,
        "SELECT 1",
        {},
        "CREATE",
        estimate,
        note,
        max_bytes_billed=limit,
    )


def test_the_plan_shows_the_estimate_against_the_limit() -> None:
    assert (
        _entry(2_000, 1_000).estimate_text()
        == "2,000 bytes (max_bytes_billed 1,000: over the limit, the run will fail)"
    )
    assert _entry(1_000, 1_000).estimate_text() == "1,000 bytes (max_bytes_billed 1,000: within the limit)"
    assert _entry(2_000, None).estimate_text() == "2,000 bytes"
    assert _entry(None, 1_000, "duckdb gives no estimate").estimate_text() == (
        "duckdb gives no estimate (max_bytes_billed 1,000: no estimate to check it against)"
    )
    assert _entry(2_000, 1_000).over_limit and not _entry(1_000, 1_000).over_limit
    assert "-- estimate: 2,000 bytes (max_bytes_billed 1,000: over the limit, the run will fail)" in render(
        [_entry(2_000, 1_000)]
    )


def test_plan_entries_carry_the_specs_limit(tmp_path: Path) -> None:
    specs = tmp_path / "table_specs"
    specs.mkdir()
    (specs / "big_scan.yaml").write_text(yaml.safe_dump({**SPEC, "max_bytes_billed": 5_000}))
    (specs / "small.yaml").write_text(yaml.safe_dump({**SPEC, "name": "small"}))
    now = dt.datetime(2026, 3, 5, tzinfo=dt.UTC)
    entries = {
        e.ref: e for e in plan(load_project(specs), DuckDBWarehouse(path=str(tmp_path / "w.duckdb")), now)
    }
    assert entries["analytics.big_scan"].max_bytes_billed == 5_000
    assert entries["analytics.small"].max_bytes_billed is None
    assert "duckdb gives no estimate (max_bytes_billed 5,000: no estimate to check it against)" in render(
        [entries["analytics.big_scan"]]
    )


def test_duckdb_accepts_the_limit_and_ignores_it(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    request = WriteRequest(target(1), "SELECT 1 AS x UNION ALL SELECT 2", {}, "replace")
    assert warehouse.estimate_bytes(request.sql or "", {}) is None
    assert warehouse.write(request).rows_inserted == 2  # a 1-byte limit, and DuckDB writes anyway
    assert warehouse.row_count("analytics.big_scan") == 2


def test_the_report_lists_the_tables_over_their_limit() -> None:
    from derive_assets.plan_report import FullPlan, render_full

    over, within = _entry(2_000, 1_000), dataclasses.replace(_entry(500, 1_000), ref="analytics.small")
    text = render_full(FullPlan([over, within]))
    assert "== over max_bytes_billed: 1 table(s) whose next run will fail before writing" in text
    assert (
        "  analytics.big_scan: 2,000 bytes (max_bytes_billed 1,000: over the limit, the run will fail)"
        in text
    )
    assert "  analytics.small:" not in text
    assert "over max_bytes_billed" not in render_full(FullPlan([within]))
