"""Source connection URLs: where they come from (an environment variable per source) and how they are shown
(never with their secrets)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from derive_assets.specs.models import SourceSpec


class SourceConnectionError(RuntimeError):
    """The source database could not be reached or read; the message never contains the URL's secrets."""


def resolve_url(source: SourceSpec, embedded_dir: Path) -> str:
    """The source's URL from its environment variable; sqlite and mongodb sources fall back to the embedded demo
    stores (a SQLite file, a montydb directory) under `embedded_dir`."""
    url = os.environ.get(source.connection_env)
    if url:
        return url
    if source.type == "sqlite":
        return f"sqlite:///{embedded_dir / f'{source.name}.db'}"
    if source.type == "mongodb":
        return f"montydb:///{embedded_dir / source.name}"
    example = {"postgres": "postgresql", "mysql": "mysql"}.get(source.type, source.type)
    raise SourceConnectionError(
        f"source '{source.name}': environment variable {source.connection_env} is not set; set it to the "
        f"{source.type} connection URL (e.g. {example}://user:password@host:port/database)"
    )


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
