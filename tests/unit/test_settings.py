"""Settings choose engines when definitions build; nothing reads the environment at import time."""

import pytest

from derive_assets.factory.build import build_definitions
from derive_assets.settings import PROJECT_ROOT, DeriveSettings


def test_k8s_executor_runs_each_step_in_its_own_pod(tmp_path):
    defs = build_definitions(
        DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=tmp_path, executor="k8s")
    )
    job = defs.resolve_job_def("core__user_detail_job")
    assert job.executor_def.name == "k8s"


def test_two_definitions_with_different_settings_in_one_process(tmp_path):
    local = build_definitions(DeriveSettings(specs_dir=PROJECT_ROOT / "table_specs", home=tmp_path / "a"))
    bq = build_definitions(
        DeriveSettings(
            specs_dir=PROJECT_ROOT / "table_specs",
            home=tmp_path / "b",
            warehouse="bigquery",
            bigquery_project="p",
            online_store="cassandra",
        )
    )
    assert local.resources["warehouse"].kind == "duckdb" and bq.resources["warehouse"].kind == "bigquery"
    assert (
        local.resources["online_store"].kind == "sqlite" and bq.resources["online_store"].kind == "cassandra"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "DERIVE_WAREHOUSE",
            "snowflake",
            r"DERIVE_WAREHOUSE='snowflake' is not supported; allowed: \['duckdb', 'bigquery'\]",
        ),
        ("DERIVE_EXECUTOR", "ray", r"DERIVE_EXECUTOR='ray' is not supported; allowed:"),
        (
            "DERIVE_ONLINE_STORE",
            "redis",
            r"DERIVE_ONLINE_STORE='redis' is not supported; allowed: \['sqlite', 'cassandra'\]",
        ),
    ],
)
def test_unknown_engine_names_are_refused_with_the_choices(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        DeriveSettings.from_env()


def test_bigquery_needs_a_project(monkeypatch):
    monkeypatch.setenv("DERIVE_WAREHOUSE", "bigquery")
    monkeypatch.delenv("DERIVE_BIGQUERY_PROJECT", raising=False)
    with pytest.raises(ValueError, match="needs DERIVE_BIGQUERY_PROJECT"):
        DeriveSettings.from_env()
