"""The Derive component type with Dagster's `dg` CLI: this repository as a dg project (`dg check defs`, `dg list
defs`, `dg launch`), another dg project that includes Derive with one `defs.yaml`, and the component's errors.

The `dg` commands run as subprocesses, as a user types them, each with its own `DERIVE_HOME` and `DAGSTER_HOME`
(telemetry off) and the in-process executor (a multiprocess run of five assets takes minutes on these machines).
"""

import json
import os
import runpy
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml
from dagster import AssetKey, Definitions, load_from_defs_folder
from dagster.components.core.component_tree import ComponentTreeException
from dagster.components.core.package_entry import discover_entry_point_package_objects
from dagster.components.resolved.errors import ResolutionException
from dagster.components.testing import DefsFolderSandbox, create_defs_folder_sandbox
from dagster_shared.serdes.objects import EnvRegistryKey

from derive_assets.components import DeriveSpecs
from derive_assets.components.translation import TranslatedAttributes
from derive_assets.demo.generate import embedded_urls, generate
from derive_assets.factory.build import build_definitions
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project
from derive_assets.translator import DeriveTranslator

BIN = Path(sys.executable).parent
SPECS = PROJECT_ROOT / "table_specs"
SOURCES = ["accounts/auth", "profiles/profile", "payments/payments"]


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    """The environment of a `dg` run (and of this process, for the definitions built here to compare with):
    no `DERIVE_*` variable of the caller's, a private Derive home and Dagster home."""
    for name in [n for n in os.environ if n.startswith("DERIVE_")]:
        monkeypatch.delenv(name)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    values = {
        "DERIVE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(dagster_home),
        "DERIVE_EXECUTOR": "in_process",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def dg(*args: str, env: dict[str, str], cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dg"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def start_dg(*args: str, env: dict[str, str], cwd: Path = PROJECT_ROOT) -> subprocess.Popen[str]:
    """`dg` in the background: independent commands overlap (each spends most of its time starting Python)."""
    return subprocess.Popen(
        [str(BIN / "dg"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def listed(defs: Definitions) -> dict[str, set[str]]:
    """What `dg list defs --json` shows of `defs`, by section: asset keys, check keys, jobs, sensors, resources."""
    graph = defs.resolve_asset_graph()
    jobs = {job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")}
    return {
        "assets": {key.to_user_string() for key in graph.get_all_asset_keys()},
        "asset_checks": {f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys},
        "jobs": jobs,
        "sensors": {sensor.name for sensor in defs.sensors or []},
        "resources": set(defs.resources or {}),
    }


def from_json(text: str) -> dict[str, set[str]]:
    shown = json.loads(text)
    return {
        "assets": {a["asset_key"] for a in shown["assets"]},
        "asset_checks": {c["key"] for c in shown["asset_checks"]},
        "jobs": {j["name"] for j in shown["jobs"]},
        "sensors": {s["name"] for s in shown["sensors"]},
        "resources": {r["name"] for r in shown["resources"]},
    }


def spec_keys() -> set[str]:
    """One asset key per spec item of the shipped specs, from the specs themselves (not from the factory)."""
    project = load_project(SPECS)
    refs = [rt.ref for rt in project.replicated] + [t.spec.ref for t in project.tables]
    refs += [f"online.{e.spec.name}" for e in project.exports]
    return {ref.replace(".", "/") for ref in refs}


@pytest.mark.slow
def test_dg_check_defs_and_list_defs_show_every_spec_of_this_repository(env, tmp_path):
    check = start_dg("check", "defs", env=env)
    listing = start_dg("list", "defs", "--json", env=env)
    code, out, err = finish(check)
    assert code == 0, err[-3000:]
    assert "All definitions loaded successfully." in out + err
    code, out, err = finish(listing)
    assert code == 0, err[-3000:]

    shown = from_json(out)
    expected = listed(build_definitions(DeriveSettings(specs_dir=SPECS, home=tmp_path / "home")))
    assert shown == expected
    assert spec_keys() <= shown["assets"]
    assert "analytics/daily_payments_by_region:day_not_null" in shown["asset_checks"]
    assert all(
        a["source"].startswith("derive_assets/defs/derive/defs.yaml:") for a in json.loads(out)["assets"]
    )


@pytest.mark.slow
def test_dg_launch_materializes_the_source_tables_then_one_window(env, tmp_path):
    counts = generate(embedded_urls(tmp_path / "home" / "sources"), users=300, days=3)
    day = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")

    sources = dg("launch", "--assets", ",".join([*SOURCES, "core/user_detail"]), env=env)
    assert sources.returncode == 0, sources.stderr[-3000:]
    window = dg("launch", "--assets", "analytics/daily_payments_by_region", "--partition", day, env=env)
    assert window.returncode == 0, window.stderr[-3000:]

    with duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb"), read_only=True) as con:
        (payments,) = con.execute("SELECT count(*) FROM payments.payments").fetchone() or (0,)
        days = con.execute(
            "SELECT DISTINCT CAST(day AS VARCHAR) FROM analytics.daily_payments_by_region"
        ).fetchall()
    assert payments == counts["payments.payments"]
    assert [d for (d,) in days] == [day]


SHOP_PYPROJECT = """\
[project]
name = "shop"
version = "0.1.0"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "shop"

[tool.dg.cli]
telemetry = { enabled = false }
suppress_warnings = ["project_and_activated_venv_mismatch"]
"""

SHOP_DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""

SHOP_TRANSLATOR = """\
from dagster import AssetKey

from derive_assets.translator import DeriveNode, DeriveTranslator


class ShopTranslator(DeriveTranslator):
    def get_asset_key(self, node: DeriveNode) -> AssetKey:
        return super().get_asset_key(node).with_prefix("shop")
"""


def shop_project(root: Path, specs_dir: str) -> Path:
    """A dg project of its own (`shop`) that includes Derive with one defs.yaml: its translator prefixes every
    key, a `translation` templates the group on the node, Dagster's `post_processing` sets the owners."""
    (root / "shop" / "defs" / "warehouse").mkdir(parents=True)
    (root / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    (root / "pyproject.toml").write_text(SHOP_PYPROJECT)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "definitions.py").write_text(SHOP_DEFINITIONS)
    (root / "shop" / "translators.py").write_text(SHOP_TRANSLATOR)
    (root / "shop" / "defs" / "__init__.py").write_text("")
    defs_yaml = root / "shop" / "defs" / "warehouse" / "defs.yaml"
    defs_yaml.write_text(
        textwrap.dedent(f"""\
            type: derive_assets.components.DeriveSpecs
            attributes:
              specs_dir: {specs_dir}
              translator: shop.translators.ShopTranslator
              translation:
                group_name: "shop_{{{{ node.dataset }}}}"
            post_processing:
              assets:
                - target: "*"
                  attributes:
                    owners: ["team:shop"]
            """)
    )
    return defs_yaml


@pytest.mark.slow
def test_another_dg_project_includes_derive_with_one_defs_yaml(env, tmp_path):
    project = tmp_path / "shop_project"
    project.mkdir()
    defs_yaml = shop_project(project, "../../../specs")
    (project / "specs").symlink_to(SPECS)
    listing = dg("list", "defs", "--json", env=env, cwd=project)
    assert listing.returncode == 0, listing.stderr[-3000:]
    assets = {a["asset_key"]: a for a in json.loads(listing.stdout)["assets"]}
    assert set(assets) == {f"shop/{key}" for key in spec_keys()} | {"shop/features/region_scores"}
    region = assets["shop/analytics/daily_payments_by_region"]
    assert region["dependency_keys"] == ["shop/core/user_detail", "shop/payments/payments"]
    assert region["group_name"] == "shop_analytics"
    assert region["owners"] == [{"team": "shop"}]
    assert region["source"] == f"{defs_yaml.relative_to(project)}:1"
    assert assets["shop/features/region_scores"]["dependency_keys"] == [
        "shop/analytics/daily_payments_by_region"
    ]
    checks = {c["key"] for c in json.loads(listing.stdout)["asset_checks"]}
    assert "shop/analytics/daily_payments_by_region:day_not_null" in checks


# ----------------------------------------------------------------------------------------------- in process


def test_the_component_type_is_registered_for_dg():
    """The `dagster_dg_cli.registry_modules` entry point (pyproject.toml): what `dg list components` lists."""
    found = discover_entry_point_package_objects()
    assert found[EnvRegistryKey(name="DeriveSpecs", namespace="derive_assets.components")] is DeriveSpecs


@pytest.mark.slow
def test_dg_and_dagster_module_load_the_same_definitions(env):
    """`dg` (this repository's defs folder) and `-m derive_assets.definitions` / workspace.yaml: the same assets,
    deps, groups, partitions, code versions, automation conditions, checks, jobs, sensors and resources."""
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"] == [
        {"python_module": {"module_name": "derive_assets.definitions", "location_name": "derive"}}
    ]
    by_dg = load_from_defs_folder(path_within_project=PROJECT_ROOT)
    by_module = runpy.run_module("derive_assets.definitions")["defs"]

    def described(defs: Definitions) -> dict[str, object]:
        graph = defs.resolve_asset_graph()
        nodes = {
            key.to_user_string(): (
                sorted(k.to_user_string() for k in graph.get(key).parent_keys),
                graph.get(key).group_name,
                str(graph.get(key).partitions_def),
                graph.get(key).code_version,
                str(graph.get(key).automation_condition),
                sorted(graph.get(key).owners),
            )
            for key in graph.get_all_asset_keys()
        }
        return {"nodes": nodes, **listed(defs)}

    assert described(by_dg) == described(by_module)


@pytest.mark.slow
def test_the_dg_code_location_imports_no_more_than_the_module(env):
    """Each step process of a `dg launch` run loads the dg code location again: it must import what
    `derive_assets.definitions` imports, not every installed component library too (dagster-gcp's brings
    google-cloud, grpc and pandas). The module runs first, so the dg code location never finds a colder spec
    cache than it had."""

    def heavy_modules(load: str) -> set[str]:
        script = f"import json, sys\n{load}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
        loaded = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", script],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        return set(json.loads(loaded.stdout.splitlines()[-1]))

    by_module = heavy_modules("import derive_assets.definitions")
    by_dg = heavy_modules(
        "from derive_assets.components.project_defs import defs\nassert len(list(defs().assets or [])) > 1"
    )
    assert by_dg <= by_module
    assert not by_dg & {"dagster_gcp", "google.cloud", "grpc"}


HEAVY = ("dagster_gcp", "google.cloud", "grpc", "pandas")


@pytest.fixture
def sandbox() -> Iterator[DefsFolderSandbox]:
    """A throwaway dg project (Dagster's own test sandbox) to load a defs.yaml in."""
    with create_defs_folder_sandbox() as sandbox:
        yield sandbox


def component_at(sandbox: DefsFolderSandbox, attributes: str) -> DeriveSpecs:
    """The component of `<defs>/derive/defs.yaml` with these attributes, loaded as `dg` loads it; a refused
    attribute raises the error `dg` shows (the cause of Dagster's tree error)."""
    folder = sandbox.defs_folder_path / "derive"
    folder.mkdir(exist_ok=True)
    text = "type: derive_assets.components.DeriveSpecs\nattributes:\n" + textwrap.indent(attributes, "  ")
    (folder / "defs.yaml").write_text(text)
    with sandbox.build_component_tree() as tree:
        try:
            return tree.load_component(folder, expected_type=DeriveSpecs)
        except ComponentTreeException as exc:
            raise exc.__cause__ or exc from None


def test_specs_dir_is_relative_to_the_defs_yaml(sandbox):
    (sandbox.defs_folder_path / "specs").mkdir()
    component = component_at(sandbox, "specs_dir: ../specs\n")
    assert component.settings().specs_dir == (sandbox.defs_folder_path / "specs").resolve()
    assert component_at(sandbox, f"specs_dir: {SPECS}\n").settings().specs_dir == SPECS


def test_without_specs_dir_the_component_follows_derive_specs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(tmp_path))
    assert DeriveSpecs().settings().specs_dir == tmp_path
    monkeypatch.delenv("DERIVE_SPECS_DIR")
    assert DeriveSpecs().settings().specs_dir == SPECS


def test_a_specs_dir_that_is_a_file_is_refused_with_the_yaml_line(sandbox):
    (sandbox.defs_folder_path / "specs.yaml").write_text("name: x\n")
    with pytest.raises(
        ResolutionException,
        match=r"(?s)derive/defs\.yaml:3 - attributes\.specs_dir\n.*\^ is a file, not a directory\n.*"
        r"attributes\.specs_dir: '\.\./specs\.yaml' is /.*/defs/specs\.yaml, which is a file, not a directory; set "
        r"specs_dir to the directory of the spec YAML files",
    ):
        component_at(sandbox, "specs_dir: ../specs.yaml\n")


def test_a_missing_specs_dir_is_refused_before_any_spec_loads(sandbox):
    with pytest.raises(ResolutionException) as refused:
        component_at(sandbox, "specs_dir: ../../specs\n")
    missing = (sandbox.defs_folder_path / ".." / "specs").resolve()
    assert str(refused.value).endswith(
        f"attributes.specs_dir: '../../specs' is {missing}, which does not exist; set specs_dir to the directory "
        "of the spec YAML files, relative to this defs.yaml or absolute"
    )
    assert "   3 |   specs_dir: ../../specs\n" in str(refused.value)  # the line, as `dg check defs` shows it
    ours = [f.filename for f in traceback.extract_tb(refused.tb) if "/derive_assets/" in f.filename]
    assert ours and all(f.endswith("derive_assets/components/derive_specs.py") for f in ours)


@pytest.mark.parametrize(
    ("translator", "problem"),
    [
        ("TeamTranslator", "'TeamTranslator' is not an import path"),
        (
            "no_such_package.translators.Team",
            r"cannot import no_such_package\.translators \(ModuleNotFoundError: ",
        ),
        ("derive_assets.translator.Nope", r"derive_assets\.translator has no Nope"),
        (
            "derive_assets.settings:DeriveSettings",
            r"derive_assets\.settings:DeriveSettings is not a subclass of ",
        ),
    ],
)
def test_a_wrong_translator_is_refused_with_the_fix(sandbox, translator, problem):
    with pytest.raises(
        ResolutionException,
        match=rf"attributes\.translator: {problem}.*; give the import path of a DeriveTranslator subclass, e\.g\. ",
    ):
        component_at(sandbox, f"translator: {translator}\n")


def test_translator_and_translation_reach_every_asset_and_keep_the_graph_connected(
    sandbox, tmp_path, monkeypatch
):
    (tmp_path / "team_translators.py").write_text(SHOP_TRANSLATOR.replace("ShopTranslator", "TeamTranslator"))
    monkeypatch.syspath_prepend(str(tmp_path))
    component = component_at(
        sandbox,
        f"specs_dir: {SPECS}\n"
        "translator: team_translators:TeamTranslator\n"
        "translation:\n"
        "  key_prefix: derive\n"
        '  tags: {spec_kind: "{{ node.kind }}"}\n',
    )
    defs = build_definitions(
        DeriveSettings(specs_dir=SPECS, home=tmp_path), translator=component.derive_translator()
    )
    graph = defs.resolve_asset_graph()
    prefixed = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert prefixed == {f"derive/shop/{key}" for key in spec_keys()} | {"derive/shop/features/region_scores"}
    region = graph.get(AssetKey(["derive", "shop", "analytics", "daily_payments_by_region"]))
    assert {k.to_user_string() for k in region.parent_keys} == {
        "derive/shop/core/user_detail",
        "derive/shop/payments/payments",
    }
    assert region.tags["spec_kind"] == "table" and region.tags["derive/layer"] == "derived"
    scores = graph.get(AssetKey(["derive", "shop", "features", "region_scores"]))
    assert {k.to_user_string() for k in scores.parent_keys} == {
        "derive/shop/analytics/daily_payments_by_region"
    }
    checks = {f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys}
    assert "derive/shop/analytics/daily_payments_by_region:day_not_null" in checks


def test_the_translation_answers_every_translator_method():
    """The factory may ask any `DeriveTranslator` method: each must come from the translated spec or the wrapped
    translator, never from `DeriveTranslator`'s default (which would ignore a `translator` subclass)."""
    public = {name for name in vars(DeriveTranslator) if name.startswith("get_")}
    assert public and public <= set(vars(TranslatedAttributes))
