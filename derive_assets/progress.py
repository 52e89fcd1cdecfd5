"""Progress lines for long work (an extraction, a snapshot, a reconciliation, an export), like a progress bar.

A `Progress` counts rows as they pass and, at most every `every_seconds`, hands one line to `log` (e.g.
`context.log.info`, so the Dagster run log shows it): rows done, rows/s, and with a `total` (a source's own row
estimate, see `replication/estimate.py`) the share done and the time left. `done()` logs one final line. Work that
ends before `every_seconds` logs only that final line.

Example:
    ```python
    progress = Progress(context.log.info, "accounts.auth", total=estimate_rows(url, source, table))
    warehouse.load(request, progress.batches(read_batches(url, plan)))
    progress.done()
    ```
    logs `accounts.auth: 1,200,000 of ~5,000,000 rows (24 %), 410,000 rows/s, ~9 s left` every 5 s, then
    `accounts.auth: 5,000,000 rows in 12.2 s (410,000 rows/s)`.

The lines also go to the Python logger `derive_assets.progress` at INFO, which has no handler of its own:
`derive` commands that run long (`derive demo`, `derive rebuild`) attach one that prints them on the terminal
(`cli.py`); elsewhere Python drops them (its last-resort handler prints warnings only). The terminal gets the
final line only after progress lines, so work that ends within `every_seconds` stays quiet there.

The total is an estimate (statistics lag the table), so it is shown with a `~`; once the count passes it the
line says so instead of showing a share above 100 % or a negative time left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyarrow is imported by the work that streams batches, not by whoever imports this module
    import pyarrow as pa

terminal = logging.getLogger(__name__)
"""Where every line is echoed (at INFO) for a command's terminal handler; no handler by default."""


class Progress:
    """Logs, at most every `every_seconds`, rows done, rows/s and what remains (from `total`, an estimate).

    `add` is called per Arrow batch (possibly from several threads, for parallel chunks): it costs a lock, a
    clock read and an int add; formatting happens only when a line is due. `clock` (seconds, monotonic) is
    injectable for tests.
    """

    def __init__(
        self,
        log: Callable[[str], None],
        what: str,
        total: int | None = None,
        every_seconds: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._what = what
        self._total = total if total is not None and total >= 0 else None
        self._every = every_seconds
        self._clock = clock
        self._started = clock()
        self._next_line = self._started + every_seconds
        self._rows = 0
        self._lines = 0
        self._finished = False
        self._lock = threading.Lock()

    @property
    def rows(self) -> int:
        """Rows counted so far."""
        return self._rows

    def add(self, rows: int) -> None:
        """Count `rows` more; logs a line when `every_seconds` have passed since the last one (or the start)."""
        with self._lock:
            self._rows += rows
            now = self._clock()
            if now < self._next_line:
                return
            self._next_line = now + self._every
            self._lines += 1
            line = self._line(now)
        self._log(line)
        terminal.info(line)

    def done(self) -> None:
        """Log the final line (rows, seconds, rows/s). Only the first call logs."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            elapsed = self._clock() - self._started
            rows = self._rows
        rate = f" ({_number(rows / elapsed)} rows/s)" if elapsed > 0 and rows else ""
        line = f"{self._what}: {_number(rows)} {_rows_word(rows)} in {_seconds(elapsed)}{rate}"
        self._log(line)
        if self._lines:
            terminal.info(line)

    def batches(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Pass `batches` through, counting each one's rows. Does not call `done()` (the caller knows when the
        work, e.g. the warehouse's commit after the last batch, has ended)."""
        for batch in batches:
            self.add(batch.num_rows)
            yield batch

    def _line(self, now: float) -> str:
        rows, elapsed, total = self._rows, now - self._started, self._total
        rate = rows / elapsed if elapsed > 0 else 0.0
        speed = f"{_number(rate)} rows/s"
        if total is None:
            return f"{self._what}: {_number(rows)} {_rows_word(rows)}, {speed}"
        if rows > total:  # the estimate was low: say so rather than show 104 % or a negative time left
            return f"{self._what}: {_number(rows)} rows (more than the estimated ~{_number(total)}), {speed}"
        share = f"{rows * 100 // total} %" if total else "100 %"
        left = ""
        if rate > 0 and rows < total:  # at the estimate: the rest is the commit, whose time no rate predicts
            left = f", ~{_seconds(max(1.0, (total - rows) / rate), whole=True)} left"
        return f"{self._what}: {_number(rows)} of ~{_number(total)} rows ({share}), {speed}{left}"


def _number(value: float) -> str:
    """Thousands separated, no decimals: `1,200,000`."""
    return f"{round(value):,}"


def _rows_word(rows: int) -> str:
    return "row" if rows == 1 else "rows"


def _seconds(seconds: float, whole: bool = False) -> str:
    """A duration as a person reads it: `0.4 s` (tenths below 10 s unless `whole`), `9 s`, `4 min 10 s`,
    `2 h 5 min`."""
    if seconds < 10 and not whole:
        return f"{seconds:.1f} s"
    rounded = round(seconds)
    if rounded < 60:
        return f"{rounded} s"
    if rounded < 3600:
        minutes, rest = divmod(rounded, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(rounded, 3600)
    minutes = rest // 60
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
