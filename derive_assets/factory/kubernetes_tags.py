"""A spec's `kubernetes` block as the `dagster-k8s/config` op tag of its asset's step.

`k8s_job_executor` (`DERIVE_EXECUTOR=k8s`) launches each step as a Kubernetes Job and deep-merges the step's
`dagster-k8s/config` tag over the run launcher's config (`deployments/k8s/dagster.yaml`): the tag is in the shape
`dagster_k8s.job.UserDefinedDagsterK8sConfig.from_dict` reads (snake_case keys of the Kubernetes client models),
so requests, limits, node selector, tolerations, service account and env from Secrets reach the step's pod.
With the other executors the tag is inert. Secrets appear by name only: a spec never holds a value.

    >>> k8s_op_tags(KubernetesSettings(resources={"requests": {"cpu": "500m"}}))  # doctest: +SKIP
    {'dagster-k8s/config': {'container_config': {'resources': {'requests': {'cpu': '500m'}}}}}
"""

from __future__ import annotations

from typing import Any

from derive_assets.specs.kubernetes import KubernetesSettings

K8S_CONFIG_TAG = "dagster-k8s/config"
"""dagster-k8s's `USER_DEFINED_K8S_CONFIG_KEY` (not imported: dagster_k8s is loaded only with the k8s executor)."""


def k8s_op_tags(settings: KubernetesSettings | None) -> dict[str, Any]:
    """`{"dagster-k8s/config": {...}}` for a spec's effective settings; `{}` when it has none (or an empty one)."""
    if settings is None:
        return {}
    config: dict[str, Any] = {}
    container = _container_config(settings)
    if container:
        config["container_config"] = container
    pod = _pod_spec_config(settings)
    if pod:
        config["pod_spec_config"] = pod
    return {K8S_CONFIG_TAG: config} if config else {}


def _container_config(settings: KubernetesSettings) -> dict[str, Any]:
    container: dict[str, Any] = {}
    resources = settings.resources
    if resources is not None and (resources.requests or resources.limits):
        container["resources"] = {
            name: dict(values)
            for name, values in (("requests", resources.requests), ("limits", resources.limits))
            if values
        }
    if settings.env_from_secrets:
        container["env_from"] = [{"secret_ref": {"name": name}} for name in settings.env_from_secrets]
    if settings.secret_env:
        container["env"] = [
            {"name": name, "value_from": {"secret_key_ref": {"name": ref.secret, "key": ref.key}}}
            for name, ref in settings.secret_env.items()
        ]
    return container


def _pod_spec_config(settings: KubernetesSettings) -> dict[str, Any]:
    pod: dict[str, Any] = {}
    if settings.node_selector:
        pod["node_selector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in settings.tolerations]
    if settings.service_account is not None:
        pod["service_account_name"] = settings.service_account
    return pod
