"""A snapshot of the whole asset graph built from the shipped specs: every asset's key, deps, group, kinds, owners,
tags, op tags (the steps' `dagster-k8s/config`), partitions, checks, code version and automation condition (its
whole condition tree, as one line), the jobs with the assets each selects, the schedules (none) and the sensors.

Any change to a spec or to the factory shows up here as a reviewable diff. After an intended change, refresh it:
`DERIVE_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/test_definitions_snapshot.py`.
"""

import json
import os
from pathlib import Path
from typing import Any

import yaml
from dagster import AssetKey, AutomationCondition, DefaultSensorStatus, Definitions
from support import daily_orders_table, shop_source

from derive_assets.factory.automation import table_condition
from derive_assets.factory.build import build_definitions
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def condition_text(condition: AutomationCondition | None) -> str | None:
    """A condition as one deterministic line: each node's label (or name), its children in brackets."""
    if condition is None:
        return None
    children = list(condition.children)
    inner = f"[{', '.join(t for c in children if (t := condition_text(c)))}]" if children else ""
    return (condition.get_label() or condition.name) + inner


def graph_of(defs: Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "tags": dict(node.tags),
            "partitions": None if partitions is None else repr(partitions),
            "checks": sorted(c.name for c in node.check_keys),
            "code_version": node.code_version,
            "automation_condition": condition_text(node.automation_condition),
        }
        op_tags = dict(node.assets_def.node_def.tags) if node.is_materializable else {}
        if op_tags:  # the step's `dagster-k8s/config` (a spec's `kubernetes` block, defaults merged in)
            assets[key.to_user_string()]["op_tags"] = op_tags
    repo = defs.get_repository_def()
    jobs = {
        job.name: sorted(k.to_user_string() for k in repo.get_job(job.name).asset_layer.selected_asset_keys)
        for job in sorted(defs.jobs or [], key=lambda j: j.name)
    }
    schedules = {s.name: {"cron": s.cron_schedule, "job": s.job_name} for s in defs.schedules or []}
    sensors = sorted(s.name for s in defs.sensors or [])
    return {"assets": assets, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def test_asset_graph_matches_snapshot(tmp_path):
    defs = build_definitions(DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=tmp_path))
    current = graph_of(defs)
    if os.environ.get("DERIVE_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, (
        "the asset graph changed; if intended, run "
        "`DERIVE_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/test_definitions_snapshot.py` and review the diff"
    )


def test_definitions_load_as_a_code_location(tmp_path):
    """What `dagster dev` does: resolve every job, so name clashes (job vs. asset op) fail here, not in the UI."""
    defs = build_definitions(DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=tmp_path))
    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    declared = sorted(job.name for job in defs.jobs or [])
    assert declared, "the shipped specs declare jobs"
    # The repository holds exactly the declared jobs, plus Dagster's own implicit asset job(s) (`__ASSET_JOB`):
    # a job reachable only through a sensor or schedule, or a missing one, shows up here.
    resolved = sorted(job.name for job in repo.get_all_jobs() if not job.name.startswith("__"))
    assert resolved == declared
    for name in declared:
        assert repo.get_job(name).asset_layer.selected_asset_keys, f"job {name} selects no asset"


def test_definitions_module_loads_the_shipped_specs():
    from derive_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert "analytics/daily_payments_by_region" in keys
    assert "accounts/auth" in keys


def test_no_job_per_spec_and_no_schedule(tmp_path):
    """Jobs are one per source (`replicate_<source>`) and one per dataset and partitions definition; the crons are
    automation conditions, evaluated by Dagster's default automation sensor, which runs from the start."""
    defs = build_definitions(DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=tmp_path))
    project = load_project(PROJECT_ROOT / "table_specs")
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    assert not list(defs.schedules or [])
    # Dagster's automation sensor, one sensor per source (`factory/sensors.py`) and the late-data sensor (the
    # shipped tables filter on declared event times: `factory/late_data.py`), all running from the start.
    sensors = {s.name: s for s in defs.sensors or []}
    assert set(sensors) == {"default_automation_condition_sensor", "derive_late_data"} | {
        f"replicate_{source.name}_sensor" for source in project.sources()
    }
    assert {s.default_status for s in sensors.values()} == {DefaultSensorStatus.RUNNING}

    selected = {j.name: repo.get_job(j.name).asset_layer.selected_asset_keys for j in defs.jobs or []}
    for source in project.sources():
        tables = {AssetKey(rt.ref.split(".")) for rt in project.replicated if rt.source.name == source.name}
        assert selected.pop(f"replicate_{source.name}") == tables
    source_tables = {AssetKey(rt.ref.split(".")) for rt in project.replicated}
    by_dataset: dict[tuple[str, Any], set[AssetKey]] = {}
    for key in graph.get_all_asset_keys() - source_tables:
        by_dataset.setdefault((key.path[0], graph.get(key).partitions_def), set()).add(key)
    # Each remaining job is exactly the assets of one dataset that share one partitions definition.
    assert sorted(map(sorted, selected.values())) == sorted(map(sorted, by_dataset.values()))
    for name, keys in selected.items():
        [dataset] = {k.path[0] for k in keys}
        assert name.startswith(f"{dataset}_") and name.endswith("_job"), name
    # And every asset, whatever job it is in, runs by key through the implicit asset job.
    assert (
        repo.get_implicit_global_asset_job_def().asset_layer.selected_asset_keys == graph.get_all_asset_keys()
    )


def test_many_tables_of_one_dataset_make_one_job(tmp_path):
    """1,000 specs used to make 1,000 jobs and 1,000 schedules; now their number follows datasets, not specs."""
    specs = tmp_path / "specs"
    (specs / "sources").mkdir(parents=True)
    (specs / "bench").mkdir()
    (specs / "sources" / "shop.yaml").write_text(yaml.safe_dump(shop_source()))
    for n in range(6):
        table = daily_orders_table(f"orders_{n}", schedule=f"{n} 1 * * *")
        (specs / "bench" / f"orders_{n}.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    defs = build_definitions(DeriveSettings(specs_dir=specs, home=tmp_path / "home"))
    assert sorted(j.name for j in defs.jobs or []) == ["bench_job", "replicate_shop"]
    assert not list(defs.schedules or [])
    graph = defs.resolve_asset_graph()
    conditions = {k.to_user_string(): graph.get(k).automation_condition for k in graph.get_all_asset_keys()}
    assert conditions == {
        "shop/orders": None,  # the source has no cron
        **{f"bench/orders_{n}": table_condition(f"{n} 1 * * *", "1d") for n in range(6)},
    }
