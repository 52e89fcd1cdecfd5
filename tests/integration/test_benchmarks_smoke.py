"""The benchmark harness (benchmarks/) at a tiny scale against the real servers, so that it cannot rot.

It checks that a run produces its JSON and Markdown with every ratio of the chosen scenarios; it checks no timing
target (2,000 rows on a shared CI machine say nothing about speed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from derive_assets.settings import PROJECT_ROOT

SCENARIOS = "pg_full,incremental,mysql_full,merge"
RATIOS = {"pg_full", "mysql_full", "memory", "incremental", "noop", "merge"}


@pytest.mark.slow
def test_benchmark_harness_writes_results_with_ratios(
    tmp_path: Path, postgres_server_url: str, mysql_server_url: str
) -> None:
    env = {
        **os.environ,
        "DERIVE_TEST_POSTGRES_URL": postgres_server_url,
        "DERIVE_TEST_MYSQL_URL": mysql_server_url,
    }
    argv = [sys.executable, "-m", "benchmarks.run", "--rows", "2000", "--repeats", "1"]
    argv += ["--only", SCENARIOS, "--out", str(tmp_path)]
    done = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    [result_file] = tmp_path.glob("*.json")
    result = json.loads(result_file.read_text())
    assert result["rows"] == 2000
    assert result["scenarios_run"] == SCENARIOS.split(",")
    ratios = {r["id"]: r for r in result["ratios"]}
    assert set(ratios) == RATIOS
    for r in ratios.values():
        assert isinstance(r["value"], int | float) and r["value"] > 0, r
        assert isinstance(r["met"], bool), r
    full = result["scenarios"]["pg_full"]["methods"]
    assert set(full) == {"derive", "connectorx", "psycopg_copy"}
    assert all(m["rows"] == 2000 and m["peak_rss_mb"] > 0 for m in full.values())
    assert result["scenarios"]["incremental"]["methods"]["derive_incremental"]["rows"] > 0

    markdown = result_file.with_suffix(".md").read_text()
    assert "| MISSED |" in markdown
    for r in ratios.values():
        assert f"| {r['scenario']} |" in markdown
    if importlib.util.find_spec("matplotlib") is not None:  # benchmarks/requirements.txt
        assert result_file.with_suffix(".png").stat().st_size > 0
