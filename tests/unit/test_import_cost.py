"""What a step process imports: Dagster starts a fresh process per step (one pod per step on k8s), and each one
imports `derive_assets.definitions` before it runs anything, so a library imported there is paid by every step.

Facts, not timings: each case loads the definitions in a fresh interpreter (default embedded settings, the shipped
specs, its own `DERIVE_HOME`) and reads `sys.modules`. A library the settings choose (the BigQuery warehouse, the
Cassandra store, the k8s executor) is imported with the definitions; the others only by the code that uses them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BACKENDS = ("google.cloud.bigquery", "dagster_gcp", "cassandra", "pymongo", "montydb", "dagster_k8s")
"""Drivers of backends and executors the default settings do not choose."""
RUN_TIME = ("pandas", "numpy", "pyarrow", "sqlglot", "bson", "connectorx", "psycopg", "pymysql", "sqlalchemy")
"""What only a run needs: DataFrames (a Python table's step), Arrow batches and SQL rendering (the warehouse's
writes and reads), the source drivers (replication)."""

CHOSEN = {
    "DERIVE_WAREHOUSE": "bigquery",
    "DERIVE_BIGQUERY_PROJECT": "import-cost-test",
    "DERIVE_BIGQUERY_ENDPOINT": "http://127.0.0.1:9",  # never contacted: loading definitions connects to nothing
    "DERIVE_ONLINE_STORE": "cassandra",
    "DERIVE_CASSANDRA_HOSTS": "127.0.0.1",
    "DERIVE_EXECUTOR": "k8s",
}

_PROBE = (
    "import json, sys\n"
    "import derive_assets.definitions\n"
    "print(json.dumps(sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)))\n"
)


def imported_with_definitions(home: Path, watched: tuple[str, ...], **settings: str) -> list[str]:
    """Which of `watched` are in `sys.modules` after a fresh interpreter imported `derive_assets.definitions`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DERIVE_", "DAGSTER_"))}
    env.update(DERIVE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), **settings)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(watched)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"loading the definitions failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def warmed_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A `DERIVE_HOME` whose spec cache the first load filled, and what that first (cold) load imported."""
    home = tmp_path_factory.mktemp("derive_home")
    return home, imported_with_definitions(home, BACKENDS + RUN_TIME)


def test_a_first_load_imports_no_driver_of_an_unchosen_backend(warmed_home: tuple[Path, list[str]]) -> None:
    _, imported = warmed_home
    assert [m for m in imported if m in BACKENDS] == []


def test_a_step_process_imports_only_what_defining_the_assets_needs(
    warmed_home: tuple[Path, list[str]],
) -> None:
    # A step process starts after the code server loaded the definitions: the spec cache is warm, so no query
    # is parsed or bound, and nothing imports pandas, pyarrow or sqlglot until the step runs.
    home, _ = warmed_home
    assert imported_with_definitions(home, BACKENDS + RUN_TIME) == []


def test_chosen_backends_are_imported_with_the_definitions(tmp_path: Path) -> None:
    # The other side of the two tests above: the watched names are the modules the backends really import.
    imported = imported_with_definitions(tmp_path, BACKENDS, **CHOSEN)
    assert {"google.cloud.bigquery", "dagster_gcp", "cassandra", "dagster_k8s"} <= set(imported)
