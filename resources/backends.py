"""Typed backend configs and the registries that choose them by type name (the way Feast's `repo_config` does).

Each backend has a strict pydantic config (`extra="forbid"`, frozen) whose `type` literal names it, and whose
`build()` returns its Dagster resource typed as the interface it implements, so pyright checks that every backend
conforms to `Warehouse` or `OnlineStore`. `WarehouseConfig` and `OnlineStoreConfig` are the discriminated unions;
`WAREHOUSES` and `ONLINE_STORES` map each type name to its config class (taken from the unions: adding a backend is
its config class and one member of its union). A `None` field means the engine's own default.

Configs hold no secret. Cassandra's password is named, not held: `password_env` is the environment variable that
Dagster resolves when the run starts (an `EnvVar`, so the UI shows the name, never the value).

Example:
    ```python
    config = configure(WAREHOUSES, "DERIVE_WAREHOUSE", "duckdb", {"path": lambda: "/tmp/w.duckdb"})
    warehouse = config.build()  # a DuckDBWarehouse, typed as Warehouse
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from resources.online_store import OnlineStore
    from resources.warehouse import Warehouse


class BackendConfig(BaseModel):
    """Strict: a value of the wrong type or an unknown field is refused, never coerced or ignored."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @property
    def local_file(self) -> str | None:
        """The database file of an embedded engine (None for a server): what a fresh start deletes."""
        return None

    def given(self, *names: str) -> dict[str, Any]:
        """The named fields that are set (not None): the engine's defaults apply to the others."""
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


# ----------------------------------------------------------------------------------------------- warehouses


class DuckDBConfig(BackendConfig):
    """The embedded warehouse: one DuckDB file."""

    type: Literal["duckdb"] = "duckdb"
    path: str = Field(min_length=1)
    """The database file (`DERIVE_DUCKDB_PATH`, default `$DERIVE_HOME/warehouse.duckdb`)."""
    memory_limit: str | None = None
    """DuckDB memory limit, e.g. `2GB`; larger work spills to disk."""
    lock_timeout_seconds: float | None = Field(default=None, gt=0)
    """How long to wait for another process's write lock on the file."""

    @property
    def local_file(self) -> str:
        return self.path

    def build(self) -> Warehouse:
        from resources.duckdb_warehouse import DuckDBWarehouse

        return DuckDBWarehouse(path=self.path, **self.given("memory_limit", "lock_timeout_seconds"))


class BigQueryConfig(BackendConfig):
    """The production warehouse: BigQuery (or a BigQuery-compatible emulator at `api_endpoint`)."""

    type: Literal["bigquery"] = "bigquery"
    project: str | None = None
    """GCP project (`DERIVE_BIGQUERY_PROJECT`); None: the credentials' default project. Credentials themselves come
    from the environment (Application Default Credentials), never from config."""
    location: str | None = None
    """BigQuery location, e.g. `EU` (`DERIVE_BIGQUERY_LOCATION`)."""
    api_endpoint: str | None = None
    """API endpoint override (`DERIVE_BIGQUERY_ENDPOINT`), for a local emulator; uses anonymous credentials."""
    timeout_seconds: float | None = Field(default=None, gt=0)
    """Longest wait for one API request (`DERIVE_BIGQUERY_TIMEOUT_SECONDS`)."""
    retry_deadline_seconds: float | None = Field(default=None, gt=0)
    """How long one API call retries transient errors (`DERIVE_BIGQUERY_RETRY_DEADLINE_SECONDS`)."""

    def build(self) -> Warehouse:
        from resources.bigquery_warehouse import BigQueryWarehouse

        return BigQueryWarehouse(
            project=self.project,
            location=self.location,
            api_endpoint=self.api_endpoint,
            **self.given("timeout_seconds", "retry_deadline_seconds"),
        )


# ----------------------------------------------------------------------------------------------- online stores


class SQLiteStoreConfig(BackendConfig):
    """The embedded online store: one SQLite file."""

    type: Literal["sqlite"] = "sqlite"
    path: str = Field(min_length=1)
    """The database file (`$DERIVE_HOME/online.sqlite`)."""

    @property
    def local_file(self) -> str:
        return self.path

    def build(self) -> OnlineStore:
        from resources.sqlite_online_store import SQLiteOnlineStore

        return SQLiteOnlineStore(path=self.path)


class CassandraConfig(BackendConfig):
    """The production online store: ScyllaDB or Apache Cassandra (the `DERIVE_CASSANDRA_*` variables)."""

    type: Literal["cassandra"] = "cassandra"
    hosts: tuple[str, ...] = Field(default=("127.0.0.1",), min_length=1)
    """Contact points (`DERIVE_CASSANDRA_HOSTS`, comma-separated)."""
    port: int = Field(default=9042, ge=0)
    """CQL native transport port (`DERIVE_CASSANDRA_PORT`)."""
    local_datacenter: str | None = None
    """Data center whose nodes serve requests (`DERIVE_CASSANDRA_LOCAL_DC`)."""
    username: str | None = None
    """Login for PasswordAuthenticator (`DERIVE_CASSANDRA_USERNAME`); None: no authentication."""
    password_env: str | None = None
    """Name of the environment variable that holds the password (`DERIVE_CASSANDRA_PASSWORD` when that is set),
    resolved by Dagster at run time; the value is never part of this config."""
    ssl_ca_file: str | None = None
    """CA certificate in PEM (`DERIVE_CASSANDRA_SSL_CA`); when set, connect with TLS."""
    connect_timeout_seconds: float | None = Field(default=None, ge=0)
    """Seconds connecting to one contact point may take (`DERIVE_CASSANDRA_CONNECT_TIMEOUT`)."""
    request_timeout_seconds: float | None = Field(default=None, ge=0)
    """Driver request timeout in seconds (`DERIVE_CASSANDRA_REQUEST_TIMEOUT`)."""
    write_retries: int | None = Field(default=None, ge=0)
    """Retries of rows whose write failed for a transient reason (`DERIVE_CASSANDRA_WRITE_RETRIES`)."""
    retry_backoff_seconds: float | None = Field(default=None, ge=0)
    """Pause before the first write retry; it doubles on each later one (`DERIVE_CASSANDRA_RETRY_BACKOFF`)."""
    keyspace_replication: dict[Annotated[str, Field(min_length=1)], Annotated[int, Field(ge=1)]] | None = None
    """Replicas per data center of the keyspaces Derive creates, with NetworkTopologyStrategy
    (`DERIVE_CASSANDRA_REPLICATION=dc1:3,dc2:3`); None: SimpleStrategy, replication factor 1 (a test cluster)."""
    create_keyspaces: bool | None = None
    """False: keyspaces are pre-created by the cluster's operators and Derive never creates one
    (`DERIVE_CASSANDRA_CREATE_KEYSPACES=false`); an export to a missing keyspace fails saying how to create it."""

    def build(self) -> OnlineStore:
        from dagster import EnvVar

        from resources.cassandra_online_store import CassandraOnlineStore

        return CassandraOnlineStore(
            contact_points=list(self.hosts),
            port=self.port,
            local_datacenter=self.local_datacenter,
            username=self.username,
            # An EnvVar: Dagster resolves it at run time and shows only its name in the UI.
            password=EnvVar(self.password_env) if self.password_env else None,
            ssl_ca_file=self.ssl_ca_file,
            **self.given(
                "connect_timeout_seconds",
                "request_timeout_seconds",
                "write_retries",
                "retry_backoff_seconds",
                "keyspace_replication",
                "create_keyspaces",
            ),
        )


# ----------------------------------------------------------------------------------------------- registries

WarehouseConfig = Annotated[DuckDBConfig | BigQueryConfig, Field(discriminator="type")]
"""Every warehouse backend; a new one is one more member here."""
OnlineStoreConfig = Annotated[SQLiteStoreConfig | CassandraConfig, Field(discriminator="type")]
"""Every online-store backend; a new one is one more member here."""

C = TypeVar("C", bound=BackendConfig)


def _registry(union: Any) -> dict[str, Any]:
    """Type name -> config class, in the union's order (the order error messages list the choices in)."""
    members = get_args(get_args(union)[0])
    return {member.model_fields["type"].default: member for member in members}


WAREHOUSES: Mapping[str, type[DuckDBConfig | BigQueryConfig]] = _registry(WarehouseConfig)
ONLINE_STORES: Mapping[str, type[SQLiteStoreConfig | CassandraConfig]] = _registry(OnlineStoreConfig)


class UnknownBackend(ValueError):
    """A backend type name that no registry entry has."""

    def __init__(self, setting: str, name: str, allowed: list[str]):
        super().__init__(f"{setting}={name!r} is not supported; allowed: {allowed}")
        self.setting, self.name, self.allowed = setting, name, allowed


def config_class(registry: Mapping[str, type[C]], setting: str, name: str) -> type[C]:
    """The config class registered as `name`; `setting` (where the name came from) is named if there is none."""
    if name not in registry:
        raise UnknownBackend(setting, name, list(registry))
    return registry[name]


def configure(
    registry: Mapping[str, type[C]], setting: str, name: str, values: Mapping[str, Callable[[], Any]]
) -> C:
    """The config of backend `name`, filled from `values` (config field -> how to get it).

    Only the fields the chosen class declares are asked for, so settings that belong to another backend are
    neither read nor validated; a value that comes back None leaves the field's default.
    """
    cls = config_class(registry, setting, name)
    wanted = {field: values[field]() for field in cls.model_fields if field != "type" and field in values}
    return cls.model_validate({"type": name, **{k: v for k, v in wanted.items() if v is not None}})
