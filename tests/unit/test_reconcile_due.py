"""When a key reconciliation is due, how it reads its state back, how its counts join the run's, and its spec.

(Not `test_reconcile.py`: pytest refuses two test modules of one basename, and tests/integration has that one.)
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml
from dagster import MetadataValue
from support import shop_source

from derive_assets import metadata_keys as K
from derive_assets.replication.reconcile import (
    ReconcileState,
    is_due,
    key_columns_only,
    merge_counts,
)
from derive_assets.specs.errors import SpecValidationError
from derive_assets.specs.models import ReconcileSpec, SourceTable
from derive_assets.specs.project import load_project

T0 = dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC)


# ----------------------------------------------------------------------------------------------- due


def test_a_table_never_reconciled_is_due_at_once():
    assert is_due(ReconcileSpec(every_runs=24), ReconcileState(), T0)
    assert is_due(ReconcileSpec(schedule="0 3 * * *"), ReconcileState(), T0)


@pytest.mark.parametrize(
    ("every", "runs_since", "due"),
    [(1, 0, True), (3, 0, False), (3, 1, False), (3, 2, True), (3, 7, True), (24, 22, False), (24, 23, True)],
)
def test_every_runs_is_due_on_the_nth_run_since_the_last_reconciliation(every, runs_since, due):
    state = ReconcileState(reconciled_at=T0, runs_since=runs_since)
    assert is_due(ReconcileSpec(every_runs=every), state, T0 + dt.timedelta(days=30)) is due


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (dt.datetime(2026, 12, 1, 2, 59, 59, tzinfo=dt.UTC), False),  # before the 03:00 tick
        (dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC), True),  # the tick itself
        (dt.datetime(2026, 12, 4, 11, 0, tzinfo=dt.UTC), True),  # several ticks later: once, on the next run
    ],
)
def test_schedule_is_due_on_the_first_run_after_a_tick(now, due):
    state = ReconcileState(reconciled_at=T0, runs_since=5)
    assert is_due(ReconcileSpec(schedule="0 3 * * *"), state, now) is due


def test_schedule_ticks_are_utc_whatever_zone_the_stored_time_has():
    tokyo = dt.timezone(dt.timedelta(hours=9))
    state = ReconcileState(reconciled_at=T0.astimezone(tokyo))
    assert not is_due(
        ReconcileSpec(schedule="0 3 * * *"), state, dt.datetime(2026, 12, 1, 2, 59, tzinfo=dt.UTC)
    )
    assert is_due(ReconcileSpec(schedule="0 3 * * *"), state, dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC))


def test_state_reads_back_what_a_materialization_recorded():
    recorded = {
        K.RECONCILED_AT: MetadataValue.text(T0.isoformat()),
        K.RUNS_SINCE_RECONCILE: MetadataValue.int(4),
    }
    assert ReconcileState.from_metadata(recorded) == ReconcileState(T0, 4)
    assert ReconcileState.from_metadata({K.RECONCILED_AT: T0.isoformat(), K.RUNS_SINCE_RECONCILE: 0}) == (
        ReconcileState(T0, 0)
    )
    assert ReconcileState.from_metadata({}) == ReconcileState(None, 0)


# ----------------------------------------------------------------------------------------------- counts


def test_deleted_keys_join_rows_deleted_and_leave_the_row_count():
    run = {K.ROWS_DELETED: 2, K.ROW_COUNT: 100, K.ROWS_READ: 7}
    merged = merge_counts(run, {K.RECONCILE_ROWS_DELETED: 5, K.RUNS_SINCE_RECONCILE: 0})
    assert (merged[K.ROWS_DELETED], merged[K.ROW_COUNT], merged[K.ROWS_READ]) == (7, 95, 7)
    assert merged[K.RUNS_SINCE_RECONCILE] == 0
    assert merge_counts(run, {K.RUNS_SINCE_RECONCILE: 3}) == {**run, K.RUNS_SINCE_RECONCILE: 3}


def test_the_key_read_declares_only_the_key_columns():
    table = SourceTable.model_validate(
        {
            "name": "lines",
            "primary_key": ["order_id", "line_no"],
            "cursor": "updated_at",
            "soft_delete": {"column": "deleted_at"},
            "event_time": ["updated_at"],
            "reconcile": {"every_runs": 2},
            "columns": [
                {"name": "line_no", "type": "INT64"},
                {"name": "note", "type": "STRING"},
                {"name": "order_id", "type": "STRING"},
                {"name": "updated_at", "type": "TIMESTAMP"},
                {"name": "deleted_at", "type": "TIMESTAMP"},
            ],
        }
    )
    keys = key_columns_only(table)
    assert [(c.name, c.type) for c in keys.columns] == [("line_no", "INT64"), ("order_id", "STRING")]
    assert keys.primary_key == ["order_id", "line_no"]
    assert (keys.soft_delete, keys.event_time) == (None, [])


# ----------------------------------------------------------------------------------------------- spec


def _load(tmp_path: Path, reconcile: object) -> None:
    source = shop_source()
    source["tables"][0]["reconcile"] = reconcile
    path = tmp_path / "table_specs" / "sources" / "shop.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(source, sort_keys=False))
    load_project(tmp_path / "table_specs")


def test_a_spec_may_reconcile_every_n_runs_or_on_a_cron(tmp_path: Path):
    _load(tmp_path / "a", {"every_runs": 24})
    _load(tmp_path / "b", {"schedule": "0 3 * * *", "max_delete_percent": 100})
    assert SourceTable.model_fields["reconcile"].default is None
    assert ReconcileSpec(every_runs=1).max_delete_percent == 50


@pytest.mark.parametrize(
    ("reconcile", "field", "fragment"),
    [
        ({}, "tables[0].reconcile", "set exactly one of `every_runs`"),
        (
            {"every_runs": 2, "schedule": "0 3 * * *"},
            "tables[0].reconcile",
            "got every_runs=2, schedule='0 3 * * *'",
        ),
        ({"schedule": "every night"}, "tables[0].reconcile.schedule", "is not a cron expression"),
        ({"every_runs": 0}, "tables[0].reconcile.every_runs", "greater than or equal to 1"),
        (
            {"every_runs": 2, "max_delete_percent": 0},
            "tables[0].reconcile.max_delete_percent",
            "greater than 0",
        ),
        (
            {"every_runs": 2, "max_delete_percent": 150},
            "tables[0].reconcile.max_delete_percent",
            "less than or",
        ),
        (
            {"every_run": 2},
            "tables[0].reconcile.every_run",
            "unknown field; allowed: ['every_runs', 'schedule', 'max_delete_percent']",
        ),
    ],
)
def test_a_bad_reconcile_names_the_file_and_field(tmp_path: Path, reconcile, field, fragment):
    with pytest.raises(
        SpecValidationError, match=re.escape(f"table_specs/sources/shop.yaml: {field}: ")
    ) as info:
        _load(tmp_path, reconcile)
    assert fragment in str(info.value)
