"""Staged batches as Arrow streams an engine scans in one statement, one stream per run of one schema.

DuckDB stages a load with one `INSERT ... SELECT` over a `pa.RecordBatchReader` instead of one statement per
batch (measured on 6M rows: 10.5 s and 423 MB peak RSS against 15.6 s and 501 MB per batch). Two things make
that more than handing the engine a generator:

- The engine pulls a reader from its own worker threads, but a source's batches must be read on the thread that
  opened the source (sqlite3 objects refuse any other thread). So the statement runs on a worker thread and the
  caller's thread reads the source, passing batches through a queue of `QUEUE_BATCHES` (bounded memory; the read
  and the insert also overlap).
- A reader has one schema: a batch whose types differ from the batch before it ends the stream, and the rest goes
  into a new statement (the rare source whose column types change between batches, e.g. a column that is all NULL
  in the first batch).
- DuckDB keeps every batch of a scan alive until its statement ends (measured: a 6M-row `INSERT` over one
  stream grew 30 MB of RSS per million rows, outside DuckDB's own memory accounting; the same rows as 1M-row
  statements in the same transaction stayed flat). So a statement takes at most `STATEMENT_ROWS` rows, and the
  next one continues the stream.

An exception of the source (a dropped connection, a refused batch, a missing column) is raised as it is, with its
type: the engine is told to stop and its own error about the aborted scan is dropped. An error of the engine (a
cast that overflows) is raised as the engine raised it.

Example:
    ```python
    scan_in_thread(lambda reader: con.execute("INSERT INTO t SELECT * FROM reader"), batches)
    ```
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa

QUEUE_BATCHES = 2
"""Batches waiting between the source and the engine (each ~100k rows)."""

STATEMENT_ROWS = 500_000
"""Rows one statement scans at most (the batches an engine keeps alive until the statement ends)."""

_END = object()
"""Put after a stream's last batch."""


class _Aborted(Exception):
    """Raised into the engine's scan when the source failed: the engine stops, and its error is dropped."""


_ABORT = _Aborted("the source stopped; its own error is raised instead")


def scan_in_thread(
    statement: Callable[[pa.RecordBatchReader], None],
    batches: Iterable[pa.RecordBatch],
    max_rows: int = STATEMENT_ROWS,
) -> None:
    """Run `statement` once per run of same-schema `batches` (at most `max_rows` rows, or one batch if larger),
    each over a reader of that run; the batches are read on this thread, the statement on a worker thread.
    Returns after the last statement finished."""
    source = iter(batches)
    pending = next(source, None)
    while pending is not None:
        pending = _one_statement(statement, pending, source, max_rows)


def _one_statement(
    statement: Callable[[pa.RecordBatchReader], None],
    first: pa.RecordBatch,
    source: Iterator[pa.RecordBatch],
    max_rows: int,
) -> pa.RecordBatch | None:
    """One statement over `first` and the batches after it that share its schema, up to `max_rows` rows;
    returns the batch that ended the run (None: the source is exhausted)."""
    handoff: queue.Queue[object] = queue.Queue(maxsize=QUEUE_BATCHES)
    failed: list[BaseException] = []

    def pulled() -> Iterator[pa.RecordBatch]:
        while (item := handoff.get()) is not _END:
            if item is _ABORT:
                raise _ABORT
            assert isinstance(item, pa.RecordBatch)
            yield item

    def work() -> None:
        try:
            statement(pa.RecordBatchReader.from_batches(first.schema, pulled()))
        except BaseException as exc:  # noqa: BLE001 (any error of the engine: raised on the caller's thread)
            failed.append(exc)

    worker = threading.Thread(target=work, name="derive-batch-stream", daemon=True)
    worker.start()
    following: pa.RecordBatch | None = None
    rows = first.num_rows
    try:
        if _put(handoff, first, worker):
            for batch in source:
                rows += batch.num_rows
                if rows > max_rows or not batch.schema.equals(first.schema):
                    following = batch
                    break
                if not _put(handoff, batch, worker):
                    break
        _put(handoff, _END, worker)
    except BaseException:
        _put(handoff, _ABORT, worker)
        worker.join()
        raise  # the source's own error, whatever the engine said about the aborted scan
    worker.join()
    if failed:
        raise failed[0]
    return following


def _put(handoff: queue.Queue[object], item: object, worker: threading.Thread) -> bool:
    """Hand `item` to the engine; False when the engine's statement already ended (it failed)."""
    while worker.is_alive():
        try:
            handoff.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False
