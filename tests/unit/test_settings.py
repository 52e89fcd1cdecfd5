"""Settings choose engines when definitions build; nothing reads the environment at import time."""

import logging
import re

import pytest
from dagster import EnvVar
from pydantic import TypeAdapter, ValidationError

from derive_assets.factory.build import build_definitions, build_online_store, build_warehouse
from derive_assets.replication import retry
from derive_assets.replication.retry import RetryPolicy
from derive_assets.settings import (
    PROJECT_ROOT,
    DeriveSettings,
    source_retry_policy,
)
from derive_assets.specs.loader import default_specs_dir
from derive_assets.specs.project import SpecProject
from resources.backends import (
    ONLINE_STORES,
    WAREHOUSES,
    BigQueryConfig,
    CassandraConfig,
    DuckDBConfig,
    OnlineStoreConfig,
    SQLiteStoreConfig,
    UnknownBackend,
    WarehouseConfig,
)
from resources.cassandra_online_store import CassandraOnlineStore


def test_k8s_executor_runs_each_step_in_its_own_pod(tmp_path):
    defs = build_definitions(
        DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=tmp_path, executor="k8s")
    )
    for name in ("core_job", "replicate_accounts"):  # a dataset's job and a source's
        assert defs.resolve_job_def(name).executor_def.name == "k8s"


def test_two_definitions_with_different_settings_in_one_process(tmp_path):
    local = build_definitions(DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=tmp_path / "a"))
    bq = build_definitions(
        DeriveSettings(
            specs_dir=PROJECT_ROOT / "table_specs",
            home=tmp_path / "b",
            warehouse="bigquery",
            bigquery_project="p",
            online_store="cassandra",
        )
    )
    assert local.resources["warehouse"].kind == "duckdb" and bq.resources["warehouse"].kind == "bigquery"
    assert (
        local.resources["online_store"].kind == "sqlite" and bq.resources["online_store"].kind == "cassandra"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "DERIVE_WAREHOUSE",
            "snowflake",
            r"DERIVE_WAREHOUSE='snowflake' is not supported; allowed: \['duckdb', 'bigquery'\]",
        ),
        ("DERIVE_EXECUTOR", "ray", r"DERIVE_EXECUTOR='ray' is not supported; allowed:"),
        (
            "DERIVE_ONLINE_STORE",
            "redis",
            r"DERIVE_ONLINE_STORE='redis' is not supported; allowed: \['sqlite', 'cassandra'\]",
        ),
    ],
)
def test_unknown_engine_names_are_refused_with_the_choices(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        DeriveSettings.from_env()


def test_bigquery_needs_a_project(monkeypatch):
    monkeypatch.setenv("DERIVE_WAREHOUSE", "bigquery")
    monkeypatch.delenv("DERIVE_BIGQUERY_PROJECT", raising=False)
    with pytest.raises(ValueError, match="needs DERIVE_BIGQUERY_PROJECT"):
        DeriveSettings.from_env()


@pytest.mark.parametrize(
    ("value", "strict"),
    [
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("1", True),
        ("true", True),
        (" YES ", True),
    ],
)
def test_strict_specs_comes_from_derive_strict_specs(monkeypatch, value, strict):
    if value is None:
        monkeypatch.delenv("DERIVE_STRICT_SPECS", raising=False)
    else:
        monkeypatch.setenv("DERIVE_STRICT_SPECS", value)
    assert DeriveSettings.from_env().strict_specs is strict


def test_a_strict_specs_value_that_is_not_yes_or_no_is_refused(monkeypatch):
    monkeypatch.setenv("DERIVE_STRICT_SPECS", "strict")
    with pytest.raises(
        ValueError,
        match=re.escape("DERIVE_STRICT_SPECS='strict' is not a yes/no value; set 1 (yes) or 0 (no)"),
    ):
        DeriveSettings.from_env()


def test_settings_made_in_code_load_specs_leniently(tmp_path):
    assert DeriveSettings(specs_dir=tmp_path, home=tmp_path).strict_specs is False


# ----------------------------------------------------------------------------------------------- registries


def test_the_registries_name_each_config_by_its_type():
    assert tuple(WAREHOUSES) == ("duckdb", "bigquery")
    assert tuple(ONLINE_STORES) == ("sqlite", "cassandra")
    for name, cls in [*WAREHOUSES.items(), *ONLINE_STORES.items()]:
        assert cls.model_fields["type"].default == name


def test_each_registered_backend_builds_the_resource_of_its_name(tmp_path, monkeypatch):
    monkeypatch.delenv("DERIVE_DUCKDB_PATH", raising=False)
    built = {
        "duckdb": DuckDBConfig(path=str(tmp_path / "w.duckdb")).build(),
        "bigquery": BigQueryConfig(project="p").build(),
        "sqlite": SQLiteStoreConfig(path=str(tmp_path / "o.sqlite")).build(),
        "cassandra": CassandraConfig().build(),
    }
    assert {name: resource.kind for name, resource in built.items()} == {name: name for name in built}


def test_settings_choose_the_config_by_name_and_fill_it(tmp_path, monkeypatch):
    monkeypatch.delenv("DERIVE_DUCKDB_PATH", raising=False)
    settings = DeriveSettings(specs_dir=tmp_path, home=tmp_path / "home")
    assert settings.warehouse_config() == DuckDBConfig(path=str(tmp_path / "home" / "warehouse.duckdb"))
    assert settings.online_store_config() == SQLiteStoreConfig(path=str(tmp_path / "home" / "online.sqlite"))
    monkeypatch.setenv("DERIVE_DUCKDB_PATH", str(tmp_path / "elsewhere.duckdb"))
    assert build_warehouse(settings).path == str(tmp_path / "elsewhere.duckdb")  # read when built

    bq = DeriveSettings(
        specs_dir=tmp_path,
        home=tmp_path,
        warehouse="bigquery",
        bigquery_project="p",
        bigquery_location="EU",
        bigquery_endpoint="http://127.0.0.1:1",
        bigquery_timeout_seconds=5,
        bigquery_retry_deadline_seconds=7.5,
    )
    assert bq.warehouse_config() == BigQueryConfig(
        project="p",
        location="EU",
        api_endpoint="http://127.0.0.1:1",
        timeout_seconds=5,
        retry_deadline_seconds=7.5,
    )
    warehouse = build_warehouse(bq)
    assert (warehouse.project, warehouse.location, warehouse.api_endpoint) == (
        "p",
        "EU",
        "http://127.0.0.1:1",
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "warehouse",
            "snowflake",
            r"^DERIVE_WAREHOUSE='snowflake' is not supported; allowed: \['duckdb', 'bigquery'\]$",
        ),
        (
            "online_store",
            "redis",
            r"^DERIVE_ONLINE_STORE='redis' is not supported; allowed: \['sqlite', 'cassandra'\]$",
        ),
    ],
)
def test_an_unknown_backend_in_settings_made_in_code_is_refused_with_the_choices(
    tmp_path, field, value, message
):
    with pytest.raises(UnknownBackend, match=message):
        DeriveSettings(specs_dir=tmp_path, home=tmp_path, **{field: value})


def test_configs_are_strict_and_the_unions_pick_by_type(tmp_path):
    with pytest.raises(ValidationError, match="Input should be a valid string"):
        DuckDBConfig(path=1)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        SQLiteStoreConfig.model_validate({"type": "sqlite", "path": "x", "pth": "y"})
    with pytest.raises(ValidationError, match="Input should be a valid integer"):
        CassandraConfig.model_validate({"type": "cassandra", "port": "9042"})
    with pytest.raises(ValidationError, match="greater than 0"):
        BigQueryConfig(timeout_seconds=0)
    warehouse = TypeAdapter(WarehouseConfig).validate_python({"type": "bigquery", "project": "p"})
    store = TypeAdapter(OnlineStoreConfig).validate_python({"type": "cassandra", "hosts": ("h",)})
    assert isinstance(warehouse, BigQueryConfig) and isinstance(store, CassandraConfig)
    with pytest.raises(
        ValidationError, match="does not match any of the expected tags: 'duckdb', 'bigquery'"
    ):
        TypeAdapter(WarehouseConfig).validate_python({"type": "snowflake"})


# ----------------------------------------------------------------------------------------------- Cassandra

CASSANDRA_ENV = {
    "DERIVE_CASSANDRA_HOSTS": " 10.0.0.5, 10.0.0.6 ,,",
    "DERIVE_CASSANDRA_PORT": "19042",
    "DERIVE_CASSANDRA_LOCAL_DC": "dc1",
    "DERIVE_CASSANDRA_USERNAME": "derive",
    "DERIVE_CASSANDRA_PASSWORD": "Canary-pw-1729",
    "DERIVE_CASSANDRA_SSL_CA": "/etc/ssl/ca.pem",
    "DERIVE_CASSANDRA_CONNECT_TIMEOUT": "1.5",
    "DERIVE_CASSANDRA_REQUEST_TIMEOUT": "7",
    "DERIVE_CASSANDRA_WRITE_RETRIES": "2",
    "DERIVE_CASSANDRA_RETRY_BACKOFF": "0.25",
    "DERIVE_CASSANDRA_REPLICATION": " dc1:3, dc-2:5 ",
    "DERIVE_CASSANDRA_CREATE_KEYSPACES": "false",
}


@pytest.fixture
def cassandra_settings(tmp_path, monkeypatch) -> DeriveSettings:
    for name in CASSANDRA_ENV:
        monkeypatch.delenv(name, raising=False)
    return DeriveSettings(specs_dir=tmp_path, home=tmp_path, online_store="cassandra")


def test_cassandra_config_comes_from_the_environment_when_the_store_is_built(cassandra_settings, monkeypatch):
    for name, value in CASSANDRA_ENV.items():
        monkeypatch.setenv(name, value)  # after the settings were made: read when built, as before
    assert cassandra_settings.online_store_config() == CassandraConfig(
        hosts=("10.0.0.5", "10.0.0.6"),
        port=19042,
        local_datacenter="dc1",
        username="derive",
        password_env="DERIVE_CASSANDRA_PASSWORD",
        ssl_ca_file="/etc/ssl/ca.pem",
        connect_timeout_seconds=1.5,
        request_timeout_seconds=7.0,
        write_retries=2,
        retry_backoff_seconds=0.25,
        keyspace_replication={"dc1": 3, "dc-2": 5},
        create_keyspaces=False,
    )
    store = build_online_store(cassandra_settings)
    assert isinstance(store, CassandraOnlineStore)
    assert (store.contact_points, store.port, store.local_datacenter, store.username, store.ssl_ca_file) == (
        ["10.0.0.5", "10.0.0.6"],
        19042,
        "dc1",
        "derive",
        "/etc/ssl/ca.pem",
    )
    assert (store.connect_timeout_seconds, store.request_timeout_seconds) == (1.5, 7.0)
    assert (store.write_retries, store.retry_backoff_seconds) == (2, 0.25)
    assert (store.keyspace_replication, store.create_keyspaces) == ({"dc1": 3, "dc-2": 5}, False)
    assert store.replication_cql() == "{'class': 'NetworkTopologyStrategy', 'dc-2': 5, 'dc1': 3}"
    assert isinstance(store.password, EnvVar) and store.password == "DERIVE_CASSANDRA_PASSWORD"


def test_unset_cassandra_variables_leave_the_stores_defaults(cassandra_settings, monkeypatch):
    monkeypatch.setenv("DERIVE_CASSANDRA_WRITE_RETRIES", "  ")  # blank is unset
    monkeypatch.setenv("DERIVE_CASSANDRA_USERNAME", "")
    store = build_online_store(cassandra_settings)
    defaults = CassandraOnlineStore()
    assert isinstance(store, CassandraOnlineStore)
    assert store.model_dump() == defaults.model_dump()
    assert (store.contact_points, store.port, store.password, store.username) == (
        ["127.0.0.1"],
        9042,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "DERIVE_CASSANDRA_WRITE_RETRIES",
            "many",
            "is not an integer; set a value of at least 0, or unset it",
        ),
        ("DERIVE_CASSANDRA_WRITE_RETRIES", "1.5", "is not an integer; set a value of at least 0"),
        ("DERIVE_CASSANDRA_PORT", "cql", "is not an integer; set a value of at least 0"),
        ("DERIVE_CASSANDRA_RETRY_BACKOFF", "soon", "is not a number; set a value of at least 0"),
        ("DERIVE_CASSANDRA_CONNECT_TIMEOUT", "nan", "is not a number; set a value of at least 0"),
        (
            "DERIVE_CASSANDRA_REQUEST_TIMEOUT",
            "-1",
            "is negative; set a value of at least 0, or unset it for the",
        ),
        ("DERIVE_CASSANDRA_REPLICATION", "3", r"has '3', which is not `<data center>:<replicas>`"),
        ("DERIVE_CASSANDRA_REPLICATION", "dc1:0", r"has 'dc1:0', which is not `<data center>:<replicas>`"),
        (
            "DERIVE_CASSANDRA_REPLICATION",
            "dc1:3,dc1:2",
            r"has 'dc1:2', which is not `<data center>:<replicas>` \(each",
        ),
        ("DERIVE_CASSANDRA_REPLICATION", ":3", r"has ':3', which is not `<data center>:<replicas>`"),
        ("DERIVE_CASSANDRA_CREATE_KEYSPACES", "maybe", "is not a yes/no value; set 1"),
    ],
)
def test_a_bad_cassandra_variable_is_refused_by_name(
    cassandra_settings, monkeypatch, variable, value, message
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=rf"^{variable}='{re.escape(value)}' {message}"):
        build_online_store(cassandra_settings)


def test_unset_replication_creates_simple_strategy_keyspaces(cassandra_settings):
    store = build_online_store(cassandra_settings)
    assert isinstance(store, CassandraOnlineStore)
    assert store.create_keyspaces is True
    assert store.replication_cql() == "{'class': 'SimpleStrategy', 'replication_factor': 1}"


def test_only_the_chosen_backends_variables_are_read(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVE_CASSANDRA_WRITE_RETRIES", "many")
    settings = DeriveSettings(specs_dir=tmp_path, home=tmp_path)  # sqlite
    assert build_online_store(settings).kind == "sqlite"


def test_the_cassandra_password_is_never_in_settings_configs_or_the_resource(cassandra_settings, monkeypatch):
    secret = CASSANDRA_ENV["DERIVE_CASSANDRA_PASSWORD"]
    monkeypatch.setenv("DERIVE_CASSANDRA_USERNAME", "derive")
    monkeypatch.setenv("DERIVE_CASSANDRA_PASSWORD", secret)
    config = cassandra_settings.online_store_config()
    store = build_online_store(cassandra_settings)
    defs = build_definitions(cassandra_settings, SpecProject(cassandra_settings.specs_dir, [], []))
    shown = [repr(cassandra_settings), repr(config), str(config), config.model_dump_json(), repr(store)]
    shown.append(repr(defs.resources["online_store"]))
    assert all(secret not in text for text in shown), shown
    assert "DERIVE_CASSANDRA_PASSWORD" in repr(config)  # named, so an operator knows where it comes from


# ----------------------------------------------------------------------------------------------- other reads


def test_source_retry_settings_come_from_the_environment(monkeypatch):
    for name in (retry.ATTEMPTS_ENV, retry.BACKOFF_ENV, retry.MAX_BACKOFF_ENV):
        monkeypatch.delenv(name, raising=False)
    assert source_retry_policy() == RetryPolicy(attempts=3, backoff_seconds=2.0, max_backoff_seconds=30.0)
    monkeypatch.setenv("DERIVE_SOURCE_RETRY_ATTEMPTS", "4")
    monkeypatch.setenv("DERIVE_SOURCE_RETRY_BACKOFF_SECONDS", "0.5")
    monkeypatch.setenv("DERIVE_SOURCE_RETRY_MAX_BACKOFF_SECONDS", "1")
    assert source_retry_policy() == RetryPolicy(attempts=4, backoff_seconds=0.5, max_backoff_seconds=1.0)
    monkeypatch.setenv("DERIVE_SOURCE_RETRY_BACKOFF_SECONDS", "soon")
    with pytest.raises(ValueError, match=r"^DERIVE_SOURCE_RETRY_BACKOFF_SECONDS='soon' is not a number$"):
        source_retry_policy()


def test_a_load_without_a_policy_retries_as_the_environment_says_when_it_starts(monkeypatch):
    monkeypatch.setenv("DERIVE_SOURCE_RETRY_ATTEMPTS", "2")
    monkeypatch.setenv("DERIVE_SOURCE_RETRY_BACKOFF_SECONDS", "0.125")
    waits: list[float] = []

    def dropped() -> None:
        raise ConnectionError("server closed the connection unexpectedly")

    with pytest.raises(retry.SourceRetriesExhausted, match="failed on all 2 attempts") as err:
        retry.load_with_retries(dropped, what="source 'x'", log=logging.getLogger("t"), sleep=waits.append)
    assert (err.value.attempts, waits) == (2, [0.125])


def test_dagster_home_and_the_specs_dir_default_to_the_project(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("DERIVE_SPECS_DIR", raising=False)
    settings = DeriveSettings(specs_dir=tmp_path, home=tmp_path / "h")
    assert settings.dagster_home() == (tmp_path / "h" / "dagster_home").resolve()
    assert default_specs_dir() == DeriveSettings.from_env().specs_dir == PROJECT_ROOT / "table_specs"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "d"))
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(tmp_path / "s"))
    assert settings.dagster_home() == tmp_path / "d"
    assert default_specs_dir() == DeriveSettings.from_env().specs_dir == tmp_path / "s"


ENVIRONMENT_READ = re.compile(
    r"\bos\.environ\b(?!\[[^\]]+\]\s*=[^=])|\bgetenv\b|\bfrom os import\b.*\benviron\b|\bdotenv\b"
)
"""Reads of the process environment (an assignment such as `os.environ["DAGSTER_HOME"] = ...` is a write)."""
READS_BY_DESIGN = {
    "derive_assets/settings.py": None,  # every line: this is the module that reads the environment
    "derive_assets/replication/urls.py": {
        "url = os.environ.get(source.connection_env)"
    },  # secrets, not config
}


def test_only_the_settings_module_reads_the_environment():
    found = []
    for path in sorted(
        [*(PROJECT_ROOT / "derive_assets").rglob("*.py"), *(PROJECT_ROOT / "resources").rglob("*.py")]
    ):
        name = path.relative_to(PROJECT_ROOT).as_posix()
        allowed = READS_BY_DESIGN.get(name, set())
        if allowed is None:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if (
                ENVIRONMENT_READ.search(line)
                and line.strip() not in allowed
                and not line.lstrip().startswith('"')
            ):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == [], "read the environment in derive_assets/settings.py instead:\n" + "\n".join(found)


def test_only_embedded_backends_name_a_local_file_to_start_afresh(tmp_path):
    assert DuckDBConfig(path=str(tmp_path / "w.duckdb")).local_file == str(tmp_path / "w.duckdb")
    assert SQLiteStoreConfig(path=str(tmp_path / "o.sqlite")).local_file == str(tmp_path / "o.sqlite")
    assert BigQueryConfig(project="p").local_file is None and CassandraConfig().local_file is None
