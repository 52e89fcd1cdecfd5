"""The benchmark harness (benchmarks/) at a tiny scale against the real servers, so that it cannot rot.

It checks that a run produces its JSON and Markdown with every ratio of the chosen scenarios; it checks no timing
target (2,000 rows or 20 specs on a shared CI machine say nothing about speed). The `definitions` scenario's
floor is checked to be the same asset graph as the Derive project it is measured against.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, Definitions

from derive_assets.factory.build import build_definitions
from derive_assets.settings import PROJECT_ROOT, DeriveSettings

SCENARIOS = "pg_full,incremental,mysql_full,merge"
RATIOS = {"pg_full", "mysql_full", "memory", "incremental", "noop", "merge"}


@pytest.mark.slow
def test_benchmark_harness_writes_results_with_ratios(
    tmp_path: Path, postgres_server_url: str, mysql_server_url: str
) -> None:
    env = {
        **os.environ,
        "DERIVE_TEST_POSTGRES_URL": postgres_server_url,
        "DERIVE_TEST_MYSQL_URL": mysql_server_url,
    }
    argv = [sys.executable, "-m", "benchmarks.run", "--rows", "2000", "--repeats", "1"]
    argv += ["--only", SCENARIOS, "--out", str(tmp_path)]
    done = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    [result_file] = tmp_path.glob("*.json")
    result = json.loads(result_file.read_text())
    assert result["rows"] == 2000
    assert result["scenarios_run"] == SCENARIOS.split(",")
    ratios = {r["id"]: r for r in result["ratios"]}
    assert set(ratios) == RATIOS
    for r in ratios.values():
        assert isinstance(r["value"], int | float) and r["value"] > 0, r
        assert isinstance(r["met"], bool), r
    full = result["scenarios"]["pg_full"]["methods"]
    assert set(full) == {"derive", "connectorx", "psycopg_copy"}
    assert all(m["rows"] == 2000 and m["peak_rss_mb"] > 0 for m in full.values())
    assert result["scenarios"]["incremental"]["methods"]["derive_incremental"]["rows"] > 0

    markdown = result_file.with_suffix(".md").read_text()
    assert "| MISSED |" in markdown
    for r in ratios.values():
        assert f"| {r['scenario']} |" in markdown
    if importlib.util.find_spec("matplotlib") is not None:  # benchmarks/requirements.txt
        assert result_file.with_suffix(".png").stat().st_size > 0


DEFINITIONS_METHODS = {
    "floor_load", "derive_cold", "derive_warm", "floor_validate", "derive_validate", "floor_tick", "derive_tick",
}  # fmt: skip


@pytest.mark.slow
def test_definitions_scenario_reports_derive_beside_the_floor(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--only",
        "definitions",
        "--specs",
        "20",
        "--repeats",
        "1",
    ]
    argv += ["--out", str(tmp_path)]
    done = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    [result_file] = tmp_path.glob("*.json")
    result = json.loads(result_file.read_text())
    assert result["specs"] == [20]
    ratios = {r["id"]: r for r in result["ratios"]}
    assert set(ratios) == {
        "definitions_warm_20",
        "definitions_cold_20",
        "validate_loadable_20",
        "automation_tick_20",
    }
    for r in ratios.values():
        assert isinstance(r["value"], int | float) and r["value"] > 0, r
        assert isinstance(r["met"], bool), r
        assert "graphs differ" not in r["note"], r
        assert "CPU time" in r["note"], r
    methods = result["scenarios"]["definitions_20"]["methods"]
    assert set(methods) == DEFINITIONS_METHODS
    for method in methods.values():  # 20 tables + 5 source tables, 5 checks a table, on both sides
        assert (method["assets_median"], method["checks_median"]) == (25, 100), method
    assert methods["derive_tick"]["evaluated_median"] == methods["floor_tick"]["evaluated_median"] == 20

    markdown = result_file.with_suffix(".md").read_text()
    for r in ratios.values():
        assert f"| {r['scenario']} |" in markdown


def _floor_defs(specs: Any, tmp_path: Path, graph: Any) -> Definitions:
    path = specs.write_floor(tmp_path / "floor", graph)
    spec = importlib.util.spec_from_file_location("bench_floor_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.defs


def test_floor_module_has_the_derive_projects_asset_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every asset of the generated floor has the key, deps, partitions, group, owners, checks and (with a cron)
    an automation condition of the Derive project generated from the same graph; the graph is layered and
    deterministic."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))  # benchmarks/ is not an installed package
    specs = importlib.import_module("benchmarks.specs")
    graph = specs.scale_graph(30)
    assert graph == specs.scale_graph(30)
    assert {n.layer for n in graph.nodes} == {1, 2, 3, 4, 5}
    assert any(len(n.reads) == 2 for n in graph.nodes)
    settings = DeriveSettings(specs_dir=specs.scale_specs(tmp_path / "specs", graph), home=tmp_path / "home")
    derive = build_definitions(settings).resolve_asset_graph()
    floor = _floor_defs(specs, tmp_path, graph).resolve_asset_graph()

    assert derive.get_all_asset_keys() == floor.get_all_asset_keys()
    assert len(floor.get_all_asset_keys()) == 30 + specs.SCALE_SOURCE_TABLES
    for key in floor.get_all_asset_keys():
        d, f = derive.get(key), floor.get(key)
        assert d.parent_keys == f.parent_keys, key
        assert d.partitions_def == f.partitions_def, key
        assert (d.group_name, d.owners) == (f.group_name, f.owners), key
        assert d.check_keys == f.check_keys, key
        assert (d.automation_condition is None) == (f.automation_condition is None), key
    table = floor.get(AssetKey(["bench_00", "t_0029"]))
    assert table.parent_keys and len(table.check_keys) == len(specs.SCALE_CHECKS)
