"""The text of a `derive new` spec skeleton: commented YAML built line by line (the comments are the point of
it), every value written so that YAML reads it back as it was meant (`derive_assets/scaffold.py` decides what the
skeleton says)."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from dataclasses import dataclass
from typing import Any, Literal, get_args

from derive_assets.specs.models import NOT_CLUSTERABLE, WindowSize

StrategyName = Literal["merge", "append", "replace"]
STRATEGIES: tuple[str, ...] = get_args(StrategyName)
WINDOW_SIZES: tuple[str, ...] = get_args(WindowSize)


class ScaffoldError(ValueError):
    """Why `derive new` writes nothing, worded for the user: the value, what is allowed, the fix."""


@dataclass(frozen=True)
class NewColumn:
    name: str
    type: str
    description: str = ""
    todo: str = ""
    """A comment written beside the type (a type that could not be inferred, a placeholder)."""


@dataclass(frozen=True)
class Skeleton:
    """Everything the spec file says; `render` turns it into the commented YAML text."""

    dataset: str
    name: str
    strategy: StrategyName
    columns: tuple[NewColumn, ...]
    sql: str
    window: str | None = None
    start: dt.date | None = None
    partition_key: str | None = None
    unique_key: tuple[str, ...] = ()
    key_note: str = ""
    origin: str = ""
    """What the columns come from, for the header comment: `orders.orders`, `the --sql query`, or ''."""
    sql_note: str = ""
    schema_ref: str = ""

    @property
    def ref(self) -> str:
        return f"{self.dataset}.{self.name}"


def render(s: Skeleton) -> str:
    """The spec file's text: required fields filled and explained, optional ones commented out."""
    out: list[str] = []
    add = out.append
    if s.schema_ref:
        add(f"# yaml-language-server: $schema={s.schema_ref}")
    made = f" from {s.origin}" if s.origin else ""
    add(f"# {s.ref}: scaffolded by `derive new`{made}. Edit it, then run `derive validate`.")
    add("# Every field is described in docs/spec-reference.md; commented-out lines are optional fields.")
    add("")
    add(_pair("name", s.name, f"the table's name; its asset key is {s.dataset}/{s.name}"))
    add(_pair("dataset", s.dataset, f"BigQuery dataset / DuckDB schema: other SQL reads it as {s.ref}"))
    add(_pair("owner", f"team:{s.dataset}", "TODO: who answers for it: an e-mail address or team:<name>"))
    add(_comment("description: What the table holds, shown in the Dagster UI."))
    add(_comment("layer: core", "core: shaped straight from sources; derived (the default): the rest"))
    add("")
    add(
        "# How a run changes the table: merge (upsert by unique_key), append (replace the window's rows; needs"
    )
    add("# window and partition) or replace (rebuild the whole table; no window).")
    add("strategy:")
    add(f"  type: {s.strategy}")
    if s.strategy == "merge":
        add(_line(f"  unique_key: [{', '.join(_scalar(k) for k in s.unique_key)}]", s.key_note))
        if s.window and s.partition_key:
            add(
                _comment(
                    "delete_missing: true",
                    "drop keys a re-run no longer outputs (partition key in unique_key)",
                    2,
                )
            )
    add("")
    _render_time(s, add)
    add(
        _comment(
            'schedule: "30 0 * * *"', "cron (UTC): refresh at each tick (without one: when its inputs update)"
        )
    )
    if s.window:
        add(
            _comment(
                "lookback: 3", "with a schedule: also re-run the 3 windows before the latest at each tick"
            )
        )
        add(_comment("backfill: {max_partitions_per_run: 30}", "a backfill runs at most 30 windows per run"))
    clusterable = next((c.name for c in s.columns if c.type not in NOT_CLUSTERABLE), None)
    if clusterable:
        add(
            _comment(
                f"cluster: [{_scalar(clusterable)}]",
                "up to four columns to cluster (BigQuery) / sort (DuckDB) by",
            )
        )
    add("")
    add(
        "# The columns the SQL outputs, in the same order; type: STRING, INT64, FLOAT64, NUMERIC, BOOL, DATE,"
    )
    add("# DATETIME, TIMESTAMP, JSON or BYTES. Constraints become asset checks (docs/checks.md).")
    add("columns:")
    for i, c in enumerate(s.columns):
        add(f"  - name: {_scalar(c.name)}")
        add(_line(f"    type: {c.type}", c.todo))
        if c.description:
            add(f"    description: {_scalar(c.description)}")
        if i == 0:
            add(
                _comment(
                    "constraints: {not_null: true, unique: true}",
                    "also accepted_values, min, max, relationships",
                    4,
                )
            )
    add("")
    add(
        "# BigQuery Standard SQL, one SELECT; tables as dataset.name"
        + (", the window as @window_start/@window_end." if s.window else ".")
    )
    if s.sql_note:
        add(f"# {s.sql_note}")
    add(_sql_block(s.sql))
    add("")
    first = s.columns[0].name
    add(_comment("checks:", "table-level checks (docs/checks.md)"))
    add(_comment("  row_count: {min: 1}", "the table (a windowed table: each window) has rows"))
    if s.window:
        add(_comment("  freshness: {grace: 2h}", "fails when the latest window is over 2h late"))
    add(_comment("  sql:", "each query returns the rows that break a rule"))
    add(_comment(f"    - name: {first}_is_set"))
    add(_comment(f"      query: {_null_check(s.ref, first)}"))
    return "\n".join(out) + "\n"


def _render_time(s: Skeleton, add: Any) -> None:
    if s.window is None:
        add("# No window: each run processes all the data. For runs of one time range each, add one (and use")
        add("# strategy merge or append): the SQL then reads @window_start/@window_end.")
        add(
            _comment(
                "window: {size: 1d, start: 2026-01-01}", "size 1h, 1d, 1w or 1mo; start YYYY-MM-DD (UTC)"
            )
        )
        add("")
        return
    assert s.start is not None
    add(
        "# The time range one run processes, one Dagster partition each: the SQL reads @window_start/@window_end."
    )
    add("window:")
    add(_line(f"  size: {s.window}", f"one of {', '.join(WINDOW_SIZES)}"))
    add(_line(f"  start: {s.start.isoformat()}", "the first window (YYYY-MM-DD, UTC); none before it"))
    add(_comment("end: 2030-01-01", "no window past this day (exclusive); default: up to now", 2))
    add("")
    if s.partition_key:
        add("# Each run writes only its window's slice of this DATE, DATETIME or TIMESTAMP column.")
        add("partition:")
        add(_line(f"  key: {_scalar(s.partition_key)}", "the column whose value falls in the run's window"))
        add(_line("  granularity: day", "BigQuery partitioning unit: hour, day, month or year"))
    else:
        add(
            _comment(
                "partition: {key: <a DATE, DATETIME or TIMESTAMP column>}", "each run writes its slice only"
            )
        )
    add("")


COMMENT_COLUMN = 40
"""Where inline comments start, so that they line up."""


def _null_check(ref: str, column: str) -> str:
    """`SELECT * FROM <ref> WHERE <column> IS NULL`, built with sqlglot (the column quoted where it must be)."""
    from sqlglot import exp

    dataset, _, name = ref.partition(".")
    query = exp.select("*").from_(exp.table_(name, db=dataset)).where(exp.column(column).is_(exp.null()))
    return query.sql("bigquery")


def _line(text: str, comment: str) -> str:
    if not comment:
        return text
    return (
        f"{text.ljust(COMMENT_COLUMN - 1)} # {comment}"
        if len(text) < COMMENT_COLUMN - 1
        else f"{text}  # {comment}"
    )


def _comment(text: str, comment: str = "", indent: int = 0) -> str:
    return _line(" " * indent + f"# {text}", comment)


def _pair(key: str, value: str, comment: str) -> str:
    return _line(f"{key}: {_scalar(value)}", comment)


def _reads_back(text: str) -> Any:
    from derive_assets.specs.yaml_read import parse_yaml_bytes

    data, problems = parse_yaml_bytes(f"v: {text}\n".encode())
    return None if problems or not isinstance(data, dict) else data.get("v")


def _scalar(value: str) -> str:
    """`value` as a YAML scalar that reads back as this very string: plain when it does (`order_id`), else
    double-quoted (`"on"`, `"Amount: in cents # approx"`)."""
    if value and "\n" not in value and _reads_back(value) == value:
        return value
    for ascii_only in (False, True):
        quoted = json.dumps(value, ensure_ascii=ascii_only)
        if _reads_back(quoted) == value:
            return quoted
    raise ScaffoldError(f"{value!r} cannot be written as a YAML value; remove its control characters")


def clean_sql(sql: str) -> str:
    """The query as the user gave it, normalized for a block scalar: Unix line ends, no trailing blanks, common
    indentation and surrounding empty lines removed, one final newline."""
    lines = [line.rstrip() for line in sql.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    text = textwrap.dedent("\n".join(lines)).strip("\n")
    if not text.strip():
        raise ScaffoldError(
            '--sql is empty; give one SELECT query, e.g. --sql "SELECT ... FROM payments.payments"'
        )
    return text + "\n"


def _sql_block(sql: str) -> str:
    """`sql: |` and the query indented by two spaces (`|2` when its first line is itself indented), or a quoted
    scalar for a query a block cannot hold."""
    lines = sql.removesuffix("\n").split("\n")
    head = "sql: |2" if lines[0].startswith(" ") else "sql: |"
    block = "\n".join([head, *(f"  {line}" if line else "" for line in lines)])
    from derive_assets.specs.yaml_read import parse_yaml_bytes

    data, problems = parse_yaml_bytes(f"{block}\n".encode())
    if not problems and isinstance(data, dict) and data.get("sql") == sql:
        return block
    return f"sql: {_scalar(sql)}"


def check_reads_back(text: str, s: Skeleton) -> None:
    """YAML reads the text back as the skeleton says (names, types, descriptions, the SQL, byte for byte)."""
    from derive_assets.specs.yaml_read import parse_yaml_bytes

    data, problems = parse_yaml_bytes(text.encode())
    expected = [
        {"name": c.name, "type": c.type, **({"description": c.description} if c.description else {})}
        for c in s.columns
    ]
    if problems or not isinstance(data, dict) or data.get("sql") != s.sql or data.get("columns") != expected:
        raise ScaffoldError(
            f"the skeleton of {s.ref} does not read back as written (a bug in derive new); nothing written: "
            f"{'; '.join(p.message for p in problems) or 'the values differ'}"
        )
