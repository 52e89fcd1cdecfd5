"""The real `dagster-webserver` over a specs directory with one broken spec: GraphQL still serves every valid asset,
the code location loads (no "Empty graph"), and the `derive_errors` placeholder carries the spec's error.

No external server is needed (embedded engines), so this lives with the embedded tests. The webserver runs as a
subprocess in its own process group, which the test kills in `finally`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from derive_assets.settings import PROJECT_ROOT

QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
  assetNodes { assetKey { path } groupName description kinds }
}
"""
VALID = {
    "accounts/auth",
    "orders/orders",
    "payments/payments",
    "profiles/profile",
    "core/user_detail",
    "analytics/order_facts",
    "analytics/top_spenders",
}
"""Every asset the shipped specs define but daily_payments_by_region and what reads or exports it."""
LEFT_OUT = {"analytics/daily_payments_by_region", "online/region_payments_online", "features/region_scores"}
STARTUP_BOUND_SECONDS = 120
"""A generous bound on the webserver's start on a busy 2-core machine (it usually answers in seconds)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_until_served(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_BOUND_SECONDS
    while time.monotonic() < deadline:
        assert server.poll() is None, f"dagster-webserver exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(
        f"dagster-webserver did not answer within {STARTUP_BOUND_SECONDS} s:\n{log.read_text()[-3000:]}"
    )


@pytest.mark.slow
def test_the_webserver_serves_every_valid_asset_and_the_error_while_a_spec_is_broken(
    specs_dir: Path, tmp_path: Path
) -> None:
    spec = specs_dir / "analytics" / "daily_payments_by_region.yaml"
    spec.write_text(spec.read_text().replace("strategy:", "strategy_typo:", 1))
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    env = {
        **os.environ,
        "DERIVE_SPECS_DIR": str(specs_dir),
        "DERIVE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(dagster_home),
    }
    env.pop("DERIVE_STRICT_SPECS", None)
    port = free_port()
    log = tmp_path / "webserver.log"
    command = [str(Path(sys.executable).parent / "dagster-webserver"), "-m", "derive_assets.definitions"]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until_served(port, server, log)
        data = graphql(port, QUERY)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the webserver and the code server it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)

    workspace = data["workspaceOrError"]
    assert workspace["__typename"] == "Workspace"
    [location] = workspace["locationEntries"]
    assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation", location

    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    served = set(nodes)
    assert VALID | {"online/user_profile_online"} <= served
    assert not LEFT_OUT & served
    placeholder = nodes["derive_errors/analytics__daily_payments_by_region"]
    assert placeholder["groupName"] == "derive_errors"
    assert placeholder["kinds"] == ["derive-error"]
    assert (
        "table_specs/analytics/daily_payments_by_region.yaml: strategy_typo: unknown field"
        in placeholder["description"]
    )
    assert (
        "export region_payments_online (table_specs/exports/region_payments_online.yaml)"
        in (placeholder["description"])
    )
    assert served == VALID | {
        "online/user_profile_online",
        "derive_errors/analytics__daily_payments_by_region",
    }
    assert "1 spec file is invalid; the code location loaded without it" in log.read_text()
