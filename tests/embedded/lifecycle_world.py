"""A small built project for the plan/rebuild/prune tests: DuckDB warehouse, SQLite sources, a persistent Dagster
instance, built once per test module and copied for each test (so each test may change specs and tables).

`analytics.daily_payments_by_region` starts its window three days ago, so it has three complete windows: the
last two are materialized (the first one never is), and a rebuild covers all three in one run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
from dagster import AssetKey, DagsterInstance

from derive_assets.demo.generate import embedded_urls, generate
from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import PROJECT_ROOT, DeriveSettings

BIN = Path(sys.executable).parent
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DAILY = "analytics.daily_payments_by_region"
DAILY_SPEC = Path("analytics") / "daily_payments_by_region.yaml"


def days_ago(n: int) -> str:
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=n)).isoformat()


@dataclass(frozen=True)
class World:
    root: Path
    bigquery: tuple[str, str] | None = None
    """(endpoint, project) of a BigQuery emulator to use as the warehouse; None: DuckDB under the home."""

    @property
    def specs(self) -> Path:
        return self.root / "table_specs"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def settings(self) -> DeriveSettings:
        if self.bigquery is None:
            return DeriveSettings(specs_dir=self.specs, home=self.home)
        endpoint, project = self.bigquery
        return DeriveSettings(
            specs_dir=self.specs,
            home=self.home,
            warehouse="bigquery",
            bigquery_project=project,
            bigquery_endpoint=endpoint,
        )

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in ("DERIVE_ACCOUNTS_URL", "DERIVE_ORDERS_URL", "DERIVE_PAYMENTS_URL", "DERIVE_DUCKDB_PATH")
        }
        env |= {
            "DERIVE_HOME": str(self.home),
            "DAGSTER_HOME": str(self.dagster_home),
            "DERIVE_SPECS_DIR": str(self.specs),
            "DERIVE_WAREHOUSE": "duckdb",
        }
        if self.bigquery is not None:
            endpoint, project = self.bigquery
            env |= {
                "DERIVE_WAREHOUSE": "bigquery",
                "DERIVE_BIGQUERY_PROJECT": project,
                "DERIVE_BIGQUERY_ENDPOINT": endpoint,
            }
        return env

    def derive(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """`derive ARGS` in this process (the CLI's `main`, with the world's environment and `stdin`): the
        same code path as the command, without a new interpreter's import time. Exit code, stdout, stderr."""
        from derive_assets.cli import main

        out, err = io.StringIO(), io.StringIO()
        saved_env, saved_stdin = dict(os.environ), sys.stdin
        os.environ.clear()
        os.environ.update(self.env())
        sys.stdin = io.StringIO(stdin)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(args))
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            sys.stdin = saved_stdin
        return subprocess.CompletedProcess(["derive", *args], code, out.getvalue(), err.getvalue())

    def derive_process(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """`.venv/bin/derive ARGS` as a subprocess."""
        return subprocess.run(
            [str(BIN / "derive"), *args],
            cwd=PROJECT_ROOT,
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def instance(self) -> DagsterInstance:
        return DagsterInstance.from_config(str(self.dagster_home))

    def run(self, job: str) -> bool:
        """Run one job (a `replicate_<source>` job) in process on the world's instance; whether it succeeded."""
        with self.instance() as instance:
            defs = build_definitions(self.settings)
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, run_config=QUIET, raise_on_error=False
            )
        return result.success

    def materialize(self, ref: str, partition_range: tuple[str, str] | None = None) -> bool:
        """Materialize the table `ref` (`dataset.name`) in one run in process on the world's instance, over
        `partition_range` (first, last) if given; whether it succeeded."""
        with self.instance() as instance:
            defs = build_definitions(self.settings)
            result = materialize_keys(
                defs,
                [AssetKey(ref.split("."))],
                instance=instance,
                partition_range=partition_range,
                run_config=QUIET,
            )
        return result.success

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql).fetchall()

    def execute(self, sql: str) -> None:
        with duckdb.connect(str(self.warehouse)) as con:
            con.execute(sql)

    def columns(self, ref: str) -> list[str]:
        schema, name = ref.split(".")
        return [
            r[0]
            for r in self.query(
                "SELECT column_name FROM information_schema.columns "
                f"WHERE table_schema = '{schema}' AND table_name = '{name}' ORDER BY ordinal_position"
            )
        ]

    def edit(self, relative: Path | str, old: str, new: str) -> None:
        path = self.specs / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new))

    def add_avg_amount(self) -> None:
        """Add a nullable column `avg_amount NUMERIC` to the daily table's spec."""
        self.edit(
            DAILY_SPEC,
            "    description: Sum of succeeded payment amounts.\n",
            "    description: Sum of succeeded payment amounts.\n  - name: avg_amount\n    type: NUMERIC\n",
        )
        self.edit(
            DAILY_SPEC,
            "    SUM(p.amount) AS revenue\n",
            "    SUM(p.amount) AS revenue,\n    AVG(p.amount) AS avg_amount\n",
        )

    def rename_payers(self) -> None:
        """Rename the daily table's column `payers` to `distinct_payers` (and in the export that reads it)."""
        self.edit(DAILY_SPEC, "  - name: payers\n", "  - name: distinct_payers\n")
        self.edit(DAILY_SPEC, "AS payers,", "AS distinct_payers,")
        self.edit(Path("exports") / "region_payments_online.yaml", "payers", "distinct_payers")


def build_world(world: World) -> World:
    """Sources, the replicated tables, core.user_detail, analytics.top_spenders and the daily table's last two
    windows, on a persistent instance."""
    shutil.copytree(PROJECT_ROOT / "table_specs", world.specs)
    spec = world.specs / DAILY_SPEC
    spec.write_text(re.sub(r"start: \d{4}-\d{2}-\d{2}", f"start: {days_ago(3)}", spec.read_text()))
    world.dagster_home.mkdir(parents=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", world.dagster_home / "dagster.yaml")
    generate(embedded_urls(world.settings.embedded_sources_dir), users=300)
    for job in ("replicate_accounts", "replicate_profiles", "replicate_payments"):
        assert world.run(job), job
    assert world.materialize("core.user_detail")
    assert world.materialize("analytics.top_spenders")
    assert world.materialize(DAILY, (days_ago(2), days_ago(1)))
    return world


def copy_world(base: World, root: Path) -> World:
    shutil.copytree(base.root, root)
    return World(root)
