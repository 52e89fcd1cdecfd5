"""Source outages fail fast and clearly: a refused password at once (connectorx's pool would retry it for 30 s
and more), a closed port or a server that never answers within `connect_timeout_seconds`, a URL that does not fit
the source's `type` before anything connects. Each message names the source and its variable, never the password.

Against the real servers: PostgreSQL, MariaDB, and FerretDB for MongoDB. A "hanging" server is a local socket that
accepts connections and never says a word, so the clients wait for a greeting that never comes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from dagster import DagsterInstance
from helpers import free_port, with_port

from derive_assets.factory.build import build_definitions
from derive_assets.replication.connections import SourceConnections
from derive_assets.replication.extract import ExtractPlan, read_batches
from derive_assets.replication.preflight import SourceLoginError, SourceRefusedError, SourceUnreachableError
from derive_assets.replication.urls import SourceConnectionError
from derive_assets.settings import DeriveSettings
from derive_assets.specs.models import SourceSpec

WRONG = "Wrong-Pw-5e1d"
FAST = 10.0
"""Generous bound for a refused login (it takes milliseconds; the point is: not connectorx's 30-41 s)."""
SLACK = 6.0
"""What a run may take beyond its connect timeout (process and Dagster overhead on a loaded 2-core machine)."""
ENV = "DERIVE_OUTAGE_URL"


def spec(kind: str) -> dict[str, Any]:
    return {
        "kind": "source",
        "name": "shop",
        "type": kind,
        "connection_env": ENV,
        "owner": "team:shop",
        "tables": [
            {
                "name": "items",
                "primary_key": ["id"],
                "cursor": "updated_at",
                "columns": [{"name": "id", "type": "INT64"}, {"name": "updated_at", "type": "TIMESTAMP"}],
            }
        ],
    }


def source(kind: str) -> SourceSpec:
    return SourceSpec.model_validate(spec(kind))


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}").geturl()


@pytest.fixture
def hanging_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """(port, accepted connections) of a listener that accepts TCP connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def run_replication(
    tmp_path: Path, kind: str, url: str, monkeypatch: pytest.MonkeyPatch, timeout: float
) -> Any:
    """Run the source's replication job in process (the real asset, resource and IO manager); the result."""
    specs = tmp_path / "specs"
    (specs / "sources").mkdir(parents=True, exist_ok=True)
    (specs / "sources" / "shop.yaml").write_text(yaml.safe_dump(spec(kind), sort_keys=False))
    monkeypatch.setenv(ENV, url)
    defs = build_definitions(DeriveSettings(specs_dir=specs, home=tmp_path / "home"))
    run_config = {
        "resources": {
            "sources": {
                "config": {"embedded_dir": str(tmp_path / "home"), "connect_timeout_seconds": timeout}
            }
        },
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
    }
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("replicate_shop").execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False
        )
        failures = [e for e in result.all_events if e.is_step_failure]
        error = failures[0].step_failure_data.error if failures else None
        while error is not None and error.cause is not None:  # Dagster wraps the asset's own error
            error = error.cause
        message = error.message.strip().split(": ", 1)[-1] if error else ""  # "pkg.module.Class: text"
        return result, message


SQL_SERVERS = {"postgres": "postgres_url", "mysql": "mysql_url"}


@pytest.fixture(params=sorted(SQL_SERVERS))
def sql_server(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(source type, URL of a fresh database on that server)."""
    return request.param, request.getfixturevalue(SQL_SERVERS[request.param])


def test_a_wrong_password_fails_at_once_naming_the_source_and_variable(sql_server):
    kind, url = sql_server
    sources = SourceConnections(embedded_dir="unused", connect_timeout_seconds=20)
    started = time.monotonic()
    with (
        pytest.raises(
            SourceLoginError,
            match=rf"^source 'shop' \({kind} server 127\.0\.0\.1:\d+, URL from {ENV}\): the server refused the "
            rf"login: .*(password authentication failed for user|Access denied for user).*\. Fix the user name "
            rf"or password in {ENV} \(percent-encode .*\)\. Not retried; nothing was read\.$",
        ) as caught,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv(ENV, with_password(url, WRONG))
        sources.checked_url(source(kind))
    assert time.monotonic() - started < FAST
    assert WRONG not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_run_with_a_wrong_password_fails_fast_with_the_message(sql_server, tmp_path, monkeypatch):
    kind, url = sql_server
    started = time.monotonic()
    result, message = run_replication(tmp_path, kind, with_password(url, WRONG), monkeypatch, timeout=20)
    assert not result.success
    assert time.monotonic() - started < FAST + SLACK
    assert f"source 'shop' ({kind} server" in message and "the server refused the login" in message, message
    assert WRONG not in message


def test_the_right_password_passes_the_preflight(sql_server, monkeypatch):
    kind, url = sql_server
    monkeypatch.setenv(ENV, url)
    assert SourceConnections(embedded_dir="unused").checked_url(source(kind)) == url


def test_a_closed_port_fails_within_the_connect_timeout(sql_server, monkeypatch):
    kind, url = sql_server
    monkeypatch.setenv(ENV, with_port(with_password(url, WRONG), free_port()))
    timeout = 2.0
    started = time.monotonic()
    with pytest.raises(
        SourceUnreachableError,
        match=rf"^source 'shop' \({kind} server 127\.0\.0\.1:\d+, URL from {ENV}\): could not connect within "
        rf"2 s \(\d+ attempts over [\d.]+ s; last error: .*[Rr]efused.*\)\. Check that the server is up and "
        rf"that {ENV} names the right host and port; the time limit is the `sources` resource's "
        r"`connect_timeout_seconds`\. Nothing was read\.$",
    ) as caught:
        SourceConnections(embedded_dir="unused", connect_timeout_seconds=timeout).checked_url(source(kind))
    assert time.monotonic() - started < timeout + SLACK
    assert WRONG not in str(caught.value)
    assert caught.value.attempts > 1, (
        "a refused connection is transient: it must be retried until the deadline"
    )
    assert caught.value.connection_env == ENV and caught.value.source_name == "shop"


def test_a_server_that_never_answers_is_cut_off_at_the_timeout(sql_server, hanging_server, monkeypatch):
    kind, url = sql_server
    port, accepted = hanging_server
    monkeypatch.setenv(ENV, with_port(with_password(url, WRONG), port))
    timeout = 3.0
    started = time.monotonic()
    with pytest.raises(
        SourceUnreachableError, match=r"could not connect within 3 s \(\d+ attempts"
    ) as caught:
        SourceConnections(embedded_dir="unused", connect_timeout_seconds=timeout).checked_url(source(kind))
    assert time.monotonic() - started < timeout + SLACK
    assert accepted, "the client never reached the hanging server: the test tested nothing"
    assert WRONG not in str(caught.value)


def test_a_run_against_a_closed_port_fails_within_the_configured_timeout(sql_server, tmp_path, monkeypatch):
    kind, url = sql_server
    started = time.monotonic()
    result, message = run_replication(tmp_path, kind, with_port(url, free_port()), monkeypatch, timeout=2)
    assert not result.success
    assert time.monotonic() - started < 2 + SLACK + 4  # definitions and the run itself
    assert "could not connect within 2 s" in message and ENV in message, message


def test_an_unknown_database_is_refused_at_once_without_retries(sql_server, monkeypatch):
    kind, url = sql_server
    monkeypatch.setenv(ENV, urlsplit(url)._replace(path="/no_such_db_9").geturl())
    started = time.monotonic()
    with pytest.raises(
        SourceRefusedError,
        match=rf"^source 'shop' .*: the server refused the connection: .*no_such_db_9.*\. Fix {ENV} or the "
        r"server's settings; nothing was read\.$",
    ):
        SourceConnections(embedded_dir="unused", connect_timeout_seconds=20).checked_url(source(kind))
    assert time.monotonic() - started < FAST


@pytest.mark.parametrize("spec_type", ["sqlite", "mongodb", "mysql", "postgres"])
def test_a_url_of_another_type_is_refused_before_anything_connects(
    spec_type, hanging_server, tmp_path, monkeypatch
):
    """The URL points at a listener that counts connections: a refused scheme must leave it at zero."""
    port, accepted = hanging_server
    scheme = "mysql" if spec_type == "postgres" else "postgresql"
    result, message = run_replication(
        tmp_path, spec_type, f"{scheme}://derive:{WRONG}@127.0.0.1:{port}/db", monkeypatch, timeout=30
    )
    assert not result.success
    assert message.startswith(f"source 'shop': {ENV} holds a {scheme}:// URL, but source 'shop' has "), (
        message
    )
    assert f"`type: {spec_type}`" in message and WRONG not in message
    assert accepted == []


# ------------------------------------------------------------------------------------------------- MongoDB


def test_mongodb_refused_credentials_fail_at_once(mongodb_server_url, monkeypatch):
    """FerretDB (no authentication configured) refuses every login: the same path as a wrong password."""
    parts = urlsplit(mongodb_server_url)
    monkeypatch.setenv(ENV, parts._replace(netloc=f"someone:{WRONG}@{parts.netloc}").geturl())
    started = time.monotonic()
    with pytest.raises(
        SourceLoginError,
        match=rf"^source 'shop' \(mongodb server 127\.0\.0\.1:\d+, URL from {ENV}\): the server refused the "
        rf"login: .*authentication.*\. Fix the user name or password in {ENV}",
    ) as caught:
        SourceConnections(embedded_dir="unused", connect_timeout_seconds=20).checked_url(source("mongodb"))
    assert time.monotonic() - started < FAST
    assert WRONG not in str(caught.value)


def test_mongodb_closed_port_and_silent_server_fail_within_the_timeout(hanging_server, monkeypatch):
    port, accepted = hanging_server
    for target in (free_port(), port):
        monkeypatch.setenv(ENV, f"mongodb://someone:{WRONG}@127.0.0.1:{target}/")
        started = time.monotonic()
        with pytest.raises(
            SourceUnreachableError,
            match=rf"^source 'shop' \(mongodb server 127\.0\.0\.1:{target}, URL from {ENV}\): could not connect "
            r"within 2 s .*`connect_timeout_seconds`",
        ) as caught:
            SourceConnections(embedded_dir="unused", connect_timeout_seconds=2).checked_url(source("mongodb"))
        assert time.monotonic() - started < 2 + SLACK
        assert WRONG not in str(caught.value)
        assert "Topology Description" not in str(caught.value)  # pymongo's wall of text stays out
    assert accepted


def test_mongodb_read_errors_are_source_errors_not_pymongo_tracebacks(monkeypatch):
    """A server lost after the preflight: the read itself (`open_mongo` inside the extractor) says what failed."""
    url = f"mongodb://someone:{WRONG}@127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=1000"
    plan = ExtractPlan(source("mongodb"), source("mongodb").tables[0], None)
    started = time.monotonic()
    with pytest.raises(
        SourceConnectionError,
        match=r"^MongoDB server mongodb://someone:\*\*\*@127\.0\.0\.1:\d+/\?serverSelectionTimeoutMS=1000 could "
        r"not be reached within 1 s or dropped the connection: 127\.0\.0\.1:\d+: \[Errno 111\] Connection refused",
    ) as caught:
        list(read_batches(url, plan))
    assert time.monotonic() - started < 1 + SLACK
    assert WRONG not in str(caught.value)


def test_mongodb_with_the_url_timeouts_reads_through_the_resource(mongodb_server_url, monkeypatch):
    monkeypatch.setenv(ENV, mongodb_server_url)
    url = SourceConnections(embedded_dir="unused", connect_timeout_seconds=4).checked_url(source("mongodb"))
    assert url == f"{mongodb_server_url}?serverSelectionTimeoutMS=4000&connectTimeoutMS=4000"
