"""The real `dagster-webserver` on the shipped demo specs, seen through its GraphQL API and in headless Chromium.

GraphQL: every spec's asset is served with its layer group, description, owners, column schema, checks (names
and blocking) and automation condition (label and expanded label, as the in-process definitions have them), and
the automation sensor and each source's `replicate_<source>_sensor` are there, running from the start.

Chromium (Debian's `chromium`, installed by `deployments/local/services.sh install`): the lineage page shows the
four groups, an asset page its description, owner, group, columns, lineage and condition, its Checks tab every
check, the Automation page every sensor. Each page is also saved as a screenshot (in the test's tmp dir and in
`.derive/ui-screenshots/webserver/` for a person to look at), checked to be a real capture, not a blank page.
Nothing is pixel-exact: the assertions read the page's text after its scripts ran.

The instance is a temporary DAGSTER_HOME with telemetry and the "what's new" pop-up off; the specs are the
shipped ones on embedded engines (no data needed: the UI shows definitions).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DefaultSensorStatus
from dagster._core.definitions.declarative_automation.serialized_objects import get_expanded_label
from dagster_servers import (
    Page,
    Server,
    assert_not_blank,
    free_port,
    keep_for_humans,
    render,
    serve,
    write_dagster_home,
)

from derive_assets.factory.automation import AUTOMATION_SENSOR_NAME
from derive_assets.factory.build import build_definitions
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project

pytestmark = pytest.mark.slow

SPECS = PROJECT_ROOT / "table_specs"
GROUPS = {"sources", "core", "derived", "exports"}
PAGE_ASSET = AssetKey(["analytics", "daily_payments_by_region"])
"""The asset whose page is rendered: windowed, with checks, two upstreams and two downstreams."""

ASSETS_QUERY = """
query {
  assetNodes {
    assetKey { path }
    groupName
    description
    owners { __typename ... on UserAssetOwner { email } ... on TeamAssetOwner { team } }
    automationCondition { label expandedLabel }
    assetChecksOrError { __typename ... on AssetChecks { checks { name blocking } } }
    metadataEntries { label }
  }
}
"""
SENSORS_QUERY = """
query {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { sensors { name sensorType sensorState { status } } } }
  }
}
"""


@dataclass(frozen=True)
class Expected:
    """What the in-process definitions of the same specs say each asset and sensor is."""

    assets: dict[str, dict[str, Any]]
    sensors: dict[str, str]
    """Sensor name -> its default status (RUNNING / STOPPED)."""


def expected_of(home: Path) -> Expected:
    defs = build_definitions(DeriveSettings(specs_dir=SPECS, home=home))
    graph = defs.resolve_asset_graph()
    assets: dict[str, dict[str, Any]] = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        condition = node.automation_condition
        snapshot = condition.get_snapshot() if condition is not None else None
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "description": node.description,
            "owners": sorted(node.owners),
            "checks": sorted((c.name, graph.get_check_spec(c).blocking) for c in node.check_keys),
            "condition": None
            if snapshot is None
            else {"label": snapshot.node_snapshot.label, "expandedLabel": list(get_expanded_label(snapshot))},
        }
    sensors = {
        s.name: ("RUNNING" if s.default_status == DefaultSensorStatus.RUNNING else "STOPPED")
        for s in defs.sensors or []
    }
    return Expected(assets, sensors)


@dataclass(frozen=True)
class Ui:
    server: Server
    expected: Expected
    shots: Path


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    root = tmp_path_factory.mktemp("webserver_ui")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DERIVE_", "DAGSTER_"))}
    env |= {
        "DERIVE_SPECS_DIR": str(SPECS),
        "DERIVE_HOME": str(root / "home"),  # embedded sources and warehouse (nothing is read to serve the UI)
        "DERIVE_STRICT_SPECS": "1",  # a shipped spec that does not load fails here, not as a placeholder
        "DAGSTER_HOME": str(write_dagster_home(root / "dagster_home")),
    }
    port = free_port()
    command = [str(Path(sys.executable).parent / "dagster-webserver"), "-m", "derive_assets.definitions"]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    expected = expected_of(root / "expected_home")
    shots = root / "screenshots"
    shots.mkdir()
    with serve(command, env, root / "webserver.log", port) as server:
        yield Ui(server, expected, shots)


def _owner(owner: dict[str, str]) -> str:
    return owner.get("email") or f"team:{owner['team']}"


def test_graphql_serves_every_specs_asset_with_its_group_checks_and_condition(ui: Ui) -> None:
    nodes = {"/".join(n["assetKey"]["path"]): n for n in ui.server.graphql(ASSETS_QUERY)["assetNodes"]}

    # Every spec item is an asset (the key is `<dataset>/<name>`), and the webserver serves exactly the definitions.
    project = load_project(SPECS)
    refs = [r.ref for r in project.replicated] + [t.spec.ref for t in project.tables]
    refs += [f"online.{e.spec.name}" for e in project.exports]
    missing = [ref for ref in refs if ref.replace(".", "/") not in nodes]
    assert not missing, f"spec items the webserver does not serve: {missing}"
    assert set(nodes) == set(ui.expected.assets)

    served_groups: set[str] = set()
    for key, node in nodes.items():
        want = ui.expected.assets[key]
        assert node["groupName"] == want["group"], key
        assert node["groupName"] in GROUPS, key
        served_groups.add(node["groupName"])
        assert node["description"], f"{key} has no description"
        assert node["description"] == want["description"], key
        assert sorted(_owner(o) for o in node["owners"]) == want["owners"], key
        assert want["owners"], f"{key} has no owner"
        assert "dagster/column_schema" in {m["label"] for m in node["metadataEntries"]}, key
        checks = node["assetChecksOrError"]
        assert checks["__typename"] == "AssetChecks", (key, checks)
        assert sorted((c["name"], c["blocking"]) for c in checks["checks"]) == want["checks"], key
        assert node["automationCondition"] == want["condition"], key

    assert served_groups == GROUPS
    # The groups are the layers: a replicated table is in `sources`, an export in `exports`.
    for ref in (r.ref for r in project.replicated):
        assert nodes[ref.replace(".", "/")]["groupName"] == "sources", ref
    for export in project.exports:
        assert nodes[f"online/{export.spec.name}"]["groupName"] == "exports", export.spec.name
    # Every derived asset (tables, Python tables, exports) has a condition; a source table has one only with a
    # `schedule` (otherwise its source's sensor requests it).
    for key, node in nodes.items():
        if node["groupName"] != "sources":
            assert node["automationCondition"] is not None, f"{key} has no automation condition"
    # The constraints of the shipped specs are checks, shown with the asset.
    page_checks = {c["name"] for c in nodes[PAGE_ASSET.to_user_string()]["assetChecksOrError"]["checks"]}
    assert {"day_not_null", "region_not_null", "region_accepted_values"} <= page_checks


def test_graphql_serves_the_automation_sensor_and_each_sources_sensor_running(ui: Ui) -> None:
    data = ui.server.graphql(SENSORS_QUERY)["repositoriesOrError"]
    assert data["__typename"] == "RepositoryConnection", data
    [repository] = data["nodes"]
    sensors = {s["name"]: s for s in repository["sensors"]}
    assert {name: s["sensorState"]["status"] for name, s in sensors.items()} == ui.expected.sensors
    assert sensors[AUTOMATION_SENSOR_NAME]["sensorType"] == "AUTO_MATERIALIZE"
    assert sensors[AUTOMATION_SENSOR_NAME]["sensorState"]["status"] == "RUNNING"
    for source in load_project(SPECS).sources():
        if source.sensor.enabled:
            name = f"replicate_{source.name}_sensor"
            assert name in sensors, f"no sensor {name} for source {source.name}: {sorted(sensors)}"
            assert sensors[name]["sensorState"]["status"] == "RUNNING", name


def test_chromium_renders_the_graph_an_asset_page_its_checks_and_the_automation_page(
    ui: Ui, chromium: Path, tmp_path: Path
) -> None:
    expected = ui.expected.assets[PAGE_ASSET.to_user_string()]
    profile = tmp_path / "chromium-profile"
    asset_url = f"{ui.server.url}/assets/{PAGE_ASSET.to_user_string()}"

    def page(name: str, url: str) -> Page:
        return render(chromium, url, ui.shots / f"{name}.png", profile)

    graph = page("asset-graph", f"{ui.server.url}/asset-groups")
    assert not graph.shows("Global asset lineage", *sorted(GROUPS)), graph.text

    asset = page("asset-page", asset_url)
    condition = expected["condition"]
    assert condition is not None and condition["label"], "the page's asset has a labelled condition"
    shown = asset.shows(
        expected["description"],
        *expected["owners"],
        expected["group"],
        "day",
        "revenue",  # columns
        "core / user_detail",
        "payments / payments",  # lineage
        "Automation condition",
        condition["label"],
    )
    assert not shown, f"the asset page does not show {shown}: {asset.text}"

    checks = page("asset-checks", f"{asset_url}?view=checks")
    names = [name for name, _ in expected["checks"]]
    assert not checks.shows(f"Checks ({len(names)})", *names), checks.text

    automation = page("automation", f"{ui.server.url}/automation")
    assert not automation.shows(*ui.expected.sensors), automation.text

    pngs = [p.png for p in (graph, asset, checks, automation)]
    for png in pngs:
        assert_not_blank(png)
    keep_for_humans(pngs, "webserver")
