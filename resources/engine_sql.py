"""The statements of the strategy layer as sqlglot expressions; each engine renders them in its dialect.

Everything the strategies say to an engine is built here, once: the window predicate, the soft-delete predicate,
the key match, the profile and duplicate-key queries, and the DELETE / INSERT ... SELECT / MERGE statements. An
engine renders an expression with `.sql(dialect)`; bound parameters (the window bounds) are placeholders in the
dialect's style from `resources.dialects`. Identifiers are always quoted; values are never written into SQL.

Aliases: `T` is the target table, `S` the staged rows (`Staged.source`: a table, or a query over one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from resources.dialects import placeholder
from resources.lazy_import import lazy_module
from resources.warehouse import LoadRequest, TargetTable

if TYPE_CHECKING:
    from sqlglot import exp
else:
    exp = lazy_module("sqlglot.expressions")


TARGET = "T"
STAGED = "S"
SAMPLE_KEYS = 5
"""How many duplicated keys a `DuplicateKeys` error shows."""
GROUPS_COLUMN = "_derive_duplicated_keys"


@dataclass(frozen=True)
class Count:
    """One `COUNTIF` of a profile query: what it counts (`name`) and the predicate."""

    name: str
    predicate: exp.Expr


# ----------------------------------------------------------------------------------------------- names


def ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def col(name: str, table: str | None = None) -> exp.Column:
    """A quoted column, qualified by an alias (`T`, `S`) when given."""
    return exp.column(ident(name), table=exp.to_identifier(table) if table else None)


def table(ref: str, alias: str | None = None) -> exp.Table:
    """`dataset.name` as a quoted table, optionally aliased."""
    dataset, name = ref.split(".")
    return exp.table_(ident(name), db=ident(dataset), alias=exp.to_identifier(alias) if alias else None)


def relation(source: exp.Expr, alias: str = STAGED) -> exp.Expr:
    """A staged relation for FROM/USING: a table aliased, a query as an aliased subquery."""
    if isinstance(source, exp.Table):
        copy = source.copy()
        copy.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        return copy
    assert isinstance(source, exp.Query), f"not a relation: {source!r}"
    return source.subquery(exp.to_identifier(alias), copy=True)


def cast(expression: exp.Expr, type_name: str, dialect: str) -> exp.Cast:
    """`CAST(expression AS <type_name>)` with the engine's type name exactly as its type map spells it.

    Not parsed into a sqlglot type: its BigQuery generator drops the precision of `NUMERIC(38, 9)`, which the
    emulator needs (a bare NUMERIC becomes DECIMAL(18, 3) there)."""
    del dialect  # the name is already in the engine's dialect
    return exp.Cast(this=expression, to=exp.DataType(this=exp.DataType.Type.USERDEFINED, kind=type_name))


def count_all() -> exp.Count:
    return exp.Count(this=exp.Star())


# ----------------------------------------------------------------------------------------------- predicates


def window_predicate(
    target: TargetTable, types: Mapping[str, str], dialect: str, alias: str | None = None
) -> exp.Expr:
    """The run's window on a partitioned target: its partition key within [window_start, window_end).

    Used by the profile (rows outside it are refused) and by the window-scoped delete/merge of the target."""
    key = target.partition_key
    assert key is not None, "only partitioned tables have a window"
    return window_between(key, types[target.column(key).type], dialect, alias)


def window_between(column: str, type_name: str, dialect: str, alias: str | None = None) -> exp.Expr:
    """`column >= CAST(<window_start> AS <type>) AND column < CAST(<window_end> AS <type>)`: the one definition of
    a window, its bounds bound parameters cast to the column's engine type."""
    start = cast(placeholder("window_start", dialect), type_name, dialect)
    end = cast(placeholder("window_end", dialect), type_name, dialect)
    return exp.and_(
        exp.GTE(this=col(column, alias), expression=start),
        exp.LT(this=col(column, alias), expression=end),
    )


def outside_window(target: TargetTable, types: Mapping[str, str], dialect: str) -> exp.Expr:
    """True for a row whose partition key is NULL or outside the window."""
    assert target.partition_key is not None
    inside = window_predicate(target, types, dialect)
    return exp.or_(is_null(col(target.partition_key)), exp.Not(this=exp.Paren(this=inside)))


def soft_delete_predicate(request: LoadRequest, alias: str | None = None) -> exp.Expr | None:
    """True for rows the source marked deleted: a BOOL flag that is true, or a deletion time that is set.

    The one definition of a soft delete; None when the load has no soft-delete column."""
    if not request.soft_delete_column:
        return None
    flag = col(request.soft_delete_column, alias)
    if request.target.column(request.soft_delete_column).type == "BOOL":
        return exp.Is(this=flag, expression=exp.true())
    return exp.Not(this=is_null(flag))


def is_null(expression: exp.Expr) -> exp.Is:
    return exp.Is(this=expression, expression=exp.Null())


def any_null(columns: Sequence[str], alias: str | None = None) -> exp.Expr:
    """True for a row with a NULL in any of `columns`."""
    return exp.or_(*(is_null(col(c, alias)) for c in columns))


def key_match(keys: Sequence[str], left: str = TARGET, right: str = STAGED) -> exp.Expr:
    """`T.k1 = S.k1 AND T.k2 = S.k2 ...`: every key column, never just the first."""
    return exp.and_(*(exp.EQ(this=col(k, left), expression=col(k, right)) for k in keys))


def all_rows(target: TargetTable) -> exp.Expr:
    """A predicate true for every row. With `require_partition_filter`, BigQuery wants one on the partition key."""
    if target.partition_key is None or not target.require_partition_filter:
        return exp.true()
    key = col(target.partition_key)
    return exp.or_(is_null(key), exp.Not(this=is_null(key.copy())))


def and_(*conditions: exp.Expr | None) -> exp.Expr:
    """The conjunction of the conditions that are not None (TRUE when none is), flattened: `a AND b AND c`."""
    terms = [t.copy() for c in conditions if c is not None for t in _conjuncts(c)]
    return exp.and_(*terms) if terms else exp.true()


def _conjuncts(condition: exp.Expr) -> list[exp.Expr]:
    if isinstance(condition, exp.And):
        return [*_conjuncts(condition.this), *_conjuncts(condition.expression)]
    return [condition]


# ----------------------------------------------------------------------------------------------- queries


def profile(source: exp.Expr, first: Sequence[exp.Expr], counts: Sequence[Count]) -> exp.Select:
    """One scan: `SELECT <first...>, COUNTIF(<predicate>)... FROM <source> AS S`."""
    items = [*first, *(exp.CountIf(this=c.predicate.copy()) for c in counts)]
    return exp.select(*items).from_(relation(source))


def duplicates(source: exp.Expr, keys: Sequence[str]) -> exp.Select:
    """Up to `SAMPLE_KEYS` keys that occur more than once, smallest first, each row also carrying how many keys
    occur more than once (a window over the groups, computed before the LIMIT)."""
    groups = exp.alias_(exp.Window(this=count_all()), ident(GROUPS_COLUMN))
    return (
        exp.select(*(col(k) for k in keys), groups)
        .from_(relation(source))
        .group_by(*(col(k) for k in keys))
        .having(exp.GT(this=count_all(), expression=exp.Literal.number(1)))
        .order_by(*(_ascending(col(k)) for k in keys))
        .limit(SAMPLE_KEYS)
    )


def count_where(target: TargetTable, where: exp.Expr) -> exp.Select:
    """How many target rows a predicate on its (unqualified) columns holds for."""
    return exp.select(count_all()).from_(table(target.ref)).where(where)


def count_matches(
    target: TargetTable, source: exp.Expr, on: exp.Expr, first: Sequence[exp.Expr]
) -> exp.Select:
    """`SELECT <first...> FROM <source> AS S JOIN <target> AS T ON <on>`."""
    return exp.select(*first).from_(relation(source)).join(table(target.ref, TARGET), on=on)


def is_empty(target: TargetTable) -> exp.Select:
    """One row counting at most one row of the target."""
    probe = exp.select(exp.Literal.number(1)).from_(table(target.ref)).limit(1)
    return exp.select(count_all()).from_(probe.subquery("probe"))


# ----------------------------------------------------------------------------------------------- statements


def delete_where(target: TargetTable, where: exp.Expr) -> exp.Delete:
    """`DELETE FROM <target> WHERE <where>` (the window, all rows, or flagged rows)."""
    return exp.Delete(this=table(target.ref), where=exp.Where(this=where))


def delete_matching(target: TargetTable, source: exp.Expr, on: exp.Expr) -> exp.Delete:
    """`DELETE FROM <target> AS T USING <source> AS S WHERE <on>`: the target rows a staged row replaces."""
    return exp.Delete(this=table(target.ref, TARGET), using=[relation(source)], where=exp.Where(this=on))


def insert_select(
    target: TargetTable, source: exp.Expr, where: exp.Expr | None = None, order: Sequence[str] = ()
) -> exp.Insert:
    """`INSERT INTO <target> (<columns>) SELECT <columns> FROM <source> AS S [WHERE] [ORDER BY <order>]`."""
    names = [c.name for c in target.columns]
    select = exp.select(*(col(n) for n in names)).from_(relation(source))
    if where is not None:
        select = select.where(where)
    if order:
        select = select.order_by(*(_ascending(col(c)) for c in order))
    into = exp.Schema(this=table(target.ref), expressions=[ident(n) for n in names])
    return exp.Insert(this=into, expression=select)


def merge_upsert(
    target: TargetTable, source: exp.Expr, on: exp.Expr, delete_missing: exp.Expr | None = None
) -> exp.Merge:
    """Update the target rows `on` matches, insert the other staged rows. With `delete_missing` (a predicate on
    `T`, e.g. the window; TRUE for the whole table), also delete the target rows it holds for that no staged row
    matches: `WHEN NOT MATCHED BY SOURCE AND <delete_missing> THEN DELETE`."""
    whens = [_when_matched_update(target), _when_not_matched_insert(target)]
    if delete_missing is not None:
        whens.append(exp.When(matched=False, source=True, condition=delete_missing, then=exp.var("DELETE")))
    return _merge(target, source, on, whens)


def merge_overwrite(target: TargetTable, source: exp.Expr, scope: exp.Expr | None) -> exp.Merge:
    """Insert-overwrite in one statement: `ON FALSE`, so every target row in `scope` (every row without one) is
    `NOT MATCHED BY SOURCE` and deleted, and every staged row is inserted."""
    delete = exp.When(matched=False, source=True, condition=scope, then=exp.var("DELETE"))
    return _merge(target, source, exp.false(), [delete, _when_not_matched_insert(target)])


def merge_load(
    target: TargetTable, source: exp.Expr, keys: Sequence[str], flag: exp.Expr | None
) -> exp.Merge:
    """Replicated rows by primary key: flagged rows delete their target row and are not inserted."""
    whens: list[exp.When] = []
    if flag is not None:
        whens.append(exp.When(matched=True, source=False, condition=flag.copy(), then=exp.var("DELETE")))
    whens.append(_when_matched_update(target))
    whens.append(
        _when_not_matched_insert(target, exp.Not(this=exp.Paren(this=flag.copy())) if flag else None)
    )
    return _merge(target, source, key_match(keys), whens)


# ----------------------------------------------------------------------------------------------- delete_missing


def unmatched(source: exp.Expr, keys: Sequence[str]) -> exp.Not:
    """True for a target row (`T`) whose key no staged row has: `NOT EXISTS (SELECT 1 FROM S WHERE T.k = S.k)`."""
    probe = exp.select(exp.Literal.number(1)).from_(relation(source)).where(key_match(keys))
    return exp.Not(this=exp.Exists(this=probe))


def delete_unmatched(
    target: TargetTable, source: exp.Expr, keys: Sequence[str], scope: exp.Expr | None
) -> exp.Delete:
    """`DELETE FROM <target> AS T WHERE <scope> AND NOT EXISTS (<staged row with T's key>)`: a merge's
    `delete_missing` on engines without MERGE (scope: the window on `T`, or None for the whole table)."""
    where = and_(scope, unmatched(source, keys))
    return exp.Delete(this=table(target.ref, TARGET), where=exp.Where(this=where))


def count_unmatched(
    target: TargetTable, source: exp.Expr, keys: Sequence[str], scope: exp.Expr | None
) -> exp.Select:
    """How many rows `delete_unmatched` (or the MERGE's `NOT MATCHED BY SOURCE` branch) removes."""
    where = and_(scope, unmatched(source, keys))
    return exp.select(count_all()).from_(table(target.ref, TARGET)).where(where)


# ----------------------------------------------------------------------------------------------- partitions


def bucket_counts(
    relation_: exp.Expr, bucket: exp.Expr, where: exp.Expr | None = None, alias: str = STAGED
) -> exp.Select:
    """`SELECT <bucket>, COUNT(*) FROM <relation> AS <alias> [WHERE] GROUP BY <bucket>`: rows per truncated
    partition key, summed into windows by the caller (one query for any number of partitions)."""
    select = exp.select(bucket.copy(), count_all()).from_(relation(relation_, alias))
    if where is not None:
        select = select.where(where)
    return select.group_by(bucket.copy())


def hour_bucket(column: exp.Expr, spec_type: str) -> exp.Expr:
    """A DATETIME or TIMESTAMP truncated to its hour (a DATE is its own day: callers bucket it by day)."""
    if spec_type == "DATETIME":
        return exp.DatetimeTrunc(this=column, unit=exp.var("HOUR"))
    return exp.TimestampTrunc(this=column, unit=exp.var("HOUR"))


def day_bucket(column: exp.Expr, spec_type: str, dialect: str) -> exp.Expr:
    """A partition key as its (UTC) day: a DATE as it is, a DATETIME or TIMESTAMP cast to DATE (DuckDB runs in
    UTC, BigQuery casts a TIMESTAMP in UTC)."""
    if spec_type == "DATE":
        return column
    return cast(column, "DATE", dialect)


# ----------------------------------------------------------------------------------------------- rebuild


def drop_table(ref: str) -> exp.Drop:
    """`DROP TABLE IF EXISTS <ref>`."""
    return exp.Drop(this=table(ref), kind="TABLE", exists=True)


def rename_table(ref: str, new_name: str) -> exp.Alter:
    """`ALTER TABLE <ref> RENAME TO <new_name>` (same dataset)."""
    return exp.Alter(
        this=table(ref), kind="TABLE", actions=[exp.AlterRename(this=exp.table_(ident(new_name)))]
    )


def _merge(target: TargetTable, source: exp.Expr, on: exp.Expr, whens: list[exp.When]) -> exp.Merge:
    return exp.Merge(
        this=table(target.ref, TARGET),
        using=relation(source),
        on=on,
        whens=exp.Whens(expressions=whens),
    )


def _when_matched_update(target: TargetTable) -> exp.When:
    sets = [exp.EQ(this=col(c.name), expression=col(c.name, STAGED)) for c in target.columns]
    return exp.When(matched=True, source=False, then=exp.Update(expressions=sets))


def _when_not_matched_insert(target: TargetTable, condition: exp.Expr | None = None) -> exp.When:
    names = [c.name for c in target.columns]
    insert = exp.Insert(
        this=exp.Tuple(expressions=[col(n) for n in names]),
        expression=exp.Tuple(expressions=[col(n, STAGED) for n in names]),
    )
    return exp.When(matched=False, source=False, condition=condition, then=insert)


def _ascending(column: exp.Column) -> exp.Ordered:
    """Ascending with the engine's own NULL placement (no explicit NULLS FIRST/LAST)."""
    return exp.Ordered(this=column, desc=False, nulls_first=False)
