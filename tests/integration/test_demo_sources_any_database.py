"""`derive generate`, `derive activity` and `derive demo` on real servers write into exactly the database each URL
names (a fresh, non-default PostgreSQL, MariaDB and FerretDB database), never into the server's default one; and
`derive demo` writes where the replication reads, so its second run replicates the activity it applied.

The sources' specs are the shipped ones rewritten by `helpers.write_specs` (type postgres/mysql, URLs in the
`DERIVE_IT_<SOURCE>_URL` variables); the profiles spec reads a database of the test's own, so tests running at the
same time never share a document database.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pymongo
import pytest
import sqlalchemy as sa
import yaml
from dagster import AssetKey, DagsterInstance
from helpers import SECRET_IN_URL, TABLES, env_var, write_specs  # pyright: ignore[reportMissingImports]

from derive_assets import cli
from derive_assets.demo.connections import sqlalchemy_url
from derive_assets.demo.run import run_demo
from derive_assets.demo.sources import incomplete_sources, sample_urls
from derive_assets.replication.urls import redact
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import load_project

USERS = 300
SQL_TABLES = {"accounts": "auth", "orders": "orders", "payments": "payments"}


@pytest.fixture
def mongo_names(mongodb_server_url: str) -> Iterator[tuple[str, str]]:
    """(named, spec default): two fresh document database names, dropped after the test."""
    names = (f"t_{uuid.uuid4().hex[:8]}", f"t_{uuid.uuid4().hex[:8]}")
    try:
        yield names
    finally:
        with pymongo.MongoClient(mongodb_server_url, serverSelectionTimeoutMS=10_000) as client:
            for name in names:
                client.drop_database(name)


def _with_path(url: str, database: str) -> str:
    return urlsplit(url)._replace(path=f"/{database}").geturl()


def _specs(tmp_path: Path, source_type: str, profiles_database: str) -> Path:
    specs = write_specs(tmp_path / "specs", source_type)
    path = specs / "sources" / "profiles.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["database"] = profiles_database
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return specs


def _documents(server_url: str, database: str) -> int:
    with pymongo.MongoClient(server_url, serverSelectionTimeoutMS=10_000) as client:
        return client[database]["profile"].count_documents({})


def _sql_state(url: str) -> dict[str, Any]:
    """The demo tables in the database `url` names: name -> (rows, newest updated_at), for those that exist."""
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            state = {}
            for table in SQL_TABLES.values():
                if table in present:
                    t = sa.table(table, sa.column("updated_at"))
                    row = conn.execute(sa.select(sa.func.count(), sa.func.max(t.c.updated_at))).one()
                    state[table] = tuple(row)
            return state
    finally:
        engine.dispose()


def _counts(stdout: str) -> dict[str, int]:
    return {
        k: int(v.replace(",", "")) for k, v in re.findall(r"^([\w.]+): ([\d,]+)(?: rows)?$", stdout, re.M)
    }


@pytest.fixture(params=["postgres", "mysql"])
def sql_server(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """(source type, the server's default-database URL, a fresh database's URL)."""
    server = request.getfixturevalue(f"{request.param}_server_url")
    return request.param, server, request.getfixturevalue(f"{request.param}_url")


def test_generate_and_activity_write_only_the_databases_the_urls_name(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sql_server: tuple[str, str, str],
    mongodb_server_url: str,
    mongo_names: tuple[str, str],
) -> None:
    source_type, server_url, url = sql_server
    named, spec_default = mongo_names
    monkeypatch.setenv("DERIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(_specs(tmp_path, source_type, spec_default)))
    default_before = _sql_state(server_url)
    profiles_url = _with_path(mongodb_server_url, named)
    options = [f"--{s}-url={url}" for s in SQL_TABLES] + [f"--profiles-url={profiles_url}"]

    assert cli.main(["generate", "--users", str(USERS), *options]) == 0
    out = capsys.readouterr()
    counts = _counts(out.out)
    assert counts["accounts.auth"] == USERS and counts["profiles.profile"] == USERS
    state = _sql_state(url)
    assert {t: rows for t, (rows, _) in state.items()} == {
        table: counts[f"{source}.{table}"] for source, table in SQL_TABLES.items()
    }
    assert _documents(mongodb_server_url, named) == USERS
    assert _documents(mongodb_server_url, spec_default) == 0
    # The URL names a database the profiles spec does not read: written anyway, and said so.
    assert f"names the database '{named}', but source 'profiles' reads database '{spec_default}'" in out.err
    assert f"profiles: {profiles_url} (database {named})" in out.out
    assert SECRET_IN_URL not in out.out + out.err and "derive:***@" in out.out

    assert cli.main(["activity", "--fraction", "0.05", *options]) == 0
    changes = _counts(capsys.readouterr().out)
    after = _sql_state(url)
    for source, table in SQL_TABLES.items():
        inserted = changes[f"{source}.{table}.inserted"]
        assert after[table][0] == state[table][0] + inserted, table
        assert after[table][1] > state[table][1], table
    assert _documents(mongodb_server_url, named) == USERS + changes["profiles.profile.inserted"]
    assert changes["profiles.profile.updated"] > 0
    assert _documents(mongodb_server_url, spec_default) == 0
    assert _sql_state(server_url) == default_before, "the server's default database was written"

    # Without options: the sources' connection variables, and the database the profiles spec reads when the
    # URL names none; the same URLs `derive demo` and the replication use.
    for source in SQL_TABLES:
        monkeypatch.setenv(env_var(source), url)
    monkeypatch.setenv(env_var("profiles"), mongodb_server_url)
    assert cli.main(["generate", "--users", "50"]) == 0
    assert _documents(mongodb_server_url, spec_default) == 50
    assert _documents(mongodb_server_url, named) == USERS + changes["profiles.profile.inserted"]
    assert {t: rows for t, (rows, _) in _sql_state(url).items()}["auth"] == 50
    assert _sql_state(server_url) == default_before


def _demo_counts(lines: list[str], after: str) -> dict[str, int]:
    """The `key: n, key: n` line that follows the line starting with `after`."""
    at = next(i for i, line in enumerate(lines) if line.startswith(after))
    summary = next(line for line in lines[at:] if re.match(r"^\s+[\w.]+: [\d,]+", line))
    return {
        k: int(v.replace(",", "")) for k, v in re.findall(r"([\w.]+): (\d[\d,]*?)(?=, [\w.]+:|$)", summary)
    }


def _rows_read(instance: DagsterInstance, ref: str) -> int:
    event = instance.get_latest_materialization_event(AssetKey(ref.split(".")))
    assert event is not None and event.asset_materialization is not None, ref
    return event.asset_materialization.metadata["derive/rows_read"].value  # type: ignore[return-value]


def test_demo_on_servers_generates_then_replicates_its_activity(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_server_url: str,
    postgres_url: str,
    mongodb_server_url: str,
    mongo_names: tuple[str, str],
) -> None:
    _, database = mongo_names
    specs = _specs(tmp_path, "postgres", database)
    for source in SQL_TABLES:
        monkeypatch.setenv(env_var(source), postgres_url)
    monkeypatch.setenv(env_var("profiles"), mongodb_server_url)  # no database named: the spec's
    monkeypatch.delenv("DERIVE_DUCKDB_PATH", raising=False)
    settings = DeriveSettings(specs_dir=specs, home=tmp_path / "home")
    default_before = _sql_state(postgres_server_url)
    urls = sample_urls(load_project(specs), settings.embedded_sources_dir)
    assert "derive:***@" in redact(postgres_url)
    expected = [*(f"{s} at {redact(postgres_url)}" for s in SQL_TABLES), f"profiles at {mongodb_server_url}"]
    assert incomplete_sources(urls) == expected

    with DagsterInstance.ephemeral() as instance:
        first: list[str] = []
        summary = run_demo(settings, instance, users=USERS, days=2, say=first.append)
        text = "\n".join(first)
        assert "==> generating sample sources: 300 users" in text, text
        assert f"    profiles: {mongodb_server_url} (database {database})" in text
        assert SECRET_IN_URL not in text and "accounts: postgresql://derive:***@" in text
        generated = _demo_counts(first, "==> generating sample sources")
        assert not summary.errors
        assert summary["accounts.auth"]["rows"] == USERS
        assert _documents(mongodb_server_url, database) == USERS
        assert _sql_state(postgres_url)["orders"][0] == generated["orders.orders"]
        assert incomplete_sources(urls) == []

        second: list[str] = []
        summary = run_demo(settings, instance, users=USERS, days=2, say=second.append)
        text = "\n".join(second)
        assert "==> generating" not in text and "==> applying a batch of new activity" in text, text
        activity = _demo_counts(second, "==> applying a batch of new activity")
        for ref in TABLES:
            changed = sum(activity.get(f"{ref}.{what}", 0) for what in ("inserted", "updated", "deleted"))
            assert changed > 0, ref
            assert _rows_read(instance, ref) == changed, ref
        # The profiles re-read their cursor overlap (600 s by default): at least the changed documents.
        changed_profiles = activity["profiles.profile.inserted"] + activity["profiles.profile.updated"]
        assert _rows_read(instance, "profiles.profile") >= changed_profiles > 0
        live = USERS + activity["accounts.auth.inserted"] - activity["accounts.auth.deleted"]
        assert summary["accounts.auth"]["rows"] == live
    assert _sql_state(postgres_server_url) == default_before, "the server's default database was written"


def test_demo_refuses_a_profiles_url_naming_a_database_the_spec_does_not_read(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
    mongodb_server_url: str,
    mongo_names: tuple[str, str],
) -> None:
    named, spec_default = mongo_names
    monkeypatch.setenv("DERIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(_specs(tmp_path, "postgres", spec_default)))
    for source in SQL_TABLES:
        monkeypatch.setenv(env_var(source), postgres_url)
    monkeypatch.setenv(env_var("profiles"), _with_path(mongodb_server_url, named))

    assert cli.main(["demo", "--users", "50", "--days", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"derive demo: the profiles URL {_with_path(mongodb_server_url, named)} names")
    assert f"Set `database: {named}` in the profiles source spec" in err and "Traceback" not in err
    assert _sql_state(postgres_url) == {} and _documents(mongodb_server_url, named) == 0
