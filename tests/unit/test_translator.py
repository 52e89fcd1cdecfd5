"""The translator decides what each spec item is in Dagster; the factory only wraps bodies around its specs.

The default translator gives the keys, deps and checks the factory gave before it existed; a subclass changes keys
(deps stay connected), groups and conditions without touching the factory, and its assets still run.
"""

import sqlite3
from pathlib import Path

import pytest
import yaml
from dagster import (
    AssetCheckSpec,
    AssetKey,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    Definitions,
)

from derive_assets.factory.automation import cron_condition, export_condition, table_condition
from derive_assets.factory.build import build_definitions, build_resources
from derive_assets.factory.jobs import JobMember, dataset_jobs
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.translator import DeriveNode, DeriveTranslator

# What the factory built before the translator (pinned from it): every key, its deps and its checks.
BEFORE = {
    "accounts/auth": ([], ["email_not_null", "user_id_not_null", "user_id_unique"]),
    "analytics/daily_payments_by_region": (
        ["core/user_detail", "payments/payments"],
        ["day_not_null", "region_accepted_values", "region_not_null"],
    ),
    "analytics/order_facts": (
        ["core/user_detail", "orders/orders"],
        ["order_id_not_null", "order_id_unique", "ordered_at_not_null", "status_accepted_values"],
    ),
    "analytics/top_spenders": (
        ["core/user_detail", "payments/payments"],
        ["rank_not_null", "rank_unique", "user_id_not_null", "user_id_unique"],
    ),
    "core/user_detail": (
        ["accounts/auth", "profiles/profile"],
        ["email_not_null", "region_accepted_values", "user_id_not_null", "user_id_unique"],
    ),
    "features/region_scores": (["analytics/daily_payments_by_region"], []),
    "online/region_payments_online": (["analytics/daily_payments_by_region"], ["online_matches_warehouse"]),
    "online/user_profile_online": (["core/user_detail"], ["online_matches_warehouse"]),
    "orders/orders": ([], ["order_id_not_null", "order_id_unique", "status_accepted_values"]),
    "payments/payments": (
        [],
        ["method_accepted_values", "payment_id_not_null", "payment_id_unique", "status_accepted_values"],
    ),
    "profiles/profile": ([], ["region_accepted_values", "user_id_not_null", "user_id_unique"]),
}


def shipped(tmp_path: Path, translator: DeriveTranslator | None = None) -> Definitions:
    settings = DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=tmp_path)
    return build_definitions(settings, translator=translator)


def graph_of(defs: Definitions) -> dict[str, tuple[list[str], list[str]]]:
    graph = defs.resolve_asset_graph()
    return {
        key.to_user_string(): (
            sorted(k.to_user_string() for k in graph.get(key).parent_keys),
            sorted(c.name for c in graph.get(key).check_keys),
        )
        for key in graph.get_all_asset_keys()
    }


class Prefixed(DeriveTranslator):
    """A team's translator: every key under `warehouse/`, one group per dataset (sources in `raw`), everything
    else eager."""

    def get_asset_key(self, node: DeriveNode) -> AssetKey:
        return super().get_asset_key(node).with_prefix("warehouse")

    def get_group_name(self, node: DeriveNode) -> str:
        return "raw" if super().get_group_name(node) == "sources" else f"team_{node.dataset}"

    def get_automation_condition(self, node: DeriveNode) -> AutomationCondition | None:
        if node.kind == "source_table":
            return super().get_automation_condition(node)
        return AutomationCondition.eager()


def test_the_default_translator_gives_the_keys_deps_and_checks_of_before(tmp_path):
    assert graph_of(shipped(tmp_path)) == {k: (sorted(d), sorted(c)) for k, (d, c) in BEFORE.items()}


def test_a_replication_assets_checks_run_in_its_own_step(tmp_path):
    defs = shipped(tmp_path)
    assert not defs.asset_checks, "no separate check definitions: each asset declares its checks"
    auth = defs.resolve_assets_def(AssetKey(["accounts", "auth"]))
    assert {c.name for c in auth.check_keys} == {"email_not_null", "user_id_not_null", "user_id_unique"}
    # A replicate job of N tables is N steps (one op per table; the checks are not ops of their own).
    job = defs.resolve_job_def("replicate_accounts")
    assert [n.name for n in job.nodes] == ["accounts__auth"]


def test_the_default_groups_are_the_four_layers(tmp_path):
    """Sources, core, derived (SQL and Python tables by their `layer`) and exports; the dataset stays the key's
    first part."""
    graph = shipped(tmp_path).resolve_asset_graph()
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {
        "accounts/auth": "sources",
        "orders/orders": "sources",
        "payments/payments": "sources",
        "profiles/profile": "sources",
        "core/user_detail": "core",
        "analytics/daily_payments_by_region": "derived",
        "analytics/order_facts": "derived",
        "analytics/top_spenders": "derived",
        "features/region_scores": "derived",
        "online/region_payments_online": "exports",
        "online/user_profile_online": "exports",
    }


def test_a_subclass_changes_keys_groups_and_conditions_and_deps_stay_connected(tmp_path):
    defs = shipped(tmp_path, Prefixed())
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    prefixed = {
        f"warehouse/{k}": ([f"warehouse/{d}" for d in deps], checks) for k, (deps, checks) in BEFORE.items()
    }
    assert graph_of(defs) == {k: (sorted(d), sorted(c)) for k, (d, c) in prefixed.items()}

    daily = graph.get(AssetKey(["warehouse", "analytics", "daily_payments_by_region"]))
    assert daily.group_name == "team_analytics"
    assert daily.automation_condition == AutomationCondition.eager()
    auth = graph.get(AssetKey(["warehouse", "accounts", "auth"]))
    assert auth.group_name == "raw"
    assert auth.automation_condition is None  # the shipped sources have no cron: their sensors request them
    # The Python table's input is the upstream asset under its new key.
    scores = defs.resolve_assets_def(AssetKey(["warehouse", "features", "region_scores"]))
    assert set(scores.keys_by_input_name.values()) == {
        AssetKey(["warehouse", "analytics", "daily_payments_by_region"])
    }
    assert defs.resolve_job_def("replicate_accounts").asset_layer.selected_asset_keys == {
        AssetKey(["warehouse", "accounts", "auth"])
    }


def test_the_default_conditions_are_the_specs_crons(tmp_path):
    graph = shipped(tmp_path).resolve_asset_graph()
    conditions = {k.to_user_string(): graph.get(k).automation_condition for k in graph.get_all_asset_keys()}
    # The source's cron (None without one: its sensor requests it); the rest: factory/automation.py's.
    accounts = yaml.safe_load((PROJECT_ROOT / "table_specs" / "sources" / "accounts.yaml").read_text())
    assert conditions["accounts/auth"] == cron_condition(accounts.get("schedule"))
    assert conditions["analytics/daily_payments_by_region"] == table_condition("30 0 * * *", "1d")
    assert conditions["features/region_scores"] == table_condition(None, "1d")
    assert conditions["online/region_payments_online"] == export_condition(None, "1d")


def test_no_schedule_and_no_job_per_spec_and_the_automation_sensor_runs_from_the_start(tmp_path):
    defs = shipped(tmp_path)
    assert not defs.schedules
    assert sorted(j.name for j in defs.jobs or []) == [
        "analytics__daily_job",
        "analytics__unpartitioned_job",
        "core_job",
        "features_job",
        "online__daily_job",
        "online__unpartitioned_job",
        "replicate_accounts",
        "replicate_orders",
        "replicate_payments",
        "replicate_profiles",
    ]
    sensors = {s.name: s for s in defs.sensors or []}
    assert sensors["default_automation_condition_sensor"].default_status == DefaultSensorStatus.RUNNING
    for source in ("accounts", "orders", "payments", "profiles"):  # factory/sensors.py
        assert sensors[f"replicate_{source}_sensor"].default_status == DefaultSensorStatus.RUNNING
    repo = defs.get_repository_def()
    automation = [s.name for s in repo.sensor_defs if isinstance(s, AutomationConditionSensorDefinition)]
    assert automation == ["default_automation_condition_sensor"], "no second, stopped one"


def test_dataset_jobs_split_by_partitions_definition():
    daily = DailyPartitionsDefinition("2026-01-01", timezone="UTC")
    daily_later = DailyPartitionsDefinition("2026-02-01", timezone="UTC")
    members = [
        JobMember(AssetKey(["a", "x"]), "a", daily),
        JobMember(AssetKey(["a", "y"]), "a", daily),
        JobMember(AssetKey(["b", "x"]), "b", daily),
        JobMember(AssetKey(["b", "y"]), "b", daily_later),
        JobMember(AssetKey(["b", "z"]), "b", None),
    ]
    jobs = {job.name: job.selection for job in dataset_jobs(members)}
    assert sorted(jobs) == ["a_job", "b__daily_20260101_job", "b__daily_20260201_job", "b__unpartitioned_job"]


# --- a subclass's assets run: a source table and a table reading it, under changed keys


ORDERS = [(1, "placed", "2026-01-01 10:00:00"), (2, "shipped", "2026-01-01 11:00:00")]


def tiny_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orders: list[tuple[int, str, str]] = ORDERS
) -> DeriveSettings:
    """A SQLite source `shop` with one table, `orders`, and a table `shop_stats.status_counts` reading it."""
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, status TEXT, updated_at TEXT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", orders)
    monkeypatch.setenv("DERIVE_T1_SHOP_URL", f"sqlite:///{db}")
    specs = tmp_path / "specs"
    (specs / "sources").mkdir(parents=True)
    (specs / "shop").mkdir()
    source = {
        "kind": "source",
        "name": "shop",
        "type": "sqlite",
        "connection_env": "DERIVE_T1_SHOP_URL",
        "owner": "team:shop",
        "schedule": "*/15 * * * *",
        "tables": [
            {
                "name": "orders",
                "primary_key": ["order_id"],
                "cursor": "updated_at",
                "columns": [
                    {"name": "order_id", "type": "INT64", "constraints": {"not_null": True, "unique": True}},
                    {
                        "name": "status",
                        "type": "STRING",
                        "constraints": {"accepted_values": ["placed", "shipped"]},
                    },
                    {"name": "updated_at", "type": "TIMESTAMP"},
                ],
            }
        ],
    }
    table = {
        "name": "status_counts",
        "dataset": "shop_stats",
        "owner": "team:shop",
        "strategy": {"type": "replace"},
        "columns": [
            {"name": "status", "type": "STRING", "constraints": {"not_null": True, "unique": True}},
            {"name": "orders", "type": "INT64"},
        ],
        "sql": "SELECT status, COUNT(*) AS orders FROM shop.orders GROUP BY status",
    }
    (specs / "sources" / "shop.yaml").write_text(yaml.safe_dump(source))
    (specs / "shop" / "status_counts.yaml").write_text(yaml.safe_dump(table))
    return DeriveSettings(specs_dir=specs, home=tmp_path / "home", strict_specs=True)


class PrefixedWithoutUnique(Prefixed):
    """Also leaves every `unique` check out (a team that runs them elsewhere)."""

    def get_check_specs(self, node: DeriveNode, key: AssetKey) -> list[AssetCheckSpec]:
        return [c for c in super().get_check_specs(node, key) if not c.name.endswith("_unique")]


def test_a_subclassed_projects_assets_run_with_their_checks_in_their_own_steps(tmp_path, monkeypatch):
    settings = tiny_project(tmp_path, monkeypatch)
    defs = build_definitions(settings, translator=PrefixedWithoutUnique())
    keys = [AssetKey(["warehouse", "shop", "orders"]), AssetKey(["warehouse", "shop_stats", "status_counts"])]
    assert defs.resolve_asset_graph().get(keys[1]).parent_keys == {keys[0]}
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=keys, raise_on_error=False
        )
        assert result.success
        steps = {e.step_key for e in result.all_events if e.step_key}
        assert steps == {"warehouse__shop__orders", "warehouse__shop_stats__status_counts"}
        checks = {
            (e.asset_key.to_user_string(), e.check_name, e.passed)
            for e in result.get_asset_check_evaluations()
        }
        assert checks == {
            ("warehouse/shop/orders", "order_id_not_null", True),
            ("warehouse/shop/orders", "status_accepted_values", True),
            ("warehouse/shop_stats/status_counts", "status_not_null", True),
        }
        counts = build_resources(settings)["warehouse"].row_count("shop_stats.status_counts")
        assert counts == 2


def test_a_failed_replication_check_fails_its_own_step_after_the_rows_are_recorded(tmp_path, monkeypatch):
    bad = [*ORDERS, (3, "lost", "2026-01-01 12:00:00")]  # `lost` is not an accepted status
    settings = tiny_project(tmp_path, monkeypatch, bad)
    defs = build_definitions(settings)
    orders, counts = AssetKey(["shop", "orders"]), AssetKey(["shop_stats", "status_counts"])
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[orders, counts], raise_on_error=False
        )
        assert not result.success
        assert [e.step_key for e in result.get_step_failure_events()] == ["shop__orders"]
        failed = [(e.check_name, e.passed) for e in result.get_asset_check_evaluations() if not e.passed]
        assert failed == [("status_accepted_values", False)]
        # The rows are in the warehouse and the watermark recorded: the next run reads on from it.
        [materialized] = result.get_asset_materialization_events()
        assert materialized.asset_key == orders
        assert materialized.materialization.metadata["derive/watermark"].value
        # The blocking check keeps the table downstream from running.
        assert instance.get_latest_materialization_event(counts) is None
