"""The Kubernetes Job `k8s_job_executor` would launch for every asset step of the shipped specs, built by dagster-k8s's
own code (`derive_assets/k8s_pods.py`) from deployments/k8s/dagster.yaml and values.yaml as they are at test time,
and checked against the official Kubernetes client models: it survives a round trip through the client's
serialization and deserialization into `V1Job` (client-side validation on; an unknown or misspelt field would be
dropped and show as a difference), every quantity parses with `kubernetes.utils.parse_quantity`, and names and labels
follow the API server's rules. Then what each pod is made of: the user-code image, `dagster api execute_step` of
the asset's own step, Secrets by name only, the resources, node selector, tolerations and service account the spec's
effective `kubernetes` block asks for (directory defaults included), and the labels. A freshness check's own step
gets the run launcher's default pod (`check_step_jobs`).

No cluster here: nothing is sent to a Kubernetes API (the client that would send the Job records it instead).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from dagster import AssetKey
from kubernetes.utils import parse_quantity
from support import daily_orders_table, shop_source

from derive_assets import cli
from derive_assets.factory.build import build_definitions
from derive_assets.k8s_pods import (
    INSTANCE_YAML,
    STEP_ARGS_ENV,
    VALUES_YAML,
    PodSpecError,
    Release,
    check_step_jobs,
    job_dict,
    job_yaml,
    step_args,
    step_job,
    step_jobs,
)
from derive_assets.python_tables import python_tables
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.kubernetes import KubernetesSettings, merge
from derive_assets.specs.project import SpecProject, load_project

SPECS = PROJECT_ROOT / "table_specs"
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
DAGSTER_ENV = {STEP_ARGS_ENV, "DAGSTER_RUN_JOB_NAME", "DAGSTER_RUN_STEP_KEY", "DAGSTER_HOME"}
"""The only env vars with a literal value in a step pod: what dagster-k8s itself sets."""


def k8s_settings(tmp_path: Path, specs: Path = SPECS, **fields: Any) -> DeriveSettings:
    return DeriveSettings(specs_dir=specs, home=tmp_path, executor="k8s", **fields)


def expected_settings(project: SpecProject) -> dict[AssetKey, KubernetesSettings | None]:
    """Each asset's effective `kubernetes` block, as the loaded specs hold it (see derive_assets/specs/kubernetes.py):
    a table's, an export's, a Python table's own field; a source table's over its source's."""
    found: dict[AssetKey, KubernetesSettings | None] = {}
    for rt in project.replicated:
        found[AssetKey(rt.ref.split("."))] = merge(rt.source.kubernetes, rt.table.kubernetes)
    for table in project.tables:
        found[AssetKey(table.spec.ref.split("."))] = table.spec.kubernetes
    for python_table in python_tables(project):
        found[AssetKey(python_table.spec.ref.split("."))] = python_table.spec.kubernetes
    for export in project.exports:
        found[AssetKey(["online", export.spec.name])] = export.spec.kubernetes
    return found


@pytest.fixture(scope="module")
def release() -> Release:
    return Release.load(INSTANCE_YAML, VALUES_YAML)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory, release: Release) -> dict[AssetKey, Any]:
    defs = build_definitions(k8s_settings(tmp_path_factory.mktemp("home")))
    return step_jobs(defs, release)


@pytest.fixture(scope="module")
def project() -> SpecProject:
    return load_project(SPECS)


def pod_spec(job: Any) -> Any:
    return job.spec.template.spec


def container(job: Any) -> Any:
    [main] = [c for c in pod_spec(job).containers if c.name == "dagster"]
    return main


def round_trip(body: dict[str, Any]) -> Any:
    """`body` through the official client's deserialization into a `V1Job`, client-side validation on."""
    configuration = kubernetes.client.Configuration()
    configuration.client_side_validation = True
    client = kubernetes.client.ApiClient(configuration=configuration)

    class Response:
        data = json.dumps(body)

    return client.deserialize(Response(), "V1Job")


def quantities(body: Any) -> list[str]:
    """Every resource quantity in a Job's containers (requests and limits)."""
    found = []
    for c in body["spec"]["template"]["spec"]["containers"]:
        for kind in ("requests", "limits"):
            found += [str(q) for q in ((c.get("resources") or {}).get(kind) or {}).values()]
    return found


def test_every_asset_of_the_shipped_specs_gets_a_step_job(shipped, project):
    keys = set(expected_settings(project))
    assert len(keys) >= 10  # the demo: sources, core/analytics tables, a Python table, exports
    assert set(shipped) == keys


@pytest.fixture(params=sorted(expected_settings(load_project(SPECS))), ids=lambda k: k.to_user_string())
def asset(request: pytest.FixtureRequest) -> AssetKey:
    return request.param


def test_the_job_is_a_valid_kubernetes_job(shipped, asset):
    assert_valid_job(shipped[asset])


def assert_valid_job(job: Any) -> None:
    """`job` survives the official client's round trip whole; its quantities, names and labels are valid."""
    body = job_dict(job)
    assert (body["apiVersion"], body["kind"]) == ("batch/v1", "Job")
    parsed = round_trip(body)
    assert isinstance(parsed, kubernetes.client.V1Job)
    assert kubernetes.client.ApiClient().sanitize_for_serialization(parsed) == body, "a field was dropped"
    for quantity in quantities(body):
        assert parse_quantity(quantity) >= 0, quantity
    name = body["metadata"]["name"]
    assert len(name) <= 63 and DNS_SUBDOMAIN.fullmatch(name), name
    spec = body["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never" and body["spec"]["backoffLimit"] == 0
    assert DNS_SUBDOMAIN.fullmatch(spec["serviceAccountName"])
    for labels in (body["metadata"]["labels"], body["spec"]["template"]["metadata"]["labels"]):
        for key, value in labels.items():
            prefix, _, label = key.rpartition("/")
            assert not prefix or DNS_SUBDOMAIN.fullmatch(prefix), key
            assert len(label) <= 63 and LABEL_NAME.fullmatch(label), key
            assert len(value) <= 63 and (value == "" or LABEL_NAME.fullmatch(value)), (key, value)
    for c in spec["containers"]:
        for env in c.get("env") or []:
            assert ENV_NAME.fullmatch(env["name"]), env["name"]
        for source in c.get("envFrom") or []:
            [ref] = [source[k] for k in ("secretRef", "configMapRef") if k in source]
            assert DNS_SUBDOMAIN.fullmatch(ref["name"]), ref


def test_the_pod_runs_the_asset_step_in_the_user_code_image(shipped, asset, release):
    job = shipped[asset]
    values = yaml.safe_load(VALUES_YAML.read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    image = deployment["image"]
    main = container(job)
    assert main.image == f"{image['repository']}:{image['tag']}"
    assert main.image_pull_policy == image["pullPolicy"]
    assert main.args == ["dagster", "api", "execute_step"]  # the step's args travel in STEP_ARGS_ENV
    args = step_args(job)
    step_key = "__".join(asset.path)  # the factory names each asset's op after its key
    assert args.step_keys_to_execute == [step_key]
    assert args.job_origin.repository_origin.code_pointer.module == "derive_assets.definitions"
    assert args.job_origin.repository_origin.container_image == main.image
    assert args.instance_ref.storage_data.module_name == "dagster_postgres"  # the production instance's ref
    assert job.metadata.namespace == release.namespace


def test_secrets_reach_the_pod_by_name_only(shipped, asset, project):
    job = shipped[asset]
    main = container(job)
    launcher = yaml.safe_load(INSTANCE_YAML.read_text())["run_launcher"]["config"]
    secrets = [s.secret_ref.name for s in main.env_from or [] if s.secret_ref]
    config_maps = [s.config_map_ref.name for s in main.env_from or [] if s.config_map_ref]
    [deployment] = yaml.safe_load(VALUES_YAML.read_text())["dagster-user-deployments"]["deployments"]
    settings = expected_settings(project)[asset]
    assert set(secrets) == {
        *launcher.get("env_secrets", []),
        *(s["name"] for s in deployment.get("envSecrets", [])),  # the chart's container context
        *(settings.env_from_secrets if settings else []),
    }
    assert {
        *launcher.get("env_config_maps", []),
        *(m["name"] for m in deployment.get("envConfigMaps", [])),
    } <= set(config_maps)
    literal = {e.name for e in main.env or [] if e.value is not None}
    assert literal <= DAGSTER_ENV, (
        "a step pod's env holds values only Dagster sets; secrets come by reference"
    )
    for env in main.env or []:
        if env.value_from is not None:
            assert env.value_from.secret_key_ref.name and env.value_from.secret_key_ref.key


def env_refs(node: Any) -> set[str]:
    """The variables a YAML config reads with `{env: NAME}`."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return {node["env"]}
        return set().union(*(env_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(env_refs(v) for v in node))
    return set()


def provided_env(job: Any) -> set[str]:
    """The variables a step pod gets: its own `env`, and the keys of each ConfigMap or Secret of its `envFrom` as
    deployments/k8s/secrets.template.yaml lists them (names and keys only)."""
    template = [
        d for d in yaml.safe_load_all((INSTANCE_YAML.parent / "secrets.template.yaml").read_text()) if d
    ]
    keys = {
        (d["kind"], d["metadata"]["name"]): {*(d.get("data") or {}), *(d.get("stringData") or {})}
        for d in template
    }
    main = container(job)
    names = {e.name for e in main.env or []}
    for source in main.env_from or []:
        if source.secret_ref is not None:
            names |= keys.get(("Secret", source.secret_ref.name), set())
        if source.config_map_ref is not None:
            names |= keys.get(("ConfigMap", source.config_map_ref.name), set())
    return names


def test_the_pod_gets_every_variable_its_step_reads(shipped, asset, project):
    """The instance (the step loads it from the run's instance ref: its storage reads DAGSTER_PG_*) and, for a
    replication step, its source's URL; the payments URL only where the payments spec mounts its Secret."""
    provided = provided_env(shipped[asset])
    needed = env_refs(yaml.safe_load(INSTANCE_YAML.read_text()))
    sources = {AssetKey(rt.ref.split(".")): rt.source for rt in project.replicated}
    if asset in sources:
        needed.add(sources[asset].connection_env)
    assert needed <= provided, f"{asset.to_user_string()}'s pod lacks {sorted(needed - provided)}"
    assert ("DERIVE_PAYMENTS_URL" in provided) == (asset == AssetKey(["payments", "payments"]))


def deployment_objects(kind: str) -> dict[str, set[str]]:
    """The objects of `kind` that deployments/k8s/rbac.yaml and secrets.template.yaml create: name -> keys."""
    found: dict[str, set[str]] = {}
    for name in ("rbac.yaml", "secrets.template.yaml"):
        for doc in yaml.safe_load_all((INSTANCE_YAML.parent / name).read_text()):
            if doc and doc["kind"] == kind:
                found[doc["metadata"]["name"]] = {*(doc.get("data") or {}), *(doc.get("stringData") or {})}
    return found


def test_every_object_a_step_pod_names_is_created_by_the_deployment(shipped, asset, release):
    """Its service account (rbac.yaml), each Secret and key it reads (secrets.template.yaml), each ConfigMap (the
    template's, or one the chart makes: `<release>-pipeline-env`, `<fullname>-<deployment>-user-env`)."""
    job = shipped[asset]
    spec, main = pod_spec(job), container(job)
    assert spec.service_account_name in deployment_objects("ServiceAccount")
    secrets = deployment_objects("Secret")
    chart_made = {f"{release.name}-pipeline-env", f"{release.fullname}-{release.deployment['name']}-user-env"}
    config_maps = set(deployment_objects("ConfigMap")) | chart_made
    for source in main.env_from or []:
        if source.secret_ref is not None:
            assert source.secret_ref.name in secrets
        if source.config_map_ref is not None:
            assert source.config_map_ref.name in config_maps
    for env in main.env or []:
        if env.value_from is not None and env.value_from.secret_key_ref is not None:
            ref = env.value_from.secret_key_ref
            assert ref.key in secrets.get(ref.name, set()), (
                f"{env.name}: no key {ref.key} in Secret {ref.name}"
            )
    for volume in spec.volumes or []:
        if volume.secret is not None:
            assert {i.key for i in volume.secret.items or []} <= secrets[volume.secret.secret_name]


def test_the_user_deployments_volumes_reach_every_step_pod(shipped, asset):
    [deployment] = yaml.safe_load(VALUES_YAML.read_text())["dagster-user-deployments"]["deployments"]
    job = shipped[asset]
    volumes = {v.name for v in pod_spec(job).volumes or []}
    mounts = {(m.name, m.mount_path) for m in container(job).volume_mounts or []}
    assert {v["name"] for v in deployment.get("volumes", [])} <= volumes
    assert {(m["name"], m["mountPath"]) for m in deployment.get("volumeMounts", [])} <= mounts


def test_every_step_pod_runs_as_the_images_non_root_user_without_privileges(shipped, asset):
    """The "restricted" Pod Security Standard: the run launcher's run_k8s_config reaches every step pod."""
    job = shipped[asset]
    pod, step = pod_spec(job).security_context, container(job).security_context
    assert pod is not None and step is not None
    assert (pod.run_as_non_root, pod.run_as_user, pod.run_as_group) == (True, 10001, 10001)
    assert pod.seccomp_profile is not None and pod.seccomp_profile.type == "RuntimeDefault"
    assert step.allow_privilege_escalation is False
    assert step.capabilities is not None and step.capabilities.drop == ["ALL"]
    dockerfile = (VALUES_YAML.parent / "Dockerfile").read_text()
    assert f"USER {pod.run_as_user}" in dockerfile or f"USER {pod.run_as_user}:" in dockerfile


def test_the_pod_has_what_the_spec_kubernetes_block_asks_for(shipped, asset, project, release):
    job = shipped[asset]
    settings = expected_settings(project)[asset] or KubernetesSettings()
    resources = container(job).resources
    wanted = settings.resources
    assert (resources.requests or {}) == (dict(wanted.requests) if wanted else {})
    assert (resources.limits or {}) == (dict(wanted.limits) if wanted else {})
    spec = pod_spec(job)
    assert (spec.node_selector or {}) == settings.node_selector
    tolerations = [{k: v for k, v in t.to_dict().items() if v is not None} for t in spec.tolerations or []]
    assert tolerations == [t.model_dump(exclude_none=True) for t in settings.tolerations]
    assert spec.service_account_name == (settings.service_account or release.service_account_name)
    by_secret = {
        e.name: (e.value_from.secret_key_ref.name, e.value_from.secret_key_ref.key)
        for e in container(job).env or []
        if e.value_from is not None and e.value_from.secret_key_ref is not None
    }
    for name, ref in settings.secret_env.items():
        assert by_secret[name] == (ref.secret, ref.key)


def test_the_pod_is_labelled_with_its_step_run_and_code_location(shipped, asset, release):
    job = shipped[asset]
    step_key = "__".join(asset.path)
    run_id = step_args(job).run_id
    for labels in (job.metadata.labels, job.spec.template.metadata.labels):
        assert labels["dagster/op"] == step_key
        assert labels["dagster/run-id"] == run_id
        assert labels["dagster/job"] == "ASSET_JOB"  # `__ASSET_JOB`, trimmed of its underscores to be a label
        assert labels["dagster/code-location"] == release.deployment["name"]
        assert labels["app.kubernetes.io/component"] == "step_worker"
    assert job.metadata.name.startswith("dagster-step-")


def test_the_shipped_demo_shows_defaults_own_blocks_and_a_source(shipped, release):
    """Pinned facts of the demo specs (table_specs/analytics/_defaults.yaml, order_facts, sources/payments)."""
    daily = shipped[AssetKey(["analytics", "daily_payments_by_region"])]
    assert container(daily).resources.to_dict() == {
        "claims": None,
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert pod_spec(daily).node_selector == {"cloud.google.com/gke-nodepool": "etl"}
    heavy = shipped[AssetKey(["analytics", "order_facts"])]
    assert container(heavy).resources.requests == {"cpu": "1", "memory": "2Gi"}
    assert container(heavy).resources.limits == {"cpu": "2", "memory": "4Gi"}
    assert pod_spec(heavy).node_selector == {"cloud.google.com/gke-nodepool": "etl"}  # kept from the defaults
    payments = shipped[AssetKey(["payments", "payments"])]
    assert pod_spec(payments).service_account_name == "derive-payments"
    assert "payments-db" in [s.secret_ref.name for s in container(payments).env_from if s.secret_ref]
    assert container(payments).resources.limits == {"memory": "2Gi"}  # the table's own over its source's
    plain = shipped[AssetKey(["core", "user_detail"])]  # no block anywhere on its path
    assert container(plain).resources.to_dict() == {"claims": None, "requests": None, "limits": None}
    assert pod_spec(plain).service_account_name == release.service_account_name
    assert not pod_spec(plain).node_selector


def test_a_specs_block_and_its_directory_defaults_reach_the_pod(tmp_path, release):
    specs = tmp_path / "specs"
    (specs / "sources").mkdir(parents=True)
    (specs / "bench").mkdir()
    source = shop_source()
    source["tables"][0]["kubernetes"] = {"resources": {"requests": {"memory": "3Gi"}}}
    (specs / "sources" / "shop.yaml").write_text(yaml.safe_dump(source))
    (specs / "bench" / "_defaults.yaml").write_text(
        yaml.safe_dump(
            {
                "kubernetes": {
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                    "node_selector": {"pool": "bench"},
                    "tolerations": [{"key": "dedicated", "value": "bench", "effect": "NoSchedule"}],
                    "env_from_secrets": ["bench-db"],
                }
            }
        )
    )
    for n, own in enumerate(
        [
            None,
            {
                "resources": {"limits": {"memory": "8Gi"}},
                "tolerations": [],
                "service_account": "bench-heavy",
                "secret_env": {"BENCH_TOKEN": {"secret": "bench-api", "key": "token"}},
            },
        ]
    ):
        table = daily_orders_table(f"orders_{n}", **({"kubernetes": own} if own else {}))
        (specs / "bench" / f"orders_{n}.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    defs = build_definitions(k8s_settings(tmp_path / "home", specs))
    jobs = step_jobs(defs, release)
    assert set(jobs) == {
        AssetKey(["shop", "orders"]),
        AssetKey(["bench", "orders_0"]),
        AssetKey(["bench", "orders_1"]),
    }

    inherited = jobs[AssetKey(["bench", "orders_0"])]
    assert container(inherited).resources.requests == {"cpu": "500m", "memory": "1Gi"}
    assert container(inherited).resources.limits == {"memory": "2Gi"}
    assert pod_spec(inherited).node_selector == {"pool": "bench"}
    assert [(t.key, t.value, t.effect) for t in pod_spec(inherited).tolerations] == [
        ("dedicated", "bench", "NoSchedule")
    ]
    assert "bench-db" in [s.secret_ref.name for s in container(inherited).env_from if s.secret_ref]
    assert pod_spec(inherited).service_account_name == release.service_account_name

    own = jobs[AssetKey(["bench", "orders_1"])]
    assert container(own).resources.requests == {"cpu": "500m", "memory": "1Gi"}  # merged key by key
    assert container(own).resources.limits == {"memory": "8Gi"}
    assert pod_spec(own).node_selector == {"pool": "bench"}
    assert not pod_spec(own).tolerations  # a list is replaced whole: `[]` clears the inherited one
    assert pod_spec(own).service_account_name == "bench-heavy"
    [token] = [e for e in container(own).env if e.name == "BENCH_TOKEN"]
    assert (token.value, token.value_from.secret_key_ref.name, token.value_from.secret_key_ref.key) == (
        None,
        "bench-api",
        "token",
    )
    for job in jobs.values():
        round_trip(job_dict(job))

    source_table = jobs[AssetKey(["shop", "orders"])]  # outside bench/: its defaults do not apply
    assert container(source_table).resources.requests == {"memory": "3Gi"}
    assert not container(source_table).resources.limits
    assert not pod_spec(source_table).node_selector


def test_freshness_checks_run_in_default_step_pods_of_the_user_code_image(tmp_path, release):
    """A freshness check runs in its own step (the `derive_freshness_checks` sensor's runs): a valid Job in the
    user-code image running that step, with the instance's variables and the restricted security context, and
    none of a spec's `kubernetes` block (that is for the asset's step; a freshness check reads the event log)."""
    specs = tmp_path / "specs"
    (specs / "sources").mkdir(parents=True)
    (specs / "bench").mkdir()
    source = shop_source()
    source["schedule"] = "0 * * * *"
    source["tables"][0]["checks"] = {"freshness": {"grace": "2h"}}
    (specs / "sources" / "shop.yaml").write_text(yaml.safe_dump(source))
    heavy = {"resources": {"requests": {"memory": "3Gi"}}, "node_selector": {"pool": "bench"}}
    table = daily_orders_table("orders_0", checks={"freshness": {"grace": "1h"}}, kubernetes=heavy)
    (specs / "bench" / "orders_0.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    defs = build_definitions(k8s_settings(tmp_path / "home", specs))

    jobs = check_step_jobs(defs, release)
    checked = {c.node_def.name: {k.to_user_string() for k in c.check_keys} for c in defs.asset_checks or []}
    assert sorted(checked.values(), key=sorted) == [
        {"bench/orders_0:freshness_check"},
        {"shop/orders:freshness_check"},
    ]
    assert set(jobs) == set(checked)
    [deployment] = yaml.safe_load(VALUES_YAML.read_text())["dagster-user-deployments"]["deployments"]
    image = deployment["image"]
    needed = env_refs(yaml.safe_load(INSTANCE_YAML.read_text()))
    for step_key, job in jobs.items():
        assert_valid_job(job)
        main = container(job)
        assert main.image == f"{image['repository']}:{image['tag']}"
        assert main.args == ["dagster", "api", "execute_step"]
        assert step_args(job).step_keys_to_execute == [step_key]
        assert needed <= provided_env(job), f"{step_key}'s pod lacks {sorted(needed - provided_env(job))}"
        assert {e.name for e in main.env or [] if e.value is not None} <= DAGSTER_ENV
        assert pod_spec(job).service_account_name == release.service_account_name
        assert pod_spec(job).security_context.run_as_non_root is True
        assert not main.resources.requests and not pod_spec(job).node_selector  # the launcher's defaults
    asset_job = step_jobs(defs, release, [AssetKey(["bench", "orders_0"])])[AssetKey(["bench", "orders_0"])]
    assert container(asset_job).resources.requests == {"memory": "3Gi"}  # the block is the asset step's


def test_derive_pod_prints_the_job_as_yaml(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DERIVE_HOME", str(tmp_path))
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(SPECS))
    assert cli.main(["pod", "analytics.order_facts", "online/user_profile_online"]) == 0
    documents = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert [d["metadata"]["labels"]["dagster/op"] for d in documents] == [
        "analytics__order_facts",
        "online__user_profile_online",
    ]
    heavy = documents[0]["spec"]["template"]["spec"]["containers"][0]
    assert heavy["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    [args] = [e["value"] for e in heavy["env"] if e["name"] == STEP_ARGS_ENV]
    assert args.startswith("<ExecuteStepArgs of step analytics__order_facts")


def test_derive_pod_names_an_unknown_table_and_the_close_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DERIVE_HOME", str(tmp_path))
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(SPECS))
    assert cli.main(["pod", "analytics.order_fact"]) == 2
    err = capsys.readouterr().err
    assert "'analytics.order_fact' selects no asset" in err and "analytics/order_facts" in err


def test_a_value_the_launcher_copies_from_its_environment_is_never_printed(tmp_path, monkeypatch, release):
    """`env_vars: [NAME]` makes dagster-k8s copy NAME's value from the launching process: here, this machine."""
    instance = yaml.safe_load(INSTANCE_YAML.read_text())
    instance["run_launcher"]["config"]["env_vars"] = ["DERIVE_TEST_POD_TOKEN"]
    path = tmp_path / "dagster.yaml"
    path.write_text(yaml.safe_dump(instance))
    monkeypatch.setenv("DERIVE_TEST_POD_TOKEN", "s3cr3t-value")
    defs = build_definitions(k8s_settings(tmp_path / "home"))
    copying = replace(release, instance_yaml=path, run_launcher_config=instance["run_launcher"]["config"])
    key = AssetKey(["core", "user_detail"])
    job = step_jobs(defs, copying, [key])[key]
    assert "s3cr3t-value" in json.dumps(job_dict(job))  # the Job itself carries it, as dagster-k8s makes it
    shown = job_yaml(job, copying)
    assert "s3cr3t-value" not in shown
    assert "DERIVE_TEST_POD_TOKEN" in shown


def test_the_run_launcher_leaves_the_image_to_the_user_deployment():
    """With `job_image` set, the run launcher's image wins over the user deployment's for every step; with
    `{env: DERIVE_IMAGE}` (set by nothing in the chart) the instance does not even load."""
    launcher = yaml.safe_load(INSTANCE_YAML.read_text())["run_launcher"]["config"]
    assert "job_image" not in launcher, f"{INSTANCE_YAML}: drop run_launcher.config.job_image"


def test_unusable_deployment_files_are_refused_with_the_fix(tmp_path, release):
    defs = build_definitions(k8s_settings(tmp_path / "home"))
    key = AssetKey(["core", "user_detail"])
    unset = replace(
        release,
        run_launcher_config={**release.run_launcher_config, "job_image": {"env": "DERIVE_TEST_UNSET_IMAGE"}},
    )
    with pytest.raises(PodSpecError, match=r"run_launcher.config does not load: .*DERIVE_TEST_UNSET_IMAGE"):
        step_jobs(defs, unset, [key])
    other = tmp_path / "dagster.yaml"
    other.write_text(yaml.safe_dump({"run_launcher": {"module": "dagster", "class": "DefaultRunLauncher"}}))
    with pytest.raises(PodSpecError, match=r"run_launcher is 'DefaultRunLauncher'; step pods need"):
        step_job(defs, key, other, VALUES_YAML)
    two = tmp_path / "values.yaml"
    two.write_text(
        yaml.safe_dump({"dagster-user-deployments": {"deployments": [{"name": "a"}, {"name": "b"}]}})
    )
    with pytest.raises(PodSpecError, match=r"has \['a', 'b'\]: name the one whose image runs the steps"):
        Release.load(INSTANCE_YAML, two)
    with pytest.raises(PodSpecError, match=r"has no deployment 'c' \(it has \['a', 'b'\]\)"):
        Release.load(INSTANCE_YAML, two, deployment="c")
    assert Release.load(INSTANCE_YAML, two, deployment="b").deployment == {"name": "b"}
    local = build_definitions(replace(k8s_settings(tmp_path / "home2"), executor="multiprocess"))
    with pytest.raises(PodSpecError, match=r"'multiprocess' executor, not k8s_job_executor: build them with"):
        step_jobs(local, release, [key])


def test_the_container_context_is_the_charts_helper_read_as_python(tmp_path):
    """What the chart's `dagsterUserDeployments.k8sContainerContext` renders for a release `dagster` (release
    `dagster` of chart `dagster-user-deployments`: fullname `dagster-dagster-user-deployments`)."""
    deployment = {
        "name": "derive",
        "image": {"repository": "registry.example/derive", "tag": "1.2.3", "pullPolicy": "IfNotPresent"},
        "dagsterApiGrpcArgs": ["-m", "derive_assets.definitions"],
        "port": 4000,
        "envConfigMaps": [{"name": "derive-settings"}],
        "envSecrets": [{"name": "derive-cassandra"}],
        "resources": {"requests": {"cpu": "100m"}},
        "annotations": {"example.com/a": "b"},
    }
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"dagster-user-deployments": {"deployments": [deployment]}}))
    release = Release.load(INSTANCE_YAML, values, namespace="data")
    assert release.image == "registry.example/derive:1.2.3"
    assert release.code_module() == "derive_assets.definitions"
    assert release.container_context() == {
        "k8s": {
            "image_pull_policy": "IfNotPresent",
            "env_config_maps": ["dagster-dagster-user-deployments-derive-user-env", "derive-settings"],
            "env_secrets": ["derive-cassandra"],
            "resources": {"requests": {"cpu": "100m"}},
            "namespace": "data",
            "service_account_name": "dagster-dagster-user-deployments-user-deployments",
            "run_k8s_config": {
                "pod_spec_config": {"automount_service_account_token": True},
                "pod_template_spec_metadata": {"annotations": {"example.com/a": "b"}},
            },
        }
    }
    named = {"dagster-user-deployments": {"deployments": [deployment], "serviceAccount": {"name": "derive"}}}
    values.write_text(yaml.safe_dump(named))
    assert Release.load(INSTANCE_YAML, values).service_account_name == "derive"
    values.write_text(yaml.safe_dump({**named, "global": {"serviceAccountName": "everyone"}}))
    assert Release.load(INSTANCE_YAML, values).service_account_name == "everyone"
    off = {**deployment, "includeConfigInLaunchedRuns": {"enabled": False}}
    values.write_text(yaml.safe_dump({"dagster-user-deployments": {"deployments": [off]}}))
    assert Release.load(INSTANCE_YAML, values).container_context() is None
    untagged = {**deployment, "image": {"repository": "registry.example/derive"}}
    values.write_text(yaml.safe_dump({"dagster-user-deployments": {"deployments": [untagged]}}))
    with pytest.raises(PodSpecError, match=r"no image\.repository/image\.tag: pin both"):
        _ = Release.load(INSTANCE_YAML, values).image
