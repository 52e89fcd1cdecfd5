"""Asset selections as the operator types them (`derive plan analytics/* +analytics/foo`), resolved by Dagster.

Each argument is one of:

- a key, `analytics/daily_x` or `analytics.daily_x` (the table's ref), possibly with `*` globs
  (`analytics/*`, `*/daily_*`): in these short forms `*` is always a glob;
- the same with graph operators: `+key` (its direct parents too), `++key` (two layers), `key+`, `key++`
  (children);
- any string of Dagster's own selection syntax (`key:"analytics/*" or group:core`, `tag:...`), passed through.

Dagster's legacy string syntax (`AssetSelection.from_string("analytics/*")`) reads `analytics/*` as "everything
downstream of the key `analytics/`" and fails, so the short forms above are turned into `key:"..."` selections
(dagster's wildcard matching) with `.upstream()`/`.downstream()` applied here. Several arguments are a union.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

from dagster import AssetKey, AssetSelection, DagsterError

_SHORT = re.compile(r"^(?P<up>\++)?(?P<key>[A-Za-z0-9_*][A-Za-z0-9_*./-]*?)(?P<down>\++)?$")


class SelectionError(ValueError):
    """A selection that names no asset, or is not valid selection syntax; the message names near keys."""


def parse(text: str) -> AssetSelection:
    """One argument as a Dagster `AssetSelection` (not yet resolved against a graph)."""
    short = _SHORT.match(text.strip())
    if short is None or ":" in text:
        try:
            return AssetSelection.from_string(text)
        except DagsterError as exc:
            raise SelectionError(
                f"'{text}' is not an asset selection ({str(exc).splitlines()[0]}); use a key such as "
                "analytics/daily_payments_by_region (or analytics.daily_payments_by_region), a glob such as "
                "analytics/*, or +key / key+ for parents / children"
            ) from None
    key = short["key"].replace(".", "/") if "/" not in short["key"] else short["key"]
    selection = AssetSelection.from_string(f'key:"{key}"')
    if up := short["up"]:
        selection = selection.upstream(len(up))
    if down := short["down"]:
        selection = selection.downstream(len(down))
    return selection


def select(texts: Sequence[str], graph: object, known: Iterable[AssetKey]) -> set[AssetKey]:
    """The keys `texts` select in `graph` (a resolved asset graph); every key when `texts` is empty.

    Raises `SelectionError` for an argument that selects nothing, naming the keys closest to it.
    """
    names = sorted(k.to_user_string() for k in known)
    if not texts:
        return {AssetKey.from_user_string(n) for n in names}
    chosen: set[AssetKey] = set()
    for text in texts:
        try:
            keys = parse(text).resolve(graph)  # type: ignore[arg-type]  # BaseAssetGraph, not public API
        except DagsterError as exc:
            raise SelectionError(f"'{text}': {str(exc).splitlines()[0]}") from None
        if not keys:
            wanted = text.strip("+")
            raise SelectionError(
                f"'{text}' selects no asset; {near(wanted if '/' in wanted else wanted.replace('.', '/'), names)}"
            )
        chosen |= set(keys)
    return chosen


def near(text: str, names: Sequence[str]) -> str:
    """'did you mean ...' with the names closest to `text` (or the first few names when none is close)."""
    close = difflib.get_close_matches(text, names, n=5, cutoff=0.5)
    if close:
        return f"did you mean {', '.join(close)}?"
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"known assets: {shown}"
