"""Where source databases are: connection URLs come from environment variables at run time, never from config.

Dagster shows resource config in its UI, so URLs (which carry passwords) are not config: the resource only knows
where the embedded demo databases live, and each source spec names the variable that holds its URL.
"""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from derive_assets.replication.urls import resolve_url
from derive_assets.specs.models import SourceSpec


class SourceConnections(ConfigurableResource):
    """Resolves a source spec to its connection URL.

    Example:
        ```python
        SourceConnections(embedded_dir=".derive/sources").url_for(source_spec)
        ```
    """

    embedded_dir: str = Field(
        description="Directory of the embedded SQLite demo databases, used by sqlite sources whose "
        "connection_env variable is unset."
    )

    def url_for(self, source: SourceSpec) -> str:
        return resolve_url(source, Path(self.embedded_dir))
