"""`load_project(strict=False)`: one broken spec leaves out only itself and what reads or exports it.

Each case copies the shipped specs, breaks one thing, and checks both modes: strict raises exactly what it always
raised (`derive validate`, CI), lenient returns every other table with the errors listed, each left-out dependent
named by its own file and the file that caused it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from derive_assets.settings import PROJECT_ROOT
from derive_assets.specs.errors import SpecValidationError
from derive_assets.specs.project import SpecProject, load_project

ALL_TABLES = {
    "core.user_detail",
    "analytics.order_facts",
    "analytics.daily_payments_by_region",
    "analytics.top_spenders",
}
ALL_REPLICATED = {"accounts.auth", "orders.orders", "payments.payments", "profiles.profile"}
ALL_EXPORTS = {"user_profile_online", "region_payments_online"}
ORDER_FACTS = "table_specs/analytics/order_facts.yaml"
DAILY = "table_specs/analytics/daily_payments_by_region.yaml"
USER_DETAIL = "table_specs/core/user_detail.yaml"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    target = tmp_path / "table_specs"
    shutil.copytree(PROJECT_ROOT / "table_specs", target)
    return target


def edit(root: Path, relative: str, old: str, new: str) -> None:
    path = root / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1))


def names(project: SpecProject) -> tuple[set[str], set[str], set[str]]:
    return (
        {t.spec.ref for t in project.tables},
        {r.ref for r in project.replicated},
        {e.spec.name for e in project.exports},
    )


def messages(project: SpecProject, file: str) -> list[str]:
    return [str(e) for e in project.errors if str(e.file) == file]


def strict_errors(root: Path) -> list[str]:
    with pytest.raises(SpecValidationError) as info:
        load_project(root)
    return [str(e) for e in info.value.errors]


def test_valid_specs_load_the_same_both_ways(root: Path) -> None:
    strict, lenient = load_project(root), load_project(root, strict=False)
    assert names(lenient) == names(strict) == (ALL_TABLES, ALL_REPLICATED, ALL_EXPORTS)
    assert [t.spec.ref for t in lenient.tables] == [t.spec.ref for t in strict.tables]  # dependency order
    assert lenient.errors == [] and lenient.left_out == [] and strict.errors == []


def test_bad_yaml_leaves_out_only_that_file(root: Path) -> None:
    (root / "analytics" / "order_facts.yaml").write_text("name: [unclosed\n")
    project = load_project(root, strict=False)
    assert names(project) == (ALL_TABLES - {"analytics.order_facts"}, ALL_REPLICATED, ALL_EXPORTS)
    assert messages(project, ORDER_FACTS) and all(str(e.file) == ORDER_FACTS for e in project.errors)
    assert strict_errors(root) == [str(e) for e in project.errors]


def test_bad_field_leaves_out_its_table_and_the_export_of_it(root: Path) -> None:
    edit(root, "analytics/daily_payments_by_region.yaml", "strategy:", "strategy_typo:")
    project = load_project(root, strict=False)
    assert names(project) == (
        ALL_TABLES - {"analytics.daily_payments_by_region"},
        ALL_REPLICATED,
        {"user_profile_online"},
    )
    assert any("strategy_typo: unknown field" in m for m in messages(project, DAILY))
    assert messages(project, "table_specs/exports/region_payments_online.yaml") == [
        "table_specs/exports/region_payments_online.yaml: table: exports analytics.daily_payments_by_region, "
        f"whose spec has errors ({DAILY}); this spec is left out until that is fixed"
    ]
    assert {(lo.name, str(lo.path), str(lo.cause)) for lo in project.left_out} == {
        ("analytics.daily_payments_by_region", DAILY, DAILY),
        ("export region_payments_online", "table_specs/exports/region_payments_online.yaml", DAILY),
    }
    # Strict reports the spec's own errors only, as it always did (the export is skipped quietly).
    assert set(strict_errors(root)) == {str(e) for e in project.errors if str(e.file) == DAILY}


def test_a_broken_table_leaves_out_everything_that_reads_it_transitively(root: Path) -> None:
    edit(root, "core/user_detail.yaml", "owner:", "owner_typo:")
    project = load_project(root, strict=False)
    assert names(project) == (set(), ALL_REPLICATED, set())
    assert messages(project, ORDER_FACTS) == [
        f"{ORDER_FACTS}: sql: reads core.user_detail, whose spec has errors ({USER_DETAIL}); "
        "this spec is left out until that is fixed"
    ]
    assert messages(project, "table_specs/exports/region_payments_online.yaml") == [
        "table_specs/exports/region_payments_online.yaml: table: exports analytics.daily_payments_by_region, "
        f"which is left out because {USER_DETAIL} has errors; this spec is left out until that is fixed"
    ]
    assert {str(lo.cause) for lo in project.left_out} == {USER_DETAIL}
    assert len(project.left_out) == 1 + 3 + 2


def test_an_unknown_table_leaves_out_only_the_table_reading_it(root: Path) -> None:
    edit(root, "analytics/order_facts.yaml", "FROM orders.orders AS o", "FROM orders.nope AS o")
    project = load_project(root, strict=False)
    assert names(project) == (ALL_TABLES - {"analytics.order_facts"}, ALL_REPLICATED, ALL_EXPORTS)
    [message] = messages(project, ORDER_FACTS)
    assert "reads table 'orders.nope', which no table spec or source defines" in message


def test_the_duckdb_bind_check_runs_and_drops_its_table_even_when_another_spec_is_broken(root: Path) -> None:
    edit(root, "analytics/order_facts.yaml", "o.status,", "FARM_FINGERPRINT(o.status) AS status,")
    alone = strict_errors(root)
    assert len(alone) == 1 and "function FARM_FINGERPRINT has no DuckDB equivalent" in alone[0]
    (root / "analytics" / "top_spenders.yaml").write_text("name: [unclosed\n")
    project = load_project(root, strict=False)
    assert names(project) == (
        {"core.user_detail", "analytics.daily_payments_by_region"},
        ALL_REPLICATED,
        ALL_EXPORTS,
    )
    assert messages(project, ORDER_FACTS) == alone
    assert messages(project, "table_specs/analytics/top_spenders.yaml")


def test_what_reads_a_table_the_duckdb_bind_check_rejects_is_left_out_too(root: Path) -> None:
    edit(
        root,
        "analytics/daily_payments_by_region.yaml",
        "COALESCE(u.region, 'unknown')",
        "COALESCE(CAST(FARM_FINGERPRINT(u.region) AS STRING), 'unknown')",
    )
    project = load_project(root, strict=False)
    [own] = messages(project, DAILY)
    assert "function FARM_FINGERPRINT has no DuckDB equivalent" in own
    assert names(project) == (
        ALL_TABLES - {"analytics.daily_payments_by_region"},
        ALL_REPLICATED,
        {"user_profile_online"},
    )
    assert messages(project, "table_specs/exports/region_payments_online.yaml") == [
        "table_specs/exports/region_payments_online.yaml: table: exports analytics.daily_payments_by_region, "
        f"whose spec has errors ({DAILY}); this spec is left out until that is fixed"
    ]


def test_the_tables_reading_a_table_the_bind_check_rejects_are_left_out_transitively(root: Path) -> None:
    edit(
        root,
        "core/user_detail.yaml",
        "    p.region,",
        "    CAST(FARM_FINGERPRINT(p.region) AS STRING) AS region,",
    )
    project = load_project(root, strict=False)
    assert names(project) == (set(), ALL_REPLICATED, set())
    [own] = messages(project, USER_DETAIL)
    assert "function FARM_FINGERPRINT has no DuckDB equivalent" in own
    assert messages(project, ORDER_FACTS) == [
        f"{ORDER_FACTS}: sql: reads core.user_detail, whose spec has errors ({USER_DETAIL}); "
        "this spec is left out until that is fixed"
    ]


def test_duplicate_definitions_are_both_left_out_with_what_reads_them(root: Path) -> None:
    shutil.copy(
        root / "analytics" / "daily_payments_by_region.yaml",
        root / "analytics" / "daily_payments_by_region_copy.yaml",
    )
    strict = strict_errors(root)
    assert strict == [
        "table_specs/analytics/daily_payments_by_region_copy.yaml: name: table 'analytics.daily_payments_by_region' is already defined "
        f"in {DAILY} (got 'analytics.daily_payments_by_region')"
    ]
    project = load_project(root, strict=False)
    assert names(project) == (
        ALL_TABLES - {"analytics.daily_payments_by_region"},
        ALL_REPLICATED,
        {"user_profile_online"},
    )
    assert messages(project, "table_specs/analytics/daily_payments_by_region_copy.yaml") == strict
    assert messages(project, DAILY) == [
        f"{DAILY}: name: table 'analytics.daily_payments_by_region' is also defined in "
        "table_specs/analytics/daily_payments_by_region_copy.yaml; every definition is left out until only one remains (rename or "
        "delete the others) (got 'analytics.daily_payments_by_region')"
    ]
    assert messages(project, "table_specs/exports/region_payments_online.yaml")


def test_a_table_clashing_with_a_replicated_one_leaves_out_only_that_ref(root: Path) -> None:
    clash = yaml.safe_load((root / "analytics" / "top_spenders.yaml").read_text())
    clash.update(dataset="orders", name="orders")
    (root / "analytics" / "clash.yaml").write_text(yaml.safe_dump(clash))
    project = load_project(root, strict=False)
    tables, replicated, exports = names(project)
    assert replicated == ALL_REPLICATED - {"orders.orders"}
    assert tables == ALL_TABLES - {"analytics.order_facts"}  # it reads orders.orders
    assert exports == ALL_EXPORTS
    assert any("is also defined in" in m for m in messages(project, "table_specs/sources/orders.yaml"))
    assert messages(project, ORDER_FACTS)  # it reads orders.orders, which is left out (and now ambiguous)


def test_a_cycle_leaves_out_its_tables_and_their_readers(root: Path) -> None:
    def reading(name: str, other: str) -> dict[str, object]:
        return {
            "name": name,
            "dataset": "analytics",
            "owner": "team:analytics",
            "strategy": "replace",
            "columns": [{"name": "status", "type": "STRING"}],
            "sql": f"SELECT status FROM analytics.{other}",
        }

    for name, other in (("a", "b"), ("b", "a"), ("c", "a")):
        (root / "analytics" / f"{name}.yaml").write_text(yaml.safe_dump(reading(name, other)))
    project = load_project(root, strict=False)
    assert names(project) == (ALL_TABLES, ALL_REPLICATED, ALL_EXPORTS)
    for name in ("a", "b"):
        [message] = messages(project, f"table_specs/analytics/{name}.yaml")
        assert "dependency cycle" in message
    assert messages(project, "table_specs/analytics/c.yaml") == [
        "table_specs/analytics/c.yaml: sql: reads analytics.a, whose spec has errors "
        "(table_specs/analytics/a.yaml); this spec is left out until that is fixed"
    ]
    with pytest.raises(SpecValidationError) as info:
        load_project(root)
    assert sorted(str(e.file) for e in info.value.errors) == [  # strict: the cycle only, as always
        "table_specs/analytics/a.yaml",
        "table_specs/analytics/b.yaml",
    ]


def test_duplicate_export_names_are_both_left_out(root: Path) -> None:
    export = yaml.safe_load((root / "exports" / "user_profile_online.yaml").read_text())
    (root / "exports" / "user_profile_online_copy.yaml").write_text(yaml.safe_dump(export))
    with pytest.raises(
        SpecValidationError, match=re.escape("online_copy.yaml: name: another export has this name")
    ):
        load_project(root)
    project = load_project(root, strict=False)
    assert names(project) == (ALL_TABLES, ALL_REPLICATED, {"region_payments_online"})
    assert messages(project, "table_specs/exports/user_profile_online.yaml") == [
        "table_specs/exports/user_profile_online.yaml: name: export table_specs/exports/user_profile_online_copy.yaml has this name "
        "too; every export of this name is left out until the names differ (got 'user_profile_online')"
    ]


def test_a_bad_export_leaves_out_only_itself(root: Path) -> None:
    edit(root, "exports/user_profile_online.yaml", "table: core.user_detail", "table: core.nope")
    project = load_project(root, strict=False)
    assert names(project) == (ALL_TABLES, ALL_REPLICATED, {"region_payments_online"})
    [message] = messages(project, "table_specs/exports/user_profile_online.yaml")
    assert "table: no table spec or source defines it" in message


def test_a_missing_specs_directory_still_raises(tmp_path: Path) -> None:
    with pytest.raises(SpecValidationError, match="specs directory not found"):
        load_project(tmp_path / "nowhere", strict=False)
