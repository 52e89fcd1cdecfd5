"""Where the demo's sample data goes (`derive_assets/demo/sources.py`): the URL each source spec's `connection_env`
holds, else the embedded store; an explicit option wins; the profiles' database from the URL path, else the spec's."""

from __future__ import annotations

from pathlib import Path

import pytest

from derive_assets.demo.connections import SourceUrls, embedded_urls, url_database
from derive_assets.demo.sources import sample_urls, spec_database_mismatch
from derive_assets.replication.urls import SourceURLError
from derive_assets.settings import PROJECT_ROOT
from derive_assets.specs.project import load_project

VARIABLES = ("DERIVE_ACCOUNTS_URL", "DERIVE_ORDERS_URL", "DERIVE_PAYMENTS_URL", "DERIVE_PROFILES_URL")


@pytest.fixture
def project(monkeypatch: pytest.MonkeyPatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return load_project(PROJECT_ROOT / "table_specs")


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("mongodb://127.0.0.1:27017/", None),
        ("mongodb://127.0.0.1:27017", None),
        ("mongodb://h/?authSource=admin", None),
        ("mongodb://u:p%2Fw@h1:1,h2:2/shop?replicaSet=rs", "shop"),
        ("mongodb+srv://cluster.example.com/my%20db", "my db"),
        ("montydb:///tmp/profiles", None),
    ],
)
def test_url_database(url: str, database: str | None) -> None:
    assert url_database(url) == database


def test_the_profiles_database_is_the_urls_else_the_default() -> None:
    named = SourceUrls("sqlite:///a", "sqlite:///b", "sqlite:///c", "mongodb://h/shop", default_database="x")
    assert named.profiles_database == "shop"
    unnamed = SourceUrls("sqlite:///a", "sqlite:///b", "sqlite:///c", "mongodb://h/", default_database="x")
    assert unnamed.profiles_database == "x"


def test_sample_urls_are_what_the_replication_reads(
    project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded = embedded_urls(tmp_path)
    assert sample_urls(project, tmp_path) == embedded
    monkeypatch.setenv("DERIVE_ORDERS_URL", f"sqlite:///{tmp_path}/elsewhere.db")
    monkeypatch.setenv("DERIVE_PROFILES_URL", "mongodb://h:27017/")
    urls = sample_urls(project, tmp_path)
    assert (urls.accounts, urls.orders, urls.profiles) == (
        embedded.accounts,
        f"sqlite:///{tmp_path}/elsewhere.db",
        "mongodb://h:27017/",
    )
    assert urls.profiles_database == "profiles"  # the shipped spec's `database:`
    given = sample_urls(project, tmp_path, {"orders": "sqlite:///given.db", "accounts": None})
    assert (given.accounts, given.orders) == (embedded.accounts, "sqlite:///given.db")


def test_a_url_the_spec_type_refuses_is_refused(
    project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DERIVE_ACCOUNTS_URL", "postgresql://u:secret@h/db")
    with pytest.raises(SourceURLError, match="has `type: sqlite`") as caught:
        sample_urls(project, tmp_path)
    assert "secret" not in str(caught.value)


def test_a_profiles_url_naming_another_database_is_a_mismatch(project, tmp_path: Path) -> None:
    def mismatch(url: str) -> str | None:
        return spec_database_mismatch(project, sample_urls(project, tmp_path, {"profiles": url}))

    assert mismatch("mongodb://h/") is None
    assert mismatch("mongodb://h/profiles") is None
    found = mismatch("mongodb://u:secret@h/shop")
    assert (
        found is not None
        and "names the database 'shop', but source 'profiles' reads database 'profiles'" in found
    )
    assert "secret" not in found and "Set `database: shop`" in found
