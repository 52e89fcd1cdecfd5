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
from resources.engine_sql import cast, window_between
from resources.lazy_import import lazy_module
from resources.schema import ColumnType
from resources.warehouse import TimeWindow

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp
else:
    exp = lazy_module("sqlglot.expressions")


CheckKind = Literal["not_null", "unique", "accepted_values", "min", "max", "relationships"]


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
class Reference:
    """The key column a `relationships` check looks values up in."""

    ref: str
    """`dataset.table`."""
    column: str


@dataclass(frozen=True)
class CheckQuery:
    """Counts the rows (for `unique`: the values) of `slice` that break one check on `column`.

    - `not_null`: rows where the column is NULL;
    - `accepted_values`: rows where it is not NULL and not one of `accepted_values`;
    - `min` / `max`: rows whose value is below / above `bound` (a bound parameter, cast to the column's engine type
      when `type` is temporal, as window bounds are; NULL never breaks it);
    - `relationships`: rows whose non-NULL value is missing from `reference`'s column (a `NOT EXISTS` anti-join);
    - `unique`: non-NULL values held by more than one row of the *whole table* (a key must be unique across
      windows, so `unique` ignores the slice's window and cursor); the others count only the slice's rows.
    """

    kind: CheckKind
    column: str
    slice: TableSlice
    accepted_values: tuple[str | int | bool, ...] = ()
    bound: Any = None
    """`min`/`max`: the bound (inclusive: a value equal to it passes)."""
    type: ColumnType | None = None
    """`min`/`max`: the column's spec type (temporal bounds are cast to it)."""
    reference: Reference | None = None
    """`relationships`: where every value must exist."""

    def __post_init__(self) -> None:
        if self.kind == "accepted_values" and not self.accepted_values:
            raise ValueError(
                f"{self.slice.ref}: the accepted_values check on column {self.column!r} lists no values; give "
                "at least one accepted value"
            )
        if self.kind in ("min", "max") and self.bound is None:
            raise ValueError(
                f"{self.slice.ref}: the {self.kind} check on column {self.column!r} has no bound"
            )
        if self.kind == "relationships" and self.reference is None:
            raise ValueError(
                f"{self.slice.ref}: the relationships check on column {self.column!r} names no referenced table"
            )


@dataclass(frozen=True)
class SqlCheckQuery:
    """A query returning the rows that break a rule (a custom check), as a sqlglot expression in any dialect:
    `count_sql_violations` renders `SELECT count(*) FROM (<query>)` in the engine's dialect. `params` are the
    values of the query's parameters (e.g. `window_start`, `window_end`)."""

    query: exp.Query
    params: Mapping[str, Any]


class Query(NamedTuple):
    """A rendered statement and the values of its bound parameters."""

    sql: str
    params: dict[str, Any]


# ----------------------------------------------------------------------------------------------- rendering


def _column(name: str, table: str | None = None) -> exp.Column:
    return exp.column(
        exp.to_identifier(name, quoted=True), table=exp.to_identifier(table, quoted=True) if table else None
    )


def _table(ref: str, alias: str | None = None) -> exp.Table:
    dataset, name = ref.split(".")
    return exp.table_(
        exp.to_identifier(name, quoted=True),
        db=exp.to_identifier(dataset, quoted=True),
        alias=exp.to_identifier(alias, quoted=True) if alias else None,
    )


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

    def window(self, bound: WindowBound, alias: str | None = None) -> None:
        """The write path's window predicate (`engine_sql.window_between`): one definition of a window."""
        self.params.update(bound.window.as_params())
        predicate = window_between(bound.column, self.types[bound.type], self.dialect, alias)
        self.conditions.extend(predicate.flatten())

    def cursor(self, cursor: CursorRange, alias: str | None = None) -> None:
        column = _column(cursor.column, alias)
        if cursor.after is not None:
            self.add(exp.GT(this=column, expression=self.bind("cursor_after", cursor.after)))
        if cursor.upto is not None:
            self.add(exp.LTE(this=column.copy(), expression=self.bind("cursor_upto", cursor.upto)))

    def slice(self, s: TableSlice, alias: str | None = None) -> None:
        """The slice's window and cursor range; `alias`: the table's alias in the statement, if it has one."""
        if s.window is not None:
            self.window(s.window, alias)
        if s.cursor is not None:
            self.cursor(s.cursor, alias)

    def beyond(self, check: CheckQuery, column: exp.Expr) -> exp.Expr:
        """`column < bound` (`min`) or `column > bound` (`max`), the bound bound and cast for temporal types."""
        value = self.bind("bound", check.bound)
        if check.type in ("DATE", "DATETIME", "TIMESTAMP"):
            value = cast(value, self.types[check.type], self.dialect)
        compare = exp.LT if check.kind == "min" else exp.GT
        return compare(this=column, expression=value)

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
    if check.kind == "relationships":
        where.add(_missing_from_reference(check))
        where.slice(check.slice, CHECKED)
        return where.render(exp.select(_count_all()).from_(_table(check.slice.ref, CHECKED)))
    if check.kind == "not_null":
        where.add(exp.Is(this=col, expression=exp.Null()))
    elif check.kind in ("min", "max"):
        where.add(where.beyond(check, col))
    else:
        values = [where.bind(f"v{i}", v) for i, v in enumerate(check.accepted_values)]
        where.add(exp.Not(this=exp.Is(this=col, expression=exp.Null())))
        where.add(exp.Not(this=exp.In(this=col.copy(), expressions=values)))
    where.slice(check.slice)
    return where.render(exp.select(_count_all()).from_(table))


CHECKED, REFERENCED = "checked", "referenced"
"""The aliases of the checked and the referenced table in a `relationships` anti-join."""


def _missing_from_reference(check: CheckQuery) -> exp.Expr:
    """`checked.col IS NOT NULL AND NOT EXISTS (SELECT 1 FROM <reference> AS referenced WHERE referenced.key =
    checked.col)`: the anti-join of a `relationships` check, NULL-safe (a NULL is never missing)."""
    assert check.reference is not None
    col = _column(check.column, CHECKED)
    lookup = (
        exp.select(exp.Literal.number(1))
        .from_(_table(check.reference.ref, REFERENCED))
        .where(exp.EQ(this=_column(check.reference.column, REFERENCED), expression=col.copy()))
    )
    return exp.and_(
        exp.Not(this=exp.Is(this=col, expression=exp.Null())),
        exp.Not(this=exp.Exists(this=lookup)),
    )


def sql_violations_query(check: SqlCheckQuery, dialect: str) -> Query:
    """`SELECT count(*) FROM (<the check's query>) AS violations`, in `dialect`."""
    wrapped = exp.select(_count_all()).from_(check.query.copy().subquery("violations"))
    return Query(wrapped.sql(dialect), dict(check.params))


def sql_samples_query(check: SqlCheckQuery, dialect: str, limit: int) -> Query:
    """The first `limit` rows of the check's query."""
    wrapped = exp.select(exp.Star()).from_(check.query.copy().subquery("violations")).limit(limit)
    return Query(wrapped.sql(dialect), dict(check.params))


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
    elif check.kind in ("min", "max"):
        where.add(where.beyond(check, col.copy()))
        where.slice(check.slice)
        # the values furthest out of range first
        order = col.copy() if check.kind == "min" else exp.Ordered(this=col.copy(), desc=True)
        return where.render(select.distinct().order_by(order).limit(limit))
    elif check.kind == "relationships":
        checked = _column(check.column, CHECKED)
        where.add(_missing_from_reference(check))
        where.slice(check.slice, CHECKED)
        select = exp.select(checked).from_(_table(check.slice.ref, CHECKED)).distinct()
        return where.render(select.order_by(checked.copy()).limit(limit))
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

    def count_sql_violations(self, check: SqlCheckQuery) -> int:
        """How many rows a custom check's query returns (each one breaks its rule)."""
        return _first_int(self._query_rows(*sql_violations_query(check, self.dialect)))

    def sql_violation_samples(self, check: SqlCheckQuery, limit: int = 5) -> list[tuple[Any, ...]]:
        """The first `limit` rows a custom check's query returns, to show in its result."""
        return self._query_rows(*sql_samples_query(check, self.dialect, limit))


def _first_int(rows: list[tuple[Any, ...]]) -> int:
    return int(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else 0
