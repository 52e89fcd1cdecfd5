"""Where things are and which engines to use, read from the environment in one place, when definitions build."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WAREHOUSES = ("duckdb", "bigquery")
ONLINE_STORES = ("sqlite", "cassandra")
EXECUTORS = ("in_process", "multiprocess", "k8s")


@dataclass(frozen=True)
class DeriveSettings:
    specs_dir: Path
    """Spec YAML directory (`DERIVE_SPECS_DIR`, default `table_specs/` of the project)."""
    home: Path
    """Local state: warehouse file, embedded sources (`DERIVE_HOME`, default `.derive/` of the project)."""
    warehouse: Literal["duckdb", "bigquery"] = "duckdb"
    """Warehouse engine (`DERIVE_WAREHOUSE`): `duckdb` (embedded default) or `bigquery`."""
    bigquery_project: str | None = None
    """GCP project of the BigQuery warehouse (`DERIVE_BIGQUERY_PROJECT`); credentials come from the environment
    (Application Default Credentials), never from settings."""
    bigquery_location: str | None = None
    """BigQuery location, e.g. `EU` (`DERIVE_BIGQUERY_LOCATION`)."""
    bigquery_endpoint: str | None = None
    """API endpoint override (`DERIVE_BIGQUERY_ENDPOINT`), for a local emulator; uses anonymous credentials."""
    bigquery_timeout_seconds: float = 60.0
    """Longest wait for one BigQuery API request (`DERIVE_BIGQUERY_TIMEOUT_SECONDS`)."""
    bigquery_retry_deadline_seconds: float = 120.0
    """How long one BigQuery API call retries transient errors before the run fails
    (`DERIVE_BIGQUERY_RETRY_DEADLINE_SECONDS`)."""
    executor: Literal["in_process", "multiprocess", "k8s"] = "multiprocess"
    """How a run's steps execute (`DERIVE_EXECUTOR`): `k8s` runs each asset's step in its own Kubernetes pod
    (dagster-k8s `k8s_job_executor`; see deployments/k8s/)."""
    online_store: Literal["sqlite", "cassandra"] = "sqlite"
    """Online store (`DERIVE_ONLINE_STORE`): `sqlite` (embedded default) or `cassandra` (ScyllaDB/Cassandra,
    configured by the `DERIVE_CASSANDRA_*` variables, read by the resource at run time)."""

    @property
    def sqlite_online_path(self) -> Path:
        return self.home / "online.sqlite"

    @property
    def duckdb_path(self) -> Path:
        return Path(os.environ.get("DERIVE_DUCKDB_PATH", self.home / "warehouse.duckdb"))

    @property
    def embedded_sources_dir(self) -> Path:
        return self.home / "sources"

    @classmethod
    def from_env(cls) -> DeriveSettings:
        warehouse = os.environ.get("DERIVE_WAREHOUSE", "duckdb")
        if warehouse not in WAREHOUSES:
            raise ValueError(f"DERIVE_WAREHOUSE={warehouse!r} is not supported; allowed: {list(WAREHOUSES)}")
        project = os.environ.get("DERIVE_BIGQUERY_PROJECT")
        if warehouse == "bigquery" and not project:
            raise ValueError("DERIVE_WAREHOUSE=bigquery needs DERIVE_BIGQUERY_PROJECT (the GCP project id)")
        executor = os.environ.get("DERIVE_EXECUTOR", "multiprocess")
        if executor not in EXECUTORS:
            raise ValueError(f"DERIVE_EXECUTOR={executor!r} is not supported; allowed: {list(EXECUTORS)}")
        online = os.environ.get("DERIVE_ONLINE_STORE", "sqlite")
        if online not in ONLINE_STORES:
            raise ValueError(
                f"DERIVE_ONLINE_STORE={online!r} is not supported; allowed: {list(ONLINE_STORES)}"
            )
        return cls(
            executor=cast(Literal["in_process", "multiprocess", "k8s"], executor),
            online_store=cast(Literal["sqlite", "cassandra"], online),
            specs_dir=Path(os.environ.get("DERIVE_SPECS_DIR", PROJECT_ROOT / "table_specs")),
            home=Path(os.environ.get("DERIVE_HOME", PROJECT_ROOT / ".derive")),
            warehouse=cast(Literal["duckdb", "bigquery"], warehouse),
            bigquery_project=project,
            bigquery_location=os.environ.get("DERIVE_BIGQUERY_LOCATION"),
            bigquery_endpoint=os.environ.get("DERIVE_BIGQUERY_ENDPOINT"),
            bigquery_timeout_seconds=_seconds("DERIVE_BIGQUERY_TIMEOUT_SECONDS", 60.0),
            bigquery_retry_deadline_seconds=_seconds("DERIVE_BIGQUERY_RETRY_DEADLINE_SECONDS", 120.0),
        )


def _seconds(variable: str, default: float) -> float:
    """A positive number of seconds from the environment, or `default` when the variable is unset."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ValueError(
            f"{variable}={text[:40]!r} is not a number of seconds greater than 0 (default {default:g})"
        )
    return value
