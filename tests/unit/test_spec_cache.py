"""The spec cache (`derive_assets/specs/cache.py`): a warm load is the cold load's project, computed from plain data.

Every case loads real spec directories through `load_project(cache_dir=...)` and compares with an uncached load
of the same files: equal projects (tables, analyses, code versions, errors, left-out specs) and the same error
texts. What was analysed is counted by `SpecProject.cache_stats` (which files were parsed, resolved against the
schemas they read, or bound on DuckDB), never by timing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import shop_source

from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs import cache as spec_cache
from derive_assets.specs.cache import CACHE_FORMAT, Entry
from derive_assets.specs.errors import SpecValidationError
from derive_assets.specs.project import SpecProject, load_project
from derive_assets.specs.sql_analysis import transpile
from derive_assets.specs.version import code_version

USER_DETAIL = Path("table_specs/core/user_detail.yaml")
ORDER_FACTS = Path("table_specs/analytics/order_facts.yaml")
READERS_OF_USER_DETAIL = {
    Path("table_specs/analytics/order_facts.yaml"),
    Path("table_specs/analytics/daily_payments_by_region.yaml"),
    Path("table_specs/analytics/top_spenders.yaml"),
}
ALL_TABLES = {USER_DETAIL, *READERS_OF_USER_DETAIL}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the shipped specs: one core table read by three analytics tables, four sources, two exports."""
    target = tmp_path / "table_specs"
    shutil.copytree(PROJECT_ROOT / "table_specs", target)
    return target


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def edit(root: Path, relative: Path, old: str, new: str) -> None:
    path = root.parent / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1))


def entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / f"specs-v{CACHE_FORMAT}").iterdir())


def same_project(a: SpecProject, b: SpecProject) -> None:
    """Equal projects, and equal in what the factory and a run take from each table beyond the plain fields."""
    assert a == b
    assert [t.spec.ref for t in a.tables] == [t.spec.ref for t in b.tables]  # dependency order
    for x, y in zip(a.tables, b.tables, strict=True):
        assert x.code_version == y.code_version == code_version(x.spec), x.spec.ref
        assert x.analysis.output_columns == y.analysis.output_columns == x.spec.column_names
        assert x.analysis.lineage == y.analysis.lineage
        assert transpile(x.analysis.expression, "duckdb") == transpile(y.analysis.expression, "duckdb")
    assert [str(e) for e in a.errors] == [str(e) for e in b.errors]


def test_a_warm_load_is_the_cold_load_with_nothing_analysed(root: Path, cache_dir: Path) -> None:
    uncached = load_project(root, strict=False)
    cold = load_project(root, strict=False, cache_dir=cache_dir)
    warm = load_project(root, strict=False, cache_dir=cache_dir)
    same_project(uncached, cold)
    same_project(cold, warm)
    assert cold.cache_stats.analysed == ALL_TABLES and len(cold.cache_stats.yaml) == 10
    assert cold.cache_stats.stored == 10  # one entry per spec file, no temporary file left behind
    assert [p.suffix for p in entries(cache_dir)] == [".json"] * 10
    assert warm.cache_stats.analysed == set() and warm.cache_stats.yaml == [] and warm.cache_stats.stored == 0
    same_project(load_project(root, cache_dir=cache_dir), uncached)  # strict loads share the entries


def test_a_warm_load_imports_neither_sqlglot_nor_duckdb_until_a_query_is_used(
    root: Path, cache_dir: Path
) -> None:
    load_project(root, cache_dir=cache_dir)
    script = f"""
import sys
from pathlib import Path
from derive_assets.specs.project import load_project
project = load_project(Path({str(root)!r}), cache_dir=Path({str(cache_dir)!r}))
versions = [t.code_version for t in project.tables]
print("sqlglot" in sys.modules, "duckdb" in sys.modules, sorted(project.cache_stats.analysed))
table = project.table("core.user_detail")
print(table.analysis.expression.sql("bigquery", comments=False) == table.analysis.normalized_sql)
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["False False []", "True"]


def test_an_edited_spec_whose_columns_stay_is_analysed_again_alone(root: Path, cache_dir: Path) -> None:
    load_project(root, cache_dir=cache_dir)
    edit(root, USER_DETAIL, "description: One row per open account", "description: One row per account")
    edit(root, ORDER_FACTS, "    o.status,\n", "    o.status,  -- as the order service writes it\n")
    project = load_project(root, cache_dir=cache_dir)
    # user_detail's readers see the same declared columns: their analyses stay cached.
    assert project.cache_stats.analysed == {USER_DETAIL, ORDER_FACTS}
    assert project.cache_stats.yaml == [ORDER_FACTS, USER_DETAIL]
    same_project(project, load_project(root))


def test_a_changed_column_type_analyses_the_table_and_its_readers_again(root: Path, cache_dir: Path) -> None:
    load_project(root, cache_dir=cache_dir)
    edit(
        root,
        USER_DETAIL,
        "  - name: signed_up_at\n    type: TIMESTAMP",
        "  - name: signed_up_at\n    type: DATETIME",
    )
    project = load_project(root, cache_dir=cache_dir)
    stats = project.cache_stats
    assert set(stats.parsed) == {USER_DETAIL}  # the readers' own SQL did not change: not parsed again
    assert set(stats.resolved) == set(stats.bound) == ALL_TABLES
    same_project(project, load_project(root))
    assert load_project(root, cache_dir=cache_dir).cache_stats.analysed == set()


def layered(root: Path, amount_type: str) -> None:
    """shop.orders -> core.orders (declared `amount_type`) -> analytics.revenue (declares amount NUMERIC)."""
    source = shop_source((("order_id", "INT64"), ("amount", amount_type), ("updated_at", "TIMESTAMP")))
    core = {
        "name": "orders",
        "dataset": "core",
        "owner": "team:shop",
        "strategy": "replace",
        "columns": [{"name": "order_id", "type": "INT64"}, {"name": "amount", "type": amount_type}],
        "sql": "SELECT order_id, amount FROM shop.orders",
    }
    revenue = {
        "name": "revenue",
        "dataset": "analytics",
        "owner": "team:shop",
        "strategy": "replace",
        "columns": [{"name": "order_id", "type": "INT64"}, {"name": "amount", "type": "NUMERIC"}],
        "sql": "SELECT order_id, amount FROM core.orders",
    }
    for relative, spec in (
        ("sources/shop.yaml", source),
        ("core/orders.yaml", core),
        ("analytics/revenue.yaml", revenue),
    ):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(yaml.safe_dump(spec, sort_keys=False))


def test_a_reader_of_a_retyped_column_is_checked_against_the_new_type(
    tmp_path: Path, cache_dir: Path
) -> None:
    root = tmp_path / "table_specs"
    layered(root, "NUMERIC")
    assert load_project(root, cache_dir=cache_dir).cache_stats.analysed == {
        Path("table_specs/core/orders.yaml"),
        Path("table_specs/analytics/revenue.yaml"),
    }
    layered(root, "FLOAT64")  # core.orders still valid (its SQL computes FLOAT64); revenue now narrows it
    with pytest.raises(SpecValidationError) as cached:
        load_project(root, cache_dir=cache_dir)
    with pytest.raises(SpecValidationError) as uncached:
        load_project(root)
    assert str(cached.value) == str(uncached.value)
    assert [str(e) for e in cached.value.errors] == [
        "table_specs/analytics/revenue.yaml: columns[1].type: column 'amount' is declared NUMERIC but the SQL "
        "computes FLOAT64 (amount); stored as NUMERIC, digits beyond the 9th after the point would be lost, and "
        "values over 10^29 fail: write CAST(amount AS NUMERIC) in the SQL if that is meant, or declare "
        "`type: FLOAT64`"
        " (got 'NUMERIC')"
    ]


def test_broken_specs_are_analysed_on_every_load_and_say_the_same(root: Path, cache_dir: Path) -> None:
    edit(
        root, ORDER_FACTS, "    o.status,\n", "    FARM_FINGERPRINT(o.status) AS status,\n"
    )  # no DuckDB function
    top = Path("table_specs/analytics/top_spenders.yaml")
    edit(root, top, "SELECT user_id,", "SELECT (user_id,")  # does not parse
    uncached = load_project(root, strict=False)
    with pytest.raises(SpecValidationError) as strict:
        load_project(root)
    cold = load_project(root, strict=False, cache_dir=cache_dir)
    warm = load_project(root, strict=False, cache_dir=cache_dir)
    assert {e.file for e in uncached.errors} == {ORDER_FACTS, top}
    assert any("function FARM_FINGERPRINT has no DuckDB equivalent" in str(e) for e in uncached.errors)
    same_project(uncached, cold)
    same_project(uncached, warm)
    with pytest.raises(SpecValidationError) as strict_warm:
        load_project(root, cache_dir=cache_dir)
    assert str(strict_warm.value) == str(strict.value)
    assert warm.cache_stats.parsed == [top]  # no analysis of it was stored: it is parsed (and fails) again
    assert warm.cache_stats.bound == [ORDER_FACTS]  # parsed and resolved before, but never bound: bound again
    assert warm.cache_stats.analysed == {top, ORDER_FACTS}


def test_going_back_to_an_earlier_version_of_a_spec_is_warm(root: Path, cache_dir: Path) -> None:
    load_project(root, cache_dir=cache_dir)
    original = (root.parent / ORDER_FACTS).read_text()
    edit(root, ORDER_FACTS, "    o.amount,\n", "    o.amount * 1 AS amount,\n")
    assert load_project(root, cache_dir=cache_dir).cache_stats.analysed == {ORDER_FACTS}
    (root.parent / ORDER_FACTS).write_text(original)  # e.g. `git checkout` of the branch it came from
    assert load_project(root, cache_dir=cache_dir).cache_stats.analysed == set()


def test_a_new_library_version_starts_a_fresh_cache(root: Path, cache_dir: Path, monkeypatch) -> None:
    load_project(root, cache_dir=cache_dir)
    versions = spec_cache.library_versions()
    monkeypatch.setattr(spec_cache, "library_versions", lambda: {**versions, "sqlglot": "0.0.1"})
    spec_cache.library_fingerprint.cache_clear()
    try:
        project = load_project(root, cache_dir=cache_dir)
        assert project.cache_stats.analysed == ALL_TABLES and len(project.cache_stats.yaml) == 10
        assert len(entries(cache_dir)) == 20  # the old entries are not read (nor removed)
    finally:
        monkeypatch.undo()
        spec_cache.library_fingerprint.cache_clear()
    assert load_project(root, cache_dir=cache_dir).cache_stats.analysed == set()


CORRUPTIONS: dict[str, Any] = {
    "truncated": lambda text: text[: len(text) // 2],
    "not UTF-8": lambda text: b"\xff\xfe" + text.encode(),
    "not an object": lambda text: "[1, 2, 3]",
    "another digest": lambda text: text.replace('"digest":"', '"digest":"0', 1),
    "another format": lambda text: text.replace(f'"format":{CACHE_FORMAT}', '"format":999', 1),
    "reads not a list": lambda text: json.dumps({**json.loads(text), "sql": {"reads": 5}}),
    "bound not a bool": lambda text: json.dumps(
        {
            **json.loads(text),
            "resolutions": {k: {**v, "bound": "yes"} for k, v in json.loads(text)["resolutions"].items()},
        }
    ),
    "empty": lambda text: "",
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_entry_is_analysed_again_and_replaced(root: Path, cache_dir: Path, corruption: str) -> None:
    expected = load_project(root, cache_dir=cache_dir)
    tables = [p for p in entries(cache_dir) if '"sql"' in p.read_text()]
    assert len(tables) == 4
    for path in tables:
        broken = CORRUPTIONS[corruption](path.read_text())
        path.write_bytes(broken if isinstance(broken, bytes) else broken.encode())
    project = load_project(root, cache_dir=cache_dir)
    same_project(project, expected)
    assert project.cache_stats.analysed == ALL_TABLES and project.cache_stats.stored == 4
    assert load_project(root, cache_dir=cache_dir).cache_stats.analysed == set()


def test_a_cache_dir_that_cannot_be_created_means_no_cache(root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    entries_blocked = tmp_path / "cache"
    entries_blocked.mkdir()
    (entries_blocked / f"specs-v{CACHE_FORMAT}").write_text("not a directory either")
    for cache_dir in (blocker, blocker / "cache", entries_blocked):
        project = load_project(root, cache_dir=cache_dir)
        same_project(project, load_project(root))
        assert project.cache_stats.analysed == ALL_TABLES and project.cache_stats.stored == 0


def test_yaml_values_json_would_change_are_read_from_the_file_each_time() -> None:
    entry = Entry("d", None)
    for value in (
        {"a": b"bytes"},
        {"a": (1, 2)},
        {"a": {1, 2}},
        {"a": float("nan")},
        [{"a": [float("inf")]}],
    ):
        entry.set_data(value)
        assert not entry.has_data and not entry.dirty, value
    plain = {"name": "x", "n": 1, "f": 1.5, "ok": True, "none": None, "items": [{"k": "v"}]}
    entry.set_data(plain)
    assert entry.has_data and entry.data == json.loads(json.dumps(plain)) and entry.dirty


def test_the_cache_dir_setting(monkeypatch, tmp_path: Path) -> None:
    for variable in ("DERIVE_CACHE_DIR", "DERIVE_SPEC_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DERIVE_HOME", str(tmp_path / "home"))
    assert DeriveSettings.from_env().cache_dir == tmp_path / "home" / "cache"
    assert DeriveSettings(specs_dir=tmp_path, home=tmp_path / "h").cache_dir == tmp_path / "h" / "cache"
    assert DeriveSettings(specs_dir=tmp_path, home=tmp_path, cache_dir=None).cache_dir is None
    monkeypatch.setenv("DERIVE_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert DeriveSettings.from_env().cache_dir == tmp_path / "elsewhere"
    for off in ("off", "0", "false", "NO"):
        monkeypatch.setenv("DERIVE_SPEC_CACHE", off)
        assert DeriveSettings.from_env().cache_dir is None
    monkeypatch.setenv("DERIVE_SPEC_CACHE", "on")
    assert DeriveSettings.from_env().cache_dir == tmp_path / "elsewhere"
    monkeypatch.setenv("DERIVE_SPEC_CACHE", "sometimes")
    with pytest.raises(
        ValueError,
        match=r"^DERIVE_SPEC_CACHE='sometimes' is not a yes/no value; set 1 \(yes\) or 0 \(no\), or unset it \(yes\)$",
    ):
        DeriveSettings.from_env()


@pytest.mark.parametrize("setting", ["on", "off"])
def test_definitions_keep_the_cache_where_the_settings_say(
    monkeypatch, tmp_path: Path, root: Path, setting: str
) -> None:
    from derive_assets.factory.build import build_definitions

    for variable in ("DERIVE_CACHE_DIR", "DERIVE_STRICT_SPECS", "DERIVE_WAREHOUSE", "DERIVE_ONLINE_STORE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(root))
    monkeypatch.setenv("DERIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DERIVE_SPEC_CACHE", setting)
    build_definitions(DeriveSettings.from_env())
    cache_dir = tmp_path / "home" / "cache"
    if setting == "off":
        assert not cache_dir.exists()
    else:
        assert len(entries(cache_dir)) == 10


def test_a_table_runs_the_same_from_cached_analyses(tmp_path: Path) -> None:
    """A run from warm definitions builds the sqlglot trees it needs on first use: the SQL it renders and the
    column lineage it records are the cold run's."""
    from dagster import DagsterInstance
    from support import run_assets

    from derive_assets import metadata_keys as K
    from derive_assets.factory.build import build_definitions

    root = tmp_path / "table_specs"
    one = {
        "name": "one",
        "dataset": "bench",
        "owner": "team:bench",
        "strategy": "replace",
        "columns": [{"name": "n", "type": "INT64"}, {"name": "label", "type": "STRING"}],
        "sql": "SELECT 1 AS n, 'x' AS label",
    }
    two = {
        **one,
        "name": "two",
        "sql": "SELECT n + 1 AS n, UPPER(label) AS label FROM bench.one -- reads one",
    }
    for spec in (one, two):
        (root / "bench").mkdir(parents=True, exist_ok=True)
        (root / "bench" / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    runs = []
    settings = DeriveSettings(specs_dir=root, home=tmp_path / "home")
    for _ in ("cold", "warm"):  # the same home twice: the second build loads every spec from the cache
        defs = build_definitions(settings)
        assert len(load_project(root, cache_dir=settings.cache_dir).cache_stats.analysed) == 0
        with DagsterInstance.ephemeral() as instance:
            runs.append(run_assets(defs, instance, ["bench/one", "bench/two"]))
    cold, warm = runs
    for key in ("bench/one", "bench/two"):
        for name in (K.RENDERED_SQL, K.COLUMN_LINEAGE, "dagster/row_count"):
            assert warm[key][name] == cold[key][name], (key, name)
    lineage = warm["bench/two"][K.COLUMN_LINEAGE]
    assert {
        c: [(d.asset_key.to_user_string(), d.column_name) for d in deps]
        for c, deps in lineage.deps_by_column.items()
    } == {
        "n": [("bench/one", "n")],
        "label": [("bench/one", "label")],
    }
