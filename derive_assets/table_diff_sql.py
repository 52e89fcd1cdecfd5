"""The queries of `derive diff` as sqlglot expressions, rendered in the warehouse's dialect (`table_diff`).

Every comparison runs in the warehouse; each query returns one row of counts and sums, or a few sample rows.
Both tables are read through the same scope: the rows whose partition column lies in one of the compared windows
(`>= start AND < end`, the bounds bound parameters cast to the column's engine type, adjacent windows merged into
one range), or every row. Identifiers are quoted; values are never written into SQL.

- keyed (a merge table's `unique_key`): `production FULL OUTER JOIN shadow ON <key>`; a row is only on one side
  when the other side's presence marker is NULL, and a column changed when `NOT (p.c IS NOT DISTINCT FROM s.c)`
  (NULL-safe: NULL vs NULL is equal, NULL vs a value is a change).
- whole rows (no key): both sides `UNION ALL`-ed with a marker, grouped by every compared column (GROUP BY
  treats NULLs as equal), each group's copies counted per side: the `EXCEPT ALL` of each side against the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from resources.dialects import placeholder
from resources.engine_sql import cast, col, count_all, ident, table
from resources.lazy_import import lazy_module
from resources.reads import Query
from resources.warehouse import TimeWindow

if TYPE_CHECKING:
    from sqlglot import exp
else:
    exp = lazy_module("sqlglot.expressions")

PRODUCTION, SHADOW = "production", "shadow"
"""The aliases of the two sides (CTEs) in every query."""
PRESENT = "_derive_present"
"""A constant 1 on every row of a side: NULL after the outer join means the row is not on that side."""
IN_PRODUCTION, IN_SHADOW = "_derive_in_production", "_derive_in_shadow"
"""Whole-row comparison: copies of a row on each side."""
ROWS = "_derive_rows"


def merged_ranges(windows: Sequence[TimeWindow]) -> list[TimeWindow]:
    """The windows sorted, overlapping or adjacent ones merged: 30 daily windows in a row are one range."""
    ranges: list[TimeWindow] = []
    for w in sorted(windows, key=lambda w: (w.start, w.end)):
        if ranges and w.start <= ranges[-1].end:
            last = ranges[-1]
            ranges[-1] = TimeWindow(last.start, max(last.end, w.end))
        else:
            ranges.append(w)
    return ranges


@dataclass(frozen=True)
class Compared:
    """A column both tables have: compared through `value` (JSON as its text: BigQuery cannot compare JSON)."""

    name: str
    json: bool = False


@dataclass(frozen=True)
class DiffQueries:
    """The queries comparing `production_ref` with `shadow_ref` in `dialect`."""

    dialect: str
    production_ref: str
    shadow_ref: str
    columns: tuple[Compared, ...]
    """The common columns whose values are compared (key columns included)."""
    key: tuple[str, ...] = ()
    """Empty: compare whole rows."""
    window_column: str | None = None
    window_type: str | None = None
    """The engine's type name of `window_column` (the window bounds are cast to it)."""
    windows: tuple[TimeWindow, ...] | None = None
    """None: the whole table."""
    ranges: tuple[TimeWindow, ...] = field(init=False, default=())
    """`windows` merged into ranges: one pair of bound parameters each."""
    params: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranges", tuple(merged_ranges(self.windows or ())))
        for i, w in enumerate(self.ranges):
            self.params[f"diff_start_{i}"], self.params[f"diff_end_{i}"] = w.start, w.end

    # ---------------------------------------------------------------------------------------- building blocks

    def _render(self, query: exp.Query) -> Query:
        return Query(query.sql(self.dialect), dict(self.params))

    def scope(self) -> exp.Expr | None:
        """The rows of the compared windows (None: every row; no window at all: no row)."""
        if self.windows is None:
            return None
        assert self.window_column is not None and self.window_type is not None
        terms = []
        for i in range(len(self.ranges)):
            start = cast(placeholder(f"diff_start_{i}", self.dialect), self.window_type, self.dialect)
            end = cast(placeholder(f"diff_end_{i}", self.dialect), self.window_type, self.dialect)
            column = col(self.window_column)
            terms.append(
                exp.and_(exp.GTE(this=column, expression=start), exp.LT(this=column.copy(), expression=end))
            )
        return exp.or_(*terms) if terms else exp.false()

    def _from(self, ref: str, items: Sequence[exp.Expr]) -> exp.Select:
        select = exp.select(*items).from_(table(ref))
        where = self.scope()
        return select.where(where) if where is not None else select

    def value(self, c: Compared, alias: str | None = None) -> exp.Expr:
        column = col(c.name, alias)
        return exp.JSONFormat(this=column) if c.json else column

    def _side(self, ref: str) -> exp.Select:
        """`SELECT 1 AS _derive_present, <columns> FROM <ref> WHERE <scope>`."""
        items = [exp.alias_(exp.Literal.number(1), ident(PRESENT))]
        items += [exp.alias_(self.value(c), ident(c.name)) for c in self.columns]
        return self._from(ref, items)

    def _with_sides(self, select: exp.Select) -> exp.Select:
        select = select.with_(ident(PRODUCTION), as_=self._side(self.production_ref))
        return select.with_(ident(SHADOW), as_=self._side(self.shadow_ref))

    def _key_match(self) -> exp.Expr:
        return exp.and_(*(exp.EQ(this=col(k, PRODUCTION), expression=col(k, SHADOW)) for k in self.key))

    def _joined(self, items: Sequence[exp.Expr], join_type: str) -> exp.Select:
        select = exp.select(*items).from_(exp.table_(ident(PRODUCTION)))
        select = select.join(exp.table_(ident(SHADOW)), on=self._key_match(), join_type=join_type)
        return self._with_sides(select)

    def distinct(self, c: Compared) -> exp.Expr:
        """`NOT (production.c IS NOT DISTINCT FROM shadow.c)`: NULL-safe inequality."""
        return exp.Not(this=exp.NullSafeEQ(this=col(c.name, PRODUCTION), expression=col(c.name, SHADOW)))

    def _on_both(self) -> exp.Expr:
        return exp.and_(
            exp.Not(this=exp.Is(this=col(PRESENT, PRODUCTION), expression=exp.Null())),
            exp.Not(this=exp.Is(this=col(PRESENT, SHADOW), expression=exp.Null())),
        )

    def _missing(self, side: str) -> exp.Expr:
        return exp.Is(this=col(PRESENT, side), expression=exp.Null())

    @property
    def values(self) -> tuple[Compared, ...]:
        """The compared columns that are not key columns."""
        return tuple(c for c in self.columns if c.name not in self.key)

    # ---------------------------------------------------------------------------------------- per side

    def side_stats(self, ref: str, sums: Sequence[str]) -> Query:
        """`SELECT count(*), SUM(<numeric column>)... FROM <ref> WHERE <scope>`."""
        return self._render(self._from(ref, [count_all(), *(exp.Sum(this=col(c)) for c in sums)]))

    # ---------------------------------------------------------------------------------------- by key

    def key_stats(self) -> Query:
        """One row: keys only in production, keys only in the shadow, changed rows, then changed rows per
        value column (in `values` order)."""
        on_both = self._on_both()
        changes = [self.distinct(c) for c in self.values]
        any_change = exp.or_(*changes) if changes else exp.false()
        items = [
            exp.CountIf(this=self._missing(SHADOW)),
            exp.CountIf(this=self._missing(PRODUCTION)),
            exp.CountIf(this=exp.and_(on_both.copy(), exp.Paren(this=any_change))),
            *(exp.CountIf(this=exp.and_(on_both.copy(), change.copy())) for change in changes),
        ]
        return self._render(self._joined(items, "full outer"))

    def only_keys(self, side: str, limit: int) -> Query:
        """Up to `limit` keys only on `side` (PRODUCTION or SHADOW), smallest first."""
        other = SHADOW if side == PRODUCTION else PRODUCTION
        keys = [col(k, side) for k in self.key]
        select = self._joined(keys, "full outer").where(self._missing(other))
        return self._render(select.order_by(*(_ascending(k.copy()) for k in keys)).limit(limit))

    def changed_sample(self, c: Compared, limit: int) -> Query:
        """Up to `limit` rows whose `c` changed: key, production value, shadow value; smallest key first."""
        keys = [col(k, PRODUCTION) for k in self.key]
        items = [*keys, col(c.name, PRODUCTION), col(c.name, SHADOW)]
        select = self._joined(items, "inner").where(self.distinct(c))
        return self._render(select.order_by(*(_ascending(k.copy()) for k in keys)).limit(limit))

    # ---------------------------------------------------------------------------------------- whole rows

    def _grouped(self) -> exp.Select:
        """Every distinct row of either side with its copies on each: `SELECT <columns>, SUM(in production),
        SUM(in shadow) FROM (production UNION ALL shadow) GROUP BY <columns>`."""

        def side(ref: str, production: int) -> exp.Select:
            items = [exp.alias_(self.value(c), ident(c.name)) for c in self.columns]
            items.append(exp.alias_(exp.Literal.number(production), ident(IN_PRODUCTION)))
            items.append(exp.alias_(exp.Literal.number(1 - production), ident(IN_SHADOW)))
            return self._from(ref, items)

        both = exp.union(side(self.production_ref, 1), side(self.shadow_ref, 0), distinct=False)
        names = [col(c.name) for c in self.columns]
        return (
            exp.select(
                *names,
                exp.alias_(exp.Sum(this=col(IN_PRODUCTION)), ident(IN_PRODUCTION)),
                exp.alias_(exp.Sum(this=col(IN_SHADOW)), ident(IN_SHADOW)),
            )
            .from_(both.subquery(ident(ROWS)))
            .group_by(*(n.copy() for n in names))
        )

    def _excess(self, side: str) -> exp.Expr:
        """Copies of a row on `side` beyond those on the other side (0 when none)."""
        mine, other = (IN_PRODUCTION, IN_SHADOW) if side == PRODUCTION else (IN_SHADOW, IN_PRODUCTION)
        more = exp.GT(this=col(mine), expression=col(other))
        return exp.If(
            this=more, true=exp.Sub(this=col(mine), expression=col(other)), false=exp.Literal.number(0)
        )

    def row_stats(self) -> Query:
        """One row: rows only in production, rows only in the shadow (copies counted)."""
        grouped = self._grouped().subquery(ident(ROWS))
        items = [exp.Sum(this=self._excess(PRODUCTION)), exp.Sum(this=self._excess(SHADOW))]
        return self._render(exp.select(*items).from_(grouped))

    def only_rows(self, side: str, limit: int) -> Query:
        """Up to `limit` rows only on `side`, each with its extra copies (the last value)."""
        grouped = self._grouped().subquery(ident(ROWS))
        names = [col(c.name) for c in self.columns]
        excess = self._excess(side)
        select = (
            exp.select(*names, excess.copy())
            .from_(grouped)
            .where(exp.GT(this=excess, expression=exp.Literal.number(0)))
        )
        return self._render(select.order_by(*(_ascending(n.copy()) for n in names)).limit(limit))


def _ascending(column: exp.Expr) -> exp.Ordered:
    """Ascending, NULLs first on every engine (BigQuery's default, DuckDB's is last): the same sample on both."""
    return exp.Ordered(this=column, desc=False, nulls_first=True)
