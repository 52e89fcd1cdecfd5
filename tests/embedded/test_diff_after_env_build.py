"""The review loop on DuckDB: production built, a spec changed, `derive build --env alice` builds the changed table
into `alice__analytics`, and `derive diff` reports exactly the rows the change changed, over the windows the
environment built (a changed row outside them is not reported); production stays as it was."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest

from derive_assets.cli import main
from derive_assets.settings import PROJECT_ROOT


def days_ago(n: int) -> str:
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=n)).isoformat()


ORDERS = f"""\
name: orders
dataset: core
layer: core
owner: team:shop
strategy: replace
columns:
  - {{name: order_id, type: INT64}}
  - {{name: day, type: DATE}}
  - {{name: amount, type: NUMERIC}}
  - {{name: status, type: STRING}}
sql: |
  SELECT 1 AS order_id, DATE '{days_ago(5)}' AS day, CAST(10 AS NUMERIC) AS amount, 'refunded' AS status
  UNION ALL SELECT 2, DATE '{days_ago(3)}', CAST(20 AS NUMERIC), 'paid'
  UNION ALL SELECT 3, DATE '{days_ago(2)}', CAST(30 AS NUMERIC), 'refunded'
  UNION ALL SELECT 4, DATE '{days_ago(1)}', CAST(40 AS NUMERIC), 'paid'
"""

FACTS = f"""\
name: order_facts
dataset: analytics
owner: team:shop
strategy: {{type: merge, unique_key: [order_id]}}
window: {{size: 1d, start: "{days_ago(5)}"}}
partition: {{key: day}}
columns:
  - {{name: order_id, type: INT64}}
  - {{name: day, type: DATE}}
  - {{name: amount, type: NUMERIC}}
  - {{name: status, type: STRING}}
sql: |
  SELECT order_id, day, AMOUNT_EXPR AS amount, status
  FROM core.orders
  WHERE day >= DATE(@window_start) AND day < DATE(@window_end)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    specs = tmp_path / "specs"
    (specs / "core").mkdir(parents=True)
    (specs / "analytics").mkdir()
    (specs / "core" / "orders.yaml").write_text(ORDERS)
    (specs / "analytics" / "order_facts.yaml").write_text(FACTS.replace("AMOUNT_EXPR", "amount"))
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("DERIVE_SPECS_DIR", str(specs))
    monkeypatch.setenv("DERIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DERIVE_DUCKDB_PATH", str(tmp_path / "wh.duckdb"))
    monkeypatch.setenv("DERIVE_WAREHOUSE", "duckdb")
    monkeypatch.setenv("DERIVE_EXECUTOR", "in_process")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.delenv("DERIVE_ENV", raising=False)
    return tmp_path


def rows(project: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(project / "wh.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_diff_reports_exactly_the_rows_a_changed_spec_changes(project: Path, capsys) -> None:
    assert main(["rebuild", "core.orders", "--yes"]) == 0
    assert main(["rebuild", "analytics.order_facts", "--yes"]) == 0
    production = rows(project, "SELECT * FROM analytics.order_facts ORDER BY order_id")
    assert len(production) == 4
    capsys.readouterr()

    facts = project / "specs" / "analytics" / "order_facts.yaml"
    facts.write_text(
        FACTS.replace("AMOUNT_EXPR", "CASE WHEN status = 'refunded' THEN -amount ELSE amount END")
    )
    assert main(["build", "analytics/order_facts", "--env", "alice", "--last", "3"]) == 0
    capsys.readouterr()

    code = main(["diff", "analytics/order_facts", "--env", "alice"])

    out = capsys.readouterr().out
    assert code == 1, out
    assert f"  compared: day in [{days_ago(3)}, {days_ago(0)})" in out
    assert "rows: production 3, alice 3 (+0)" in out
    assert "keys only in production: 0" in out and "keys only in alice: 0" in out
    assert "changed rows: 1\n  amount: 1 row\n    3: 30 -> -30\n" in out  # order 1 (5 days ago) not built
    assert "schema:\n  same columns and types\n" in out
    assert rows(project, "SELECT * FROM analytics.order_facts ORDER BY order_id") == production

    unchanged = main(["diff", "core.orders", "--env", "alice"])  # not built: read from production
    assert unchanged == 2
    assert "alice__core.orders does not exist" in capsys.readouterr().err
