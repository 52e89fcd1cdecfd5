"""Environments without a warehouse: names, default names, the SQL rewrite of what a table reads, and the shape of
an environment's definitions (shadow keys, no automation, no exports, production's code versions)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
import sqlglot
from dagster import AssetKey

from derive_assets import metadata_keys as K
from derive_assets.environments import (
    EnvironmentNameError,
    default_name,
    env_of_dataset,
    sanitize,
    shadow_ref,
    validate_name,
)
from derive_assets.factory.build import build_definitions
from derive_assets.factory.environment import Environment, rewrite_tables
from derive_assets.settings import PROJECT_ROOT, DeriveSettings


@pytest.mark.parametrize("name", ["dev_alice", "pr_1234", "a", "x" * 40])
def test_valid_names(name: str):
    assert validate_name(name) == name
    assert env_of_dataset(shadow_ref(name, "analytics.t").split(".")[0]) == (name, "analytics")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Dev", "not a valid"),
        ("a__b", "contains '__'"),
        ("1x", "not a valid"),
        ("x" * 41, "not a valid"),
        ("", "not a valid"),
        ("dev-alice", "not a valid"),
        ("alice_", "not a valid"),  # alice___x would be alice_'s `_x`... or alice's `_x`
    ],
)
def test_invalid_names_say_what_is_allowed(name: str, why: str):
    with pytest.raises(EnvironmentNameError, match=why) as caught:
        validate_name(name)
    assert "lower case letters, digits and '_'" in str(caught.value)


def test_a_dataset_names_one_environment_only():
    assert env_of_dataset("alice___x") == ("alice", "_x")
    assert env_of_dataset(shadow_ref("a_b", "_x.t").split(".")[0]) == ("a_b", "_x")


def test_production_datasets_are_no_environment():
    assert env_of_dataset("analytics") is None
    assert env_of_dataset("_derive_exports") is None
    assert env_of_dataset("Dev__analytics") is None  # not a valid environment name before the separator


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("feature/Add-Foo", "feature_add_foo"),
        ("dev_Alice.B", "dev_alice_b"),
        ("123-fix", "e_123_fix"),
        ("a__b", "a_b"),
    ],
)
def test_branch_and_user_names_become_valid_names(text: str, name: str):
    assert sanitize(text) == name
    validate_name(sanitize(text))


def test_the_default_name_is_the_branch_else_dev_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DERIVE_ENV", raising=False)
    monkeypatch.setenv("USER", "Alice.Smith")
    monkeypatch.setenv("LOGNAME", "Alice.Smith")
    git = ["git", "-c", "user.email=a@example.com", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(tmp_path)], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    assert default_name(tmp_path) == "dev_alice_smith"  # main is production's branch
    subprocess.run([*git, "-C", str(tmp_path), "checkout", "-q", "-b", "feature/New-Table"], check=True)
    assert default_name(tmp_path) == "feature_new_table"
    monkeypatch.setenv("DERIVE_ENV", "pr_7")
    assert default_name(tmp_path) == "pr_7"
    assert default_name(tmp_path.parent) == "pr_7"


def test_settings_refuse_an_invalid_environment():
    with pytest.raises(EnvironmentNameError):
        DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=Path("/tmp/x"), env="Bad__env")


def sql(text: str, relations: dict[str, str]) -> str:
    return rewrite_tables(sqlglot.parse_one(text, read="bigquery"), relations).sql("bigquery")


def test_rewrite_swaps_only_the_tables_given_and_keeps_their_names_resolving():
    relations = {"core.users": "alice__core.users", "payments.payments": "payments.payments"}
    text = (
        "WITH users AS (SELECT 1 AS x) SELECT users.id, p.amount FROM core.users "
        "JOIN payments.payments AS p ON p.user_id = users.id JOIN orders.orders AS o ON o.id = p.id "
        "WHERE EXISTS (SELECT 1 FROM core.users AS u2 WHERE u2.id = users.id)"
    )
    out = sql(text, relations)
    assert "FROM alice__core.users AS users" in out  # an unaliased table keeps its old name as alias
    assert "FROM alice__core.users AS u2" in out  # a subquery's reference too, its alias kept
    assert "JOIN payments.payments AS p" in out and "JOIN orders.orders AS o" in out
    assert "WITH users AS (SELECT 1 AS x)" in out  # a CTE is no table
    assert sql(text, {}) == sqlglot.parse_one(text, read="bigquery").sql("bigquery")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    home = tmp_path_factory.mktemp("env_defs")
    settings = DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=home)
    return build_definitions(settings), build_definitions(replace(settings, env="alice"))


def test_an_environment_builds_every_table_and_replication_under_its_keys(pair):
    production, env = (d.resolve_asset_graph() for d in pair)
    materializable = {k for k in env.get_all_asset_keys() if env.get(k).is_materializable}
    expected = {
        AssetKey([f"alice__{k.path[0]}", *k.path[1:]])
        for k in production.get_all_asset_keys()
        if k.path[0] not in ("online", "features")  # exports and the Python table
    }
    assert materializable == expected
    for key in materializable:
        node, prod = (
            env.get(key),
            production.get(AssetKey([key.path[0].removeprefix("alice__"), *key.path[1:]])),
        )
        assert node.code_version == prod.code_version  # the same spec: the same version
        assert node.automation_condition is None
        assert node.tags[K.ENV_TAG] == "alice"
        assert node.partitions_def == prod.partitions_def
        assert {p.path[0] for p in node.parent_keys} <= {
            p for p in (f"alice__{q.path[0]}" for q in prod.parent_keys)
        } | {"features"}
        assert {c.name for c in node.check_keys} == {c.name for c in prod.check_keys}
        assert all(c.asset_key == key for c in node.check_keys)
    assert not env.get(AssetKey(["features", "region_scores"])).is_materializable


def test_an_environment_has_no_schedules_sensors_jobs_or_exports(pair):
    production, env = pair
    assert production.sensors and not env.sensors
    assert not env.jobs or all(j.name == "__ASSET_JOB" for j in env.jobs)
    assert not [k for k in env.resolve_asset_graph().get_all_asset_keys() if k.path[0] == "online"]


def test_an_environment_copy_and_its_relations():
    env = Environment("alice", {"core.users": "v1"})
    assert env.key(AssetKey(["core", "users"])) == AssetKey(["alice__core", "users"])
    assert env.ref("core.users") == "alice__core.users"
    with pytest.raises(EnvironmentNameError):
        Environment("Alice")


class Tables:
    """Only what `Environment.relations` asks a warehouse: `describe(ref)` (a stand-in for our own logic; the
    engines are exercised in tests/embedded/test_environments.py)."""

    def __init__(self, versions: Mapping[str, str | None]) -> None:
        self.versions = versions

    def describe(self, ref: str):
        from resources.schema_diff import ExistingTable, TableLayout

        if ref not in self.versions:
            return None
        version = self.versions[ref]
        layout = None if version == "unmarked" else TableLayout(None, "day", (), (), version)
        return ExistingTable(ref, (), layout)


def test_unchanged_upstreams_are_read_from_production_changed_ones_from_the_copy():
    env = Environment("alice", {"a.same": "v1", "a.changed": "v2", "a.new": "v1", "a.old": "v1", "a.t": "v1"})
    tables = Tables(
        {
            "a.same": "v1",
            "a.changed": "v1",
            "alice__a.changed": "v2",
            "alice__a.new": "v1",
            "a.old": None,  # written before Derive recorded versions
        }
    )
    relations = env.relations(
        cast(Any, tables), "a.t", ["a.same", "a.changed", "a.new", "a.old", "features.python"]
    )
    assert relations == {
        "a.t": "alice__a.t",
        "a.same": "a.same",
        "a.changed": "alice__a.changed",
        "a.new": "alice__a.new",
        "a.old": "a.old",
    }


@pytest.mark.parametrize(
    ("copy", "reason"), [(None, "which does not exist"), ("v1", "which was built from another version")]
)
def test_a_changed_upstream_without_a_current_copy_is_refused(copy: str | None, reason: str):
    from derive_assets.factory.environment import EnvironmentReadError

    env = Environment("alice", {"a.changed": "v2"})
    versions = {"a.changed": "v1", **({"alice__a.changed": copy} if copy else {})}
    with pytest.raises(EnvironmentReadError, match=reason) as caught:
        env.relations(cast(Any, Tables(versions)), "a.t", ["a.changed"])
    assert "`derive build --env alice a/t`" in str(caught.value)
    relations, missing = env.planned_relations(cast(Any, Tables(versions)), "a.t", ["a.changed"])
    assert (
        relations["a.changed"] == "alice__a.changed" and reason.removeprefix("which ") in missing["a.changed"]
    )
