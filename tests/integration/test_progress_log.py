"""A real replication run (PostgreSQL -> DuckDB, in process) writes progress lines to its Dagster run log: with the
source's estimate as the total on a full read, without a total on an incremental one, and a final line."""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

import psycopg
import yaml
from dagster import AssetKey, DagsterInstance

from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.progress import Progress
from derive_assets.replication import run
from derive_assets.settings import DeriveSettings

ENV = "DERIVE_IT_PROGRESS_SHOP_URL"
KEY = AssetKey(["shop", "events"])
ROWS = 3000
PROGRESS = re.compile(r"^shop\.events: [\d,]+ (of |rows?[ ,])")
"""A progress line (the asset's other lines, such as `shop.events: reading all rows`, are not)."""
FINAL = re.compile(r"^shop\.events: ([\d,]+) rows? in \d+\.\d s( \([\d,]+ rows/s\))?$")


def spec() -> dict[str, Any]:
    return {
        "kind": "source",
        "name": "shop",
        "type": "postgres",
        "connection_env": ENV,
        "owner": "team:shop",
        "tables": [
            {
                "name": "events",
                "primary_key": ["id"],
                "cursor": "updated_at",
                "wait_for_open_transactions": False,  # the second run reads from the first one's watermark
                "columns": [{"name": "id", "type": "INT64"}, {"name": "updated_at", "type": "TIMESTAMP"}],
            }
        ],
    }


def definitions(tmp_path: Path) -> Any:
    settings = DeriveSettings(specs_dir=tmp_path / "specs", home=tmp_path / "home")
    (settings.specs_dir / "sources").mkdir(parents=True)
    (settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(spec()))
    return build_definitions(settings)


def run_log(defs: Any, instance: DagsterInstance) -> list[str]:
    """The messages of one run of the table's asset, as the run log in the UI shows them."""
    result = materialize_keys(defs, [KEY], instance=instance)
    assert result.success
    return [e.user_message for e in instance.all_logs(result.run_id) if PROGRESS.match(e.user_message or "")]


def test_a_replication_run_log_reads_like_a_progress_bar(tmp_path: Path, monkeypatch, postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz NOT NULL)")
        con.execute(
            f"INSERT INTO events SELECT g, '2026-12-01'::timestamptz FROM generate_series(1, {ROWS}) AS g"
        )
        con.execute("ANALYZE events")
    monkeypatch.setenv(ENV, postgres_url)
    # Every batch logs a line (the default waits 5 s, longer than this small read takes).
    monkeypatch.setattr(run, "Progress", functools.partial(Progress, every_seconds=0))
    defs = definitions(tmp_path)
    instance = DagsterInstance.ephemeral()

    first = run_log(defs, instance)
    progress = first
    assert re.fullmatch(r"shop\.events: 3,000 of ~3,000 rows \(100 %\), [\d,]+ rows/s", progress[0])
    final = FINAL.match(progress[-1])
    assert final and final.group(1) == "3,000", progress

    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("UPDATE events SET updated_at = '2026-12-02' WHERE id <= 10")
    second = run_log(defs, instance)
    # The rows changed since the watermark: no statistic counts them, so no total (and no share, no time left).
    assert re.fullmatch(r"shop\.events: [\d,]+ rows, [\d,]+ rows/s", second[0]), second
    assert "~" not in second[0]
    final = FINAL.match(second[-1])
    assert final and int(final.group(1).replace(",", "")) >= 10, second


def test_with_the_default_interval_a_short_read_logs_only_its_final_line_at_info(
    tmp_path, monkeypatch, postgres_url
):
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz NOT NULL)")
        con.execute("INSERT INTO events VALUES (1, '2026-12-01')")
    monkeypatch.setenv(ENV, postgres_url)
    instance = DagsterInstance.ephemeral()
    result = materialize_keys(definitions(tmp_path), [KEY], instance=instance)
    assert result.success
    lines = [e for e in instance.all_logs(result.run_id) if e.user_message and PROGRESS.match(e.user_message)]
    assert [e.user_message for e in lines if not FINAL.match(e.user_message)] == []
    assert len(lines) == 1 and lines[0].level == logging.INFO
    assert FINAL.match(lines[0].user_message).group(1) == "1"  # type: ignore[union-attr]
