"""Log in to a source once, before extraction, so a wrong password or a dead server fails in seconds and says so.

connectorx opens its connections through a pool that retries every failure, a refused password included, for
30 s or more, and then reports only "timed out waiting for connection". So before connectorx (or pymongo) reads,
one login is tried with the source's own Python driver (psycopg, pymysql, pymongo) under a deadline of
`timeout_seconds` (the `sources` resource's `connect_timeout_seconds`):

- a refused login (wrong user or password) fails at once, never retried: retrying cannot fix it, and servers
  lock accounts that keep failing;
- a server that refuses connections, is starting up, or drops the connection is retried with backoff until the
  deadline; one that hangs is cut off by the deadline;
- anything else the server says (unknown database, no pg_hba.conf entry) fails at once with the server's reason.

Every message names the source and the variable holding its URL (`connection_env`) and shows the URL redacted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from derive_assets.replication.urls import SourceConnectionError, redact, scrub
from derive_assets.specs.models import SourceSpec

Failure = Literal["login", "transient", "refused"]
FIRST_BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 2.0
MYSQL_LOGIN_ERRORS = {1044, 1045, 1698}
"""Access denied to the database; access denied for the user (wrong password); plugin refused the login."""
MYSQL_TRANSIENT_ERRORS = {1040, 1053, 2002, 2003, 2006, 2013}
"""Too many connections; server shutting down; cannot connect (socket, TCP); server gone; connection lost."""
POSTGRES_LOGIN_MARKERS = ("password authentication failed", "authentication failed", "no password supplied")
POSTGRES_TRANSIENT_MARKERS = (
    "connection refused",
    "timeout expired",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "server closed the connection unexpectedly",
    "connection reset",
    "no route to host",
    "network is unreachable",
    "sorry, too many clients already",
)


class SourcePreflightError(SourceConnectionError):
    """The login before extraction failed; carries what the message says, for callers that branch on it."""

    def __init__(self, source: SourceSpec, message: str, reason: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.source_name = source.name
        self.connection_env = source.connection_env
        self.reason = reason
        """The driver's reason, scrubbed of secrets."""
        self.attempts = attempts


class SourceLoginError(SourcePreflightError):
    """The source's server refused the login (user or password): not retried."""


class SourceRefusedError(SourcePreflightError):
    """The server answered but refused the connection for another lasting reason (unknown database, pg_hba)."""


class SourceUnreachableError(SourcePreflightError):
    """The source's server could not be reached within the connect timeout, after retries."""


class _Attempt(Exception):
    """One failed login: how to treat it and the driver's reason (already scrubbed of secrets)."""

    def __init__(self, kind: Failure, reason: str) -> None:
        super().__init__(kind, reason)
        self.kind = kind
        self.reason = " ".join(reason.split()).rstrip(".")  # one line: it goes inside a sentence


def preflight(source: SourceSpec, url: str, timeout_seconds: float) -> None:
    """Check that the source's server accepts the URL's login, within `timeout_seconds`; raise a
    `SourceConnectionError` that names the source, its variable and the fix if not. Embedded stores (sqlite,
    montydb) need no login: only the SQLite file's existence is checked."""
    if source.type == "sqlite":
        _check_sqlite_file(source, url)
        return
    if url.startswith("montydb:///"):
        return
    login = {"postgres": _postgres_login, "mysql": _mysql_login, "mongodb": _mongo_login}[source.type]
    _with_retries(source, url, timeout_seconds, lambda seconds: login(url, seconds))


def _with_retries(
    source: SourceSpec, url: str, timeout_seconds: float, login: Callable[[float], None]
) -> None:
    started = time.monotonic()
    deadline = started + timeout_seconds
    backoff = FIRST_BACKOFF_SECONDS
    attempts = 0
    while True:
        attempts += 1
        try:
            login(max(deadline - time.monotonic(), 1.0))
            return
        except _Attempt as failed:
            where = f"source '{source.name}' ({source.type} server {_server(url)}, URL from {source.connection_env})"
            if failed.kind == "login":
                raise SourceLoginError(
                    source,
                    f"{where}: the server refused the login: {failed.reason}. Fix the user name or password "
                    f"in {source.connection_env} (percent-encode '@', ':', '/' and '%' in them). Not retried; "
                    "nothing was read.",
                    failed.reason,
                ) from None
            if failed.kind == "refused":
                raise SourceRefusedError(
                    source,
                    f"{where}: the server refused the connection: {failed.reason}. Fix {source.connection_env} "
                    "or the server's settings; nothing was read.",
                    failed.reason,
                ) from None
            if time.monotonic() + backoff >= deadline:
                waited = time.monotonic() - started
                raise SourceUnreachableError(
                    source,
                    f"{where}: could not connect within {timeout_seconds:g} s ({attempts} attempts over "
                    f"{waited:.1f} s; last error: {failed.reason}). Check that the server is up and that "
                    f"{source.connection_env} names the right host and port; the time limit is the `sources` "
                    "resource's `connect_timeout_seconds`. Nothing was read.",
                    failed.reason,
                    attempts,
                ) from None
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def _server(url: str) -> str:
    """`host:port` of the URL (or its redacted form when it has several hosts or cannot be parsed)."""
    try:
        parts = urlsplit(url)
        if parts.hostname and "," not in parts.netloc:
            return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    except ValueError:
        pass
    return redact(url)


def _postgres_login(url: str, seconds: float) -> None:
    import psycopg

    try:
        # libpq counts connect_timeout in whole seconds, at least 2. `cxprotocol` is connectorx's own option.
        psycopg.connect(
            postgres_dsn(url), connect_timeout=max(2, math.ceil(seconds)), autocommit=True
        ).close()
    except psycopg.Error as exc:  # OperationalError for the server; ProgrammingError for a malformed URL
        reason = scrub(str(exc).removeprefix("connection failed: ").strip(), url)
        text = str(exc).lower()
        if any(marker in text for marker in POSTGRES_LOGIN_MARKERS):
            raise _Attempt("login", reason) from None
        if any(marker in text for marker in POSTGRES_TRANSIENT_MARKERS):
            raise _Attempt("transient", reason) from None
        raise _Attempt("refused", reason) from None


def _mysql_login(url: str, seconds: float) -> None:
    import pymysql

    try:
        pymysql.connect(**mysql_connect_args(url, seconds)).close()
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        reason = scrub(str(exc.args[1] if len(exc.args) > 1 else exc), url)
        if code in MYSQL_LOGIN_ERRORS:
            raise _Attempt("login", reason) from None
        if code in MYSQL_TRANSIENT_ERRORS:
            raise _Attempt("transient", reason) from None
        raise _Attempt("refused", reason) from None


def mysql_connect_args(url: str, seconds: float, read_timeout: float | None = None) -> dict[str, Any]:
    """`pymysql.connect` keyword arguments for a `mysql://` URL, every wait bounded by `seconds`
    (`read_timeout`, if given, bounds each server answer instead)."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")) or None,
        "connect_timeout": seconds,  # the TCP connect
        "read_timeout": seconds if read_timeout is None else read_timeout,  # the greeting, login, answers
        "write_timeout": seconds,
    }


def mysql_reason(exc: Exception, url: str) -> str:
    """A pymysql error's message (its text, not its code), first line, with `url`'s secrets scrubbed."""
    args = getattr(exc, "args", ())
    lines = scrub(str(args[1] if len(args) > 1 else exc), url).splitlines()
    return lines[0] if lines else type(exc).__name__


def postgres_dsn(url: str) -> str:
    """A `postgresql://` URL as libpq (psycopg) takes it: without connectorx's own `cxprotocol` option."""
    return _without_params(url, {"cxprotocol"})


def _mongo_login(url: str, seconds: float) -> None:
    import pymongo.errors

    from derive_assets.replication.mongo_client import connect_mongo

    try:
        client = connect_mongo(url, seconds)
    except (pymongo.errors.ConfigurationError, ValueError) as exc:  # InvalidURI is a ConfigurationError
        raise _Attempt("refused", f"the URL is not valid for pymongo: {scrub(str(exc), url)}") from None
    try:
        client.admin.command("ping")  # authenticates first when the URL has credentials
    except pymongo.errors.OperationFailure as exc:
        kind: Failure = "login" if exc.code in (18, 13) else "refused"  # AuthenticationFailed, Unauthorized
        raise _Attempt(kind, scrub(str(exc.details.get("errmsg") if exc.details else exc), url)) from None
    except pymongo.errors.ConnectionFailure as exc:
        # pymongo already retried for serverSelectionTimeoutMS (the whole budget): report, do not retry again.
        text = str(exc).split(", Timeout:", 1)[0]
        raise _Attempt("transient", scrub(text, url)) from None
    finally:
        client.close()


def _check_sqlite_file(source: SourceSpec, url: str) -> None:
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():
        shown = path if url.startswith("sqlite:///") else redact(url)  # `check_url` lets no other through
        raise SourceConnectionError(
            f"source '{source.name}': sqlite database {shown} does not exist. Run `derive generate` to create "
            f"the demo databases, or point {source.connection_env} at an existing file (sqlite:///path)."
        )


def _without_params(url: str, names: set[str]) -> str:
    if "?" not in url:
        return url
    base, query = url.split("?", 1)
    kept = [p for p in query.split("&") if p and p.split("=", 1)[0].lower() not in names]
    return f"{base}?{'&'.join(kept)}" if kept else base
