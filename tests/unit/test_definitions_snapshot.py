"""A snapshot of the whole asset graph built from the shipped specs.

Any change to a spec or to the factory shows up here as a reviewable diff. After an intended change, refresh it:
`DERIVE_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/test_definitions_snapshot.py`.
"""

import json
import os
from pathlib import Path

from dagster import Definitions

from derive_assets.factory.build import build_definitions
from derive_assets.settings import PROJECT_ROOT, DeriveSettings

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


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
        }
    schedules = {s.name: {"cron": s.cron_schedule, "job": s.job_name} for s in defs.schedules or []}
    jobs = sorted(j.name for j in defs.jobs or [])
    return {"assets": assets, "schedules": schedules, "jobs": jobs}


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
    # a job reachable only through a schedule, or a missing one, shows up here.
    resolved = sorted(job.name for job in repo.get_all_jobs() if not job.name.startswith("__"))
    assert resolved == declared
    for name in declared:
        assert repo.get_job(name).asset_layer.selected_asset_keys, f"job {name} selects no asset"


def test_definitions_module_loads_the_shipped_specs():
    from derive_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert "analytics/daily_payments_by_region" in keys
    assert "accounts/auth" in keys
