"""Retry a replication load when the source connection drops: transient errors only, bounded, with backoff.

A load is one warehouse transaction fed by one stream of source batches. When the stream breaks (the server
terminated the backend, a failover, a network reset), the transaction rolls back and nothing of the attempt is
kept, so the retry starts the whole load again from scratch: a fresh read of the batches from the same watermark.

What counts as transient is decided from the error *text* (and the texts of its causes), because connectorx
reports every driver error as a `RuntimeError` or a Rust panic carrying the driver's message, with no typed
error classes. Transient: a connection terminated, reset, closed or lost while reading (PostgreSQL SQLSTATE class
08 and 57P01-57P03, MySQL/MariaDB "Lost connection", "server has gone away", "Connection was killed", connectorx's
"IO error"), and `ConnectionError`/`TimeoutError`. Never retried: authentication and permission errors, a
missing database, table or column, SQL errors, warehouse errors, value errors, and connectorx's own
"timed out waiting for connection" and pymongo's server selection timeout (the driver has already retried
connecting for its own timeout, ~30 s).

Settings, read when a load starts by `derive_assets.settings.source_retry_policy` (the one module that reads the
environment; documented in docs/operations.md):

- `DERIVE_SOURCE_RETRY_ATTEMPTS`: attempts in all, including the first (default 3; 1 turns retries off);
- `DERIVE_SOURCE_RETRY_BACKOFF_SECONDS`: wait before the first retry (default 2), doubled after each failed
  retry up to `DERIVE_SOURCE_RETRY_MAX_BACKOFF_SECONDS` (default 30).

Example:
    ```python
    result = load_with_retries(lambda: warehouse.load(request, read_batches(url, plan)),
                               what="source 'orders' table orders", log=context.log, secrets=(url,))
    ```
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from derive_assets.replication.urls import SourceConnectionError, redact
from derive_assets.settings import source_retry_policy

T = TypeVar("T")
S = TypeVar("S")

ATTEMPTS_ENV = "DERIVE_SOURCE_RETRY_ATTEMPTS"
BACKOFF_ENV = "DERIVE_SOURCE_RETRY_BACKOFF_SECONDS"
MAX_BACKOFF_ENV = "DERIVE_SOURCE_RETRY_MAX_BACKOFF_SECONDS"
SHOWN_CHARS = 400
"""Longest error text quoted in a log line or in the final error."""

_TRANSIENT = re.compile(
    r"terminating connection|server closed the connection|connection reset|connection refused|broken pipe"
    r"|connection (?:was )?(?:closed|killed|lost|aborted)|lost connection|server has gone away"
    r"|the database system is (?:starting up|shutting down|in recovery mode)|io error|unexpected eof"
    r"|could not receive data|could not send data|sqlstate\(e?(?:08\d\d\d|57p0[123])\)|\be?57p0[123]\b"
    r"|admin_shutdown|crash_shutdown|cannot_connect_now|connection_failure|network is unreachable",
    re.IGNORECASE,
)
_PERMANENT = re.compile(
    r"password authentication failed|access denied|authentication|permission denied|not authorized"
    r"|no pg_hba\.conf entry|does not exist|unknown database|unknown column|doesn't exist|syntax error"
    r"|timed out waiting for connection|serverselectiontimeout|, timeout: \d",
    re.IGNORECASE,
)
_RUST_DEBUG = re.compile(r'code: SqlState\((\w+)\), message: "([^"]*)"')
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*):[^\s'\"@]*@")


class Log(Protocol):
    """The part of a Dagster log manager (or `logging.Logger`) the retry (warnings) and a load's progress lines
    (info) write to."""

    def warning(self, msg: str) -> Any: ...

    def info(self, msg: str) -> Any: ...


class SourceRetriesExhausted(SourceConnectionError):
    """Every attempt of a load failed with a transient source error; the warehouse and watermark are unchanged."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a load is tried again after a transient source error."""

    attempts: int = 3
    """Attempts in all, including the first; 1 means no retry."""
    backoff_seconds: float = 2.0
    """Wait before the first retry."""
    max_backoff_seconds: float = 30.0
    """Longest wait between two attempts (the wait doubles after each failed retry)."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"{ATTEMPTS_ENV} must be 1 or more (attempts in all), got {self.attempts}")
        if self.backoff_seconds < 0 or self.max_backoff_seconds < 0:
            raise ValueError(f"{BACKOFF_ENV} and {MAX_BACKOFF_ENV} must be 0 or more seconds")

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the `failed_attempts`-th failure (1-based) before the next attempt."""
        return min(self.backoff_seconds * 2 ** (failed_attempts - 1), self.max_backoff_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetryPolicy:
        """The policy the `DERIVE_SOURCE_RETRY_*` variables in `env` set (defaults for those unset).

        `env` is given, never read here: `derive_assets.settings.source_retry_policy` passes the environment."""
        defaults = cls()
        return cls(
            attempts=_number(env, ATTEMPTS_ENV, defaults.attempts, int),
            backoff_seconds=_number(env, BACKOFF_ENV, defaults.backoff_seconds, float),
            max_backoff_seconds=_number(env, MAX_BACKOFF_ENV, defaults.max_backoff_seconds, float),
        )


def _number(env: Mapping[str, str], name: str, default: Any, kind: type) -> Any:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise ValueError(
            f"{name}={text[:40]!r} is not a{'n integer' if kind is int else ' number'}"
        ) from None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error, its causes and the errors it was raised while handling (also those hidden by `from None`:
    a wrapper that diagnoses a driver error may drop the driver's text from its own message)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a dropped or refused source connection worth a fresh attempt (see the module doc)."""
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
        return False
    chain = list(_chain(exc))
    if any(_is_warehouse_error(e) for e in chain):
        return False
    texts = " | ".join(str(e) for e in chain)
    if _PERMANENT.search(texts):
        return False
    if any(isinstance(e, ConnectionError | TimeoutError) for e in chain):
        return True
    return bool(_TRANSIENT.search(texts))


def _is_warehouse_error(exc: BaseException) -> bool:
    # Errors raised by the warehouse (a lock, a constraint, a bad cast) are never a source outage. Checked by
    # module so this module needs neither the DuckDB nor the BigQuery client.
    module = type(exc).__module__ or ""
    return module.startswith(("duckdb", "google.", "resources.")) or type(exc).__name__ == "WarehouseError"


def shown(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """One line of an error's text (the innermost error that names a cause) with every secret masked."""
    texts = [str(e).strip() for e in _chain(exc) if str(e).strip()]
    text = next((t for t in texts if _TRANSIENT.search(t)), texts[0] if texts else type(exc).__name__)
    text = " ".join(text.split())
    if debug := _RUST_DEBUG.search(text):  # connectorx prints the driver's error as a Rust Debug dump
        text = f"{debug.group(1)}: {debug.group(2)}"
    for url in secrets:
        if url:
            text = text.replace(url, redact(url))
    text = _USERINFO.sub(r"\1:***@", text)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}…"


KEEP = "keep_on_restart"
"""Field metadata key: `restarted` leaves the field as it is."""


def restarted(stats: S) -> S:
    """`stats` (a dataclass of counters) emptied in place and returned, so a fresh attempt counts from zero.
    A field declared with `metadata={KEEP: True}` is configuration, not a counter, and is kept."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        for f in dataclasses.fields(stats):
            if f.metadata.get(KEEP):
                continue
            if f.default_factory is not dataclasses.MISSING:
                setattr(stats, f.name, f.default_factory())
            elif f.default is not dataclasses.MISSING:
                setattr(stats, f.name, f.default)
    return stats


def load_with_retries(
    load: Callable[[], T],
    *,
    what: str,
    log: Log,
    secrets: Sequence[str] = (),
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `load` (which must read its batches afresh on every call) until it succeeds, a non-transient error
    occurs (raised unchanged), or the attempts run out (`SourceRetriesExhausted`, naming the settings).

    Without a `policy`, the settings' (`DERIVE_SOURCE_RETRY_*`, read now) apply."""
    policy = policy or source_retry_policy()
    for attempt in range(1, policy.attempts + 1):
        try:
            return load()
        # BaseException: connectorx reports a connection lost mid-stream as a Rust panic (pyo3's
        # PanicException derives from BaseException). Anything not transient is re-raised untouched.
        except BaseException as exc:
            if not is_transient(exc):
                raise
            message = shown(exc, secrets)
            if attempt == policy.attempts:
                raise SourceRetriesExhausted(
                    f"{what}: the source connection failed on all {attempt} attempts (last: {message}). "
                    "Each attempt was rolled back: the warehouse table and the watermark are as before. Check "
                    "that the source server is up and reachable, then run again; "
                    f"{ATTEMPTS_ENV} and {BACKOFF_ENV} set how often and how patiently Derive retries.",
                    attempt,
                ) from None
            delay = policy.delay(attempt)
            log.warning(
                f"{what}: attempt {attempt} of {policy.attempts} failed with a transient source error "
                f"({message}); it was rolled back. Reading again from the start in {delay:.1f} s."
            )
            sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
