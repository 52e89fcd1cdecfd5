"""Open a MongoDB-compatible client from a source URL.

- `mongodb://…` / `mongodb+srv://…`: a real server (MongoDB, or FerretDB in the tests) through pymongo.
- `montydb:///path`: montydb, an embedded pymongo-compatible store persisted in a directory (SQLite engine). The
  demo uses it so the profile service's documents need no server; mongomock would not do, because it keeps
  nothing between processes, and `make demo` and `dagster asset materialize` are different processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MONGO_DATABASE = "profiles"
"""The demo's document database (its profile service)."""


@contextmanager
def open_mongo(url: str) -> Iterator[Any]:
    if url.startswith("montydb:///"):
        from montydb import MontyClient, set_storage

        path = Path(url.removeprefix("montydb:///"))  # like SQLAlchemy: montydb:////abs, montydb:///relative
        path.mkdir(parents=True, exist_ok=True)
        if not (path / "monty.storage.cfg").exists():
            set_storage(
                str(path), storage="sqlite", use_bson=True
            )  # pymongo's bson: real ObjectIds, datetimes
        client = MontyClient(str(path))
    else:
        import pymongo

        client = pymongo.MongoClient(url, tz_aware=True, serverSelectionTimeoutMS=10_000)
    try:
        yield client
    finally:
        client.close()
