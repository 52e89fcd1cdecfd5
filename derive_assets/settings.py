"""Every setting Derive takes from the environment, read in this one module, never at import time.

When each variable is read:

- by `DeriveSettings.from_env()`, when definitions build: `DERIVE_SPECS_DIR`, `DERIVE_HOME`, `DERIVE_WAREHOUSE`,
  `DERIVE_BIGQUERY_*` (checked whichever warehouse is chosen), `DERIVE_EXECUTOR`, `DERIVE_ONLINE_STORE`,
  `DERIVE_STRICT_SPECS`, `DERIVE_CACHE_DIR`, `DERIVE_SPEC_CACHE`, `DERIVE_ENV`;
- when a backend's config is made (`warehouse_config()` / `online_store_config()`, which `build_warehouse` and
  `build_online_store` call): `DERIVE_DUCKDB_PATH` and the `DERIVE_CASSANDRA_*` variables, so settings made in code
  (`DeriveSettings(specs_dir=..., home=...)`, as tests and tools do) follow them as well. Only the chosen backend's
  variables are read and checked;
- when a replication load starts: `DERIVE_SOURCE_RETRY_*` (`source_retry_policy()`);
- `DAGSTER_HOME`, Dagster's own variable (`dagster_home()`): `derive demo` sets it to this value before it opens the
  Dagster instance, which reads it.

Not read here, by design:

- each source's connection URL, from the variable its spec names (`connection_env`): read by
  `derive_assets/replication/urls.py` when a run starts. URLs carry passwords, so they are never config (Dagster
  shows resource config in its UI) and never part of these settings;
- the value of `DERIVE_CASSANDRA_PASSWORD`: only whether it is set. The store is given an `EnvVar` naming it, which
  Dagster resolves when the run starts.

The variable names are the users' interface (README "How the pieces fit", docs/operations.md); they stay as they
are. The backend configs and the registries that choose them by name are in `resources/backends.py`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from resources.backends import (
    ONLINE_STORES,
    WAREHOUSES,
    OnlineStoreConfig,
    WarehouseConfig,
    config_class,
    configure,
)

if TYPE_CHECKING:
    from derive_assets.replication.retry import RetryPolicy

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXECUTORS = ("in_process", "multiprocess", "k8s")
IN_HOME = Path("<home>", "cache")
"""`DeriveSettings.cache_dir`'s default: replaced by `<home>/cache` when the settings are made."""


@dataclass(frozen=True)
class DeriveSettings:
    specs_dir: Path
    """Spec YAML directory (`DERIVE_SPECS_DIR`, default `table_specs/` of the project)."""
    home: Path
    """Local state: warehouse file, embedded sources (`DERIVE_HOME`, default `.derive/` of the project)."""
    warehouse: str = "duckdb"
    """Warehouse engine (`DERIVE_WAREHOUSE`), a name in `resources.backends.WAREHOUSES`: `duckdb` (embedded
    default) or `bigquery`."""
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
    online_store: str = "sqlite"
    """Online store (`DERIVE_ONLINE_STORE`), a name in `resources.backends.ONLINE_STORES`: `sqlite` (embedded
    default) or `cassandra` (ScyllaDB/Cassandra, configured by the `DERIVE_CASSANDRA_*` variables, read when the
    store is built)."""
    strict_specs: bool = False
    """`DERIVE_STRICT_SPECS=1`: the code location fails to load when any spec is invalid. By default (`0`) it loads
    the valid specs, and each invalid one (with what reads it) becomes a placeholder asset in the `derive_errors`
    group plus a warning in the log. `derive validate` and `derive plan` are always strict."""
    cache_dir: Path | None = IN_HOME
    """Where each spec's analysis is cached between loads (`derive_assets/specs/cache.py`): `DERIVE_CACHE_DIR`,
    default `cache/` under the Derive home; None (`DERIVE_SPEC_CACHE=off`) analyses every spec on every load.
    Deleting the directory is always safe."""

    env: str | None = None
    """`DERIVE_ENV`: build into this environment (derive_assets/environments.py) instead of production: its tables
    and replications are written to `<env>__<dataset>` under asset keys `<env>__<dataset>/<name>`, read unchanged
    upstream tables from production, and never write a production dataset or the online store. Unset: production."""

    def __post_init__(self) -> None:
        """An engine name no registry has is refused here, with the registered choices."""
        config_class(WAREHOUSES, "DERIVE_WAREHOUSE", self.warehouse)
        config_class(ONLINE_STORES, "DERIVE_ONLINE_STORE", self.online_store)
        if self.env is not None:
            from derive_assets.environments import validate_name

            validate_name(self.env)
        if self.cache_dir == IN_HOME:
            object.__setattr__(self, "cache_dir", self.home / "cache")

    @property
    def sqlite_online_path(self) -> Path:
        return self.home / "online.sqlite"

    @property
    def duckdb_path(self) -> Path:
        return Path(os.environ.get("DERIVE_DUCKDB_PATH", self.home / "warehouse.duckdb"))

    @property
    def embedded_sources_dir(self) -> Path:
        return self.home / "sources"

    def dagster_home(self) -> Path:
        """`DAGSTER_HOME` if set, else `dagster_home/` under the Derive home; absolute."""
        return Path(os.environ.get("DAGSTER_HOME") or self.home / "dagster_home").resolve()

    def warehouse_config(self) -> WarehouseConfig:
        """The chosen warehouse's typed config (reads `DERIVE_DUCKDB_PATH` now, for DuckDB)."""
        return configure(
            WAREHOUSES,
            "DERIVE_WAREHOUSE",
            self.warehouse,
            {
                "path": lambda: str(self.duckdb_path),
                "project": lambda: self.bigquery_project,
                "location": lambda: self.bigquery_location,
                "api_endpoint": lambda: self.bigquery_endpoint,
                "timeout_seconds": lambda: self.bigquery_timeout_seconds,
                "retry_deadline_seconds": lambda: self.bigquery_retry_deadline_seconds,
            },
        )

    def online_store_config(self) -> OnlineStoreConfig:
        """The chosen online store's typed config (reads the `DERIVE_CASSANDRA_*` variables now, for Cassandra)."""
        return configure(
            ONLINE_STORES,
            "DERIVE_ONLINE_STORE",
            self.online_store,
            {"path": lambda: str(self.sqlite_online_path), **CASSANDRA_VALUES},
        )

    @classmethod
    def from_env(cls) -> DeriveSettings:
        warehouse = os.environ.get("DERIVE_WAREHOUSE", "duckdb")
        config_class(WAREHOUSES, "DERIVE_WAREHOUSE", warehouse)
        project = os.environ.get("DERIVE_BIGQUERY_PROJECT")
        if warehouse == "bigquery" and not project:
            raise ValueError("DERIVE_WAREHOUSE=bigquery needs DERIVE_BIGQUERY_PROJECT (the GCP project id)")
        executor = os.environ.get("DERIVE_EXECUTOR", "multiprocess")
        if executor not in EXECUTORS:
            raise ValueError(f"DERIVE_EXECUTOR={executor!r} is not supported; allowed: {list(EXECUTORS)}")
        online = os.environ.get("DERIVE_ONLINE_STORE", "sqlite")
        config_class(ONLINE_STORES, "DERIVE_ONLINE_STORE", online)
        home = Path(os.environ.get("DERIVE_HOME", PROJECT_ROOT / ".derive"))
        return cls(
            executor=cast(Literal["in_process", "multiprocess", "k8s"], executor),
            online_store=online,
            specs_dir=specs_dir_from_env(),
            home=home,
            warehouse=warehouse,
            bigquery_project=project,
            bigquery_location=os.environ.get("DERIVE_BIGQUERY_LOCATION"),
            bigquery_endpoint=os.environ.get("DERIVE_BIGQUERY_ENDPOINT"),
            bigquery_timeout_seconds=_seconds("DERIVE_BIGQUERY_TIMEOUT_SECONDS", 60.0),
            bigquery_retry_deadline_seconds=_seconds("DERIVE_BIGQUERY_RETRY_DEADLINE_SECONDS", 120.0),
            strict_specs=_flag("DERIVE_STRICT_SPECS"),
            cache_dir=_cache_dir(home),
            env=os.environ.get("DERIVE_ENV") or None,
        )


def _cache_dir(home: Path) -> Path | None:
    """`DERIVE_CACHE_DIR` (default `<home>/cache`), or None when `DERIVE_SPEC_CACHE` says off."""
    if not _flag("DERIVE_SPEC_CACHE", default=True):
        return None
    return Path(os.environ.get("DERIVE_CACHE_DIR") or home / "cache")


def specs_dir_from_env() -> Path:
    """`DERIVE_SPECS_DIR`, or the project's `table_specs/`."""
    return Path(os.environ.get("DERIVE_SPECS_DIR", PROJECT_ROOT / "table_specs"))


def env_from_env() -> str | None:
    """`DERIVE_ENV`: the environment a bare `--env` means when set (derive_assets/environments.py); None unset."""
    return os.environ.get("DERIVE_ENV") or None


PR_VARIABLES = (
    "DERIVE_PR_ENV",
    "DERIVE_PR_NUMBER",
    "GITHUB_REF",
    "GITHUB_HEAD_REF",
    "CI_MERGE_REQUEST_IID",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
    "CI_COMMIT_REF_NAME",
)
"""The CI variables that name a pull request's environment (`derive_assets/pr_check.py` `pr_env_name`)."""


def pr_variables() -> dict[str, str]:
    """The `PR_VARIABLES` that are set, for `pr_env_name`."""
    return {name: os.environ[name] for name in PR_VARIABLES if os.environ.get(name)}


def pr_base() -> str:
    """`DERIVE_PR_BASE`: the revision a pull request is compared with (default `origin/main`)."""
    return os.environ.get("DERIVE_PR_BASE") or "origin/main"


def source_retry_policy(environ: Mapping[str, str] | None = None) -> RetryPolicy:
    """How replication retries a dropped source connection: the `DERIVE_SOURCE_RETRY_*` variables (defaults for
    those unset; see `derive_assets/replication/retry.py`)."""
    from derive_assets.replication.retry import RetryPolicy

    return RetryPolicy.from_env(os.environ if environ is None else environ)


def step_retries() -> int:
    """`DERIVE_STEP_RETRIES`: how many times a failed Derive step is tried again, 0 to 10 (default 0); see
    `derive_assets/factory/policies.py`."""
    text = os.environ.get("DERIVE_STEP_RETRIES", "").strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) > 10:
        raise ValueError(
            f"DERIVE_STEP_RETRIES={text[:40]!r} is not a whole number from 0 to 10; set how many times a failed "
            "step is retried, or unset it for none"
        )
    return int(text)


def automation_interval_seconds() -> int:
    """`DERIVE_AUTOMATION_INTERVAL_SECONDS`: seconds between two evaluations of the automation sensor, a whole
    number from 1 to 86,400 (default Dagster's 30); see `derive_assets/factory/automation.py`."""
    text = os.environ.get("DERIVE_AUTOMATION_INTERVAL_SECONDS", "").strip()
    if not text:
        return 30
    if not text.isdigit() or not 1 <= int(text) <= 86_400:
        raise ValueError(
            f"DERIVE_AUTOMATION_INTERVAL_SECONDS={text[:40]!r} is not a whole number of seconds from 1 to 86400; "
            "set how often the automation sensor evaluates the conditions, or unset it for 30"
        )
    return int(text)


# ----------------------------------------------------------------------------------------------- parsing


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


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _flag(variable: str, *, default: bool = False) -> bool:
    """A yes/no setting: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off` (any case); unset or empty is `default`."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(
        f"{variable}={text[:40]!r} is not a yes/no value; set 1 (yes) or 0 (no), "
        f"or unset it ({'yes' if default else 'no'})"
    )


def _flag_if_set(variable: str) -> bool | None:
    """A yes/no setting; None when unset or blank (the config's default applies)."""
    return _flag(variable) if os.environ.get(variable, "").strip() else None


def _text(variable: str) -> str | None:
    """The variable's value; None when it is unset or empty (the config's default applies)."""
    return os.environ.get(variable) or None


def _name_if_set(variable: str) -> str | None:
    """The variable's *name* when it holds a value: for secrets, which Dagster resolves at run time."""
    return variable if os.environ.get(variable) else None


def _hosts(variable: str) -> tuple[str, ...] | None:
    """Comma-separated host names; None when none are given (the config's default applies)."""
    hosts = tuple(h.strip() for h in os.environ.get(variable, "").split(",") if h.strip())
    return hosts or None


def _number(variable: str, kind: type[int] | type[float]) -> int | float | None:
    """A number of at least 0; None when the variable is unset or blank (the config's default applies)."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(
            f"{variable}={text!r} is not {'an integer' if kind is int else 'a number'}; set a value of at least "
            "0, or unset it for the default"
        ) from None
    if value != value:  # NaN: no setting means "not a number"
        raise ValueError(
            f"{variable}={text!r} is not a number; set a value of at least 0, or unset it for the default"
        )
    if value < 0:
        raise ValueError(
            f"{variable}={text!r} is negative; set a value of at least 0, or unset it for the default"
        )
    return value


def _replication(variable: str) -> dict[str, int] | None:
    """`dc1:3,dc2:3` -> {"dc1": 3, "dc2": 3}; None when unset or blank."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    replicas: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        dc, _, count = part.partition(":")
        dc, count = dc.strip(), count.strip()
        if not dc or not count.isdigit() or int(count) < 1 or dc in replicas:
            raise ValueError(
                f"{variable}={text!r} has {part!r}, which is not `<data center>:<replicas>` (each data center "
                "once, at least 1 replica); write e.g. `dc1:3,dc2:3`, or unset it for SimpleStrategy with 1 replica"
            )
        replicas[dc] = int(count)
    return replicas


CASSANDRA_VALUES: Mapping[str, Callable[[], Any]] = {
    "hosts": lambda: _hosts("DERIVE_CASSANDRA_HOSTS"),
    "port": lambda: _number("DERIVE_CASSANDRA_PORT", int),
    "local_datacenter": lambda: _text("DERIVE_CASSANDRA_LOCAL_DC"),
    "username": lambda: _text("DERIVE_CASSANDRA_USERNAME"),
    "password_env": lambda: _name_if_set("DERIVE_CASSANDRA_PASSWORD"),
    "ssl_ca_file": lambda: _text("DERIVE_CASSANDRA_SSL_CA"),
    "connect_timeout_seconds": lambda: _number("DERIVE_CASSANDRA_CONNECT_TIMEOUT", float),
    "request_timeout_seconds": lambda: _number("DERIVE_CASSANDRA_REQUEST_TIMEOUT", float),
    "write_retries": lambda: _number("DERIVE_CASSANDRA_WRITE_RETRIES", int),
    "retry_backoff_seconds": lambda: _number("DERIVE_CASSANDRA_RETRY_BACKOFF", float),
    "keyspace_replication": lambda: _replication("DERIVE_CASSANDRA_REPLICATION"),
    "create_keyspaces": lambda: _flag_if_set("DERIVE_CASSANDRA_CREATE_KEYSPACES"),
}
"""Cassandra config field -> its `DERIVE_CASSANDRA_*` variable, read when the store's config is made."""
