"""The spec models: what a YAML file under ``table_specs/`` may say.

Every model forbids unknown keys, closed choices are ``Literal``s, and the strategy is a discriminated union, so a
typo or a missing field fails when the file loads, not halfway through a run. Field descriptions are user
documentation: ``docs/spec-reference.md`` is generated from them (``derive docs``).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Annotated, Any, Literal

from croniter import CroniterBadDateError, croniter
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from derive_assets.specs.errors import show
from derive_assets.specs.kubernetes import KubernetesSettings
from derive_assets.specs.kubernetes import merge as merge_kubernetes
from derive_assets.specs.strict import StrictModel
from resources.schema import ColumnType

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
DEFAULT_TIME_OVERLAP_SECONDS = 600
TEN_YEARS_SECONDS = 315_360_000
"""An upper bound for second counts in specs: a larger value is a typo, not a plan."""
"""How far back a time cursor re-reads by default: transactions rarely commit later than this after their row's
timestamp."""
MAX_CLUSTER_KEYS = 4  # BigQuery's limit; DuckDB has none, but a spec must run on both.
MAX_SQL_CHARS = 100_000  # a long query is a few thousand; sqlglot takes ~8 s to parse a megabyte


TIME_TYPES = ("DATE", "DATETIME", "TIMESTAMP")
NOT_CLUSTERABLE = ("FLOAT64", "JSON", "BYTES")
"""BigQuery clusters by top-level STRING, INT64, NUMERIC, BOOL, DATE, DATETIME, TIMESTAMP (and GEOGRAPHY)."""


Identifier = Annotated[str, Field(pattern=IDENTIFIER, max_length=128)]
ENVIRONMENT_SEPARATOR = "__"
"""Reserved in dataset names: an environment's copy of dataset `analytics` is `<env>__analytics`
(derive_assets/environments.py)."""


def _check_dataset(value: str) -> str:
    if ENVIRONMENT_SEPARATOR in value:
        raise ValueError(
            f"{value!r} contains '{ENVIRONMENT_SEPARATOR}', which Derive reserves for environments' datasets "
            f"(`<env>__<dataset>`); use a name without a double underscore, e.g. {value.replace('__', '_')!r}"
        )
    return value


Dataset = Annotated[Identifier, AfterValidator(_check_dataset)]
"""A warehouse dataset a spec names: a plain identifier without `__`."""

_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}"  # the check Dagster applies to asset owners


def _check_owner(value: str) -> str:
    if re.fullmatch(_EMAIL, value) or (value.startswith("team:") and len(value) > len("team:")):
        return value
    raise ValueError(
        "not an owner Dagster accepts; allowed: an e-mail address (e.g. 'analytics@example.com') "
        "or a team name prefixed with 'team:' (e.g. 'team:analytics')"
    )


Owner = Annotated[str, AfterValidator(_check_owner)]
"""An asset owner as Dagster accepts it: an e-mail address or `team:<name>`."""


CheckSeverity = Literal["warn", "error"]
"""`error`: a blocking asset check (a failure fails the run's step and tables downstream, exports included, wait);
`warn`: a check reported with Dagster's WARN severity that never blocks."""

TableRef = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")]
"""`dataset.name` of a table (a core/derived table or a replicated source table)."""


def _check_bound(value: Any) -> Any:
    """A `min`/`max` bound: a number, or a date (`2026-01-01`) or timestamp (`2026-01-01T06:00:00Z`) for a temporal
    column. YAML gives dates and timestamps as such; JSON (and quoted YAML) as ISO text, read here."""
    if isinstance(value, bool):
        raise ValueError("a bound is a number, or a date or timestamp for a temporal column, not true/false")
    if isinstance(value, str):
        for parse in (dt.date.fromisoformat, dt.datetime.fromisoformat):
            try:
                return parse(value)
            except ValueError:
                continue
        raise ValueError(
            "not a number, date (YYYY-MM-DD) or timestamp (YYYY-MM-DDTHH:MM:SS, optionally with a UTC offset)"
        )
    return value


MAX_BYTES_BILLED = 2**63 - 1
"""BigQuery keeps `maximumBytesBilled` as a signed 64-bit integer."""


def _check_byte_count(value: Any) -> Any:
    """`max_bytes_billed`: a whole number of bytes; a size with a unit (`10GB`) or true/false is refused by name."""
    if isinstance(value, bool):
        raise ValueError("a byte count is a whole number of bytes, e.g. 10000000000 (10 GB), not true/false")
    if isinstance(value, str) and not value.strip().isdigit():
        raise ValueError(
            "write the limit as a whole number of bytes, e.g. 10000000000 for 10 GB or 1099511627776 for 1 TiB "
            "(units like '10GB' are not read)"
        )
    return value


# the constraints before the validator: after it, pydantic writes them into the JSON Schema as `gt`/`le`
ByteCount = Annotated[int, Field(gt=0, le=MAX_BYTES_BILLED), BeforeValidator(_check_byte_count)]
"""A positive whole number of bytes (`max_bytes_billed`)."""


Bound = Annotated[int | float | dt.datetime | dt.date, BeforeValidator(_check_bound)]
"""A `min`/`max` bound: a number (INT64, FLOAT64, NUMERIC columns), a date (DATE, DATETIME, TIMESTAMP columns) or a
timestamp (DATETIME, TIMESTAMP columns)."""


class Relationship(StrictModel):
    table: TableRef
    """The referenced table, `dataset.name`: a table spec or a replicated source table of this project."""
    column: Identifier
    """Its key column: every non-NULL value of this column must be one of its values."""


class Constraints(StrictModel):
    not_null: bool = False
    """The column never holds NULL. Enforced by the table's DDL (`NOT NULL`) and by an asset check."""
    unique: bool = False
    """No two rows share a value. Checked after every run by an asset check."""
    accepted_values: list[str | int | bool] | None = None
    """The only values the column may hold (NULL aside). Checked after every run by an asset check."""
    min: Bound | None = None
    """The smallest value allowed (inclusive; NULL aside): a number, or a date/timestamp for DATE, DATETIME and
    TIMESTAMP columns. Checked after every run by the asset check `<column>_min` over the run's window."""
    max: Bound | None = None
    """The largest value allowed (inclusive; NULL aside), like `min`. Checked by the asset check `<column>_max`."""
    relationships: Relationship | None = None
    """Every non-NULL value must exist in another table's key column, e.g. `{table: accounts.auth, column:
    user_id}`. Checked by the asset check `<column>_relationships`, an anti-join counted in the warehouse."""
    severity: CheckSeverity = "error"
    """Severity of this column's checks: `error` (default) blocks tables downstream when a check fails, `warn` only
    reports it."""


class Column(StrictModel):
    name: Identifier
    """Column name, as the SQL outputs it (or as the source table has it)."""
    type: ColumnType
    """BigQuery type name: STRING, INT64, FLOAT64, NUMERIC, BOOL, DATE, DATETIME, TIMESTAMP, JSON or BYTES."""
    description: str = ""
    """What the column means; shown in the Dagster UI."""
    constraints: Constraints = Constraints()
    """Data-quality rules, each becoming an asset check."""
    path: Annotated[str, Field(pattern=r"^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*$")] | None = (
        None
    )
    """MongoDB sources only: the dot path of the value in each document (e.g. `settings.timezone`); default:
    the column name. Arrays and sub-documents are read whole into JSON columns."""

    @field_validator("type", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _bounds_fit_the_type(self) -> Column:
        """`constraints.min`/`max` must be comparable with the column's type, and min <= max."""
        problems = [p for name in ("min", "max") if (p := _bound_problem(self, name))]
        low, high = self.constraints.min, self.constraints.max
        if not problems and low is not None and high is not None and _bound_key(low) > _bound_key(high):
            problems.append(f"constraints.max: {high} is below min {low}; the range is min <= value <= max")
        if problems:
            raise ValueError("\n".join(problems))
        return self


NUMERIC_TYPES = ("INT64", "FLOAT64", "NUMERIC")


def _bound_problem(column: Column, name: str) -> str | None:
    """Why `constraints.<name>` does not fit `column`'s type, or None."""
    value = getattr(column.constraints, name)
    if value is None:
        return None
    where = f"constraints.{name}: {value!s}"
    if column.type in NUMERIC_TYPES:
        ok = isinstance(value, int | float)
        allowed = "a number"
    elif column.type == "DATE":
        ok = isinstance(value, dt.date) and not isinstance(value, dt.datetime)
        allowed = "a date (YYYY-MM-DD)"
    elif column.type in ("DATETIME", "TIMESTAMP"):
        ok = isinstance(value, dt.date)
        allowed = "a date (YYYY-MM-DD) or a timestamp (YYYY-MM-DDTHH:MM:SS, UTC unless it has an offset)"
    else:
        return (
            f"{where}: column '{column.name}' has type {column.type}, which has no range; min/max apply to "
            f"{', '.join(NUMERIC_TYPES)}, DATE, DATETIME and TIMESTAMP columns (use accepted_values instead)"
        )
    if ok:
        return None
    return f"{where} does not fit column '{column.name}' of type {column.type}; give {allowed}"


def _bound_key(value: int | float | dt.date) -> Any:
    """A bound in an order where dates and timestamps compare (a date is its UTC midnight)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return value


# ---------------------------------------------------------------------------------------------- strategies


class MergeStrategy(StrictModel):
    type: Literal["merge"]
    """`merge`: upsert the run's rows by `unique_key`."""
    unique_key: list[Identifier] = Field(min_length=1)
    """Columns that identify a row. Rows of the run whose key exists are replaced, the others are inserted."""
    delete_missing: bool = False
    """Also delete the table's rows inside the run's window whose key the run no longer outputs (a group that
    disappeared from a per-window aggregate). Needs a `window` and a `partition` whose key is in `unique_key`, so
    that every key belongs to one window and rows outside the window are never touched. Without it, a key missing
    from a re-run stays in the table with its old values; `append` replaces the window's rows wholesale instead."""


class AppendStrategy(StrictModel):
    type: Literal["append"]
    """`append`: the run's rows replace the rows of its window (by `partition.key`)."""


class ReplaceStrategy(StrictModel):
    type: Literal["replace"]
    """`replace`: the table becomes the query's output (a table with a `window` cannot be `replace`)."""


Strategy = Annotated[MergeStrategy | AppendStrategy | ReplaceStrategy, Field(discriminator="type")]


# ---------------------------------------------------------------------------------------------- time

WindowSize = Literal["1h", "1d", "1w", "1mo"]

EARLIEST_DATE = dt.date(1800, 1, 1)
LATEST_DATE = dt.date(2999, 12, 31)
"""Window dates outside these are typos (a year 9999 window overflows Dagster's partition arithmetic)."""
DATE_FORMAT_HINT = "write a real date as YYYY-MM-DD (a day that exists), e.g. 2026-01-01"


def _spec_date(value: Any, handler: ValidatorFunctionWrapHandler) -> dt.date:
    """A calendar date, written `YYYY-MM-DD` (YAML gives text or a date); every refusal says the format.

    pydantic alone reads a number as seconds since 1970 (`start: 0` was 1970-01-01) and reports an impossible
    date without the format; its reason is kept, the format added.
    """
    if isinstance(value, bool | int | float):
        raise ValueError(f"a number is not a date; {DATE_FORMAT_HINT}")
    try:
        date = handler(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"] if exc.errors() else "not a date"
        raise ValueError(f"{reason}; {DATE_FORMAT_HINT}") from None
    if not EARLIEST_DATE <= date <= LATEST_DATE:
        raise ValueError(f"a date between {EARLIEST_DATE} and {LATEST_DATE} is expected; {DATE_FORMAT_HINT}")
    return date


SpecDate = Annotated[dt.date, WrapValidator(_spec_date)]
"""A date in a spec: `YYYY-MM-DD`, a day that exists, between 1800-01-01 and 2999-12-31."""


class Window(StrictModel):
    size: WindowSize
    """The time range one run processes: 1h, 1d, 1w or 1mo. Each window is one Dagster partition."""
    start: SpecDate
    """The first window starts here (YYYY-MM-DD, UTC). Windows before it cannot be materialized."""
    end: SpecDate | None = None
    """Optional: no window reaches past this day (YYYY-MM-DD, UTC midnight, exclusive; after `start`). Without
    it, windows run up to now: a daily table whose data starts in 1992 carries 12,000+ partitions, so a table that
    only needs a bounded range can say so. Windows that would end after it are not created."""

    @model_validator(mode="after")
    def _end_after_start(self) -> Window:
        if self.end is not None and self.end <= self.start:
            raise ValueError(
                f"end: {self.end} is not after start {self.start}; `end` is exclusive (the day after the last "
                "window), so it must be later than `start`: move it later, or remove it to run up to now"
            )
        if self.end is not None and _first_window_end(self.size, self.start) > self.end:
            raise ValueError(
                f"end: no whole {self.size} window fits between start {self.start} and end {self.end} (weekly "
                "windows start on Sundays, monthly ones on the 1st); move `end` later"
            )
        return self


def _first_window_end(size: WindowSize, start: dt.date) -> dt.date:
    """The day the first window ends: Dagster aligns weekly windows to Sundays and monthly ones to the 1st."""
    if size in ("1h", "1d"):
        return start + dt.timedelta(days=1)
    if size == "1w":
        sunday = start + dt.timedelta(days=(6 - start.weekday()) % 7)
        return sunday + dt.timedelta(days=7)
    first = start if start.day == 1 else (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


Granularity = Literal["hour", "day", "month", "year"]


class Partition(StrictModel):
    key: Identifier
    """A declared DATE, DATETIME or TIMESTAMP column. Each run replaces or merges only its window's slice of it."""
    granularity: Granularity = "day"
    """BigQuery time-partitioning unit: hour, day, month or year."""
    expiration_days: int | None = Field(default=None, gt=0, le=36_500)
    """BigQuery only: partitions older than this many days (at most 36,500, a century) are deleted by BigQuery."""
    require_filter: bool = False
    """BigQuery only: queries of this table must filter on the partition key (guards against full scans)."""


# ---------------------------------------------------------------------------------------------- table checks

_DURATION = re.compile(r"(\d+)([dhms])")
_DURATION_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def _check_duration(value: str) -> str:
    if not re.fullmatch(r"(\d+[dhms])+", value) or duration_seconds(value) <= 0:
        raise ValueError(
            f"{show(value)} is not a duration; write a number and a unit (d, h, m, s), e.g. '2h', '30m' or '1d12h'"
        )
    if duration_seconds(value) > TEN_YEARS_SECONDS:
        raise ValueError(f"{show(value)} is longer than ten years; give a grace in hours or days, e.g. '2h'")
    return value


def duration_seconds(value: str) -> int:
    """`2h` -> 7200, `1d12h` -> 129600 (a `Duration` of a spec)."""
    return sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION.findall(value))


Duration = Annotated[str, AfterValidator(_check_duration)]
"""A duration: numbers with units d, h, m, s, e.g. `2h`, `30m`, `1d12h`."""


class RowCountCheck(StrictModel):
    min: int | None = Field(default=None, ge=0)
    """At least this many rows: per window for a windowed table (`1`: no window may be empty), else in the table."""
    max: int | None = Field(default=None, ge=0)
    """At most this many rows, per window (windowed tables) or in the table."""
    max_change_percent: float | None = Field(default=None, gt=0)
    """A window may hold at most this many percent more or fewer rows than the window before it (counted in the
    warehouse); a table without a window: than at its previous materialization (its `derive/row_count`)."""
    severity: CheckSeverity = "error"
    """`error` (default): a failure blocks tables downstream; `warn`: reported only."""

    @model_validator(mode="after")
    def _some_bound(self) -> RowCountCheck:
        if self.min is None and self.max is None and self.max_change_percent is None:
            raise ValueError(
                "give at least one of min, max or max_change_percent (without them the check checks nothing)"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"max: {self.max} is below min {self.min}; the range is min <= rows <= max")
        return self


class FreshnessCheck(StrictModel):
    grace: Duration
    """How long after it is due the table may still be missing its update before the check fails, e.g. `2h`. A
    windowed table is due when its latest window ends (or, with a `schedule`, at the cron's first tick after
    that); a table without a window, one cron interval after its last update. Evaluated by Dagster's freshness
    checks (`freshness_check`), run by the `derive_freshness_checks` sensor."""
    severity: CheckSeverity = "warn"
    """`warn` (default) or `error`: the severity of a stale table's failed check. A freshness check never blocks
    (it runs on its own, not in a run of the table), so `error` only marks it red."""


class SqlCheck(StrictModel):
    name: Identifier
    """The asset check's name (unique among the table's checks)."""
    query: str = Field(min_length=1, max_length=MAX_SQL_CHARS)
    """BigQuery Standard SQL returning the rows that break the rule; the check passes when it returns none. It may
    read `@window_start`/`@window_end` (a windowed table's run window) and refers to tables as `dataset.name`."""
    description: str = ""
    """What the rule means; shown in the Dagster UI and in the failure message."""
    severity: CheckSeverity = "error"
    """`error` (default): a failure blocks tables downstream; `warn`: reported only."""


class TableChecks(StrictModel):
    row_count: RowCountCheck | None = None
    """Bounds on the number of rows (asset check `row_count`)."""
    freshness: FreshnessCheck | None = None
    """Fails when the table is older than its schedule (or window) allows plus `grace` (asset check
    `freshness_check`). Needs a `schedule` or a `window` (a source table: the source's `schedule`)."""
    sql: list[SqlCheck] = Field(default_factory=list)
    """Custom checks: each query returns the violating rows (asset check `<name>`)."""

    @model_validator(mode="after")
    def _unique_names(self) -> TableChecks:
        names = [c.name for c in self.sql]
        dupes = sorted({n for n in names if names.count(n) > 1})
        reserved = sorted({n for n in names if n in ("row_count", "freshness_check")})
        problems = []
        if dupes:
            problems.append(f"sql: check names {dupes} are used twice; give each check its own name")
        if reserved:
            problems.append(f"sql: check names {reserved} are the built-in checks' names; choose another")
        if problems:
            raise ValueError("\n".join(problems))
        return self


def table_check_problems(
    checks: TableChecks, columns: list[Column], window: Window | None, schedule: str | None
) -> list[str]:
    """`checks.freshness` needs a window or a schedule (and a deadline that fits a window); custom check names
    must not be a column check's."""
    problems = []
    if checks.freshness is not None:
        grace = duration_seconds(checks.freshness.grace)
        if window is None and schedule is None:
            problems.append(
                "checks.freshness: the table has no `schedule` (nor, for a table spec, a `window`) saying when it "
                "is due; add one, or remove checks.freshness"
            )
        elif window is not None:
            from derive_assets.specs.deadlines import DeadlineError, window_deadline_cron

            try:
                window_deadline_cron(window.size, window.start, grace, schedule)
            except DeadlineError as exc:
                problems.append(f"checks.freshness.grace: {checks.freshness.grace}: {exc}")
    taken = {
        f"{c.name}_{rule}"
        for c in columns
        for rule in ("not_null", "unique", "accepted_values", "min", "max", "relationships")
    }
    for i, check in enumerate(checks.sql):
        if check.name in taken:
            problems.append(
                f"checks.sql[{i}].name: '{check.name}' could be a column check's name (<column>_<rule>); "
                "choose another"
            )
    return problems


# ---------------------------------------------------------------------------------------------- tables


_CRON_HORIZON_YEARS = 10
"""A cron must fire within this many years (29 February fires every four to eight)."""


# ~2 ms a cron (croniter) and specs repeat a few crons: each valid one is checked once (errors are not cached).
@functools.lru_cache(maxsize=4096)
def _check_cron(value: str | None) -> str | None:
    """A cron Dagster accepts and that fires: Dagster refuses the whole code location for one it cannot use,
    without naming the spec, so each rule it applies is applied here, at load, with the file."""
    if value is None:
        return value
    example = "e.g. '0 2 * * *' for 02:00 every day"
    if not croniter.is_valid(value):
        raise ValueError(
            f"{show(value)} is not a cron expression; write five fields 'minute hour day month weekday', {example}"
        )
    fields = croniter.expand(value)[0]
    if len(fields) != 5:
        raise ValueError(
            f"{show(value)} has {len(fields)} fields; Dagster schedules take exactly five, "
            f"'minute hour day month weekday' (no seconds or years), {example}"
        )
    days, months = fields[2], fields[3]
    # Dagster's own rule (dagster._utils.schedules.is_valid_cron_string), even when a weekday would make it fire.
    if months == [2] and len(days) == 1 and days[0] in (30, 31):
        raise ValueError(
            f"{show(value)} names 30 or 31 February, which Dagster refuses; pick a day that exists"
        )
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    try:
        croniter(value, start, max_years_between_matches=_CRON_HORIZON_YEARS).get_next(dt.datetime)
    except CroniterBadDateError:
        raise ValueError(
            f"{show(value)} never fires (no such date within {_CRON_HORIZON_YEARS} years, e.g. 31 April); "
            "pick a day that exists in the chosen months"
        ) from None
    return value


MAX_PARTITIONS_PER_RUN = 100_000
"""More windows than any table has (a century of hours is ~880,000, but a run of that many is a typo)."""


MAX_LOOKBACK = 1_000
"""More windows than a lookback needs (1,000 days is ~3 years): a larger number is a typo for a backfill."""


class Backfill(StrictModel):
    max_partitions_per_run: int = Field(ge=1, le=MAX_PARTITIONS_PER_RUN)
    """At most this many windows per run when a range of windows is requested (a backfill, or automation
    requesting several missing windows): Dagster's `BackfillPolicy.multi_run(max_partitions_per_run=N)`. E.g. 30 on
    a daily table turns a year's backfill into 13 runs, each one statement over its 30 days. Without `backfill`,
    a requested range is one run (`BackfillPolicy.single_run()`)."""


class TableSpec(StrictModel):
    """A core or derived table: the SQL that builds it, run over a window again and again."""

    kind: Literal["table"] = "table"
    """Always `table` for core and derived tables."""
    name: Identifier
    """Table name; the asset key is `[dataset, name]`."""
    dataset: Dataset
    """Warehouse dataset (BigQuery dataset, DuckDB schema); no `__` (reserved for environments). Other SQL refers to the table as `dataset.name`."""
    layer: Literal["core", "derived"] = "derived"
    """`core` for tables shaped straight from sources (e.g. joins of them), `derived` for the rest."""
    description: str = ""
    """What the table holds; shown in the Dagster UI."""
    owner: Owner
    """Who answers for the table (Dagster asset owner): an e-mail address or `team:<name>`."""
    columns: list[Column] = Field(min_length=1)
    """The columns the SQL must output, in order, with their types and constraints."""
    strategy: Strategy
    """How a run changes the table: `merge` (needs `unique_key`), `append` (needs `window` and `partition`) or
    `replace` (no `window`)."""
    schedule: str | None = None
    """Optional cron expression (UTC): at each tick the table (a windowed table: its latest complete window, and its
    `lookback` windows) is refreshed once everything it reads was updated after the tick. Without one, it is
    refreshed each time something it reads updates. Either way its latest window is built as soon as it is complete
    and its inputs are ready, without waiting for a tick (docs/automation.md)."""
    window: Window | None = None
    """The time range one run processes; the SQL reads it as `@window_start` and `@window_end` (TIMESTAMP)."""
    partition: Partition | None = None
    """Time partitioning of the table; runs replace or merge only their window's slice of it."""
    backfill: Backfill | None = None
    """Optional (needs `window`): how a range of windows is split into runs, e.g. `{max_partitions_per_run: 30}`.
    Default: the whole requested range in one run, one statement over the union of its windows."""
    lookback: int | None = Field(default=None, ge=1, le=MAX_LOOKBACK)
    """Optional (needs `window` and `schedule`): at each tick of the schedule, also re-run the N complete windows
    before the latest one whose inputs were updated since the tick, for rows that arrive late (dbt microbatch's
    `lookback`). E.g. 3 on a daily table: the last four days. Between ticks only the latest window follows its
    inputs (see docs/automation.md). Default: none, only the latest window."""
    cluster: list[Identifier] = Field(default_factory=list, max_length=MAX_CLUSTER_KEYS)
    """Up to four columns to sort (DuckDB) or cluster (BigQuery) the table by."""
    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS)
    """BigQuery Standard SQL. Refer to tables as `dataset.name` and to the window as `@window_start`/`@window_end`.
    At most 100,000 characters; table functions and file access (`read_text(…)`, `EXTERNAL_QUERY`) are refused."""
    checks: TableChecks = TableChecks()
    """Table-level quality checks beyond column constraints: `row_count`, `freshness` and custom `sql` checks
    (see docs/checks.md). Default: none."""
    kubernetes: KubernetesSettings | None = None
    """Optional: the pod this table's step runs in with `DERIVE_EXECUTOR=k8s` (resources, node selector,
    tolerations, service account, env from Secrets), merged over the `_defaults.yaml` files of its directories
    (docs/spec-reference.md, "Directory defaults"). Never part of the code version."""
    max_bytes_billed: ByteCount | None = None
    """Optional, BigQuery only: the most bytes one run's query may process, as a whole number of bytes (e.g.
    `10000000000` for 10 GB). Before anything is written a dry run estimates the query: above the limit the run
    fails without running it (nothing written, nothing billed); the query job also carries it as BigQuery's
    `maximumBytesBilled`, so BigQuery itself refuses a job that would bill more. `derive plan` shows the estimate
    against it. Accepted and ignored on DuckDB (no estimate). Never part of the code version (docs/cost-limits.md)."""

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return _check_cron(value)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> TableSpec:
        """Rules across fields; every problem found is reported, one per line."""
        names = [c.name for c in self.columns]
        problems: list[str] = []
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"columns: {dupes} declared more than once; each column name must be unique")
        declared = set(names)
        if isinstance(self.strategy, MergeStrategy):
            missing = [k for k in self.strategy.unique_key if k not in declared]
            if missing:
                problems.append(f"strategy.unique_key: {missing} not declared in columns; allowed: {names}")
        if isinstance(self.strategy, AppendStrategy) and (self.window is None or self.partition is None):
            problems.append(
                "strategy: append needs both `window` and `partition`, so that re-running a window replaces "
                "that window's rows instead of adding them twice"
            )
        if isinstance(self.strategy, ReplaceStrategy) and self.window is not None:
            problems.append(
                "strategy: replace rebuilds the whole table on every run, so with a `window` each window's run "
                "would delete the rows of every other window; to write one window's slice per run use "
                "`append` (with a `partition` on the window's time column) or `merge`, or remove `window` to "
                "rebuild the whole table from all the data each run"
            )
        if self.partition is not None:
            problems += self._partition_problems(names)
        problems += self._delete_missing_problems()
        problems += table_check_problems(self.checks, self.columns, self.window, self.schedule)
        if self.backfill is not None and self.window is None:
            problems.append(
                f"backfill: max_partitions_per_run={self.backfill.max_partitions_per_run} splits a range of windows "
                "into runs, but this table has no `window` (each run rebuilds it whole); add a `window`, or remove "
                "`backfill`"
            )
        problems += self._lookback_problems()
        unknown_cluster = [k for k in self.cluster if k not in declared]
        if unknown_cluster:
            problems.append(f"cluster: {unknown_cluster} not declared in columns; allowed: {names}")
        unclusterable = [c.name for c in self.columns if c.name in self.cluster and c.type in NOT_CLUSTERABLE]
        if unclusterable:
            problems.append(
                f"cluster: {unclusterable} have types BigQuery cannot cluster by ({', '.join(NOT_CLUSTERABLE)}); "
                "cluster by STRING, INT64, NUMERIC, BOOL, DATE, DATETIME or TIMESTAMP columns"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _partition_problems(self, names: list[str]) -> list[str]:
        assert self.partition is not None
        problems = []
        if self.window is None:
            problems.append("partition: a partitioned table needs a `window` (the slice each run writes)")
        column = next((c for c in self.columns if c.name == self.partition.key), None)
        if column is None:
            return [
                *problems,
                f"partition.key: '{self.partition.key}' is not a declared column; allowed: {names}",
            ]
        if column.type not in TIME_TYPES:
            problems.append(
                f"partition.key: column '{column.name}' has type {column.type}; a partition key must be "
                f"one of {list(TIME_TYPES)}"
            )
        if column.type == "DATE" and self.partition.granularity == "hour":
            problems.append(
                f"partition.granularity: BigQuery cannot partition DATE column '{column.name}' by hour; use day, "
                "month or year, or partition by a DATETIME or TIMESTAMP column"
            )
        if column.type == "DATE" and self.window is not None and self.window.size == "1h":
            problems.append(
                f"window.size: 1h is smaller than a day, but partition key '{column.name}' is a DATE, "
                "which cannot tell the hours of a day apart; use a window of 1d, 1w or 1mo, or partition "
                "by a DATETIME or TIMESTAMP column"
            )
        return problems

    def _lookback_problems(self) -> list[str]:
        """`lookback` counts windows, and its windows re-run on the schedule's ticks (docs/automation.md)."""
        if self.lookback is None:
            return []
        if self.window is None:
            return [
                f"lookback: {self.lookback} re-runs the last {self.lookback} windows, but this table has no `window` "
                "(each run rebuilds it whole); add a `window`, or remove `lookback`"
            ]
        if self.schedule is None:
            return [
                f"lookback: {self.lookback} re-runs the {self.lookback} windows before the latest at each tick of the "
                "table's `schedule`, but it has none (without one only the latest window follows its inputs); add a "
                '`schedule` (e.g. the daily "30 0 * * *"), or remove `lookback`'
            ]
        return []

    def _delete_missing_problems(self) -> list[str]:
        """`delete_missing` deletes the window's keys the run no longer outputs: only safe when each key lies
        in one window (the partition key is part of the key), else a key that moved to another window, or rows
        outside the window, would be deleted."""
        if not (isinstance(self.strategy, MergeStrategy) and self.strategy.delete_missing):
            return []
        field = "strategy.delete_missing"
        if self.window is None or self.partition is None:
            return [
                f"{field}: deletes the keys a run no longer outputs inside its window, so it needs a `window` "
                "and a `partition` (whose key is in `unique_key`); add both, or remove delete_missing (a table "
                "without a window that must lose vanished keys is `replace`)"
            ]
        if self.partition.key not in self.strategy.unique_key:
            return [
                f"{field}: the partition key '{self.partition.key}' must be in strategy.unique_key "
                f"{self.strategy.unique_key}, so that each key belongs to one window and only the run's window "
                f"loses its vanished keys; add '{self.partition.key}' to unique_key, or remove delete_missing"
            ]
        return []

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def ref(self) -> str:
        return f"{self.dataset}.{self.name}"


# ---------------------------------------------------------------------------------------------- sources


class SourceSensor(StrictModel):
    """How the source's sensor (`replicate_<source>_sensor`) watches its tables for new rows."""

    enabled: bool = True
    """Replicate a table as soon as its probe sees a row beyond the stored watermark. `false`: no sensor; the
    tables replicate only on the source's `schedule` (if any) or when asked."""
    interval_seconds: int = Field(default=60, ge=5, le=86_400)
    """Seconds between two probes of the source (Dagster's `minimum_interval_seconds`), at least 5."""
    probe_timeout_seconds: float = Field(default=5, gt=0, le=60)
    """Statement timeout of each probe query (and its connect timeout), at most 60 s: a probe that takes longer
    is cut off by the server and the tick says so; it never runs long on a production database."""


class SoftDelete(StrictModel):
    column: Identifier
    """A declared column that marks a row deleted when it is not NULL (e.g. `deleted_at`) or true (e.g.
    `is_deleted`). Marked rows are removed from the warehouse table."""


class ReconcileSpec(StrictModel):
    """Hard deletes without a flag column: now and then read every primary key of the source table and delete
    the warehouse rows whose key the source no longer has (docs/replication.md, "Hard deletes")."""

    every_runs: int | None = Field(default=None, ge=1, le=100_000)
    """Reconcile on every N-th replication run of the table (1: every run), counted in the event log. Exactly
    one of `every_runs` and `schedule`."""
    schedule: str | None = None
    """Reconcile on the first replication run after each tick of this cron (UTC, five fields, e.g.
    `"0 3 * * *"`). Exactly one of `every_runs` and `schedule`."""
    max_delete_percent: float = Field(default=50, gt=0, le=100)
    """A reconciliation that would delete more than this share of the warehouse table's rows deletes nothing
    and says so (a source that answers with an empty or truncated key list must not empty the table). 100:
    no limit."""

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return _check_cron(value)

    @model_validator(mode="after")
    def _one_trigger(self) -> ReconcileSpec:
        """Exactly one of `every_runs` and `schedule` says when a reconciliation is due."""
        if (self.every_runs is None) == (self.schedule is None):
            raise ValueError(
                "set exactly one of `every_runs` (reconcile every N runs, e.g. 24) and `schedule` (a cron, e.g. "
                f"'0 3 * * *'); got every_runs={self.every_runs!r}, schedule={self.schedule!r}"
            )
        return self


class SnapshotSpec(StrictModel):
    """How a first load (the warehouse table missing, or a rebuild) of a large PostgreSQL or MySQL/MariaDB table is
    read: in primary-key chunks, each committed to `<dataset>.<table>__snapshot` and checkpointed in the event log,
    so a run that dies part-way resumes at the next chunk (docs/replication.md, "Resumable first loads")."""

    chunk_rows: int = Field(default=1_000_000, ge=1_000, le=100_000_000)
    """Rows per committed chunk. A first load whose source holds no more rows than this (the source's row
    estimate) is read in one pass, as before."""
    parallel: int = Field(default=1, ge=1, le=16)
    """Connections that read one chunk at once (connectorx partitions of a single INT64 primary key; other keys
    read with one). Default 1: measured on the 2-core reference machines, a second connection did not pay
    (5M rows: 380 s with 2 connections per chunk, 277 s with 1; benchmarks/README.md, "snapshot"). Not bounded
    by the source's `max_concurrent_extractions`, which limits tables, not the connections of one table's read."""


EVENT_TIME_TYPES = ("TIMESTAMP", "DATETIME", "DATE")
"""The column types `SourceTable.event_time` accepts."""


class SourceTable(StrictModel):
    name: Identifier
    """Table name in the source database; the replicated table is `<source dataset>.<name>`."""
    description: str = ""
    """What the table holds; shown in the Dagster UI."""
    primary_key: list[Identifier] = Field(min_length=1)
    """Columns that identify a row; changed rows are merged into the warehouse by this key."""
    cursor: Identifier
    """An increasing column (e.g. `updated_at`, or an `id` for insert-only tables): each run reads only rows whose
    cursor is beyond the watermark stored in Dagster's event log."""
    cursor_overlap: int | None = Field(default=None, ge=0, le=TEN_YEARS_SECONDS)
    """Re-read this many seconds (or ids) before the watermark, to catch transactions that commit late with an
    earlier cursor value. Re-read rows are merged by key, so an overlap never duplicates. Default: 600 seconds for
    TIMESTAMP and DATETIME cursors (and MongoDB ObjectId cursors), one day for DATE cursors, 0 for INT64 cursors
    (PostgreSQL and MySQL id cursors are protected by `wait_for_open_transactions`; SQLite serializes writers)."""
    wait_for_open_transactions: bool = True
    """PostgreSQL and MySQL/MariaDB only: the next run reads again from the previous run's starting point until
    every transaction that was open during a read has ended, so a row committed late with an earlier cursor (an id
    taken before a later id committed) is never skipped. MySQL needs the PROCESS privilege to see open
    transactions. Set false only if the source never has concurrent writers."""
    max_future_seconds: int = Field(default=86_400, gt=0, le=TEN_YEARS_SECONDS)
    """TIMESTAMP, DATETIME and DATE cursors (and MongoDB ObjectId cursors, by their creation time): a row whose
    cursor lies more than this many seconds after the run started (e.g. `9999-12-31`, PostgreSQL `infinity`) is invalid: it would move the watermark past every real
    row. Such rows never advance the watermark; they fail the run or are quarantined, per `on_invalid`."""
    soft_delete: SoftDelete | None = None
    """How hard deletes reach the warehouse: rows flagged by this column are deleted there."""
    reconcile: ReconcileSpec | None = None
    """Hard deletes without a flag column: on every N-th run (`every_runs`) or after each cron tick
    (`schedule`), read only the primary-key columns of the source table after the load and delete the
    warehouse rows whose key is gone (counted in `derive/rows_deleted`). Default: none. Works with or without
    `soft_delete`: flagged rows are deleted by every load, vanished ones by the reconciliation."""
    snapshot: SnapshotSpec = Field(default_factory=SnapshotSpec)
    """How a first load of a large table is read: in primary-key chunks of `chunk_rows`, committed one by one
    and resumed after a crash at the next chunk (PostgreSQL and MySQL/MariaDB sources). Default: chunks of
    1,000,000 rows read by one connection."""
    on_invalid: Literal["fail", "quarantine"] = "fail"
    """What to do with an invalid row: a NULL primary key, a NULL cursor, a cursor beyond `max_future_seconds`,
    or a value that cannot be read as its column's type (SQLite text, MongoDB documents). `fail` stops the run
    (nothing is written, the watermark stays) and names the rows; `quarantine` writes them to
    `<dataset>.<table>__quarantine` with the reason and the row, and loads the others."""
    checks: TableChecks = TableChecks()
    """Table-level quality checks of the replicated table: `row_count` (rows of the whole table), `freshness`
    (needs the source's `schedule`) and custom `sql` checks (see docs/checks.md). Default: none."""
    columns: list[Column] = Field(min_length=1)
    """The columns to replicate, with their types; declared types win over what the driver reports."""
    event_time: list[Identifier] = Field(default_factory=list)
    """Event-time columns (TIMESTAMP, DATETIME or DATE columns of this table, e.g. `paid_at`): each replication
    run records the range and the UTC hours of the rows it read (`derive/event_time/<column>`), and the
    `derive_late_data` sensor re-runs exactly the windows of the downstream windowed tables whose SQL filters on
    that column with `@window_start`/`@window_end`, however late the rows came (see docs/late-data.md).
    Default: none."""
    kubernetes: KubernetesSettings | None = None
    """Optional: this table's pod settings, merged over its source's `kubernetes` (field by field: mappings key by
    key, lists replaced), e.g. more memory for one large table."""

    @model_validator(mode="after")
    def _declared(self) -> SourceTable:
        """Key, cursor and soft-delete columns must be declared; every problem found is reported."""
        names = [c.name for c in self.columns]
        problems = []
        for field, values in (
            ("primary_key", self.primary_key),
            ("cursor", [self.cursor]),
            ("soft_delete.column", [self.soft_delete.column] if self.soft_delete else []),
        ):
            missing = [v for v in values if v not in names]
            if missing:
                problems.append(f"{field}: {missing} not declared in columns; allowed: {names}")
        cursor_column = next((c for c in self.columns if c.name == self.cursor), None)
        cursor_type = cursor_column.type if cursor_column else None
        object_id = cursor_column is not None and cursor_column.path == "_id" and cursor_type == "STRING"
        if (
            cursor_type is not None
            and cursor_type not in ("INT64", "TIMESTAMP", "DATETIME", "DATE")
            and not object_id
        ):
            problems.append(
                f"cursor: column '{self.cursor}' has type {cursor_type}; a cursor must be INT64, TIMESTAMP, "
                "DATETIME or DATE (or, in a MongoDB collection, a STRING column with `path: _id`: ObjectId order)"
            )
        problems.extend(self._event_time_problems())
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _event_time_problems(self) -> list[str]:
        """`event_time` names declared TIMESTAMP, DATETIME or DATE columns, each once."""
        types = {c.name: c.type for c in self.columns}
        allowed = [name for name, type_ in types.items() if type_ in EVENT_TIME_TYPES]
        problems = []
        for i, name in enumerate(self.event_time):
            if name not in types:
                problems.append(
                    f"event_time[{i}]: '{name}' is not declared in columns; allowed: the TIMESTAMP, DATETIME "
                    f"or DATE columns {allowed}"
                )
            elif types[name] not in EVENT_TIME_TYPES:
                problems.append(
                    f"event_time[{i}]: column '{name}' has type {types[name]}; an event-time column must be "
                    f"TIMESTAMP, DATETIME or DATE (allowed here: {allowed})"
                )
            elif name in self.event_time[:i]:
                problems.append(f"event_time[{i}]: '{name}' is listed twice; list each column once")
        return problems

    @property
    def cursor_column(self) -> Column:
        return next(c for c in self.columns if c.name == self.cursor)

    @property
    def effective_overlap(self) -> int:
        """`cursor_overlap`, or the default for the cursor's type when the spec leaves it out."""
        if self.cursor_overlap is not None:
            return self.cursor_overlap
        column = self.cursor_column
        if column.type == "DATE":
            return 86_400
        if column.type in ("TIMESTAMP", "DATETIME") or column.path == "_id":
            return DEFAULT_TIME_OVERLAP_SECONDS
        return 0


class SourceSpec(StrictModel):
    """A transactional database whose tables are replicated incrementally into the warehouse."""

    kind: Literal["source"]
    """Always `source` for a source database."""
    name: Identifier
    """Source name, e.g. the microservice that owns the database."""
    type: Literal["postgres", "mysql", "sqlite", "mongodb"]
    """Database engine: postgres, mysql (also MariaDB), sqlite or mongodb (each table is a collection)."""
    database: Identifier | None = None
    """MongoDB only: the database holding the collections; defaults to the source name."""
    connection_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]
    """Environment variable holding the connection URL (never the URL itself): `postgresql://…`, `mysql://…` or
    `sqlite:///path`. For sqlite sources it may be unset: the demo database `.derive/sources/<name>.db` is used."""
    dataset: Dataset | None = None
    """Warehouse dataset for the replicated tables; defaults to the source name. No `__` (reserved for
    environments)."""
    owner: Owner
    """Who answers for the source (Dagster asset owner): an e-mail address or `team:<name>`."""
    description: str = ""
    """What the source holds; shown in the Dagster UI."""
    schedule: str | None = None
    """Optional cron expression (UTC): each table is also replicated at every tick (`on_cron`), on top of the
    source's sensor, which replicates a table when its probe sees new rows (docs/replication.md)."""
    sensor: SourceSensor = Field(default_factory=SourceSensor)
    """The source's sensor, which probes each table for rows beyond its watermark and replicates only the tables
    that have some (see docs/replication.md). On by default, also when `schedule` is set."""
    max_concurrent_extractions: int = Field(default=1, ge=1, le=64)
    """How many of this source's tables may be extracted at once, across all runs (the limit of the source's
    Dagster concurrency pool `derive/source/<name>`, written to the instance by `derive pools`). Default 1: one
    query at a time on the source database, which is usually a production database."""
    kubernetes: KubernetesSettings | None = None
    """Optional: the pod each of the source's replication steps runs in with `DERIVE_EXECUTOR=k8s`, merged over
    the directories' `_defaults.yaml`; a table's own `kubernetes` overrides it. E.g. `env_from_secrets:
    [payments-db]` for the Secret holding the connection URL."""
    tables: list[SourceTable] = Field(min_length=1)
    """The tables to replicate."""

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return _check_cron(value)

    @model_validator(mode="after")
    def _table_checks(self) -> SourceSpec:
        """Each table's `checks` (freshness: the source's schedule says when a table is due)."""
        problems = [
            f"tables[{i}].{problem}"
            for i, table in enumerate(self.tables)
            for problem in table_check_problems(table.checks, table.columns, None, self.schedule)
        ]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _table_pods(self) -> SourceSpec:
        """Each table's `kubernetes`, merged over the source's, is valid (a table's limit below the source's
        request is refused here, at load, not when a pod is launched)."""
        problems = []
        for i, table in enumerate(self.tables):
            try:
                merge_kubernetes(self.kubernetes, table.kubernetes)
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    where = ".".join(str(p) for p in error["loc"])
                    for line in error["msg"].removeprefix("Value error, ").split("\n"):
                        field, sep, rest = line.partition(": ")
                        line = f"{where}.{field}: {rest}" if sep and where else line
                        problems.append(
                            f"tables[{i}].kubernetes.{line} (this table's block merged over the source's)"
                        )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _dataset_from_name(self) -> SourceSpec:
        if self.dataset is None:
            try:
                _check_dataset(self.name)
            except ValueError as exc:
                raise ValueError(
                    f"name: {exc}; or set `dataset` (the name is the source's dataset)"
                ) from None
        return self

    @model_validator(mode="after")
    def _mongodb_only_fields(self) -> SourceSpec:
        if self.type == "mongodb":
            return self
        problems = []
        if self.database is not None:
            problems.append(
                "database: only MongoDB sources have a database; SQL sources name it in their URL"
            )
        for i, table in enumerate(self.tables):
            paths = [c.name for c in table.columns if c.path is not None]
            if paths:
                problems.append(f"tables[{i}].columns: {paths} have a `path`, which only MongoDB sources use")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def target_dataset(self) -> str:
        return self.dataset or self.name

    @property
    def mongo_database(self) -> str:
        return self.database or self.name


def source_table_ref(source: SourceSpec, table: SourceTable) -> str:
    return f"{source.target_dataset}.{table.name}"


def window_seconds(size: WindowSize) -> int | None:
    """Fixed-length windows in seconds; a month has no fixed length."""
    return {"1h": 3600, "1d": 86400, "1w": 7 * 86400}.get(size)


def is_identifier(value: str) -> bool:
    return re.match(IDENTIFIER, value) is not None


# ---------------------------------------------------------------------------------------------- exports

Consistency = Literal[
    "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE", "ANY"
]


class ExportSpec(StrictModel):
    """A derived table exported to the online store (ScyllaDB/Cassandra; SQLite locally) for millisecond reads."""

    kind: Literal["export"]
    """Always `export` for an online export."""
    name: Identifier
    """Export name; the asset is `online/<name>` and `derive lookup <name> …` reads it."""
    table: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")]
    """The warehouse table to export, as `dataset.name` (a core/derived table or a replicated source table)."""
    owner: Owner
    """A team or e-mail address that answers for the export."""
    description: str = ""
    """What online services read from it; shown in the Dagster UI."""
    keyspace: Identifier
    """CQL keyspace. Created if missing, with the replication `DERIVE_CASSANDRA_REPLICATION` sets (e.g.
    `dc1:3,dc2:3`; unset: SimpleStrategy, 1 replica); with `DERIVE_CASSANDRA_CREATE_KEYSPACES=false` it must exist."""
    cql_table: Identifier | None = None
    """CQL table name; defaults to the export name."""
    partition_key: list[Identifier] = Field(min_length=1)
    """CQL partition key columns: what a lookup must always give."""
    clustering: list[Identifier] = Field(default_factory=list)
    """CQL clustering columns, after the partition key in the primary key (rows sorted by them in a partition)."""
    columns: list[Identifier] | None = None
    """Columns to export; default: all of the table's columns."""
    ttl_seconds: int | None = Field(default=None, gt=0)
    """Rows expire this many seconds after they were written (CQL `USING TTL`)."""
    consistency: Consistency = "LOCAL_QUORUM"
    """CQL write consistency level."""
    cursor: Identifier | None = None
    """For a table without a window: an increasing column (e.g. `updated_at`); each run exports only rows whose
    value is beyond the last export's watermark (kept in Dagster's event log). Without a cursor (and without a
    window) every run exports the whole table."""
    schedule: str | None = None
    """Optional cron expression (UTC). Without one (the usual case) an export follows its table: each window is
    exported as soon as that window of the table materialized and passed its blocking checks. With one, also not
    before a tick of it passed since the export last ran (docs/automation.md)."""
    kubernetes: KubernetesSettings | None = None
    """Optional: the pod this export's step runs in with `DERIVE_EXECUTOR=k8s`, merged over the directories'
    `_defaults.yaml` (e.g. `env_from_secrets` with the online store's credentials)."""

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return _check_cron(value)

    @model_validator(mode="after")
    def _keys_exported(self) -> ExportSpec:
        keys = [*self.partition_key, *self.clustering]
        problems = []
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            problems.append(f"clustering: {dupes} appear in both partition_key and clustering (or twice)")
        if self.columns is not None and self.cursor is not None and self.cursor not in self.columns:
            problems.append(f"cursor: '{self.cursor}' must be exported too; add it to columns")
        if self.columns is not None:
            missing = [k for k in keys if k not in self.columns]
            if missing:
                problems.append(f"columns: key columns {missing} must be exported too; add them to columns")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def target_table(self) -> str:
        return self.cql_table or self.name
