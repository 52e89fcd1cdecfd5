"""Reads and column checks described as data; each engine renders them in its own dialect.

The factory says *what* it reads - a `TableSlice` (table, columns, a window on a time column, a cursor range) or a
`CheckQuery` (one column check over a slice) - and the warehouse turns it into SQL with sqlglot for its dialect,
values as bound parameters in that dialect's style (`resources.dialects`). `SliceReads` is written once; an engine
inherits it and implements three primitives that run a rendered query.

Example:
    ```python
    s = TableSlice("core.orders", ("order_id", "amount"), window=WindowBound("order_date", "DATE", window))
    warehouse.count_slice(s)                                   # rows of the window
    warehouse.count_violations(CheckQuery("not_null", "amount", s))
    ```
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from resources.dialects import placeholder
from resources.engine_sql import window_between
from resources.lazy_import import lazy_module
from resources.schema import ColumnType
from resources.warehouse import TimeWindow

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp
else:
    exp = lazy_module("sqlglot.expressions")


CheckKind = Literal["not_null", "unique", "accepted_values"]


@dataclass(frozen=True)
class WindowBound:
    """Rows whose `column` (of spec type `type`) lies in [window.start, window.end).

    The bounds are cast to the column's warehouse type, as the write path's window filter does
    (`CAST($window_start AS DATE)` for a DATE column on DuckDB, `AS TIMESTAMPTZ` for a TIMESTAMP, ...).
    """

    column: str
    type: ColumnType
    window: TimeWindow


@dataclass(frozen=True)
class CursorRange:
    """Rows with `after < column <= upto`; a bound that is None is open. The bounds are compared uncast."""

    column: str
    after: Any = None
    upto: Any = None


@dataclass(frozen=True)
class TableSlice:
    """Some rows and columns of one table: every filter given must hold."""

    ref: str
    """`dataset.table`."""
    columns: tuple[str, ...] | None = None
    """Columns to read, in this order; None reads every column."""
    window: WindowBound | None = None
    cursor: CursorRange | None = None


@dataclass(frozen=True)
class CheckQuery:
    """Counts the rows (for `unique`: the values) of `slice` that break one check on `column`.

    - `not_null`: rows where the column is NULL;
    - `accepted_values`: rows where it is not NULL and not one of `accepted_values`;
    - `unique`: non-NULL values held by more than one row of the *whole table* (a key must be unique across
      windows, so `unique` ignores the slice's window and cursor); the others count only the slice's rows.
    """

    kind: CheckKind
    column: str
    slice: TableSlice
    accepted_values: tuple[str | int | bool, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "accepted_values" and not self.accepted_values:
            raise ValueError(
                f"{self.slice.ref}: the accepted_values check on column {self.column!r} lists no values; give "
                "at least one accepted value"
            )


class Query(NamedTuple):
    """A rendered statement and the values of its bound parameters."""

    sql: str
    params: dict[str, Any]


# ----------------------------------------------------------------------------------------------- rendering


def _column(name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True))


def _table(ref: str) -> exp.Table:
    dataset, name = ref.split(".")
    return exp.table_(exp.to_identifier(name, quoted=True), db=exp.to_identifier(dataset, quoted=True))


def _count_all() -> exp.Count:
    return exp.Count(this=exp.Star())


class _Where:
    """The conditions of one statement and the parameters they bind."""

    def __init__(self, dialect: str, types: Mapping[str, str]) -> None:
        self.dialect, self.types = dialect, types
        self.conditions: list[exp.Expr] = []
        self.params: dict[str, Any] = {}

    def bind(self, name: str, value: Any) -> exp.Expr:
        self.params[name] = value
        return placeholder(name, self.dialect)

    def add(self, condition: exp.Expr) -> None:
        self.conditions.append(condition)

    def window(self, bound: WindowBound) -> None:
        """The write path's window predicate (`engine_sql.window_between`): one definition of a window."""
        self.params.update(bound.window.as_params())
        self.conditions.extend(window_between(bound.column, self.types[bound.type], self.dialect).flatten())

    def cursor(self, cursor: CursorRange) -> None:
        if cursor.after is not None:
            self.add(exp.GT(this=_column(cursor.column), expression=self.bind("cursor_after", cursor.after)))
        if cursor.upto is not None:
            self.add(exp.LTE(this=_column(cursor.column), expression=self.bind("cursor_upto", cursor.upto)))

    def slice(self, s: TableSlice) -> None:
        if s.window is not None:
            self.window(s.window)
        if s.cursor is not None:
            self.cursor(s.cursor)

    def apply(self, select: exp.Select) -> exp.Select:
        return select.where(exp.and_(*self.conditions), copy=False) if self.conditions else select

    def render(self, select: exp.Select) -> Query:
        return Query(self.apply(select).sql(self.dialect), self.params)


def select_query(s: TableSlice, dialect: str, types: Mapping[str, str]) -> Query:
    """`SELECT <columns or *> FROM <table> [WHERE <window> AND <cursor>]`."""
    where = _Where(dialect, types)
    where.slice(s)
    columns = [_column(c) for c in s.columns] if s.columns else [exp.Star()]
    return where.render(exp.select(*columns).from_(_table(s.ref)))


def count_query(s: TableSlice, dialect: str, types: Mapping[str, str]) -> Query:
    """`SELECT count(*)` of the slice's rows."""
    where = _Where(dialect, types)
    where.slice(s)
    return where.render(exp.select(_count_all()).from_(_table(s.ref)))


def max_query(s: TableSlice, column: str, dialect: str, types: Mapping[str, str]) -> Query:
    """`SELECT max(column)` over the slice's rows (NULL when it has none)."""
    where = _Where(dialect, types)
    where.slice(s)
    return where.render(exp.select(exp.Max(this=_column(column))).from_(_table(s.ref)))


def violations_query(check: CheckQuery, dialect: str, types: Mapping[str, str]) -> Query:
    """The number of rows (values, for `unique`) breaking `check`; see `CheckQuery`."""
    where = _Where(dialect, types)
    col = _column(check.column)
    table = _table(check.slice.ref)
    if check.kind == "unique":
        duplicated = (
            exp.select(col)
            .from_(table)
            .where(exp.Not(this=exp.Is(this=col.copy(), expression=exp.Null())))
            .group_by(col.copy())
            .having(exp.GT(this=_count_all(), expression=exp.Literal.number(1)))
        )
        return where.render(exp.select(_count_all()).from_(duplicated.subquery("duplicated")))
    if check.kind == "not_null":
        where.add(exp.Is(this=col, expression=exp.Null()))
    else:
        values = [where.bind(f"v{i}", v) for i, v in enumerate(check.accepted_values)]
        where.add(exp.Not(this=exp.Is(this=col, expression=exp.Null())))
        where.add(exp.Not(this=exp.In(this=col.copy(), expressions=values)))
    where.slice(check.slice)
    return where.render(exp.select(_count_all()).from_(table))


def violation_samples_query(check: CheckQuery, dialect: str, types: Mapping[str, str], limit: int) -> Query:
    """Up to `limit` distinct values breaking `check`, smallest first: values outside `accepted_values`, or
    values held by several rows (`unique`). A `not_null` check has no value to show: the query returns none."""
    where = _Where(dialect, types)
    col = _column(check.column)
    table = _table(check.slice.ref)
    select = exp.select(col).from_(table).where(exp.Not(this=exp.Is(this=col.copy(), expression=exp.Null())))
    if check.kind == "unique":
        select = select.group_by(col.copy()).having(
            exp.GT(this=_count_all(), expression=exp.Literal.number(1))
        )
    elif check.kind == "accepted_values":
        values = [where.bind(f"v{i}", v) for i, v in enumerate(check.accepted_values)]
        where.add(exp.Not(this=exp.In(this=col.copy(), expressions=values)))
        where.slice(check.slice)
        select = select.distinct()
    else:
        where.add(exp.false())
    return where.render(select.order_by(col.copy()).limit(limit))


# ----------------------------------------------------------------------------------------------- the mixin


class SliceReads:
    """The five reads of the `Warehouse` protocol, written once over three engine primitives.

    An engine inherits this class and provides `dialect`, `types` (spec type -> the engine's type name, for the
    window casts) and the primitives `_query_rows`, `_query_batches` and `_query_arrow`, each running one
    rendered query with its bound parameters.
    """

    @property
    @abstractmethod
    def dialect(self) -> str:
        """The sqlglot dialect queries are rendered in; must be registered in `resources.dialects`."""

    @property
    @abstractmethod
    def types(self) -> dict[str, str]:
        """Spec type -> the engine's type name."""

    @abstractmethod
    def _query_rows(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of the query's result."""

    @abstractmethod
    def _query_batches(
        self, sql: str, params: Mapping[str, Any], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """The query's result as Arrow batches of at most `batch_rows` rows, fetched as they are consumed."""

    @abstractmethod
    def _query_arrow(self, sql: str, params: Mapping[str, Any]) -> pa.Table:
        """The query's whole result as one Arrow table."""

    def read_slice(self, s: TableSlice) -> pa.Table:
        """The slice's rows as one Arrow table."""
        return self._query_arrow(*select_query(s, self.dialect, self.types))

    def iter_slice(self, s: TableSlice, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The slice's rows as Arrow batches of at most `batch_rows` rows."""
        sql, params = select_query(s, self.dialect, self.types)
        return self._query_batches(sql, params, batch_rows)

    def count_slice(self, s: TableSlice) -> int:
        """How many rows the slice holds."""
        return _first_int(self._query_rows(*count_query(s, self.dialect, self.types)))

    def max_in_slice(self, s: TableSlice, column: str) -> Any:
        """The largest value of `column` in the slice, or None when the slice has no non-NULL value."""
        rows = self._query_rows(*max_query(s, column, self.dialect, self.types))
        return rows[0][0] if rows else None

    def count_violations(self, check: CheckQuery) -> int:
        """How many rows (values, for `unique`) break `check`."""
        return _first_int(self._query_rows(*violations_query(check, self.dialect, self.types)))

    def violation_samples(self, check: CheckQuery, limit: int = 5) -> list[Any]:
        """Up to `limit` of the values breaking `check` (see `violation_samples_query`), to show in its result."""
        return [
            row[0]
            for row in self._query_rows(*violation_samples_query(check, self.dialect, self.types, limit))
        ]


def _first_int(rows: list[tuple[Any, ...]]) -> int:
    return int(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else 0
