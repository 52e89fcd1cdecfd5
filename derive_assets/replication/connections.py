"""Where source databases are: connection URLs come from environment variables at run time, never from config.

Dagster shows resource config in its UI, so URLs (which carry passwords) are not config: the resource only knows
where the embedded demo databases live and how long to wait for a server, and each source spec names the
variable that holds its URL.
"""

from __future__ import annotations

import re
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from derive_assets.replication.mongo_client import TIMEOUT_OPTIONS
from derive_assets.replication.preflight import preflight
from derive_assets.replication.urls import resolve_url
from derive_assets.specs.models import SourceSpec


class SourceConnections(ConfigurableResource):
    """Resolves a source spec to its connection URL, and checks the server accepts it before a run reads.

    Example:
        ```python
        sources = SourceConnections(embedded_dir=".derive/sources", connect_timeout_seconds=5)
        url = sources.checked_url(source_spec)  # raises SourceConnectionError, naming the source and its variable
        ```
    """

    embedded_dir: str = Field(
        description="Directory of the embedded SQLite demo databases, used by sqlite sources whose "
        "connection_env variable is unset."
    )
    connect_timeout_seconds: float = Field(
        default=10.0,
        description="How long a run waits for a source server before failing: a server that refuses "
        "connections is retried with backoff up to this limit, one that hangs is cut off at it (pymongo's "
        "serverSelectionTimeoutMS/connectTimeoutMS for MongoDB, unless the URL sets them). A refused password "
        "fails at once, whatever this says.",
    )

    def url_for(self, source: SourceSpec) -> str:
        """The source's URL (its scheme checked against the spec's `type`; nothing connects)."""
        url = resolve_url(source, Path(self.embedded_dir))
        if source.type == "mongodb" and not url.startswith("montydb:"):
            url = _with_mongo_timeouts(url, self.connect_timeout_seconds)
        return url

    def checked_url(self, source: SourceSpec) -> str:
        """`url_for`, then one login to the server within `connect_timeout_seconds`, so a wrong password or a
        dead server fails in seconds, before extraction starts, with the source and its variable named."""
        if self.connect_timeout_seconds <= 0:
            raise ValueError(
                f"sources resource: connect_timeout_seconds must be positive (got {self.connect_timeout_seconds})"
            )
        url = self.url_for(source)
        preflight(source, url, self.connect_timeout_seconds)
        return url


def _with_mongo_timeouts(url: str, seconds: float) -> str:
    """The URL with pymongo's connection timeouts set, where it does not set them itself."""
    missing = [o for o in TIMEOUT_OPTIONS if not re.search(rf"[?&]{o}=", url, flags=re.IGNORECASE)]
    if not missing:
        return url
    base, _, query = url.partition("?")
    if "/" not in base.split("://", 1)[1]:
        base += "/"  # pymongo needs the '/' between the hosts and the options
    options = [q for q in query.split("&") if q] + [f"{o}={int(seconds * 1000)}" for o in missing]
    return f"{base}?{'&'.join(options)}"
