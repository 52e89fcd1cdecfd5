"""Named fault points: each wraps one function of the product so the process SIGKILLs itself there.

A point is armed in the child process only (`runner.py`); the test process never imports this module's patches.
Killing with SIGKILL means no `finally`, no rollback and no Dagster event: exactly what a lost pod or an OOM kill
does. Before dying the process writes `FAULT <point>` to stderr, so a test can tell the fault fired.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

import derive_assets.replication.run as replication_run
import resources.duckdb_warehouse as duckdb_warehouse
import resources.sqlite_online_store as sqlite_online_store
import resources.strategy as strategy
from derive_assets.factory import export_assets

EXTRACT_BATCH_ROWS = 50
"""Rows per source batch while a replication point is armed (several batches even for a small table)."""
EXPORT_BATCH_ROWS = 5
"""Rows per export batch while an export point is armed; the SQLite store commits each batch."""


def die(point: str) -> NoReturn:
    sys.stderr.write(f"FAULT {point}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("SIGKILL did not stop the process")  # pragma: no cover


def _replace(owner: Any, name: str, make: Callable[[Any], Any], point: str) -> None:
    """Swap `owner.name` for `make(original)`; a renamed function fails loudly instead of never firing."""
    original = getattr(owner, name, None)
    if original is None:
        raise SystemExit(
            f"fault point {point}: {owner.__name__}.{name} no longer exists; update tests/faults"
        )
    setattr(owner, name, make(original))


def _kill_on_call(point: str) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            die(point)

        return wrapper

    return make


def _kill_after_return(point: str) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            original(*args, **kwargs)
            die(point)

        return wrapper

    return make


def _extract(point: str) -> None:
    """Mid-extraction: the first source batch is in the load's transaction, the second is being read."""

    def make(original: Any) -> Any:
        def read(url: str, plan: Any, **kwargs: Any) -> Iterator[Any]:
            for number, batch in enumerate(original(url, plan, batch_rows=EXTRACT_BATCH_ROWS, **kwargs)):
                if number == 1:
                    die(point)
                yield batch

        return read

    _replace(replication_run, "read_batches", make, point)


def _replication_stage(point: str) -> None:
    """Every row staged (or, on a first load, inserted into the table) and checked, nothing merged or committed."""
    _replace(strategy, "_merge_load", _kill_on_call(point), point)


def _merge(point: str) -> None:
    """Inside the merge: the old versions of the keys are deleted, the new rows are not yet inserted (DuckDB's
    delete + insert in one transaction)."""
    _replace(strategy, "_insert", _kill_on_call(point), point)


def _table_stage(point: str) -> None:
    """The query's rows are in the staging table, nothing of the target touched yet."""
    _replace(strategy, "_check_write", _kill_on_call(point), point)


def _export_write(point: str) -> None:
    """Mid-export: two batches are committed in the online store, the third is being read."""
    export_assets.BATCH_ROWS = EXPORT_BATCH_ROWS

    def make(original: Any) -> Any:
        def write(self: Any, table: Any, batches: Iterable[Any]) -> Any:
            def counted() -> Iterator[Any]:
                for number, batch in enumerate(batches):
                    if number == 2:
                        die(point)
                    yield batch

            return original(self, table, counted())

        return write

    _replace(sqlite_online_store.SQLiteOnlineStore, "write", make, point)


POINTS: dict[str, Callable[[str], None]] = {
    "replication.extract": _extract,
    "replication.stage": _replication_stage,
    "replication.merge": _merge,
    "replication.commit": lambda p: _replace(
        duckdb_warehouse.DuckDBWarehouse, "load", _kill_after_return(p), p
    ),
    "table.stage": _table_stage,
    "table.merge": _merge,
    "table.commit": lambda p: _replace(duckdb_warehouse.DuckDBWarehouse, "write", _kill_after_return(p), p),
    "export.write": _export_write,
    "export.written": lambda p: _replace(
        sqlite_online_store.SQLiteOnlineStore, "write", _kill_after_return(p), p
    ),
}
"""Point name -> what arms it. `*.commit` and `export.written` fire after the write committed and before Dagster
records the materialization (and with it the watermark)."""


def arm(point: str) -> None:
    if point not in POINTS:
        raise SystemExit(f"unknown fault point {point!r}; known: {sorted(POINTS)}")
    POINTS[point](point)
