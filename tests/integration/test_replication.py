"""Replication from real PostgreSQL and MariaDB servers into DuckDB: first load, incremental merges, soft deletes,
failures, and the derived tables built on top. Every scenario runs against both servers; the scenarios
themselves live in `helpers`."""

from __future__ import annotations

from pathlib import Path

import helpers
import pytest
from helpers import Replication

SERVERS = {"postgres": "postgres_url", "mysql": "mysql_url"}


@pytest.fixture(params=sorted(SERVERS))
def rep(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Replication:
    url = request.getfixturevalue(SERVERS[request.param])
    return Replication(tmp_path, monkeypatch, url, request.param)


def test_full_first_load(rep: Replication) -> None:
    helpers.full_first_load(rep)


def test_incremental_merge_and_watermark(rep: Replication) -> None:
    helpers.incremental(rep)


def test_run_without_changes_reads_nothing(rep: Replication) -> None:
    helpers.no_change(rep)


def test_soft_deleted_rows_disappear(rep: Replication) -> None:
    helpers.soft_delete(rep)


@pytest.mark.parametrize("breakage", helpers.BREAKAGES)
def test_failing_run_changes_nothing(rep: Replication, breakage: str) -> None:
    helpers.failing_run(rep, breakage)


def test_derived_tables_match_source(rep: Replication) -> None:
    helpers.derived_graph(rep)


def test_idle_run_with_cursor_overlap_keeps_watermark(rep: Replication) -> None:
    """An idle run with `cursor_overlap` re-reads the overlap but must not move the watermark back by it."""
    helpers.overlap_keeps_watermark(rep)
