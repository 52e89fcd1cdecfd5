"""No source password ever leaves the environment variable that holds it.

Canary passwords - one plain, one that must be percent-encoded in a URL (`@`, `:`, `/`, `%`), and a wrong one -
belong to real PostgreSQL and MariaDB logins made for this module. A project whose sources use them is driven
the ways a user would: `derive generate`/`activity`/`validate`/`plan`, `dagster asset materialize` (a good run
and a run whose every step fails: wrong password, URL of another type, missing table, closed port), in-process
runs whose exceptions are kept, the webserver's GraphQL API, and finally every file of the Dagster instance
(event log, run and index databases, compute logs). Each place is searched for every spelling of every canary:
raw, percent-encoded (`quote`, `quote_plus`, lower-case hex).

The module runs everything once (a module fixture); each test checks one kind of place. A positive control
shows the search finds a canary where one is planted, and the runs are checked to have done what they should
(rows read; each failure for its own reason), so a broken setup cannot pass as "no leak".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

import psycopg
import pymysql
import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from helpers import free_port
from psycopg import sql

from derive_assets.factory.build import build_definitions
from derive_assets.replication.connections import SourceConnections
from derive_assets.replication.urls import SourceConnectionError
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project

pytestmark = pytest.mark.slow

PLAIN = "Canary-7f3a"
SPECIAL = "c@n:ary/%7f3b"
WRONG = "Canary-Wr0ng-19d4"
CANARIES = (PLAIN, SPECIAL, WRONG)
BIN = Path(sys.executable).parent
GOOD = ("accounts", "orders", "payments", "my_plain")
"""Sources whose runs must succeed: PostgreSQL plain, PostgreSQL special, MariaDB special, MariaDB plain."""
FAILING = {
    "bad_pw_pg": "the server refused the login",
    "bad_pw_my": "the server refused the login",
    "wrong_type": "holds a postgresql:// URL, but source 'wrong_type' has `type: sqlite`",
    "wrong_type_my": "holds a mysql:// URL, but source 'wrong_type_my' has `type: postgres`",
    "no_table_pg": "no_such_table",
    "no_table_my": "no_such_table",
    "closed_port": "could not connect within 2 s",
}
"""Sources whose runs must fail, and a phrase of the reason each must give."""
TIMEOUT = 2.0


def spellings(password: str) -> set[bytes]:
    """Every way the password could be written into a log or a file."""
    forms = {password, quote(password, safe=""), quote_plus(password), quote(password)}
    forms |= {f.lower() for f in forms if "%" in f}
    return {f.encode() for f in forms}


NEEDLES = {needle: canary for canary in CANARIES for needle in spellings(canary)}


def leaks(data: str | bytes) -> list[str]:
    raw = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    return sorted({f"{NEEDLES[n].encode()!r} as {n!r}" for n in NEEDLES if n in raw})


@dataclass
class World:
    places: dict[str, dict[str, str | bytes]] = field(default_factory=dict)
    """Kind of place -> place -> what it held."""
    outcomes: dict[str, Any] = field(default_factory=dict)
    """What the runs did (for the sanity checks)."""

    def add(self, kind: str, place: str, data: str | bytes) -> None:
        self.places.setdefault(kind, {})[place] = data


def server_url(base: str, user: str, password: str, database: str, port: int | None = None) -> str:
    parts = urlsplit(base)
    netloc = f"{user}:{quote(password, safe='')}@{parts.hostname}:{port or parts.port}"
    return parts._replace(netloc=netloc, path=f"/{database}").geturl()


def mysql_admin(url: str) -> pymysql.connections.Connection:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        autocommit=True,
    )


@pytest.fixture(scope="module")
def logins(postgres_server_url: str, mysql_server_url: str) -> Iterator[dict[str, str]]:
    """URLs of the canary logins: a plain and a special password on each server, each with its own database."""
    suffix = uuid.uuid4().hex[:6]
    names = {"plain": f"canary_plain_{suffix}", "special": f"canary_special_{suffix}"}
    passwords = {"plain": PLAIN, "special": SPECIAL}
    try:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            for kind, name in names.items():
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(name), sql.Literal(passwords[kind])
                    )
                )
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name))
                )
        with mysql_admin(mysql_server_url) as conn, conn.cursor() as cur:
            for kind, name in names.items():
                cur.execute(f"CREATE DATABASE `{name}`")
                cur.execute(f"CREATE USER '{name}'@'%%' IDENTIFIED BY %s", [passwords[kind]])
                cur.execute(f"GRANT ALL ON `{name}`.* TO '{name}'@'%'")
                # The open-transaction fence reads information_schema.INNODB_TRX.
                cur.execute(f"GRANT PROCESS ON *.* TO '{name}'@'%'")
        urls = {
            f"{server}_{kind}": server_url(base, names[kind], passwords[kind], names[kind])
            for server, base in (("pg", postgres_server_url), ("my", mysql_server_url))
            for kind in names
        }
        urls["pg_wrong"] = server_url(postgres_server_url, names["plain"], WRONG, names["plain"])
        urls["my_wrong"] = server_url(mysql_server_url, names["plain"], WRONG, names["plain"])
        urls["pg_closed"] = server_url(
            postgres_server_url, names["special"], SPECIAL, names["special"], free_port()
        )
        yield urls
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            for name in names.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        with mysql_admin(mysql_server_url) as conn, conn.cursor() as cur:
            for name in names.values():
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")


SOURCES: dict[str, tuple[str, str, str]] = {
    # name: (type, source table, URL of `logins`)
    "accounts": ("postgres", "auth", "pg_plain"),
    "orders": ("postgres", "orders", "pg_special"),
    "payments": ("mysql", "payments", "my_special"),
    "my_plain": ("mysql", "orders", "my_plain"),
    "bad_pw_pg": ("postgres", "orders", "pg_wrong"),
    "bad_pw_my": ("mysql", "orders", "my_wrong"),
    "wrong_type": ("sqlite", "orders", "pg_plain"),  # issue 9 item 11: the README's DERIVE_ACCOUNTS_URL case
    "wrong_type_my": ("postgres", "orders", "my_special"),
    "no_table_pg": ("postgres", "no_such_table", "pg_special"),
    "no_table_my": ("mysql", "no_such_table", "my_plain"),
    "closed_port": ("postgres", "orders", "pg_closed"),
}


def env_var(name: str) -> str:
    return f"DERIVE_SECRETS_{name.upper()}_URL"


def write_specs(dest: Path) -> Path:
    """The shipped specs, their SQL sources moved to the canary logins, plus one source per failure."""
    shutil.copytree(PROJECT_ROOT / "table_specs", dest)
    shipped = {p.stem: yaml.safe_load(p.read_text()) for p in (dest / "sources").glob("*.yaml")}
    tables = {t["name"]: t for spec in shipped.values() for t in spec["tables"]}
    for name, (kind, table, _) in SOURCES.items():
        spec = dict(
            shipped.get(name) or shipped["orders"], name=name, type=kind, connection_env=env_var(name)
        )
        spec.pop("schedule", None)
        spec["tables"] = [dict(tables["orders" if table == "no_such_table" else table], name=table)]
        (dest / "sources" / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def cli(world: World, place: str, env: dict[str, str], *args: str, ok: bool | None = True) -> str:
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    world.add("cli output", f"{place}: stdout", result.stdout)
    world.add("cli output", f"{place}: stderr", result.stderr)
    if ok is not None:
        assert (result.returncode == 0) is ok, f"{place}: exit {result.returncode}\n{result.stderr[-3000:]}"
    return result.stdout


def run_config(home: Path) -> dict[str, Any]:
    return {
        "resources": {
            "sources": {"config": {"embedded_dir": str(home / "sources"), "connect_timeout_seconds": TIMEOUT}}
        },
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},  # errors still reach stderr
    }


@pytest.fixture(scope="module")
def world(logins: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = World()
    root = tmp_path_factory.mktemp("secrets")
    dagster_home, home, specs = root / "dagster_home", root / "home", write_specs(root / "specs")
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    urls = {env_var(name): logins[login] for name, (_, _, login) in SOURCES.items()}
    env = {k: v for k, v in os.environ.items() if not (k.startswith("DERIVE_") and k.endswith("_URL"))}
    env |= urls | {
        "DAGSTER_HOME": str(dagster_home),
        "DERIVE_HOME": str(home),
        "DERIVE_SPECS_DIR": str(specs),
        "DERIVE_EXECUTOR": "in_process",
    }
    env.pop("DERIVE_DUCKDB_PATH", None)

    # The derive CLI: sample data through the canary URLs, a failing generate, validate, plan.
    pg = ("--accounts-url", logins["pg_plain"], "--orders-url", logins["pg_special"])
    cli(
        world,
        "derive generate",
        env,
        "derive",
        "generate",
        "--users",
        "60",
        *pg,
        "--payments-url",
        logins["my_special"],
    )
    my_plain = logins["my_plain"]
    cli(world, "derive generate (MariaDB)", env, "derive", "generate", "--users", "40",
        "--accounts-url", my_plain, "--orders-url", my_plain, "--payments-url", my_plain)  # fmt: skip
    cli(world, "derive activity", env, "derive", "activity", *pg, "--payments-url", logins["my_special"])
    cli(world, "derive generate, wrong password", env, "derive", "generate", "--users", "5",
        "--accounts-url", logins["pg_wrong"], "--orders-url", logins["my_wrong"], ok=False)  # fmt: skip
    cli(world, "derive validate", env, "derive", "validate", str(specs))
    world.outcomes["plan"] = cli(world, "derive plan", env, "derive", "plan")

    # `dagster asset materialize`: one run that succeeds, one whose every step fails.
    good = ",".join(f"{name}/{SOURCES[name][1]}" for name in GOOD)
    cli(world, "dagster asset materialize (good)", env,
        "dagster", "asset", "materialize", "-m", "derive_assets.definitions", "--select", f"{good},profiles/profile")  # fmt: skip
    bad = ",".join(f"{name}/{SOURCES[name][1]}" for name in FAILING)
    world.outcomes["bad run"] = cli(world, "dagster asset materialize (failing)", env,
        "dagster", "asset", "materialize", "-m", "derive_assets.definitions", "--select", bad,
        "--config-json", json.dumps(run_config(home)), ok=False)  # fmt: skip

    # In process, on the same instance: the exceptions a caller gets, and the resource's own errors.
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        defs = build_definitions(DeriveSettings(specs_dir=specs, home=home))
        sources = {s.name: s for s in load_project(specs).sources()}
        resource = SourceConnections(embedded_dir=str(home / "sources"), connect_timeout_seconds=TIMEOUT)
        with DagsterInstance.from_config(str(dagster_home)) as instance:
            for name in ("my_plain", *FAILING):  # the good sources' CLI run is checked above
                job = defs.resolve_job_def(f"replicate_{name}")  # the source's replication job
                try:
                    result = job.execute_in_process(instance=instance, run_config=run_config(home))
                    world.outcomes[name] = result.success
                except Exception as exc:  # noqa: BLE001 - whatever a run raises is what a caller sees: keep it all
                    world.outcomes[name] = str(exc)
                    world.add(
                        "exceptions", f"{name}: in-process run", "".join(traceback.format_exception(exc))
                    )
                if name in FAILING:
                    try:
                        resource.checked_url(sources[name])
                    except Exception as exc:  # noqa: BLE001 - keep whatever it raises, as above
                        world.outcomes[f"{name} resource error"] = type(exc)
                        world.add("exceptions", f"{name}: resource", "".join(traceback.format_exception(exc)))
            for name in GOOD:
                key = AssetKey([name, SOURCES[name][1]])
                records = instance.fetch_materializations(key, limit=10).records
                assert records, f"{name}: no materialization"
                for i, record in enumerate(records):
                    assert record.asset_materialization is not None
                    metadata = {k: str(v.value) for k, v in record.asset_materialization.metadata.items()}
                    world.outcomes.setdefault(f"{name} rows read", []).append(
                        int(metadata["derive/rows_read"])
                    )
                    world.add("materialization metadata", f"{name} #{i}", json.dumps(metadata))
            run_ids = [r.run_id for r in instance.get_runs()]
    world.outcomes["runs"] = run_ids

    query_webserver(world, env, run_ids)

    for path in sorted(p for p in (*dagster_home.rglob("*"), *home.rglob("*")) if p.is_file()):
        kind = "instance files" if path.is_relative_to(dagster_home) else "derive home files"
        world.add(kind, str(path.relative_to(root)), path.read_bytes())
    yield world
    print(
        f"\nsecrets suite: {sum(len(v) for v in world.places.values())} places checked",
        {k: len(v) for k, v in world.places.items()},
    )


RUNS_QUERY = """
{ runsOrError { __typename ... on Runs { results { runId status runConfigYaml tags { key value } } } } }
"""
EVENTS_QUERY = """
query Events($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ExecutionStepFailureEvent { error { message stack className causes { message stack } cause { message stack } } }
        ... on RunFailureEvent { pipelineFailureError: error { message stack } }
        ... on MaterializationEvent { metadataEntries { ...Entry } }
        ... on LogsCapturedEvent { fileKey stepKeys }
      }
    }
    ... on PythonError { message }
  }
}
fragment Entry on MetadataEntry {
  label description
  ... on TextMetadataEntry { text }
  ... on MarkdownMetadataEntry { mdStr }
  ... on JsonMetadataEntry { jsonString }
  ... on PathMetadataEntry { path }
  ... on UrlMetadataEntry { url }
}
"""
ASSETS_QUERY = """
{
  assetNodes {
    assetKey { path }
    description
    metadataEntries { ...Entry }
    assetMaterializations(limit: 5) { runId metadataEntries { ...Entry } }
  }
}
fragment Entry on MetadataEntry {
  label description
  ... on TextMetadataEntry { text }
  ... on MarkdownMetadataEntry { mdStr }
  ... on JsonMetadataEntry { jsonString }
}
"""
RESOURCES_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on RepositoryLocation {
            repositories {
              name
              allTopLevelResourceDetails {
                name description
                configFields { name description }
                configuredValues { key value type }
              }
            }
          }
          ... on PythonError { message stack }
        }
      }
    }
  }
}
"""
LOGS_QUERY = """
query Logs($logKey: [String!]!) { capturedLogs(logKey: $logKey) { stdout stderr } }
"""


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


def query_webserver(world: World, env: dict[str, str], run_ids: list[str]) -> None:
    port = free_port()
    log = Path(env["DAGSTER_HOME"]).parent / "webserver.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                str(BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-m",
                "derive_assets.definitions",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, "dagster-webserver did not start within 120 s"
                time.sleep(0.5)
        world.add("graphql", "runs", json.dumps(graphql(port, RUNS_QUERY)))
        world.add("graphql", "asset nodes", json.dumps(graphql(port, ASSETS_QUERY)))
        resources = graphql(port, RESOURCES_QUERY)
        world.add("graphql", "resources", json.dumps(resources))
        world.outcomes["graphql resources"] = resources
        captured = 0
        for run_id in run_ids:
            events = graphql(port, EVENTS_QUERY, {"runId": run_id})
            world.add("graphql", f"events of run {run_id}", json.dumps(events))
            for event in events["logsForRun"].get("events", []):
                if event["__typename"] == "LogsCapturedEvent":
                    logs = graphql(port, LOGS_QUERY, {"logKey": [run_id, "compute_logs", event["fileKey"]]})
                    world.add("graphql", f"captured logs {run_id}/{event['fileKey']}", json.dumps(logs))
                    captured += 1
        world.outcomes["graphql captured logs"] = captured
    finally:
        server.terminate()
        server.wait(timeout=30)
    world.add("cli output", "dagster-webserver log", log.read_text())


# ------------------------------------------------------------------------------------------------ the checks


def assert_no_leak(world: World, kind: str) -> None:
    places = world.places.get(kind, {})
    assert places, f"nothing of kind {kind!r} was collected: the setup is broken"
    found = {place: hits for place, data in places.items() if (hits := leaks(data))}
    assert found == {}, f"passwords found in {len(found)} of {len(places)} {kind}: {found}"


def test_the_runs_did_what_they_should(world: World) -> None:
    """Without this, an empty or broken setup would show no leak."""
    assert world.outcomes["my_plain"] is True, world.outcomes["my_plain"]
    for name in GOOD:
        assert max(world.outcomes[f"{name} rows read"]) > 0, name
    for name, reason in FAILING.items():
        assert reason in str(world.outcomes[name]), (name, world.outcomes[name])
        if not name.startswith("no_table"):  # a missing table is found by the read, not by the login
            assert issubclass(world.outcomes[f"{name} resource error"], SourceConnectionError), name
    assert len(world.outcomes["runs"]) == 2 + 1 + len(FAILING)  # two CLI runs, the in-process ones
    assert "== " in world.outcomes["plan"]


def test_the_search_finds_a_planted_password() -> None:
    for canary in CANARIES:
        for text in (canary, quote(canary, safe=""), quote_plus(canary), f"x{quote(canary)}y"):
            assert leaks(f"...{text}...") and leaks(text.encode()), text
    assert leaks("postgresql://u:c%40n%3aary%2f%257f3b@h/db")  # lower-case hex
    assert not leaks("postgresql://u:***@h/db")


def test_no_password_in_cli_output(world: World) -> None:
    assert_no_leak(world, "cli output")


def test_no_password_in_exceptions(world: World) -> None:
    assert_no_leak(world, "exceptions")
    assert {p.split(":")[0] for p in world.places["exceptions"]} == set(FAILING)


def test_no_password_in_materialization_metadata(world: World) -> None:
    assert_no_leak(world, "materialization metadata")


def test_no_password_in_plan_output(world: World) -> None:
    assert not leaks(world.outcomes["plan"])


def test_no_password_in_graphql(world: World) -> None:
    assert_no_leak(world, "graphql")
    assert world.outcomes["graphql captured logs"] > 0, "no compute logs were fetched over GraphQL"


def test_no_password_in_the_instance_files(world: World) -> None:
    assert_no_leak(world, "instance files")
    names = " ".join(world.places["instance files"])
    assert "index.db" in names and "runs.db" in names, names
    assert any(n.endswith((".err", ".out", ".complete")) for n in world.places["instance files"]), names


def test_no_password_in_the_derive_home(world: World) -> None:
    assert_no_leak(world, "derive home files")
