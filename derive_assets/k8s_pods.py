"""The Kubernetes Job that dagster-k8s's `k8s_job_executor` launches for one asset's step, built here without a
cluster, by dagster-k8s's own code.

`step_jobs` does what a run on the production instance does when it reaches the asset's step: it makes the
instance's `K8sRunLauncher` from the `run_launcher.config` of `deployments/k8s/dagster.yaml`, creates a run of the
implicit asset job for that asset (as the UI's "Materialize" or the automation sensor do), whose code origin is
the one the Helm chart's user-code deployment reports (its image and, as the chart's `includeConfigInLaunchedRuns`
does by default, its container context), makes the executor with `k8s_job_executor`'s own creation function, and
calls `K8sStepHandler.launch_step`, which merges the run launcher's settings, the container context and the step's
`dagster-k8s/config` op tag and builds the Job with `construct_dagster_k8s_job`. So the pod's image, command, env,
`envFrom` Secrets and ConfigMaps, volumes, service account, labels, resources, node selector and tolerations are
exactly what dagster-k8s makes of these files and specs.

What is replaced, none of which a pod is made of: the Kubernetes API client (its `create_namespaced_job` records
the Job instead of sending it); how the launcher and the executor reach a cluster (a placeholder kubeconfig instead
of the in-cluster config); the instance's storage (in memory; the step's args carry the production instance's ref,
made from the same file); the run (a fresh one per call, so the Job's name, which follows the run id, differs).

What mirrors rather than runs: the container context is the chart's `dagsterUserDeployments.k8sContainerContext`
helper (helm/dagster/charts/dagster-user-deployments/templates/helpers/_helpers.tpl) read as Python, for the
release `Release.name` in `Release.namespace`; the code origin is what `dagster api grpc -m <module>` reports in the
image (`dagsterApiGrpcArgs`, entry point `dagster`, the image from `DAGSTER_CURRENT_IMAGE`, which the chart sets).

`derive pod <table>` prints `job_yaml` of these Jobs.
"""

from __future__ import annotations

import base64
import tempfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml
from dagster import AssetKey, AssetsDefinition, Definitions

from derive_assets.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from kubernetes.client import V1Job

INSTANCE_YAML = PROJECT_ROOT / "deployments" / "k8s" / "dagster.yaml"
VALUES_YAML = PROJECT_ROOT / "deployments" / "k8s" / "values.yaml"
STEP_ARGS_ENV = "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS"
"""The env var carrying the step's serialized `ExecuteStepArgs` (what `dagster api execute_step` reads)."""
PYTHON_IN_IMAGE = "/usr/local/bin/python"
"""The code server's `sys.executable` in the image (the official python images'); only inside the step args."""
_PLACEHOLDER_KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "none", "cluster": {"server": "https://kubernetes.invalid"}}],
    "users": [{"name": "none", "user": {}}],
    "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
    "current-context": "none",
}


class PodSpecError(ValueError):
    """The deployment files cannot give a step a pod (a missing block, an unset variable); says which and how."""


@dataclass(frozen=True)
class Release:
    """What one Helm release of the official `dagster` chart with these files gives each step pod.

    Example:
        ```python
        release = Release.load(INSTANCE_YAML, VALUES_YAML)
        jobs = step_jobs(defs, release)
        ```
    """

    instance_yaml: Path
    """The instance (`dagster.yaml`): its `run_launcher` and, in the step's args, its instance ref."""
    run_launcher_config: Mapping[str, Any]
    """`run_launcher.config` of the instance, as written (env vars unresolved)."""
    deployment: Mapping[str, Any]
    """The user-code deployment of the values (`dagster-user-deployments.deployments[]`)."""
    user_deployments: Mapping[str, Any]
    """The whole `dagster-user-deployments` block (service account, image pull secrets)."""
    global_values: Mapping[str, Any] = field(default_factory=dict)
    """The values' `global` block (the chart reads `global.serviceAccountName` first)."""
    name: str = "dagster"
    """The Helm release name (`helm upgrade --install <name> dagster/dagster`)."""
    namespace: str = "default"
    """The namespace the release is installed in (`-n`); step Jobs are created there (the chart's container
    context names it). `load` defaults it to the run launcher's `job_namespace`."""

    @classmethod
    def load(
        cls,
        instance_yaml: Path = INSTANCE_YAML,
        values_yaml: Path = VALUES_YAML,
        deployment: str | None = None,
        name: str = "dagster",
        namespace: str | None = None,
    ) -> Release:
        """Read both files; `deployment` names the user-code deployment (default: the only one), `namespace` the
        release's (default: where the run launcher launches, its `job_namespace`, else `default`)."""
        instance = _yaml_mapping(instance_yaml)
        launcher = instance.get("run_launcher") or {}
        if launcher.get("class") != "K8sRunLauncher":
            raise PodSpecError(
                f"{instance_yaml}: run_launcher is {launcher.get('class')!r}; step pods need "
                "`run_launcher: {module: dagster_k8s, class: K8sRunLauncher, config: ...}`"
            )
        values = _yaml_mapping(values_yaml)
        user = values.get("dagster-user-deployments") or {}
        every = user.get("deployments") or []
        found = [d for d in every if deployment in (None, d.get("name"))]
        if len(found) != 1:
            names = [d.get("name") for d in every]
            problem = (
                f"has {names}: name the one whose image runs the steps"
                if found
                else f"has no deployment {deployment!r} (it has {names})"
                if every
                else "is empty: the step pods run the user-code deployment's image"
            )
            raise PodSpecError(f"{values_yaml}: dagster-user-deployments.deployments {problem}")
        return cls(
            instance_yaml=instance_yaml,
            run_launcher_config=launcher.get("config") or {},
            deployment=found[0],
            user_deployments=user,
            global_values=values.get("global") or {},
            name=name,
            namespace=namespace or str((launcher.get("config") or {}).get("job_namespace") or "default"),
        )

    @property
    def image(self) -> str:
        """The user-code image, `repository:tag`, as the chart's `dagster.dagsterImage.name` renders it."""
        image = self.deployment.get("image") or {}
        if not image.get("repository") or not image.get("tag"):
            raise PodSpecError(
                f"the user deployment {self.deployment.get('name')!r} has no image.repository/image.tag: "
                "pin both (the chart would fall back to its own version as the tag)"
            )
        return f"{image['repository']}:{image['tag']}"

    @property
    def fullname(self) -> str:
        """The user-deployments subchart's `dagster.fullname` (release name, then chart name, ≤ 63 chars)."""
        chart = "dagster-user-deployments"
        full = self.global_values.get("fullnameOverride") or self.user_deployments.get("fullnameOverride")
        if full:
            return str(full)[:63].rstrip("-")
        base = self.name if chart in self.name else f"{self.name}-{chart}"
        return base[:63].rstrip("-")

    @property
    def service_account_name(self) -> str:
        """`dagsterUserDeployments.serviceAccountName`: global, then the subchart's, then `<fullname>-user-deployments`."""
        account = self.user_deployments.get("serviceAccount") or {}
        return (
            self.global_values.get("serviceAccountName")
            or account.get("name")
            or f"{self.fullname}-user-deployments"
        )

    def container_context(self) -> dict[str, Any] | None:
        """The `k8s` container context the chart gives the code server (`DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT`),
        which every run and step it launches merges over the run launcher's settings; None when the deployment
        turns `includeConfigInLaunchedRuns` off."""
        d = self.deployment
        if not (d.get("includeConfigInLaunchedRuns") or {"enabled": True}).get("enabled"):
            return None
        k8s: dict[str, Any] = {"image_pull_policy": (d.get("image") or {}).get("pullPolicy")}
        if pull_secrets := self.user_deployments.get("imagePullSecrets"):
            k8s["image_pull_secrets"] = pull_secrets
        k8s["env_config_maps"] = [
            f"{self.fullname}-{d['name']}-user-env",
            *(m["name"] for m in d.get("envConfigMaps") or [] if "name" in m),
        ]
        if d.get("envSecrets"):
            k8s["env_secrets"] = [s["name"] for s in d["envSecrets"] if "name" in s]
        for key, value_key in (
            ("volume_mounts", "volumeMounts"),
            ("volumes", "volumes"),
            ("labels", "labels"),
            ("resources", "resources"),
            ("scheduler_name", "schedulerName"),
        ):
            if d.get(value_key):
                k8s[key] = d[value_key]
        k8s["namespace"] = self.namespace
        k8s["service_account_name"] = self.service_account_name
        if isinstance(d.get("env"), list) and d["env"]:
            k8s["env"] = d["env"]
        pod_spec: dict[str, Any] = {"automount_service_account_token": True}
        if d.get("sidecarContainers"):
            pod_spec["containers"] = d["sidecarContainers"]
        if d.get("initContainers"):
            pod_spec["init_containers"] = d["initContainers"]
        run_k8s_config: dict[str, Any] = {"pod_spec_config": pod_spec}
        if d.get("annotations"):
            run_k8s_config["pod_template_spec_metadata"] = {"annotations": d["annotations"]}
        k8s["run_k8s_config"] = run_k8s_config
        return {"k8s": k8s}

    def code_module(self) -> str:
        """The module `dagster api grpc -m <module>` loads (`dagsterApiGrpcArgs`)."""
        args = list(self.deployment.get("dagsterApiGrpcArgs") or [])
        for flag in ("-m", "--module-name"):
            if flag in args and args.index(flag) + 1 < len(args):
                return args[args.index(flag) + 1]
        raise PodSpecError(
            f"the user deployment {self.deployment.get('name')!r} has no `-m <module>` in dagsterApiGrpcArgs"
        )


def step_jobs(
    defs: Definitions, release: Release, keys: Iterable[AssetKey] | None = None
) -> dict[AssetKey, V1Job]:
    """The Job `k8s_job_executor` launches for the step of each asset in `keys` (default: every asset), in a run
    of the implicit asset job selecting that asset.

    `defs` must use the Kubernetes executor (built with `DERIVE_EXECUTOR=k8s`, as the image does). Env vars the
    run launcher's config reads (`{env: NAME}`) are resolved from this process's environment, as the daemon
    resolves them from its own; an unset one is a `PodSpecError`.
    """
    from dagster._core.execution.api import create_execution_plan

    job = defs.resolve_implicit_global_asset_job_def()
    if job.executor_def.name != "k8s":
        raise PodSpecError(
            f"the definitions run steps with the {job.executor_def.name!r} executor, not k8s_job_executor: "
            "build them with DERIVE_EXECUTOR=k8s (the image sets it)"
        )
    wanted = sorted(keys if keys is not None else defs.resolve_all_asset_keys())
    with tempfile.TemporaryDirectory(prefix="derive-pod-") as tmp:
        launch = _Launcher(release, Path(tmp))
        jobs = {}
        for key in wanted:
            subset = job.get_subset(asset_selection={key})
            plan = create_execution_plan(subset)
            step_key = defs.resolve_assets_def(key).node_def.name  # a top-level op's step key is its name
            jobs[key] = launch(subset, plan, step_key, {key})
        return jobs


def check_step_jobs(defs: Definitions, release: Release) -> dict[str, V1Job]:
    """The Job `k8s_job_executor` launches for each step that runs asset checks on their own, by step key: the
    freshness checks (`derive_assets/factory/freshness.py`), in a run of the implicit asset job selecting the
    step's checks, as the `derive_freshness_checks` sensor requests it. A spec's `kubernetes` block is for its
    asset's step; these steps only read the event log, so they get the run launcher's defaults. (A table's other
    checks run in its asset's step.)"""
    from dagster._core.execution.api import create_execution_plan

    job = defs.resolve_implicit_global_asset_job_def()
    with tempfile.TemporaryDirectory(prefix="derive-pod-") as tmp:
        launch = _Launcher(release, Path(tmp))
        jobs = {}
        for checks in defs.asset_checks or []:
            assert isinstance(checks, AssetsDefinition), checks
            selected = set(checks.check_keys)
            subset = job.get_subset(asset_check_selection=selected)
            plan = create_execution_plan(subset)
            step_key = checks.node_def.name
            jobs[step_key] = launch(subset, plan, step_key, None)  # the subset selects the checks
        return dict(sorted(jobs.items()))


def step_job(
    defs: Definitions,
    asset_key: AssetKey,
    instance_yaml: Path = INSTANCE_YAML,
    values_yaml: Path = VALUES_YAML,
) -> V1Job:
    """The Job `k8s_job_executor` launches for `asset_key`'s step; see `step_jobs`."""
    return step_jobs(defs, Release.load(instance_yaml, values_yaml), [asset_key])[asset_key]


def step_args(job: V1Job) -> Any:
    """The `ExecuteStepArgs` a step Job passes to `dagster api execute_step` (decoded from its env)."""
    from dagster._grpc.types import ExecuteStepArgs
    from dagster_shared.serdes import deserialize_value

    [container] = [c for c in cast(Any, job).spec.template.spec.containers if c.name == "dagster"]
    [encoded] = [e.value for e in container.env if e.name == STEP_ARGS_ENV]
    return deserialize_value(zlib.decompress(base64.b64decode(encoded)).decode(), ExecuteStepArgs)


def job_dict(job: V1Job) -> dict[str, Any]:
    """The Job as the Kubernetes API receives it (camelCase keys, no empty fields)."""
    from kubernetes.client import ApiClient

    return cast(dict[str, Any], ApiClient().sanitize_for_serialization(job))


def job_yaml(job: V1Job, release: Release) -> str:
    """The Job as YAML for a person to read: Secrets and ConfigMaps by name only. The value of an env var the
    launcher copies from its own environment (`env_vars: [NAME]`) is never printed (it may be a secret; here it
    would be this machine's), and the serialized step args are shortened to what they carry."""
    body = job_dict(job)
    copied = _copied_env_names(release)
    for container in body["spec"]["template"]["spec"]["containers"]:
        for env in container.get("env") or []:
            if env["name"] == STEP_ARGS_ENV:
                args = step_args(job)
                env["value"] = (
                    f"<ExecuteStepArgs of step {', '.join(args.step_keys_to_execute)} of job "
                    f"{args.job_origin.job_name}, run {args.run_id}>"
                )
            elif env["name"] in copied and "value" in env:
                env["value"] = "<copied from the launching process's environment>"
    return yaml.safe_dump(body, sort_keys=False)


def _yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PodSpecError(f"{path}: no such file") from None
    if not isinstance(data, dict):
        raise PodSpecError(f"{path}: expected a YAML mapping")
    return data


def _copied_env_names(release: Release) -> set[str]:
    """Env var names whose values dagster-k8s copies from the launching process (`env_vars` items without `=`)."""
    context = (release.container_context() or {}).get("k8s", {})
    items = [*(release.run_launcher_config.get("env_vars") or []), *(context.get("env_vars") or [])]
    return {item for item in items if isinstance(item, str) and "=" not in item}


def _run_launcher(release: Release, tmp: Path) -> Any:
    """The instance's `K8sRunLauncher`, from its config as written: schema defaults applied and env vars resolved
    by Dagster's config processing. Only how it reaches a cluster is replaced: a placeholder kubeconfig, which
    loading makes the kubernetes client's default configuration in this process (nothing connects to it)."""
    from dagster._config import process_config, resolve_to_config_type
    from dagster_k8s import K8sRunLauncher

    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(_PLACEHOLDER_KUBECONFIG), encoding="utf-8")
    config = {
        **release.run_launcher_config,
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
        "k8s_api_ssl_ca_cert_file": None,
    }
    processed = process_config(resolve_to_config_type(K8sRunLauncher.config_type()), config)
    if not processed.success:
        problems = "; ".join(_first_lines(str(e.message)) for e in processed.errors or [])
        raise PodSpecError(
            f"{release.instance_yaml}: run_launcher.config does not load: {problems}. Set the variable(s) it "
            "reads, as the chart sets them for the daemon, or drop the field"
        )
    return K8sRunLauncher(**cast(dict[str, Any], processed.value))


def _first_lines(message: str) -> str:
    """A config error's first line, and the line naming an unset env var (the rest is a stack trace)."""
    lines = message.splitlines()
    return " ".join([lines[0], *(line for line in lines[1:] if "environment variable" in line)]).rstrip(".")


def _instance(launcher: Any) -> Any:
    """An in-memory Dagster instance whose run launcher is `launcher` (storage is not what a pod is made of)."""
    from dagster._core.instance import DagsterInstance, InstanceType
    from dagster._core.run_coordinator import DefaultRunCoordinator
    from dagster._core.storage.event_log import InMemoryEventLogStorage
    from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
    from dagster._core.storage.root import TemporaryLocalArtifactStorage
    from dagster._core.storage.runs import InMemoryRunStorage

    return DagsterInstance(
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=TemporaryLocalArtifactStorage(),
        run_storage=InMemoryRunStorage(),
        event_storage=InMemoryEventLogStorage(),
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=launcher,
    )


def _instance_ref(release: Release, dagster_home: str) -> Any:
    """The production instance's ref, as the run worker passes it to each step (env vars stay names)."""
    from dagster._core.instance.ref import InstanceRef

    return InstanceRef.from_dir(
        dagster_home,
        config_dir=str(release.instance_yaml.parent),
        config_filename=release.instance_yaml.name,
    )


def _repository_origin(release: Release) -> Any:
    """What the user-code deployment's `dagster api grpc -m <module>` reports as its origin."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import (
        DEFAULT_DAGSTER_ENTRY_POINT,
        RepositoryPythonOrigin,
        get_python_environment_entry_point,
    )

    args: Sequence[str] = release.deployment.get("dagsterApiGrpcArgs") or []
    return RepositoryPythonOrigin(
        executable_path=PYTHON_IN_IMAGE,
        code_pointer=ModuleCodePointer(release.code_module(), "defs", None),
        container_image=release.image,
        entry_point=(
            get_python_environment_entry_point(PYTHON_IN_IMAGE)
            if "--use-python-environment-entry-point" in args
            else DEFAULT_DAGSTER_ENTRY_POINT
        ),
        container_context=release.container_context(),
    )


class _RecordingBatchApi:
    """Stands for `kubernetes.client.BatchV1Api`: keeps the Job it is asked to create."""

    def __init__(self) -> None:
        self.created: list[tuple[str, V1Job]] = []

    def create_namespaced_job(self, body: V1Job, namespace: str, **_: Any) -> V1Job:
        self.created.append((namespace, body))
        return body


class _Launcher:
    """The production instance's run launcher, in memory, and what a step Job names of it."""

    def __init__(self, release: Release, tmp: Path):
        self.release = release
        launcher = _run_launcher(release, tmp)
        self.instance = _instance(launcher)
        self.instance_ref = _instance_ref(release, launcher.dagster_home)
        self.origin = _repository_origin(release)

    def __call__(self, subset: Any, plan: Any, step_key: str, assets: set[AssetKey] | None) -> V1Job:
        """The Job of step `step_key` in a run of `subset` selecting `assets` (None: a run of checks only)."""
        return _launch(
            subset, plan, step_key, assets, self.instance, self.instance_ref, self.origin, self.release
        )


def _launch(
    subset: Any,
    plan: Any,
    step_key: str,
    assets: set[AssetKey] | None,
    instance: Any,
    instance_ref: Any,
    origin: Any,
    release: Release,
) -> V1Job:
    """One run of `subset` (the implicit asset job selecting `assets`, or only checks) and `launch_step` of its
    step `step_key`, as `StepDelegatingExecutor` calls it (`_get_step_handler_context`)."""
    from dagster._config import process_config, resolve_to_config_type
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
    from dagster._core.execution.plan.state import KnownExecutionState
    from dagster._core.execution.retries import RetryMode
    from dagster._core.executor.init import InitExecutorContext
    from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
    from dagster._core.log_manager import DagsterLogManager
    from dagster._core.origin import JobPythonOrigin
    from dagster._core.remote_origin import (
        GrpcServerCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._grpc.types import ExecuteStepArgs
    from dagster_k8s.client import DagsterKubernetesClient

    location = GrpcServerCodeLocationOrigin(  # as the chart's workspace names the deployment's Service
        host=release.deployment["name"],
        port=int(release.deployment.get("port") or 3030),
        location_name=release.deployment["name"],
    )
    job_origin = JobPythonOrigin(subset.name, origin)
    run = instance.create_run_for_job(
        subset,
        execution_plan=plan,
        asset_selection=assets,
        job_code_origin=job_origin,
        remote_job_origin=RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), subset.name),
    )
    executor_def = subset.executor_def
    executor_config = process_config(resolve_to_config_type(executor_def.config_schema.config_type), {})
    assert executor_config.success, executor_config.errors
    job = InMemoryJob(subset)
    executor = executor_def.executor_creation_fn(
        InitExecutorContext(
            job=job,
            executor_def=executor_def,
            executor_config=cast(Mapping[str, object], executor_config.value),
            instance=instance,
        )
    )
    recorder = _RecordingBatchApi()
    handler = executor._step_handler  # the K8sStepHandler the executor made from its config
    handler._api_client = DagsterKubernetesClient.production_client(batch_api_override=recorder)
    plan_context = PlanOrchestrationContext(
        plan_data=PlanData(
            job=job,
            dagster_run=run,
            instance=instance,
            execution_plan=plan,
            raise_on_error=True,
            retry_mode=RetryMode.DISABLED,
        ),
        log_manager=DagsterLogManager.create(loggers=[], instance=instance, dagster_run=run),  # no console
        executor=executor,
        output_capture=None,
    )
    # An asset's own step (its freshness checks run in steps of their own).
    [step] = [s for s in plan.steps if s.key == step_key]
    context = StepHandlerContext(
        instance=instance,
        plan_context=plan_context,
        steps=[step],
        execute_step_args=ExecuteStepArgs(
            job_origin=job_origin,
            run_id=run.run_id,
            step_keys_to_execute=[step.key],
            instance_ref=instance_ref,
            retry_mode=executor.retries.for_inner_plan(),
            known_state=KnownExecutionState(),
            should_verify_step=True,
            print_serialized_events=False,
        ),
        dagster_run=run,
    )
    list(handler.launch_step(context))
    [(namespace, body)] = recorder.created
    # The API call takes the namespace beside the body; it is kept on the Job for the reader.
    cast(Any, body).metadata.namespace = namespace
    return body
