"""Fixtures for tests on the embedded engines (SQLite sources, DuckDB warehouse): no servers needed."""

import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance

from derive_assets.demo.generate import embedded_urls, generate
from derive_assets.settings import PROJECT_ROOT, DeriveSettings


@pytest.fixture
def specs_dir(tmp_path) -> Path:
    """A private copy of the shipped specs, so a test may edit them."""
    target = tmp_path / "table_specs"
    shutil.copytree(PROJECT_ROOT / "table_specs", target)
    return target


@pytest.fixture
def settings(tmp_path, specs_dir, monkeypatch) -> DeriveSettings:
    for name in ("DERIVE_ACCOUNTS_URL", "DERIVE_ORDERS_URL", "DERIVE_PAYMENTS_URL", "DERIVE_DUCKDB_PATH"):
        monkeypatch.delenv(name, raising=False)
    settings = DeriveSettings(specs_dir=specs_dir, home=tmp_path / "home")
    generate(embedded_urls(settings.embedded_sources_dir), users=500)
    return settings


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance
