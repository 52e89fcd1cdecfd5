"""The Helm values and the instance agree, and every name they use exists; no cluster and no `helm` binary here.

`render_instance` writes the instance the way the official chart's `templates/configmap-instance.yaml` does (with
`helpers/instance/_postgresql.tpl`, `_run-launcher.tpl`, `_run-coordinator.tpl`, `_concurrency.tpl` and
`dagster.serviceAccountName`), for the values keys deployments/k8s/values.yaml uses; a key of the blocks it renders
that it does not know fails the test rather than pass unchecked. What it renders is validated with the installed
Dagster's schemas (`dagster_instance_config`, `K8sRunLauncher.config_type()`, ...), compared block by block with
deployments/k8s/dagster.yaml, and every environment variable either reads is traced to the chart or to a key of a
ConfigMap/Secret in secrets.template.yaml that the values name. The manifests (rbac.yaml, secrets.template.yaml) and
the values' Kubernetes fragments are validated with the official `kubernetes` client's models.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster_k8s
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_k8s import K8sRunLauncher
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage
from kubernetes.client import ApiClient

from derive_assets.settings import DeriveSettings
from resources.backends import CassandraConfig

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deployments" / "k8s"
RELEASE, NAMESPACE = "dagster", "derive"  # helm upgrade --install dagster dagster/dagster --namespace derive


def _yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / name).read_text(encoding="utf-8"))


def _documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d]


VALUES = _yaml("values.yaml")
INSTANCE = _yaml("dagster.yaml")
RBAC = _documents("rbac.yaml")
(POOLS_JOB,) = _documents("pools-job.yaml")
TEMPLATES = _documents("secrets.template.yaml")
(DEPLOYMENT,) = VALUES["dagster-user-deployments"]["deployments"]


# ------------------------------------------------------------------------- the chart's instance template, in Python


def _fullname(values: Mapping[str, Any]) -> str:
    """`dagster.fullname`: the release name when it contains the chart's name."""
    override = (values.get("global") or {}).get("fullnameOverride")
    if override:
        return str(override)[:63].rstrip("-")
    return (RELEASE if "dagster" in RELEASE else f"{RELEASE}-dagster")[:63].rstrip("-")


def _service_account(values: Mapping[str, Any]) -> str:
    """`dagster.serviceAccountName`: global, then the chart's serviceAccount.name, then the fullname."""
    return (
        (values.get("global") or {}).get("serviceAccountName")
        or (values.get("serviceAccount") or {}).get("name")
        or _fullname(values)
    )


def _known(block: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = set(block) - known
    assert not unknown, (
        f"{where}: {sorted(unknown)} are not rendered by this test's port of the chart: extend it"
    )


def _postgres(values: Mapping[str, Any]) -> dict[str, Any]:
    """`dagsterYaml.postgresql.config`."""
    pg = values["postgresql"]
    db: dict[str, Any] = {
        "username": {"env": "DAGSTER_PG_USERNAME"}
        if (values.get("global") or {}).get("postgresqlSecretUsernameKey")
        else pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"] if not pg["enabled"] else f"{RELEASE}-postgresql",
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg["postgresqlParams"],
    }
    if pg.get("postgresqlScheme"):
        db["scheme"] = pg["postgresqlScheme"]
    return {"postgres_db": db}


def _run_launcher(values: Mapping[str, Any]) -> dict[str, Any]:
    """`dagsterYaml.runLauncher.k8s`."""
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    _known(
        k8s,
        {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile", "envConfigMaps",
         "envSecrets", "envVars", "volumeMounts", "volumes", "runK8sConfig"},
        "runLauncher.config.k8sRunLauncher",
    )  # fmt: skip
    config: dict[str, Any] = {"load_incluster_config": k8s["loadInclusterConfig"]}
    if k8s.get("kubeconfigFile"):
        config["kubeconfig_file"] = k8s["kubeconfigFile"]
    config["job_namespace"] = k8s.get("jobNamespace") or NAMESPACE
    config["image_pull_policy"] = k8s["imagePullPolicy"]
    if values.get("imagePullSecrets"):
        config["image_pull_secrets"] = values["imagePullSecrets"]
    config["service_account_name"] = _service_account(values)
    if "image" in k8s:
        config["job_image"] = f"{k8s['image']['repository']}:{k8s['image']['tag']}"
    config["dagster_home"] = {"env": "DAGSTER_HOME"}
    config["instance_config_map"] = {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"}
    config["postgres_password_secret"] = {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"}
    config["env_config_maps"] = [
        {"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"},
        *(m["name"] for m in k8s.get("envConfigMaps") or [] if "name" in m),
    ]
    if k8s.get("envSecrets"):
        config["env_secrets"] = [s["name"] for s in k8s["envSecrets"] if "name" in s]
    for key, value_key in (
        ("env_vars", "envVars"),
        ("volume_mounts", "volumeMounts"),
        ("volumes", "volumes"),
    ):
        if k8s.get(value_key):
            config[key] = k8s[value_key]
    run_k8s = k8s.get("runK8sConfig") or {}
    _known(run_k8s, set(RUN_K8S_CONFIG), "runLauncher.config.k8sRunLauncher.runK8sConfig")
    if run_k8s:
        config["run_k8s_config"] = {
            key: run_k8s[value_key] for value_key, key in RUN_K8S_CONFIG.items() if run_k8s.get(value_key)
        }
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


RUN_K8S_CONFIG = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}
"""The chart's `runK8sConfig` keys -> the run launcher's `run_k8s_config` keys (each block copied as it is)."""


def _run_coordinator(values: Mapping[str, Any]) -> dict[str, Any]:
    """`dagsterYaml.runCoordinator.queued`: a key only when it is set."""
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    _known(
        queued,
        {"maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds", "dequeueUseThreads",
         "dequeueNumWorkers"},
        "dagsterDaemon.runCoordinator.config.queuedRunCoordinator",
    )  # fmt: skip
    config: dict[str, Any] = {}
    if queued.get("maxConcurrentRuns") is not None:
        config["max_concurrent_runs"] = queued["maxConcurrentRuns"]
    for key, value_key in (
        ("tag_concurrency_limits", "tagConcurrencyLimits"),
        ("dequeue_interval_seconds", "dequeueIntervalSeconds"),
        ("dequeue_use_threads", "dequeueUseThreads"),
        ("dequeue_num_workers", "dequeueNumWorkers"),
    ):
        if queued.get(value_key):
            config[key] = queued[value_key]
    block: dict[str, Any] = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    return {**block, "config": config} if config else block


def _concurrency(values: Mapping[str, Any]) -> dict[str, Any]:
    """`dagsterYaml.concurrency`, with the chart's refusal of limits set in both places."""
    pools, runs = values["concurrency"].get("pools") or {}, values["concurrency"].get("runs") or {}
    _known(pools, {"defaultLimit", "granularity", "opGranularityRunBuffer"}, "concurrency.pools")
    _known(runs, {"maxConcurrentRuns", "tagConcurrencyLimits"}, "concurrency.runs")
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert not (runs.get("maxConcurrentRuns") is not None and queued.get("maxConcurrentRuns") is not None)
    assert not (runs.get("tagConcurrencyLimits") and queued.get("tagConcurrencyLimits"))
    rendered: dict[str, Any] = {}
    if pools:
        rendered["pools"] = {
            key: pools[value_key]
            for key, value_key in (
                ("default_limit", "defaultLimit"),
                ("granularity", "granularity"),
                ("op_granularity_run_buffer", "opGranularityRunBuffer"),
            )
            if pools.get(value_key) is not None
        }
    if runs:
        rendered["runs"] = {}
        if runs.get("maxConcurrentRuns") is not None:
            rendered["runs"]["max_concurrent_runs"] = runs["maxConcurrentRuns"]
        if runs.get("tagConcurrencyLimits"):
            rendered["runs"]["tag_concurrency_limits"] = [
                {
                    "key": limit["key"],
                    **({"value": limit["value"]} if limit.get("value") else {}),
                    "limit": limit["limit"],
                }
                for limit in runs["tagConcurrencyLimits"]
            ]
    return rendered


def render_instance(values: Mapping[str, Any]) -> dict[str, Any]:
    """The `dagster.yaml` of the chart's ConfigMap `<fullname>-instance` for these values."""
    storage = _postgres(values)
    instance: dict[str, Any] = {
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": {"module": "dagster_postgres.schedule_storage", "class": "PostgresScheduleStorage", "config": storage},
        "run_launcher": _run_launcher(values),
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": storage},
        "event_log_storage": {"module": "dagster_postgres.event_log", "class": "PostgresEventLogStorage", "config": storage},
    }  # fmt: skip
    daemon = values["dagsterDaemon"]
    if daemon["enabled"] and daemon["runCoordinator"]["enabled"]:
        instance["run_coordinator"] = _run_coordinator(values)
    monitoring = daemon.get("runMonitoring") or {}
    if daemon["enabled"] and monitoring.get("enabled"):
        instance["run_monitoring"] = {
            "enabled": True,
            **{k: v for k, v in monitoring.items() if k != "enabled"},
        }
    retries = daemon.get("runRetries") or {}
    if daemon["enabled"] and retries.get("enabled"):
        instance["run_retries"] = {
            "enabled": True,
            **({"max_retries": retries["maxRetries"]} if retries.get("maxRetries") else {}),
        }
    instance["telemetry"] = {"enabled": values["telemetry"]["enabled"]}
    if (values.get("concurrency") or {}).get("enabled"):
        instance["concurrency"] = _concurrency(values)
    additional = values.get("additionalInstanceConfig") or {}
    twice = set(additional) & set(instance)
    assert not twice, (
        f"additionalInstanceConfig repeats {sorted(twice)}: the chart would write those keys twice"
    )
    return {**instance, **additional}


def chart_env(values: Mapping[str, Any]) -> dict[str, str]:
    """The variables the chart sets in the Dagster pods for the instance it renders (shared env ConfigMaps and the
    pods' env), besides DAGSTER_PG_PASSWORD (a key of `global.postgresqlSecretName`)."""
    fullname = _fullname(values)
    return {
        "DAGSTER_HOME": values["global"]["dagsterHome"],
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": f"{fullname}-instance",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": values["global"].get("postgresqlSecretName")
        or f"{fullname}-postgresql-secret",
        "DAGSTER_K8S_PIPELINE_RUN_NAMESPACE": NAMESPACE,
        "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": f"{fullname}-pipeline-env",
    }


# ------------------------------------------------------------------------------------------------------- helpers


def _env_names(node: Any) -> Iterator[str]:
    """Every `{env: NAME}` in a config document."""
    if isinstance(node, Mapping):
        if set(node) == {"env"}:
            yield node["env"]
        for value in node.values():
            yield from _env_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _env_names(item)


def _template(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in TEMPLATES if d["kind"] == kind and d["metadata"]["name"] == name]
    assert found, (
        f"secrets.template.yaml has no {kind} {name!r}, which values.yaml, dagster.yaml or a spec names"
    )
    return found[0]


def _keys(kind: str, name: str) -> set[str]:
    doc = _template(kind, name)
    return set(doc.get("data") or {}) | set(doc.get("stringData") or {})


def _named_config_maps() -> list[str]:
    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    return [
        m["name"] for m in (DEPLOYMENT.get("envConfigMaps") or []) + (launcher.get("envConfigMaps") or [])
    ]


def _named_secrets() -> list[str]:
    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    return [s["name"] for s in (DEPLOYMENT.get("envSecrets") or []) + (launcher.get("envSecrets") or [])]


def _settings_env() -> dict[str, str]:
    """The environment of a Derive pod: its ConfigMaps' data and placeholders for its Secrets' keys."""
    env: dict[str, str] = {}
    for name in _named_config_maps():
        env.update(_template("ConfigMap", name)["data"])
    for name in _named_secrets():
        env.update(dict.fromkeys(_keys("Secret", name), "placeholder"))
    return env


def _k8s_model(body: Mapping[str, Any], model: str) -> Any:
    """Deserialize an API object (camelCase, as kubectl sends it) into the client's model, with its client-side
    validation; a field the model does not have is dropped, so the round trip below catches a misspelled key."""

    class _Response:
        data = json.dumps(body)

    return ApiClient().deserialize(_Response(), model)


def _processed(config_type: Any, config: Any) -> dict[str, Any]:
    """`config` validated by a Dagster config type, defaults applied and `{env: ...}` resolved."""
    result = process_config(config_type, config)
    assert result.success, result.errors
    assert isinstance(result.value, dict)
    return result.value


def _round_trip(body: Mapping[str, Any], model: str) -> Any:
    return ApiClient().sanitize_for_serialization(_k8s_model(body, model))


def _spec_kubernetes_blocks() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every `kubernetes:` block of the specs and their `_defaults.yaml` files, wherever it is nested."""

    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, Mapping):
            if isinstance(node.get("kubernetes"), Mapping):
                yield dict(node["kubernetes"])
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    for path in sorted((ROOT / "table_specs").rglob("*.y*ml")):
        for block in walk(yaml.safe_load(path.read_text(encoding="utf-8"))):
            yield path, block


def _source_secrets(path: Path, spec: Mapping[str, Any]) -> list[str]:
    """The Secrets a source's step pods mount: its own `env_from_secrets`, else the nearest `_defaults` file's."""
    own = (spec.get("kubernetes") or {}).get("env_from_secrets")
    if own is not None:
        return list(own)
    for directory in [path.parent, *path.parent.parents]:
        for defaults in (directory / "_defaults.yaml", directory / "_defaults.yml"):
            if defaults.exists():
                found = (
                    (yaml.safe_load(defaults.read_text(encoding="utf-8")) or {}).get("kubernetes") or {}
                ).get("env_from_secrets")
                if found is not None:
                    return list(found)
        if directory == ROOT / "table_specs":
            break
    return []


# --------------------------------------------------------------------------------------------------------- tests


def test_the_values_run_launcher_renders_to_a_config_k8s_run_launcher_accepts(monkeypatch):
    rendered = render_instance(VALUES)["run_launcher"]
    assert (rendered["module"], rendered["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert "job_image" not in rendered["config"], (
        "runs take the image of the user-code deployment that launched them"
    )
    for name, value in chart_env(VALUES).items():
        monkeypatch.setenv(name, value)
    resolved = _processed(K8sRunLauncher.config_type(), rendered["config"])
    assert resolved["service_account_name"] == VALUES["global"]["serviceAccountName"]
    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    assert resolved["env_config_maps"] == [
        "dagster-pipeline-env",
        *(m["name"] for m in launcher["envConfigMaps"]),
    ]
    # dagster.yaml's run launcher is the rendered one, the chart's variables resolved
    assert _processed(K8sRunLauncher.config_type(), INSTANCE["run_launcher"]["config"]) == resolved
    assert (INSTANCE["run_launcher"]["module"], INSTANCE["run_launcher"]["class"]) == (
        "dagster_k8s",
        "K8sRunLauncher",
    )


def test_the_values_run_queue_limits_are_dagster_yamls():
    rendered = render_instance(VALUES)
    assert rendered["concurrency"] == INSTANCE["concurrency"]
    assert (
        rendered["run_coordinator"]["class"] == INSTANCE["run_coordinator"]["class"] == "QueuedRunCoordinator"
    )
    assert rendered["run_coordinator"].get("config") == INSTANCE["run_coordinator"].get("config")
    assert (
        rendered["concurrency"]["runs"]["max_concurrent_runs"] == 20
    )  # docs/operations.md's number, not a default
    result = process_config(
        QueuedRunCoordinator.config_type(), rendered["run_coordinator"].get("config") or {}
    )
    assert result.success, result.errors


def test_the_rendered_instance_and_dagster_yaml_agree_block_by_block(monkeypatch):
    rendered = render_instance(VALUES)
    for block in ("run_monitoring", "run_retries", "telemetry"):
        assert rendered.get(block) == INSTANCE.get(block), block
    for name, value in {**_settings_env(), "DAGSTER_PG_PASSWORD": "placeholder"}.items():
        monkeypatch.setenv(name, value)
    written = _processed(DagsterPostgresStorage.config_type(), INSTANCE["storage"]["postgres"])
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        rendered_db = _processed(PostgresEventLogStorage.config_type(), rendered[storage]["config"])[
            "postgres_db"
        ]
        assert rendered_db == written["postgres_db"], storage


def test_both_instance_files_load_with_their_env_set(tmp_path, monkeypatch):
    for name, value in {**chart_env(VALUES), **_settings_env(), "DAGSTER_PG_PASSWORD": "placeholder"}.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "chart").mkdir()
    (tmp_path / "chart" / "dagster.yaml").write_text(
        yaml.safe_dump(render_instance(VALUES)), encoding="utf-8"
    )
    (tmp_path / "file").mkdir()
    (tmp_path / "file" / "dagster.yaml").write_text(
        (K8S / "dagster.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    for home in ("chart", "file"):
        config, _ = dagster_instance_config(
            str(tmp_path / home)
        )  # the installed Dagster's schema, cross-field rules
        assert config["run_launcher"]["class"] == "K8sRunLauncher"
        assert config["concurrency"]["runs"]["max_concurrent_runs"] == 20


def test_every_variable_the_instances_read_is_set_by_the_chart_or_a_named_configmap_or_secret():
    provided = dict.fromkeys(chart_env(VALUES), "the chart")
    postgres_secret = VALUES["global"]["postgresqlSecretName"]
    assert "postgresql-password" in _keys(
        "Secret", postgres_secret
    )  # the chart maps it to DAGSTER_PG_PASSWORD
    provided["DAGSTER_PG_PASSWORD"] = f"Secret {postgres_secret}"
    for name in _named_config_maps():
        provided.update(dict.fromkeys(_keys("ConfigMap", name), f"ConfigMap {name}"))
    for name in _named_secrets():
        provided.update(dict.fromkeys(_keys("Secret", name), f"Secret {name}"))
    for document, where in ((render_instance(VALUES), "the chart's instance"), (INSTANCE, "dagster.yaml")):
        missing = sorted(set(_env_names(document)) - set(provided))
        assert not missing, (
            f"{where} reads {missing}, which nothing in values.yaml or secrets.template.yaml sets"
        )
    settings = _template("ConfigMap", "derive-settings")[
        "data"
    ]  # dagster.yaml's host and user are the values'
    assert settings["DAGSTER_PG_HOST"] == VALUES["postgresql"]["postgresqlHost"]
    assert settings["DAGSTER_PG_USER"] == VALUES["postgresql"]["postgresqlUsername"]
    assert not VALUES["postgresql"]["enabled"] and not VALUES["generatePostgresqlPasswordSecret"]


def test_the_settings_configmap_gives_the_production_engines_and_the_mounted_ca(monkeypatch):
    image_env = {"DERIVE_WAREHOUSE": "bigquery", "DERIVE_ONLINE_STORE": "cassandra", "DERIVE_EXECUTOR": "k8s"}
    for name, value in {**image_env, **_settings_env()}.items():
        monkeypatch.setenv(name, value)
    settings = DeriveSettings.from_env()
    assert (settings.warehouse, settings.executor, settings.online_store) == ("bigquery", "k8s", "cassandra")
    store = settings.online_store_config()
    assert isinstance(store, CassandraConfig)
    (volume,) = [v for v in DEPLOYMENT["volumes"] if v["name"] == "cassandra-ca"]
    (mount,) = [m for m in DEPLOYMENT["volumeMounts"] if m["name"] == "cassandra-ca"]
    (item,) = volume["secret"]["items"]
    assert store.ssl_ca_file == f"{mount['mountPath']}/{item['path']}"
    assert item["key"] in _keys("Secret", volume["secret"]["secretName"])
    assert store.password_env == "DERIVE_CASSANDRA_PASSWORD" and store.keyspace_replication == {"dc1": 3}
    assert DEPLOYMENT["includeConfigInLaunchedRuns"]["enabled"]  # the volume reaches run and step pods too


def test_every_source_url_is_a_key_of_a_secret_its_pods_mount():
    mounted_everywhere = set(_named_secrets())
    sources = 0
    for path in sorted((ROOT / "table_specs").rglob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if spec.get("kind") != "source" or not spec.get("connection_env"):
            continue
        sources += 1
        source_level = _source_secrets(path, spec)
        for table in spec.get("tables") or [{}]:  # a table's own list replaces its source's
            own = (table.get("kubernetes") or {}).get("env_from_secrets")
            secrets = mounted_everywhere | set(source_level if own is None else own)
            holders = [name for name in secrets if spec["connection_env"] in _keys("Secret", name)]
            where = f"{path.name}, table {table.get('name')!r}"
            assert holders, f"{where}: {spec['connection_env']} is in none of the Secrets {sorted(secrets)}"
    assert sources >= 4


def test_every_account_and_secret_a_spec_names_exists():
    accounts = {d["metadata"]["name"] for d in RBAC if d["kind"] == "ServiceAccount"}
    blocks = list(_spec_kubernetes_blocks())
    assert blocks, "no spec has a kubernetes block: nothing to check"
    for path, block in blocks:
        if block.get("service_account"):
            assert block["service_account"] in accounts, (
                f"{path.name}: no ServiceAccount {block['service_account']}"
            )
        for name in block.get("env_from_secrets") or []:
            _template("Secret", name)
        for variable, ref in (block.get("secret_env") or {}).items():
            assert ref["key"] in _keys("Secret", ref["secret"]), f"{path.name}: {variable}"


def test_the_service_account_has_workload_identity_and_the_role_dagster_k8s_needs():
    account = VALUES["global"]["serviceAccountName"]
    assert (
        not VALUES["serviceAccount"]["create"] and not VALUES["rbacEnabled"]
    )  # rbac.yaml's, not the chart's
    (sa,) = [d for d in RBAC if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == account]
    assert re.fullmatch(
        r"[a-z0-9-]+@[A-Za-z0-9-]+\.iam\.gserviceaccount\.com",
        sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
    )
    (binding,) = [
        d
        for d in RBAC
        if d["kind"] == "RoleBinding"
        and {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} in d["subjects"]
    ]
    (role,) = [d for d in RBAC if d["kind"] == "Role" and d["metadata"]["name"] == binding["roleRef"]["name"]]
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    # what the installed dagster-k8s calls (its Pipes client, which creates bare pods, is not used by Derive)
    package = Path(dagster_k8s.__file__).parent
    calls = set()
    for source in package.glob("*.py"):
        if source.name != "pipes.py":
            calls |= set(
                re.findall(
                    r"(batch|core)_api\.(create|delete|read|list|patch|replace)_namespaced_(\w+?)(?:_with_retries)?\(",
                    source.read_text(encoding="utf-8"),
                )
            )
    assert calls
    verbs = {
        "create": "create",
        "delete": "delete",
        "read": "get",
        "list": "list",
        "patch": "patch",
        "replace": "update",
    }
    resources = {
        "job": "jobs",
        "job_status": "jobs/status",
        "pod": "pods",
        "pod_log": "pods/log",
        "event": "events",
    }
    for api, verb, resource in sorted(calls):
        assert resource in resources, (
            f"dagster-k8s calls {api}_api.{verb}_namespaced_{resource}: grant it in rbac.yaml"
        )
        needed = ("batch" if api == "batch" else "", resources[resource], verbs[verb])
        assert needed in granted, (
            f"dagster-k8s calls {api}_api.{verb}_namespaced_{resource}: {role['metadata']['name']} lacks {needed}"
        )
    assert all(d["metadata"]["namespace"] == NAMESPACE for d in RBAC + TEMPLATES)
    assert VALUES["runLauncher"]["config"]["k8sRunLauncher"]["jobNamespace"] == NAMESPACE


@pytest.mark.parametrize(
    "document", [*RBAC, *TEMPLATES, POOLS_JOB], ids=lambda d: f"{d['kind']}-{d['metadata']['name']}"
)
def test_the_manifests_validate_with_the_kubernetes_models(document):
    rbac = "rbac.authorization.k8s.io/v1"
    api_versions = {
        "ServiceAccount": "v1",
        "ConfigMap": "v1",
        "Secret": "v1",
        "Role": rbac,
        "RoleBinding": rbac,
        "Job": "batch/v1",
    }
    assert document["apiVersion"] == api_versions[document["kind"]]
    assert _round_trip(document, f"V1{document['kind']}") == document  # no field unknown to the model


def test_the_secrets_template_holds_names_and_keys_only():
    secrets = [d for d in TEMPLATES if d["kind"] == "Secret"]
    assert secrets and all("data" not in d for d in secrets)
    assert {k: v for d in secrets for k, v in d["stringData"].items() if v != ""} == {}


def test_the_values_kubernetes_fragments_validate_with_the_kubernetes_models():
    for body, model in (
        *((volume, "V1Volume") for volume in DEPLOYMENT["volumes"]),
        *((mount, "V1VolumeMount") for mount in DEPLOYMENT["volumeMounts"]),
        (DEPLOYMENT["podSecurityContext"], "V1PodSecurityContext"),
        (DEPLOYMENT["securityContext"], "V1SecurityContext"),
        *((secret, "V1SecretEnvSource") for secret in DEPLOYMENT["envSecrets"]),
        *((config_map, "V1ConfigMapEnvSource") for config_map in DEPLOYMENT["envConfigMaps"]),
    ):
        assert _round_trip(body, model) == body, model
    assert DEPLOYMENT["podSecurityContext"]["runAsNonRoot"] is True


def test_images_are_pinned_and_the_dagster_images_match_the_locked_dagster():
    image = DEPLOYMENT["image"]
    assert image["tag"] and str(image["tag"]) != "latest" and image["pullPolicy"] == "IfNotPresent"
    lock = (K8S / "requirements.lock").read_text(encoding="utf-8")
    (dagster_version,) = re.findall(r"(?m)^dagster==(\S+)", lock)
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert VALUES[component]["image"]["tag"] == dagster_version, component
        assert VALUES[component]["image"]["pullPolicy"] == "IfNotPresent", component
    assert VALUES["runLauncher"]["config"]["k8sRunLauncher"]["imagePullPolicy"] == "IfNotPresent"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert any(d.startswith("dagster-k8s") for d in pyproject["project"]["dependencies"])


def test_the_port_of_the_chart_refuses_run_limits_in_both_places():
    both = json.loads(json.dumps(VALUES))
    both["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] = 5
    with pytest.raises(AssertionError):
        render_instance(both)


def test_the_pools_job_runs_the_deployed_image_on_the_charts_instance():
    pod = POOLS_JOB["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["derive", "pools"]
    assert container["image"] == f"{DEPLOYMENT['image']['repository']}:{DEPLOYMENT['image']['tag']}"
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == chart_env(VALUES)["DAGSTER_K8S_INSTANCE_CONFIG_MAP"]
    (mount,) = container["volumeMounts"]
    assert (
        mount["mountPath"] == f"{VALUES['global']['dagsterHome']}/dagster.yaml"
        and mount["subPath"] == "dagster.yaml"
    )
    (password,) = [e for e in container["env"] if e["name"] == "DAGSTER_PG_PASSWORD"]
    ref = password["valueFrom"]["secretKeyRef"]
    assert ref["name"] == VALUES["global"]["postgresqlSecretName"] and ref["key"] in _keys(
        "Secret", ref["name"]
    )
    assert [e["configMapRef"]["name"] for e in container["envFrom"]] == [
        m["name"] for m in DEPLOYMENT["envConfigMaps"]
    ]  # the settings DeriveSettings.from_env needs (the image's warehouse is bigquery: its project)
    assert pod["serviceAccountName"] == VALUES["global"]["serviceAccountName"]
    assert POOLS_JOB["metadata"]["namespace"] == NAMESPACE


# Key names of the chart's values schema (helm/dagster/values.schema.json and schema/charts/.../values.py of the
# chart), for the blocks values.yaml sets: Helm ignores an unknown key, so a misspelled one would change nothing.
CHART_KEYS = {
    "": {
        "global", "nameOverride", "fullnameOverride", "rbacEnabled", "imagePullSecrets", "dagsterWebserver",
        "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret",
        "rabbitmq", "redis", "flower", "ingress", "computeLogManager", "scheduler", "runLauncher", "pythonLogs",
        "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount", "retention", "concurrency",
        "additionalInstanceConfig",
    },
    "global": {
        "postgresqlSecretName", "postgresqlSecretUsernameKey", "dagsterHome", "serviceAccountName",
        "celeryConfigSecretName", "fullnameOverride", "nameOverride",
    },
    "serviceAccount": {"create", "name", "annotations"},
    "postgresql": {
        "image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword", "postgresqlDatabase",
        "postgresqlParams", "postgresqlScheme", "service",
    },
    "dagster-user-deployments": {"enabled", "enableSubchart", "imagePullSecrets", "deployments", "rbacEnabled", "serviceAccount"},
    "deployment": {
        "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns", "deploymentNamespace",
        "port", "env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations",
        "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe",
        "labels", "volumeMounts", "volumes", "schedulerName", "initContainers", "sidecarContainers",
    },
    "dagsterDaemon": {
        "enabled", "image", "runCoordinator", "heartbeatTolerance", "env", "envConfigMaps", "envSecrets",
        "deploymentLabels", "labels", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
        "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe", "annotations",
        "runMonitoring", "runRetries", "sensors", "schedules", "schedulerName", "volumeMounts", "volumes",
    },
    "concurrency": {"enabled", "pools", "runs"},
    "image": {"repository", "tag", "pullPolicy"},
}  # fmt: skip


def test_the_values_use_only_keys_the_chart_knows():
    blocks = {
        "": VALUES,
        "global": VALUES["global"],
        "serviceAccount": VALUES["serviceAccount"],
        "postgresql": VALUES["postgresql"],
        "dagster-user-deployments": VALUES["dagster-user-deployments"],
        "deployment": DEPLOYMENT,
        "dagsterDaemon": VALUES["dagsterDaemon"],
        "concurrency": VALUES["concurrency"],
    }
    for name, block in blocks.items():
        assert not set(block) - CHART_KEYS[name], (
            f"values.yaml {name or 'top level'}: {sorted(set(block) - CHART_KEYS[name])}"
        )
    for image in (DEPLOYMENT["image"], VALUES["dagsterWebserver"]["image"], VALUES["dagsterDaemon"]["image"]):
        assert set(image) == CHART_KEYS["image"], image
