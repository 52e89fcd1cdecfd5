"""Rules added for changing tables safely: window dates and `end`, `delete_missing`, quoted window parameters.

Each case loads a small specs directory through `load_project` (what `derive validate` does) and pins the one
error it must give; `partitions_for` is checked against Dagster's own partition keys.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import shop_source

from derive_assets.factory.windows import partitions_for
from derive_assets.specs.errors import SpecValidationError
from derive_assets.specs.models import TableSpec, Window
from derive_assets.specs.project import load_project
from derive_assets.specs.sql_analysis import SqlProblem, analyse

TABLE_FILE = "table_specs/analytics/daily_orders.yaml"
SOURCE: dict[str, Any] = shop_source()
TABLE_YAML = """\
name: daily_orders
dataset: analytics
owner: team:analytics
strategy: {type: merge, unique_key: [day, status]}
window: {size: 1d, start: 2026-01-01}
partition: {key: day}
columns:
  - {name: day, type: DATE}
  - {name: status, type: STRING}
  - {name: orders, type: INT64}
sql: |
  SELECT DATE(created_at) AS day, status, COUNT(*) AS orders
  FROM shop.orders
  WHERE created_at >= @window_start AND created_at < @window_end
  GROUP BY day, status
"""


def specs(tmp_path: Path, old: str = "", new: str = "") -> Path:
    """The valid specs, with `old` replaced by `new` in the table's YAML text (as a user would edit it)."""
    root = tmp_path / "table_specs"
    (root / "sources").mkdir(parents=True)
    (root / "analytics").mkdir()
    (root / "sources" / "shop.yaml").write_text(yaml.safe_dump(SOURCE, sort_keys=False))
    assert old in TABLE_YAML
    (root / "analytics" / "daily_orders.yaml").write_text(TABLE_YAML.replace(old, new))
    return root


def only_error(root: Path, field: str, match: str) -> str:
    with pytest.raises(SpecValidationError, match=match) as info:
        load_project(root)
    (error,) = info.value.errors
    assert (str(error.file), error.field) == (TABLE_FILE, field), str(error)
    return str(error)


def test_the_base_specs_are_valid(tmp_path: Path) -> None:
    load_project(specs(tmp_path))


# ---------------------------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("2026-13-01", "month value is outside expected range of 1-12"),
        ("2026-02-30", "day value is outside expected range"),
        ("'2026-02-30'", "day value is outside expected range"),
        ("2026-1-1", "input is too short"),
        ("soon", "input is too short"),
    ],
)
def test_an_impossible_start_names_file_field_value_and_format(
    tmp_path: Path, written: str, reason: str
) -> None:
    message = only_error(
        specs(tmp_path, "start: 2026-01-01", f"start: {written}"), "window.start", "YYYY-MM-DD"
    )
    shown = written.strip("'")
    assert message == (
        f"{TABLE_FILE}: window.start: Input should be a valid date or datetime, {reason}; write a real date as "
        f"YYYY-MM-DD (a day that exists), e.g. 2026-01-01 (got '{shown}')"
    )


def test_a_number_is_not_read_as_seconds_since_1970(tmp_path: Path) -> None:
    only_error(
        specs(tmp_path, "start: 2026-01-01", "start: 0"),
        "window.start",
        r"window\.start: a number is not a date; write a real date as YYYY-MM-DD .*\(got 0\)",
    )


@pytest.mark.parametrize("written", ["9999-12-31", "1700-01-01"])
def test_dates_outside_dagsters_range_are_refused(tmp_path: Path, written: str) -> None:
    only_error(
        specs(tmp_path, "start: 2026-01-01", f"start: {written}"),
        "window.start",
        rf"a date between 1800-01-01 and 2999-12-31 is expected; .*\(got '{written}'\)",
    )


def test_a_python_date_is_accepted() -> None:
    assert Window.model_validate({"size": "1d", "start": dt.date(2026, 1, 1)}).start == dt.date(2026, 1, 1)


# ---------------------------------------------------------------------------------------------- window.end


def test_end_must_be_a_real_date(tmp_path: Path) -> None:
    only_error(
        specs(tmp_path, "start: 2026-01-01", "start: 2026-01-01, end: 2026-02-30"),
        "window.end",
        r"window\.end: Input should be a valid date .*YYYY-MM-DD.*\(got '2026-02-30'\)",
    )


@pytest.mark.parametrize("end", ["2026-01-01", "2025-06-01"])
def test_end_must_be_after_start(tmp_path: Path, end: str) -> None:
    only_error(
        specs(tmp_path, "start: 2026-01-01", f"start: 2026-01-01, end: {end}"),
        "window.end",
        rf"window\.end: {end} is not after start 2026-01-01; `end` is exclusive \(the day after the last window\)",
    )


@pytest.mark.parametrize(
    ("size", "start", "end"), [("1mo", "2026-01-15", "2026-02-20"), ("1w", "2026-01-01", "2026-01-10")]
)
def test_end_must_leave_room_for_a_whole_window(tmp_path: Path, size: str, start: str, end: str) -> None:
    only_error(
        specs(tmp_path, "size: 1d, start: 2026-01-01", f"size: {size}, start: {start}, end: {end}"),
        "window.end",
        rf"no whole {size} window fits between start {start} and end {end}",
    )


@pytest.mark.parametrize(
    ("size", "start", "end", "first", "last", "count"),
    [
        ("1d", "2026-01-01", "2026-01-05", "2026-01-01", "2026-01-04", 4),
        ("1h", "2026-01-01", "2026-01-02", "2026-01-01-00:00", "2026-01-01-23:00", 24),
        ("1w", "2026-01-01", "2026-02-01", "2026-01-04", "2026-01-25", 4),
        ("1mo", "2026-01-01", "2026-03-15", "2026-01-01", "2026-02-01", 2),
        ("1d", "1992-01-01", "1993-01-01", "1992-01-01", "1992-12-31", 366),
    ],
)
def test_partitions_stop_before_end(
    size: str, start: str, end: str, first: str, last: str, count: int
) -> None:
    partitions = partitions_for(Window.model_validate({"size": size, "start": start, "end": end}))
    assert partitions is not None
    keys = partitions.get_partition_keys()
    assert (keys[0], keys[-1], len(keys)) == (first, last, count)
    assert partitions.time_window_for_partition_key(keys[-1]).end.date() <= dt.date.fromisoformat(end)


def test_without_end_partitions_run_up_to_now() -> None:
    partitions = partitions_for(Window.model_validate({"size": "1d", "start": "2026-01-01"}))
    assert partitions is not None
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    assert partitions.get_last_partition_key() == yesterday


# ---------------------------------------------------------------------------------------------- delete_missing


def test_delete_missing_is_allowed_with_the_partition_key_in_unique_key(tmp_path: Path) -> None:
    project = load_project(
        specs(tmp_path, "unique_key: [day, status]}", "unique_key: [day, status], delete_missing: true}")
    )
    strategy = project.tables[0].spec.strategy
    assert getattr(strategy, "delete_missing", None) is True


def test_delete_missing_needs_the_partition_key_in_unique_key(tmp_path: Path) -> None:
    message = only_error(
        specs(tmp_path, "unique_key: [day, status]}", "unique_key: [status], delete_missing: true}"),
        "strategy.delete_missing",
        "must be in strategy.unique_key",
    )
    assert message == (
        f"{TABLE_FILE}: strategy.delete_missing: the partition key 'day' must be in strategy.unique_key "
        "['status'], so that each key belongs to one window and only the run's window loses its vanished keys; "
        "add 'day' to unique_key, or remove delete_missing"
    )


def test_delete_missing_needs_a_window_and_a_partition() -> None:
    data = yaml.safe_load(TABLE_YAML)
    data["strategy"]["delete_missing"] = True
    for drop in ("window", "partition"):
        spec = copy.deepcopy(data)
        del spec["partition"]
        if drop == "window":
            del spec["window"]
        with pytest.raises(
            ValueError, match=r"strategy\.delete_missing: .* needs a `window` and a `partition`"
        ):
            TableSpec.model_validate(spec)


def test_delete_missing_defaults_to_false(tmp_path: Path) -> None:
    strategy = load_project(specs(tmp_path)).tables[0].spec.strategy
    assert getattr(strategy, "delete_missing", None) is False


# ---------------------------------------------------------------------------------------------- quoted parameters


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "< @window_end",
            "< '@window_end'",
            "'@window_end' is a string, not the parameter (parameters are never replaced inside quotes); "
            "write @window_end without quotes",
        ),
        (
            ">= @window_start",
            '>= "@window_start"',
            "'@window_start' is a string, not the parameter (parameters are never replaced inside quotes); "
            "write @window_start without quotes",
        ),
        (
            ">= @window_start",
            ">= TIMESTAMP '@window_start'",
            "TIMESTAMP '@window_start' is a string, not the parameter (parameters are never replaced inside "
            "quotes); write @window_start without quotes (it is already a TIMESTAMP)",
        ),
        (
            "created_at >= @window_start",
            "DATE(created_at) >= DATE '@window_start'",
            "DATE '@window_start' is a string, not the parameter (parameters are never replaced inside "
            "quotes); write @window_start without quotes, as DATE(@window_start)",
        ),
    ],
)
def test_a_quoted_window_parameter_is_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = only_error(specs(tmp_path, old, new), "sql", "is a string, not the parameter")
    assert text == f"{TABLE_FILE}: sql: {message}"


def test_each_quoted_parameter_is_reported_once() -> None:
    with pytest.raises(SqlProblem) as info:
        analyse(
            "SELECT 1 AS x FROM a.b WHERE t >= '@window_start' AND t < '@window_end' OR t = '@window_end'"
        )
    assert str(info.value).splitlines() == [
        "'@window_start' is a string, not the parameter (parameters are never replaced inside quotes); "
        "write @window_start without quotes",
        "'@window_end' is a string, not the parameter (parameters are never replaced inside quotes); "
        "write @window_end without quotes",
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'ops@example.com' AS x",
        "SELECT '@window_started' AS x",
        "SELECT 1 AS x FROM a.b WHERE t < @window_end",
        "SELECT 1 AS x -- not '@window_end'\n",
    ],
)
def test_strings_that_only_look_alike_pass(sql: str) -> None:
    analyse(sql)
