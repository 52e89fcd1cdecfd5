"""A spec's `kubernetes` block (`derive_assets/specs/kubernetes.py`): quantities, directory defaults, the merge, and
the `dagster-k8s/config` op tag each asset's step carries (`derive_assets/factory/kubernetes_tags.py`).

Real spec directories (copies of the shipped specs) are loaded as the definitions load them; the op tag is read back
from the built definitions and parsed by dagster-k8s itself. The malformed-spec corpus
(`tests/unit/malformed_specs/kubernetes/`) holds the error texts of `derive validate`.
"""

from __future__ import annotations

import json
import re
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetKey, Definitions
from dagster_k8s.job import get_user_defined_k8s_config
from kubernetes.utils import parse_quantity
from pydantic import ValidationError

from derive_assets.factory.build import build_definitions
from derive_assets.factory.kubernetes_tags import K8S_CONFIG_TAG, k8s_op_tags
from derive_assets.factory.python_assets import python_table
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.errors import SpecValidationError
from derive_assets.specs.kubernetes import KubernetesSettings, merge, quantity_value
from derive_assets.specs.project import load_project
from derive_assets.specs.version import code_version, export_code_version, source_code_version

ORDER_FACTS = AssetKey(["analytics", "order_facts"])
TOP_SPENDERS = AssetKey(["analytics", "top_spenders"])
PAYMENTS = AssetKey(["payments", "payments"])
USER_DETAIL = AssetKey(["core", "user_detail"])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the shipped specs (`analytics/_defaults.yaml`, `order_facts` and the `payments` source have
    blocks)."""
    target = tmp_path / "table_specs"
    shutil.copytree(PROJECT_ROOT / "table_specs", target)
    return target


def write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def update(path: Path, **fields: Any) -> None:
    """Set top-level fields of a spec file (a value None removes the field)."""
    data = yaml.safe_load(path.read_text())
    for name, value in fields.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    write(path, data)


def step_config(defs: Definitions, key: AssetKey) -> dict[str, Any] | None:
    """The step's `dagster-k8s/config` op tag, decoded; None without one."""
    tags = defs.resolve_asset_graph().get(key).assets_def.node_def.tags
    return json.loads(tags[K8S_CONFIG_TAG]) if K8S_CONFIG_TAG in tags else None


def definitions(root: Path) -> Definitions:
    return build_definitions(DeriveSettings(specs_dir=root, home=root.parent / "home"))


def table_settings(root: Path, ref: str, **load: Any) -> KubernetesSettings | None:
    project = load_project(root, **load)
    return next(t.spec.kubernetes for t in project.tables if t.spec.ref == ref)


# ---------------------------------------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("2Gi", Decimal(2 * 1024**3)),
        ("512Mi", Decimal(512 * 1024**2)),
        ("100Ki", Decimal(102_400)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("1k", Decimal(1000)),
        ("4G", Decimal(4 * 10**9)),
        ("1E", Decimal(10**18)),
        ("0", Decimal(0)),
        (2, Decimal(2)),
        (0.25, Decimal("0.25")),
    ],
)
def test_kubernetes_quantities_are_accepted_with_their_value(written: str | float, value: Decimal) -> None:
    settings = KubernetesSettings.model_validate({"resources": {"requests": {"cpu": written}}})
    assert settings.resources is not None
    kept = settings.resources.requests["cpu"]
    assert kept == str(written), "a quantity is kept as Kubernetes' text"
    assert quantity_value(kept) == value
    assert parse_quantity(kept) == value, "the official client reads it the same"


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("2GB", r"'GB' is not a Kubernetes unit: write Gi \(GiB, powers of 1024\) or G"),
        ("512MiB", r"'MiB' is not a Kubernetes unit"),
        ("-1", "a resource cannot be negative"),
        (-1, "a resource cannot be negative"),
        ("abc", "not a Kubernetes quantity"),
        ("", "empty"),
        ("1 Gi", "no spaces between the number and its unit"),
        ("1.5.2", "not a Kubernetes quantity"),
        ("Gi", "not a Kubernetes quantity"),
        ("1e", "not a Kubernetes quantity"),
        ("0x10", "not a Kubernetes quantity"),
        ("1ki", "not a Kubernetes quantity"),
        ("1e40", "too large for Kubernetes"),
        ("99999999999999999999", "too large for Kubernetes"),
        (True, "true/false is not a quantity"),
        (float("nan"), "not a finite number"),
        ([1], "not a quantity"),
    ],
)
def test_other_quantities_are_refused_with_what_is_allowed(written: Any, reason: str) -> None:
    with pytest.raises(ValidationError) as raised:
        KubernetesSettings.model_validate({"resources": {"limits": {"memory": written}}})
    (error,) = raised.value.errors()
    assert error["loc"] == ("resources", "limits", "memory")
    message = error["msg"]
    assert re.search(reason, message), message
    if "too large" not in reason:
        assert "millicores ('500m')" in message and "'512Mi', '2Gi'" in message  # what is allowed


def test_an_invalid_quantity_fails_the_load_with_file_field_value_and_what_is_allowed(root: Path) -> None:
    update(root / "analytics/top_spenders.yaml", kubernetes={"resources": {"requests": {"memory": "2GB"}}})
    with pytest.raises(SpecValidationError) as raised:
        load_project(root)
    (error,) = raised.value.errors
    assert str(error).startswith(
        "table_specs/analytics/top_spenders.yaml: kubernetes.resources.requests.memory: not a Kubernetes quantity; "
        "'GB' is not a Kubernetes unit"
    )
    assert "memory and storage in bytes with Ki, Mi, Gi, Ti" in str(error)
    assert str(error).endswith("(got '2GB')")


def test_cpu_finer_than_a_millicore_is_refused() -> None:
    with pytest.raises(
        ValidationError, match=r"requests.cpu: 0.0005 is finer than Kubernetes counts CPU \(1m"
    ):
        KubernetesSettings.model_validate({"resources": {"requests": {"cpu": "0.0005"}}})
    with pytest.raises(ValidationError, match=r"limits.cpu: 1500u is finer"):
        KubernetesSettings.model_validate({"resources": {"limits": {"cpu": "1500u"}}})
    fine = {"resources": {"requests": {"cpu": "0.001", "memory": "1.5Gi"}, "limits": {"cpu": "1500m"}}}
    assert KubernetesSettings.model_validate(fine).resources is not None  # and a fraction of a Gi


def test_a_limit_below_its_request_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"limits.cpu: 500m is below the request 1; .*raise limits.cpu"):
        KubernetesSettings.model_validate({"resources": {"requests": {"cpu": 1}, "limits": {"cpu": "500m"}}})
    equal = {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1024Mi"}}}
    assert KubernetesSettings.model_validate(equal).resources is not None  # equal amounts, two spellings


# ---------------------------------------------------------------------------------------------- defaults


def test_the_shipped_defaults_apply_and_a_spec_block_wins_field_by_field(root: Path) -> None:
    top = table_settings(root, "analytics.top_spenders")  # no block of its own: the directory's defaults
    facts = table_settings(root, "analytics.order_facts")  # its own resources over them
    assert top is not None and top.resources is not None
    assert top.resources.requests == {"cpu": "250m", "memory": "512Mi"}
    assert top.resources.limits == {"memory": "1Gi"}
    assert top.node_selector == {"cloud.google.com/gke-nodepool": "etl"}
    assert facts is not None and facts.resources is not None
    assert facts.resources.requests == {"cpu": "1", "memory": "2Gi"}
    assert facts.resources.limits == {"memory": "4Gi", "cpu": "2"}
    assert facts.node_selector == top.node_selector and facts.tolerations == top.tolerations
    core = table_settings(root, "core.user_detail")  # another directory: none of analytics' defaults
    assert core is None


def test_nested_defaults_merge_mappings_key_by_key_and_replace_lists(root: Path) -> None:
    write(
        root / "_defaults.yaml",
        {
            "kubernetes": {
                "resources": {"requests": {"cpu": "100m"}},
                "env_from_secrets": ["shared"],
                "secret_env": {"A": {"secret": "s", "key": "a"}},
            }
        },
    )
    write(
        root / "analytics" / "_defaults.yaml",
        {
            "kubernetes": {
                "resources": {"requests": {"memory": "1Gi"}},
                "node_selector": {"pool": "etl"},
                "env_from_secrets": ["analytics"],
                "secret_env": {"B": {"secret": "s", "key": "b"}},
                "tolerations": [{"key": "dedicated", "value": "etl", "effect": "NoSchedule"}],
            }
        },
    )
    update(
        root / "analytics/top_spenders.yaml",
        kubernetes={"node_selector": {"zone": "b"}, "tolerations": [], "service_account": "growth"},
    )
    top = table_settings(root, "analytics.top_spenders")
    assert top is not None and top.resources is not None
    assert top.resources.requests == {"cpu": "100m", "memory": "1Gi"}  # root, then analytics, key by key
    assert top.env_from_secrets == ["analytics"]  # a list is replaced by the nearer one
    assert set(top.secret_env) == {"A", "B"}
    assert top.node_selector == {"pool": "etl", "zone": "b"}
    assert top.tolerations == []  # the spec's empty list clears the inherited one
    assert top.service_account == "growth"
    core = table_settings(root, "core.user_detail")  # the root's defaults reach every directory
    assert core is not None and core.resources is not None and core.resources.requests == {"cpu": "100m"}
    project = load_project(root)
    exports = {e.spec.name: e.spec.kubernetes for e in project.exports}
    assert all(k is not None and k.env_from_secrets == ["shared"] for k in exports.values())


def test_a_changed_defaults_file_takes_effect_through_the_spec_cache(root: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    before = table_settings(root, "analytics.top_spenders", cache_dir=cache_dir)
    assert (
        before is not None and before.resources is not None and before.resources.limits == {"memory": "1Gi"}
    )
    defaults = root / "analytics" / "_defaults.yaml"
    defaults.write_text(defaults.read_text().replace("limits: {memory: 1Gi}", "limits: {memory: 3Gi}"))
    project = load_project(root, cache_dir=cache_dir)
    after = next(t.spec.kubernetes for t in project.tables if t.spec.ref == "analytics.top_spenders")
    assert after is not None and after.resources is not None and after.resources.limits == {"memory": "3Gi"}
    assert Path("table_specs/analytics/top_spenders.yaml") not in project.cache_stats.yaml, (
        "the spec itself came from the cache; only the defaults changed"
    )


def test_a_spec_under_broken_defaults_is_left_out_not_loaded_without_them(root: Path) -> None:
    write(root / "analytics" / "_defaults.yaml", {"kubernetes": {"resources": {"limits": {"cpu": "lots"}}}})
    project = load_project(root, strict=False)
    refs = {t.spec.ref for t in project.tables}
    assert refs == {"core.user_detail"}, "every analytics table is left out, the other directory loads"
    assert {e.spec.name for e in project.exports} == {
        "user_profile_online"
    }  # the export of an analytics table
    files = sorted({str(e.file) for e in project.errors})
    assert files == [
        "table_specs/analytics/_defaults.yaml",
        "table_specs/analytics/daily_payments_by_region.yaml",
        "table_specs/analytics/order_facts.yaml",
        "table_specs/analytics/top_spenders.yaml",
        "table_specs/exports/region_payments_online.yaml",  # exports a left-out table, and says so
    ]
    left_out = {lo.name for lo in project.left_out}
    assert {
        "analytics.order_facts",
        "analytics.top_spenders",
        "analytics.daily_payments_by_region",
    } <= left_out
    first = next(e for e in project.errors if e.file == Path("table_specs/analytics/_defaults.yaml"))
    assert str(first).startswith(
        "table_specs/analytics/_defaults.yaml: kubernetes.resources.limits.cpu: not a Kubernetes quantity"
    )


def test_a_defaults_file_holds_only_the_kubernetes_block(root: Path) -> None:
    write(root / "analytics" / "_defaults.yaml", {"owner": "team:x", "kubernetes": {}})
    with pytest.raises(SpecValidationError) as raised:
        load_project(root)
    shown = [str(e) for e in raised.value.errors]
    assert (
        "table_specs/analytics/_defaults.yaml: owner: unknown field; allowed: ['kubernetes'] (got 'team:x')"
        in shown
    )


# ---------------------------------------------------------------------------------------------- sources


def test_a_source_table_block_overrides_its_source_block(root: Path) -> None:
    project = load_project(root)
    payments = next(r for r in project.replicated if r.ref == "payments.payments")
    assert payments.source.kubernetes is not None and payments.table.kubernetes is not None
    effective = merge(payments.source.kubernetes, payments.table.kubernetes)
    assert effective is not None and effective.resources is not None
    assert effective.resources.requests == {"cpu": "250m", "memory": "512Mi"}  # the source's
    assert effective.resources.limits == {"memory": "2Gi"}  # the table's, over the source's 1Gi
    assert effective.env_from_secrets == ["payments-db"] and effective.service_account == "derive-payments"


def test_a_source_table_limit_below_its_source_request_is_refused_at_load(root: Path) -> None:
    path = root / "sources" / "payments.yaml"
    data = yaml.safe_load(path.read_text())
    data["tables"][0]["kubernetes"] = {"resources": {"limits": {"memory": "256Mi"}}}
    write(path, data)
    with pytest.raises(SpecValidationError) as raised:
        load_project(root)
    (error,) = raised.value.errors
    assert str(error) == (
        "table_specs/sources/payments.yaml: tables[0].kubernetes.resources.limits.memory: 256Mi is below the "
        "request 512Mi; Kubernetes refuses a pod whose limit is below its request: raise limits.memory or lower "
        "requests.memory (this table's block merged over the source's)"
    )


def test_merge_of_nothing_is_nothing_and_one_side_is_itself() -> None:
    one = KubernetesSettings.model_validate({"service_account": "a"})
    assert merge(None, None) is None
    assert merge(one, None) is one and merge(None, one) is one
    with pytest.raises(ValidationError, match="is below the request"):
        merge(
            KubernetesSettings.model_validate({"resources": {"requests": {"cpu": 2}}}),
            KubernetesSettings.model_validate({"resources": {"limits": {"cpu": 1}}}),
        )


# ---------------------------------------------------------------------------------------------- op tags


def test_each_step_carries_its_effective_block_as_the_dagster_k8s_config_tag(root: Path) -> None:
    defs = definitions(root)
    facts = step_config(defs, ORDER_FACTS)
    assert facts == {
        "container_config": {
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi", "cpu": "2"}}
        },
        "pod_spec_config": {
            "node_selector": {"cloud.google.com/gke-nodepool": "etl"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "etl", "effect": "NoSchedule"}
            ],
        },
    }
    payments = step_config(defs, PAYMENTS)
    assert payments == {
        "container_config": {
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
            "env_from": [{"secret_ref": {"name": "payments-db"}}],
        },
        "pod_spec_config": {"service_account_name": "derive-payments"},
    }
    assert step_config(defs, USER_DETAIL) is None, "no block, no defaults: no tag (the launcher's pod)"


def test_dagster_k8s_reads_the_tag_into_its_own_config(root: Path) -> None:
    update(
        root / "analytics/top_spenders.yaml",
        kubernetes={
            "secret_env": {"GROWTH_TOKEN": {"secret": "growth-api", "key": "token"}},
            "env_from_secrets": ["growth-db"],
            "tolerations": [{"operator": "Exists", "effect": "NoExecute", "toleration_seconds": 60}],
        },
    )
    defs = definitions(root)
    tags = defs.resolve_asset_graph().get(TOP_SPENDERS).assets_def.node_def.tags
    config = get_user_defined_k8s_config(tags)  # what k8s_job_executor does with a step's tags
    assert config.container_config["env"] == [
        {"name": "GROWTH_TOKEN", "value_from": {"secret_key_ref": {"name": "growth-api", "key": "token"}}}
    ]
    assert config.container_config["env_from"] == [{"secret_ref": {"name": "growth-db"}}]
    assert config.container_config["resources"]["limits"] == {
        "memory": "1Gi"
    }  # from the directory's defaults
    assert config.pod_spec_config["tolerations"] == [
        {"operator": "Exists", "effect": "NoExecute", "toleration_seconds": 60}
    ]


def test_an_empty_block_gives_no_tag() -> None:
    assert k8s_op_tags(None) == {}
    assert k8s_op_tags(KubernetesSettings()) == {}
    assert k8s_op_tags(KubernetesSettings.model_validate({"resources": {}})) == {}


def test_a_python_table_carries_its_own_block() -> None:
    @python_table(
        name="scores",
        dataset="features",
        owner="team:ml",
        columns=[{"name": "id", "type": "INT64"}],
        strategy="replace",
        kubernetes={"resources": {"requests": {"memory": "8Gi"}}},
    )
    def scores() -> None: ...

    tags = scores.asset.node_def.tags
    assert json.loads(tags[K8S_CONFIG_TAG]) == {
        "container_config": {"resources": {"requests": {"memory": "8Gi"}}}
    }


# ---------------------------------------------------------------------------------------------- versions


def test_the_block_is_not_part_of_any_code_version(root: Path) -> None:
    payments = root / "sources" / "payments.yaml"
    source = yaml.safe_load(payments.read_text())

    def blocks(own: dict[str, Any] | None, table: dict[str, Any] | None) -> None:
        update(root / "analytics/order_facts.yaml", kubernetes=own)
        update(root / "exports/user_profile_online.yaml", kubernetes=own)
        write(
            payments, {**source, "kubernetes": own, "tables": [{**source["tables"][0], "kubernetes": table}]}
        )

    (root / "analytics" / "_defaults.yaml").unlink()
    blocks(None, None)
    del source["kubernetes"], source["tables"][0]["kubernetes"]
    write(payments, source)
    plain = load_project(root)
    assert all(t.spec.kubernetes is None for t in plain.tables)
    blocks(
        {"resources": {"requests": {"cpu": 3}}, "service_account": "other"},
        {"resources": {"limits": {"cpu": 4}}},
    )
    changed = load_project(root)
    assert [code_version(t.spec) for t in changed.tables] == [code_version(t.spec) for t in plain.tables]
    assert [source_code_version(r.source, r.table) for r in changed.replicated] == [
        source_code_version(r.source, r.table) for r in plain.replicated
    ]
    assert [export_code_version(e.spec) for e in changed.exports] == [
        export_code_version(e.spec) for e in plain.exports
    ]
    assert changed.tables != plain.tables and changed.replicated != plain.replicated, (
        "the blocks changed specs"
    )
