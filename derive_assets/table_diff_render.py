"""How `derive diff` shows a `TableDiff`: plain text for a terminal and a CI log, and one summary line."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from derive_assets.table_diff import SchemaDifferences, TableDiff


def summary_line(diff: TableDiff) -> str:
    """`<production ref> in <env>: identical (<rows>, <scope>)`, or `...: differs (<scope>): <what differs>`, e.g.
    `analytics.order_facts in alice: differs (whole table): rows 10 -> 11; 1 key only in alice`."""
    head = f"{diff.production_ref} in {diff.env}"
    where = scope(diff)
    if diff.identical:
        return f"{head}: identical ({_n(diff.production_rows, 'row')}, {where})"
    parts = []
    if diff.production_rows != diff.shadow_rows:
        parts.append(f"rows {diff.production_rows:,} -> {diff.shadow_rows:,}")
    unit = "key" if diff.key else "row"
    if diff.only_in_production.count:
        parts.append(f"{_n(diff.only_in_production.count, unit)} only in production")
    if diff.only_in_shadow.count:
        parts.append(f"{_n(diff.only_in_shadow.count, unit)} only in {diff.env}")
    if diff.changed_rows:
        per = ", ".join(f"{c.column} {c.rows:,}" for c in diff.changed_columns)
        parts.append(f"{_n(diff.changed_rows, 'changed row')} ({per})")
    schema = _schema_words(diff.schema)
    if schema:
        parts.append(f"schema: {schema}")
    if diff.not_compared:
        parts.append(f"not compared: {', '.join(c for c, _ in diff.not_compared)}")
    return f"{head}: differs ({where}): " + "; ".join(parts)


def show(value: Any) -> str:
    """A value as a terminal shows it: NULL, 'text', 12.5 (NUMERIC without trailing zeros), ISO dates."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return repr(value) if isinstance(value, bytes | float) else str(value)


def _tuple(values: Sequence[Any]) -> str:
    return show(values[0]) if len(values) == 1 else "(" + ", ".join(show(v) for v in values) + ")"


def scope(diff: TableDiff) -> str:
    if diff.windows is None:
        return "whole table"
    if not diff.windows:
        return "no windows"
    ranges = ", ".join(f"[{_instant(w.start)}, {_instant(w.end)})" for w in diff.windows)
    return f"{diff.window_column} in {ranges}"


def _instant(t: dt.datetime) -> str:
    """A window bound: its date at UTC midnight (daily and longer windows), else the UTC time to the minute."""
    t = t.astimezone(dt.UTC) if t.tzinfo else t
    if (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0):
        return t.date().isoformat()
    return t.strftime("%Y-%m-%d %H:%M") + (" UTC" if t.tzinfo else "")


def _n(count: int, unit: str) -> str:
    """`1 row`, `2 rows`, `1,000 keys`."""
    return f"{count:,} {unit}" + ("" if count == 1 else "s")


def _schema_words(schema: SchemaDifferences) -> str:
    words = [f"-{c.name} {c.type}" for c in schema.only_in_production]
    words += [f"+{c.name} {c.type}" for c in schema.only_in_shadow]
    words += [f"{t.column} {t.production} -> {t.shadow}" for t in schema.type_changes]
    return ", ".join(words)


def render(diff: TableDiff) -> str:
    """The diff as plain text (no colours, no wide tables): readable in a terminal and in a CI log."""
    env = diff.env
    out = [
        f"diff {diff.production_ref} (production) -> {diff.shadow_ref} (environment {env})",
        f"  compared: {scope(diff)}" + (" (start inclusive, end exclusive)" if diff.windows else ""),
    ]
    if diff.key:
        out.append(f"  matched by key [{', '.join(diff.key)}]")
    else:
        out.append(
            "  no unique_key: compared by whole rows (each distinct row's copies counted on both sides)"
        )
    out.append("  values compared exactly and NULL-safe (NULL = NULL); floats without tolerance")
    out.append("schema:")
    if diff.schema.empty:
        out.append("  same columns and types")
    out += [f"  only in production: {c.name} {c.type}" for c in diff.schema.only_in_production]
    out += [f"  only in {env}: {c.name} {c.type}" for c in diff.schema.only_in_shadow]
    out += [f"  type changed: {t.column} {t.production} -> {t.shadow}" for t in diff.schema.type_changes]
    out += [f"  not compared: {c} ({why})" for c, why in diff.not_compared]
    delta = diff.shadow_rows - diff.production_rows
    out.append(f"rows: production {diff.production_rows:,}, {env} {diff.shadow_rows:,} ({delta:+,})")
    unit = "keys" if diff.key else "rows"
    for label, side in (("production", diff.only_in_production), (env, diff.only_in_shadow)):
        out.append(f"{unit} only in {label}: {side.count:,}")
        for s in side.sample:
            copies = f"  x{s.copies}" if s.copies != 1 else ""
            out.append(f"  {_tuple(s.values)}{copies}")
    if diff.key:
        out.append(f"changed rows: {diff.changed_rows:,}")
        for c in diff.changed_columns:
            out.append(f"  {c.column}: {_n(c.rows, 'row')}")
            out += [f"    {_tuple(v.key)}: {show(v.before)} -> {show(v.after)}" for v in c.sample]
    if diff.sums:
        out.append(f"sums (difference = {env} - production):")
        for s in diff.sums:
            mark = "" if s.production == s.shadow else "  <- differs"
            out.append(
                f"  {s.column}: production {show(s.production)}, {env} {show(s.shadow)}, "
                f"difference {show(s.difference)}{mark}"
            )
    out.append("result: " + ("identical" if diff.identical else "different"))
    return "\n".join(out)
