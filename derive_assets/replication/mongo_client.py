"""Open a MongoDB-compatible client from a source URL.

- `mongodb://…` / `mongodb+srv://…`: a real server (MongoDB, or FerretDB in the tests) through pymongo.
- `montydb:///path`: montydb, an embedded pymongo-compatible store persisted in a directory (SQLite engine). The
  demo uses it so the profile service's documents need no server; mongomock would not do, because it keeps
  nothing between processes, and `make demo` and `dagster asset materialize` are different processes.

A server that cannot be reached fails after `timeout_seconds` (pymongo's `serverSelectionTimeoutMS` and
`connectTimeoutMS`, unless the URL sets them itself); a connection error inside `open_mongo` becomes a
`SourceConnectionError` whose message shows the URL redacted, not a pymongo traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from derive_assets.replication.urls import SourceConnectionError, redact, scrub

MONGO_DATABASE = "profiles"
"""The demo's document database (its profile service)."""
DEFAULT_TIMEOUT_SECONDS = 10.0
TIMEOUT_OPTIONS = ("serverSelectionTimeoutMS", "connectTimeoutMS")


def connect_mongo(url: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> Any:
    """A pymongo client for a `mongodb://` URL. Nothing connects yet (pymongo connects on first use); an
    invalid URL raises pymongo's `ConfigurationError` (or `ValueError`) here."""
    import pymongo

    timeouts: dict[str, Any] = {
        option: int(timeout_seconds * 1000)
        for option in TIMEOUT_OPTIONS
        if not re.search(rf"[?&]{option}=", url, flags=re.IGNORECASE)
    }
    return pymongo.MongoClient(url, tz_aware=True, **timeouts)


@contextmanager
def open_mongo(url: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> Iterator[Any]:
    if url.startswith("montydb:///"):
        from montydb import MontyClient, set_storage

        path = Path(url.removeprefix("montydb:///"))  # like SQLAlchemy: montydb:////abs, montydb:///relative
        path.mkdir(parents=True, exist_ok=True)
        if not (path / "monty.storage.cfg").exists():
            set_storage(
                str(path), storage="sqlite", use_bson=True
            )  # pymongo's bson: real ObjectIds, datetimes
        client = MontyClient(str(path))
        try:
            yield client
        finally:
            client.close()
        return

    import pymongo.errors

    try:
        client = connect_mongo(url, timeout_seconds)
    except (pymongo.errors.ConfigurationError, ValueError) as exc:
        raise SourceConnectionError(
            f"MongoDB URL {redact(url)} is not valid: {scrub(str(exc), url)}. Percent-encode '@', ':', '/' and "
            "'%' in the user name and password (urllib.parse.quote_plus)."
        ) from None
    try:
        yield client
    except pymongo.errors.ConnectionFailure as exc:
        # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError: the server went away or never answered.
        reason = scrub(str(exc).split(", Timeout:", 1)[0], url)
        seconds = _url_timeout_seconds(url) or timeout_seconds
        raise SourceConnectionError(
            f"MongoDB server {redact(url)} could not be reached within {seconds:g} s or dropped the "
            f"connection: {reason}. Check that the server is up and that the URL names the right host and port."
        ) from None
    except pymongo.errors.OperationFailure as exc:
        if exc.code not in (13, 18):  # Unauthorized, AuthenticationFailed; others are the caller's to explain
            raise
        reason = scrub(str(exc.details.get("errmsg") if exc.details else exc), url)
        raise SourceConnectionError(
            f"MongoDB server {redact(url)} refused the login: {reason}. Fix the user name or password in the URL."
        ) from None
    finally:
        client.close()


def _url_timeout_seconds(url: str) -> float | None:
    """The URL's own `serverSelectionTimeoutMS`, in seconds, if it sets one."""
    found = re.search(r"[?&]serverSelectionTimeoutMS=(\d+)", url, flags=re.IGNORECASE)
    return int(found.group(1)) / 1000 if found else None
