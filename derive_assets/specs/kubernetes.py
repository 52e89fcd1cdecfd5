"""A spec's `kubernetes` block: the pod its asset's step runs in under `k8s_job_executor`.

Tables, sources (and each source table), and exports may say which resources the pod requests and may use, where it
is scheduled (node selector, tolerations), which service account it runs as, and which Secrets feed its
environment. The factory turns the block into the step's `dagster-k8s/config` op tag
(`derive_assets.factory.kubernetes_tags`); locally, with the in-process executor, the block changes nothing.

Where the effective settings live (what the factory reads):

- A `_defaults.yaml` (or `_defaults.yml`) in a specs directory holds only `kubernetes:` and applies to every spec
  file in that directory and below (`derive_assets.specs.defaults`). The loader merges the chain of defaults files
  (the specs root first, the spec's own directory last) and then the spec's own block into the spec's `kubernetes`
  field **before** the model validates it (`merge_data`): after loading, `spec.kubernetes` of a table, an export or
  a source IS the effective block, defaults included.
- A source table's own `kubernetes` overrides its source's the same way; the model keeps what the file says, and
  `merge(source.kubernetes, table.kubernetes)` is the table's effective block. `SourceSpec` checks
  at load that each table's merged block is valid (a table's `limits` below its source's `requests`).

Merging is field by field: mappings (`resources.requests`, `node_selector`, `secret_env`, ...) key by key, lists
(`tolerations`, `env_from_secrets`) replaced whole; the nearer value wins. A spec (or a nearer defaults file)
clears an inherited list with `[]`.

The block never enters a spec's code version (`derive_assets.specs.version`): pod resources never change data.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_validator

from derive_assets.specs.errors import show
from derive_assets.specs.strict import StrictModel

ResourceName = Literal["cpu", "memory", "ephemeral-storage"]

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_QUANTITY = re.compile(rf"(?P<number>{_NUMBER})(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
MAX_QUANTITY = Decimal(2**63 - 1)
"""Kubernetes stores a quantity in a signed 64-bit integer (of its unit): anything larger is refused."""
QUANTITY_HELP = (
    "a Kubernetes quantity is a non-negative number with an optional unit: CPU in cores ('2', '0.5') or "
    "millicores ('500m'); memory and storage in bytes with Ki, Mi, Gi, Ti (powers of 1024: '512Mi', '2Gi') or "
    "k, M, G, T (powers of 1000: '1k', '1e3')"
)


def quantity_value(text: str) -> Decimal:
    """The number a quantity stands for (`500m` -> 0.5, `2Gi` -> 2147483648); ValueError if it is not one."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(_quantity_problem(text))
    number, suffix = Decimal(match["number"]), match["suffix"] or ""
    if suffix in _BINARY:
        return number * (Decimal(1024) ** _BINARY[suffix])
    exponent = _DECIMAL[suffix] if suffix in _DECIMAL else int(suffix[1:])
    if exponent > 30:
        raise ValueError(f"{show(text)} is too large for Kubernetes (at most {MAX_QUANTITY:,} of its unit)")
    if exponent < -9:
        return Decimal(0) if number == 0 else number.scaleb(max(exponent, -30))
    return number.scaleb(exponent)


def _quantity_problem(text: str) -> str:
    hint = ""
    unit = re.fullmatch(rf"{_NUMBER}\s*([A-Za-z]+)", text.strip())
    if text.startswith("-"):
        hint = "a resource cannot be negative; "
    elif unit and unit[1].upper() in ("KB", "MB", "GB", "TB", "PB", "B", "KIB", "MIB", "GIB", "TIB"):
        letter = unit[1][0].upper()
        hint = (
            f"'{unit[1]}' is not a Kubernetes unit: write {letter}i ({letter}iB, powers of 1024) or "
            f"{'k' if letter == 'K' else letter} (powers of 1000), without 'B'; "
        )
    elif text != text.strip() or " " in text:
        hint = "no spaces between the number and its unit; "
    return f"not a Kubernetes quantity; {hint}{QUANTITY_HELP}"


def _check_quantity(value: Any) -> Any:
    """A quantity as YAML gives it (`cpu: 2` is a number, `cpu: 500m` text), kept as Kubernetes' text."""
    if isinstance(value, bool):
        raise ValueError(f"true/false is not a quantity; {QUANTITY_HELP}")
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a finite number; {QUANTITY_HELP}")
        if value < 0:
            raise ValueError(f"a resource cannot be negative; {QUANTITY_HELP}")
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"not a quantity; {QUANTITY_HELP}")
    if not value:
        raise ValueError(f"empty; {QUANTITY_HELP}")
    if quantity_value(value) > MAX_QUANTITY:
        raise ValueError(f"too large for Kubernetes (at most {MAX_QUANTITY:,} of its unit)")
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": rf"^{_QUANTITY.pattern}$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "A Kubernetes quantity, e.g. 500m, 2, 0.5, 2Gi, 512Mi, 1e3, 1k.",
        }
    ),
]
"""A Kubernetes quantity: `500m`, `2`, `0.5`, `2Gi`, `512Mi`, `1e3`, `1k`."""

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"


def _check_dns_subdomain(value: str) -> str:
    """A Kubernetes object name (Secret, ServiceAccount): a DNS-1123 subdomain."""
    if len(value) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, value):
        raise ValueError(
            "not a Kubernetes object name; allowed: lower-case letters, digits, '-' and '.', starting and ending "
            "with a letter or digit, at most 253 characters (DNS-1123), e.g. 'payments-db'"
        )
    return value


def _check_label_key(value: str) -> str:
    """A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters."""
    prefix, slash, name = value.rpartition("/")
    prefix_ok = not slash or (len(prefix) <= 253 and re.fullmatch(_DNS_SUBDOMAIN, prefix))
    if not (prefix_ok and len(name) <= 63 and re.fullmatch(_LABEL_NAME, name)):
        raise ValueError(
            "not a Kubernetes label key; allowed: an optional DNS prefix and '/' (e.g. 'cloud.google.com/'), then "
            "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return value


def _check_label_value(value: str) -> str:
    if value and not (len(value) <= 63 and re.fullmatch(_LABEL_NAME, value)):
        raise ValueError(
            "not a Kubernetes label value; allowed: empty, or at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return value


def _text_label(value: Any) -> Any:
    """YAML reads `spot: true` or `zone: 1` as a boolean or number; Kubernetes labels are text."""
    if isinstance(value, bool | int | float):
        raise ValueError(
            f"a label value is text: quote it, e.g. '{str(value).lower()}' (YAML read it as {value!r})"
        )
    return value


def _check_secret_key(value: str) -> str:
    if not (len(value) <= 253 and re.fullmatch(r"[-._a-zA-Z0-9]+", value)) or value in (".", ".."):
        raise ValueError("not a Secret key; allowed: letters, digits, '-', '_' and '.' (e.g. 'token')")
    return value


ObjectName = Annotated[
    str,
    AfterValidator(_check_dns_subdomain),
    Field(json_schema_extra={"pattern": rf"^{_DNS_SUBDOMAIN}$", "maxLength": 253}),
]
"""The name of a Kubernetes object (Secret, ServiceAccount): DNS-1123, e.g. `payments-db`."""
LabelKey = Annotated[str, AfterValidator(_check_label_key)]
LabelValue = Annotated[str, BeforeValidator(_text_label), AfterValidator(_check_label_value)]
SecretKey = Annotated[str, AfterValidator(_check_secret_key)]
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$", max_length=128)]


class Resources(StrictModel):
    """CPU, memory and ephemeral storage the step's container requests (what the scheduler reserves) and may use
    at most (its limits)."""

    requests: dict[ResourceName, Quantity] = Field(default_factory=dict)
    """What the pod is scheduled with, e.g. `{cpu: 500m, memory: 1Gi}`. Keys: `cpu`, `memory`,
    `ephemeral-storage`."""
    limits: dict[ResourceName, Quantity] = Field(default_factory=dict)
    """The most the container may use, e.g. `{cpu: "2", memory: 4Gi}` (a container over its memory limit is
    killed). A limit is never below its request."""

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Resources:
        """A limit is never below its request, and CPU is counted in whole millicores (Kubernetes' precision)."""
        problems = [
            f"{kind}.cpu: {values['cpu']} is finer than Kubernetes counts CPU (1m, a thousandth of a core); "
            "round it to whole millicores, e.g. '1m' or '250m'"
            for kind, values in (("requests", self.requests), ("limits", self.limits))
            if "cpu" in values and (quantity_value(values["cpu"]) * 1000) % 1
        ]
        problems += [
            f"limits.{name}: {limit} is below the request {self.requests[name]}; Kubernetes refuses a pod whose "
            f"limit is below its request: raise limits.{name} or lower requests.{name}"
            for name, limit in self.limits.items()
            if name in self.requests and quantity_value(limit) < quantity_value(self.requests[name])
        ]
        if problems:
            raise ValueError("\n".join(problems))
        return self


class Toleration(StrictModel):
    """A taint the pod tolerates (Kubernetes `tolerations[]`), e.g. `{key: dedicated, operator: Equal, value:
    etl, effect: NoSchedule}`."""

    key: LabelKey | None = None
    """The taint's key; empty with `operator: Exists` tolerates every taint."""
    operator: Literal["Equal", "Exists"] = "Equal"
    """`Equal` (the taint's value must be `value`) or `Exists` (any value; give no `value`)."""
    value: LabelValue | None = None
    """The taint's value (with `operator: Equal`)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """The taint effect tolerated; empty: all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """With `effect: NoExecute`: how long the pod stays on a node after the taint appears; empty: forever."""

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        problems = []
        if self.operator == "Exists" and self.value:
            problems.append("value: an `Exists` toleration matches any value; remove `value` or use `Equal`")
        if self.key is None and self.operator != "Exists":
            problems.append("key: a toleration without a key must have `operator: Exists` (it tolerates all)")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            problems.append(
                "toleration_seconds: only a `NoExecute` toleration has one; set `effect: NoExecute`"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


class SecretKeyRef(StrictModel):
    """One key of one Secret, e.g. `{secret: payments-api, key: token}`."""

    secret: ObjectName
    """The Secret's name (in the namespace the step runs in)."""
    key: SecretKey
    """The key in the Secret whose value becomes the variable."""


class KubernetesSettings(StrictModel):
    """The pod a spec's asset step runs in with `DERIVE_EXECUTOR=k8s` (the step's `dagster-k8s/config` tag)."""

    resources: Resources | None = None
    """CPU and memory requests and limits of the step's container, e.g. `{requests: {cpu: 500m, memory: 1Gi},
    limits: {memory: 4Gi}}`."""
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    """Node labels the pod must be scheduled on, e.g. `{cloud.google.com/gke-nodepool: etl}`."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Taints the pod tolerates (e.g. of a node pool reserved for ETL)."""
    service_account: ObjectName | None = None
    """The Kubernetes service account the pod runs as (e.g. one bound to a cloud identity that may read this
    source); default: the run launcher's."""
    env_from_secrets: list[ObjectName] = Field(default_factory=list)
    """Secrets whose every key becomes an environment variable of the step (Kubernetes `envFrom`), by name: a
    value never appears in a spec."""
    secret_env: dict[EnvName, SecretKeyRef] = Field(default_factory=dict)
    """Environment variables each taken from one key of a Secret, e.g. `{PAYMENTS_TOKEN: {secret: payments-api,
    key: token}}`."""


class DefaultsFile(StrictModel):
    """A `_defaults.yaml`: settings every spec file in its directory and below inherits."""

    kubernetes: KubernetesSettings | None = None
    """The `kubernetes` block merged under each spec's own (see `derive_assets.specs.kubernetes`)."""


def merge_data(base: Any, own: Any) -> Any:
    """`own` merged over `base`, as YAML values: mappings key by key (recursively), anything else replaced."""
    if isinstance(base, dict) and isinstance(own, dict):
        merged = dict(base)
        for key, value in own.items():
            merged[key] = merge_data(base[key], value) if key in base else value
        return merged
    return own


def merge(defaults: KubernetesSettings | None, own: KubernetesSettings | None) -> KubernetesSettings | None:
    """`own` merged over `defaults` field by field (mappings key by key, lists replaced); None if both are.

    Raises pydantic's ValidationError when the merge breaks a rule neither block breaks alone (a limit of one
    below a request of the other); the loader checks every merge it makes, so loaded specs never do."""
    if defaults is None or own is None:
        return own if defaults is None else defaults
    data = merge_data(_as_data(defaults), _as_data(own))
    return KubernetesSettings.model_validate(data)


def _as_data(settings: KubernetesSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json", exclude_unset=True)
