"""A broken spec breaks only itself: the code location loads every valid spec, runs them, and shows the broken one.

Each case copies the shipped specs, breaks one file the way a spec author would (bad YAML, a bad field, SQL that
does not bind on DuckDB, a table that does not exist), builds the definitions as `derive_assets/definitions.py`
does (from `DERIVE_SPECS_DIR`), and checks what an operator sees: every other asset, a `derive_errors` placeholder
carrying the error, and a run of an unrelated asset that works.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, Definitions, materialize
from support import run_assets, run_job

from derive_assets.factory.build import build_definitions
from derive_assets.factory.error_assets import ERROR_KIND, ERRORS_GROUP
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.errors import SpecValidationError

ALL_ASSETS = {
    "accounts/auth",
    "orders/orders",
    "payments/payments",
    "profiles/profile",
    "core/user_detail",
    "analytics/order_facts",
    "analytics/daily_payments_by_region",
    "analytics/top_spenders",
    "features/region_scores",
    "online/user_profile_online",
    "online/region_payments_online",
}


@dataclass(frozen=True)
class Breakage:
    file: str
    """Under the specs directory."""
    old: str | None
    """Replaced by `new`; None: the whole file becomes `new`."""
    new: str
    left_out: set[str]
    """Asset keys the breakage removes (the spec's own and its dependents')."""
    placeholder: str
    error: str
    """A piece of the error text the placeholder must carry."""


BREAKAGES = {
    "bad-yaml": Breakage(
        "analytics/order_facts.yaml",
        None,
        "name: [unclosed\n",
        {"analytics/order_facts"},
        "derive_errors/analytics__order_facts",
        "not valid YAML",
    ),
    "bad-field": Breakage(
        "analytics/daily_payments_by_region.yaml",
        "strategy:",
        "strategy_typo:",
        {"analytics/daily_payments_by_region", "online/region_payments_online", "features/region_scores"},
        "derive_errors/analytics__daily_payments_by_region",
        "strategy_typo: unknown field",
    ),
    "bad-sql": Breakage(
        "analytics/top_spenders.yaml",
        "u.region,",
        "FARM_FINGERPRINT(u.region) AS region,",
        {"analytics/top_spenders"},
        "derive_errors/analytics__top_spenders",
        "function FARM_FINGERPRINT has no DuckDB equivalent",
    ),
    "unknown-table": Breakage(
        "analytics/order_facts.yaml",
        "FROM orders.orders AS o",
        "FROM orders.nope AS o",
        {"analytics/order_facts"},
        "derive_errors/analytics__order_facts",
        "reads table 'orders.nope', which no table spec or source defines",
    ),
}


def break_spec(specs_dir: Path, breakage: Breakage) -> None:
    path = specs_dir / breakage.file
    if breakage.old is None:
        path.write_text(breakage.new)
        return
    text = path.read_text()
    assert breakage.old in text
    path.write_text(text.replace(breakage.old, breakage.new, 1))


def from_env(settings: DeriveSettings, monkeypatch: pytest.MonkeyPatch, **env: str) -> DeriveSettings:
    """The settings `derive_assets/definitions.py` reads, pointed at the test's specs and home."""
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(settings.specs_dir))
    monkeypatch.setenv("DERIVE_HOME", str(settings.home))
    for name in ("DERIVE_WAREHOUSE", "DERIVE_ONLINE_STORE", "DERIVE_EXECUTOR", "DERIVE_STRICT_SPECS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return DeriveSettings.from_env()


def asset_keys(defs: Definitions) -> set[str]:
    return {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}


def errors_group(defs: Definitions) -> dict[str, str]:
    """Placeholder key -> its description."""
    graph = defs.resolve_asset_graph()
    out = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.group_name == ERRORS_GROUP:
            assert set(node.kinds) == {ERROR_KIND}
            out[key.to_user_string()] = node.description or ""
    return out


@pytest.mark.parametrize("case", list(BREAKAGES), ids=list(BREAKAGES))
def test_a_broken_spec_leaves_out_only_itself_and_what_reads_it(
    settings: DeriveSettings,
    specs_dir: Path,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    breakage = BREAKAGES[case]
    break_spec(specs_dir, breakage)
    with caplog.at_level(logging.WARNING, logger="derive_assets"):
        defs = build_definitions(from_env(settings, monkeypatch))

    placeholders = errors_group(defs)
    assert asset_keys(defs) == (ALL_ASSETS - breakage.left_out) | {breakage.placeholder}
    assert list(placeholders) == [breakage.placeholder]
    description = placeholders[breakage.placeholder]
    assert f"table_specs/{breakage.file}" in description and breakage.error in description
    for dependent in breakage.left_out - {breakage.file.removesuffix(".yaml")}:
        assert dependent.split("/")[1] in description  # each dependent is listed with the broken spec

    [warning] = [r.getMessage() for r in caplog.records if r.name == "derive_assets"]
    assert warning.startswith("1 spec file is invalid; the code location loaded without it")
    assert f"  - table_specs/{breakage.file}: " in warning

    # Unrelated assets still run: a source's replication and the core table built from it.
    for job in ("replicate_accounts", "replicate_profiles"):
        run_job(defs, instance, job)
    run_assets(defs, instance, "core/user_detail")
    assert instance.get_latest_materialization_event(AssetKey(["core", "user_detail"])) is not None


def test_materializing_a_placeholder_fails_naming_the_file_and_the_fix(
    settings: DeriveSettings, specs_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_spec(specs_dir, BREAKAGES["bad-field"])
    defs = build_definitions(from_env(settings, monkeypatch))
    placeholder = defs.resolve_assets_def(AssetKey([ERRORS_GROUP, "analytics__daily_payments_by_region"]))
    result = materialize([placeholder], instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data
    assert data.user_failure_data is not None
    first_line = (data.user_failure_data.description or "").splitlines()[0]
    assert re.fullmatch(
        r"table_specs/analytics/daily_payments_by_region\.yaml: strategy: required field is missing "
        r"\(and \d+ more errors?\); fix this spec and reload the code location",
        first_line,
    ), first_line


def test_several_broken_specs_each_get_a_placeholder(
    settings: DeriveSettings, specs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_spec(specs_dir, BREAKAGES["bad-yaml"])
    break_spec(specs_dir, BREAKAGES["bad-sql"])
    defs = build_definitions(from_env(settings, monkeypatch))
    assert set(errors_group(defs)) == {
        "derive_errors/analytics__order_facts",
        "derive_errors/analytics__top_spenders",
    }
    assert "analytics/daily_payments_by_region" in asset_keys(defs)


def test_valid_specs_add_no_placeholder(settings: DeriveSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    defs = build_definitions(from_env(settings, monkeypatch))
    assert asset_keys(defs) == ALL_ASSETS and errors_group(defs) == {}


def test_the_strict_setting_refuses_to_load_a_broken_spec(
    settings: DeriveSettings, specs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_spec(specs_dir, BREAKAGES["bad-field"])
    strict = from_env(settings, monkeypatch, DERIVE_STRICT_SPECS="1")
    assert strict.strict_specs
    with pytest.raises(
        SpecValidationError,
        match=re.escape("table_specs/analytics/daily_payments_by_region.yaml: strategy_typo: unknown field"),
    ):
        build_definitions(strict)


@pytest.mark.slow
def test_dagster_asset_materialize_of_an_unrelated_asset_works_while_a_spec_is_broken(
    settings: DeriveSettings, specs_dir: Path, tmp_path: Path
) -> None:
    break_spec(specs_dir, BREAKAGES["bad-field"])
    env = {
        **os.environ,
        "DERIVE_SPECS_DIR": str(specs_dir),
        "DERIVE_HOME": str(settings.home),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DERIVE_EXECUTOR": "in_process",
    }
    env.pop("DERIVE_STRICT_SPECS", None)
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize"]
    command += ["-m", "derive_assets.definitions", "--select", "accounts/auth"]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    assert "RUN_SUCCESS" in output
    assert (
        "1 spec file is invalid; the code location loaded without it (see the `derive_errors` asset group"
    ) in output
    assert (
        "table_specs/analytics/daily_payments_by_region.yaml: strategy: required field is missing" in output
    )
    assert (
        "also left out: export region_payments_online (table_specs/exports/region_payments_online.yaml)"
        in (output)
    )


def test_a_password_in_a_broken_spec_is_never_shown(
    specs_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = specs_dir / "sources" / "orders.yaml"
    path.write_text(
        path.read_text().replace(
            "connection_env: DERIVE_ORDERS_URL", "connection_env: postgresql://shop:canary-Pa55@db:5432/shop"
        )
    )
    with caplog.at_level(logging.WARNING, logger="derive_assets"):
        defs = build_definitions(DeriveSettings(specs_dir=specs_dir, home=tmp_path / "home"))
    placeholders = errors_group(defs)
    assert list(placeholders) == ["derive_errors/sources__orders"]
    assert "postgresql://shop:***@db:5432/shop" in placeholders["derive_errors/sources__orders"]
    assert (
        "analytics.order_facts (table_specs/analytics/order_facts.yaml)"
        in placeholders["derive_errors/sources__orders"]
    )
    node = defs.resolve_asset_graph().get(AssetKey([ERRORS_GROUP, "sources__orders"]))
    shown = [node.description or "", caplog.text, *(str(v) for v in node.metadata.values())]
    assert all("canary-Pa55" not in text for text in shown)
    assert {"orders/orders", "analytics/order_facts"}.isdisjoint(asset_keys(defs))
