"""Placeholder keys for broken spec files: stable, valid Dagster names, unique even when two paths look alike."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey

from derive_assets.factory.error_assets import broken_specs
from derive_assets.specs.errors import SpecError
from derive_assets.specs.project import LeftOut, SpecProject


def project_with_errors(*files: str) -> SpecProject:
    errors = [SpecError(Path(f), "name", "broken") for f in files]
    return SpecProject(Path("table_specs"), [], [], errors=errors)


def test_keys_come_from_the_path_under_the_specs_directory() -> None:
    [broken] = broken_specs(project_with_errors("table_specs/analytics/order_facts.yaml"))
    assert broken.key == AssetKey(["derive_errors", "analytics__order_facts"])


def test_paths_that_would_share_a_name_get_distinct_stable_keys() -> None:
    files = ("table_specs/a/b-c.yaml", "table_specs/a/b_c.yaml", "table_specs/a/9.yaml")
    keys = [b.key for b in broken_specs(project_with_errors(*files))]
    assert len(set(keys)) == 3
    assert keys == [b.key for b in broken_specs(project_with_errors(*reversed(files)))]
    assert all(k.path[1].replace("_", "a").isalnum() and not k.path[1][0].isdigit() for k in keys)


def test_dependents_are_listed_with_their_cause_not_given_their_own_placeholder() -> None:
    project = SpecProject(
        Path("table_specs"),
        [],
        [],
        errors=[
            SpecError(Path("table_specs/core/a.yaml"), "sql", "broken"),
            SpecError(Path("table_specs/core/b.yaml"), "sql", "reads core.a, whose spec has errors"),
        ],
        left_out=[
            LeftOut("core.a", Path("table_specs/core/a.yaml"), Path("table_specs/core/a.yaml")),
            LeftOut("core.b", Path("table_specs/core/b.yaml"), Path("table_specs/core/a.yaml")),
        ],
    )
    [broken] = broken_specs(project)
    assert str(broken.file) == "table_specs/core/a.yaml"
    assert "- core.b (table_specs/core/b.yaml)" in broken.description()
    assert (
        broken.first_line
        == "table_specs/core/a.yaml: sql: broken; fix this spec and reload the code location"
    )
