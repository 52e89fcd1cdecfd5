"""`deployments/ci/check-pr.sh` on a throwaway git clone of the shipped specs, DuckDB embedded: a broken spec fails
the check naming its file, a change that keeps every code version builds nothing, a changed table is built into
the PR environment and diffed against production (which stays as it was), and a failed blocking check fails it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from derive_assets.pr_check import changes, pr_env_name
from derive_assets.settings import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "deployments" / "ci" / "check-pr.sh"
BIN = Path(sys.executable).parent
TOP_SPENDERS = Path("table_specs/analytics/top_spenders.yaml")
CLEARED = ("DERIVE_ENV", "DERIVE_DUCKDB_PATH", "DERIVE_SPECS_DIR", "DERIVE_PR_ENV", "DERIVE_PR_NUMBER")


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A clone-like repository: the shipped specs committed on `main`, a branch `feature` checked out."""
    root = tmp_path / "repo"
    shutil.copytree(PROJECT_ROOT / "table_specs", root / "table_specs")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "table_specs")
    git(root, "commit", "-qm", "the specs")
    git(root, "checkout", "-qb", "feature")
    return root


def edit(repo: Path, path: Path, old: str, new: str, commit: bool = True) -> None:
    text = (repo / path).read_text()
    assert old in text, (path, old)
    (repo / path).write_text(text.replace(old, new))
    if commit:
        git(repo, "commit", "-qam", f"edit {path.name}")


@dataclass(frozen=True)
class Production:
    home: Path
    dagster_home: Path

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    def rows(self, ref: str) -> int:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            row = con.execute(f"SELECT count(*) FROM {ref}").fetchone()
        assert row is not None
        return int(row[0])

    def datasets(self) -> set[str]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return {r[0] for r in con.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith(("GITHUB_", "CI_"))}
    return {**env, "DERIVE_PR_BASE": "main", "DERIVE_BIN": str(BIN / "derive"), **extra}


def check_pr(repo: Path, home: Path, dagster_home: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(DERIVE_HOME=str(home), DAGSTER_HOME=str(dagster_home), **extra)
    return subprocess.run(
        ["bash", str(SCRIPT)], cwd=repo, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Production:
    """Production built by `derive demo` from the shipped specs (what each test repository's `main` holds)."""
    root = tmp_path_factory.mktemp("production")
    prod = Production(root / "home", root / "dagster_home")
    env = clean_env(DERIVE_HOME=str(prod.home), DAGSTER_HOME=str(prod.dagster_home))
    env["DERIVE_SPECS_DIR"] = str(PROJECT_ROOT / "table_specs")
    demo = subprocess.run(
        [str(BIN / "derive"), "demo", "--users", "200", "--days", "1"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    return prod


def test_a_broken_spec_fails_the_check_and_names_the_file(repo, tmp_path):
    edit(repo, TOP_SPENDERS, "    type: NUMERIC", "    type: NUMERICAL")
    result = check_pr(repo, tmp_path / "home", tmp_path / "dagster_home")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "top_spenders.yaml" in result.stderr and "NUMERICAL" in result.stderr
    assert "FAILED: the specs have errors" in result.stderr
    assert "derive build" not in result.stdout


def test_a_change_that_keeps_every_code_version_builds_nothing(repo, tmp_path):
    edit(repo, TOP_SPENDERS, "description: The 100 users", "description: The hundred users", commit=False)
    edit(repo, TOP_SPENDERS, "  QUALIFY rank <= 100", "  -- the top 100 only\n  qualify   rank <= 100")
    summary = tmp_path / "summary.md"
    result = check_pr(repo, tmp_path / "home", tmp_path / "dagster_home", DERIVE_PR_SUMMARY=str(summary))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "same version: analytics/top_spenders (analytics/top_spenders.yaml)" in result.stderr
    assert "nothing to build" in result.stdout
    assert summary.read_text() == "### Derive: specs valid, no table to build\n"


def test_an_unfetched_base_fails_with_the_fix(repo, tmp_path):
    edit(repo, TOP_SPENDERS, "rank <= 100", "rank <= 50")
    result = check_pr(repo, tmp_path / "home", tmp_path / "dagster_home", DERIVE_PR_BASE="origin/main")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "git merge-base origin/main HEAD failed" in result.stderr
    assert "set DERIVE_PR_BASE to a revision this clone has" in result.stderr


@pytest.mark.slow
def test_a_changed_table_is_built_into_the_pr_environment_and_diffed(repo, tmp_path, production):
    edit(repo, TOP_SPENDERS, "rank <= 100", "rank <= 50")
    summary = tmp_path / "summary.md"
    result = check_pr(
        repo, production.home, production.dagster_home, DERIVE_PR_NUMBER="7", DERIVE_PR_SUMMARY=str(summary)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed:      analytics/top_spenders" in result.stderr
    assert "== derive build --env pr_7 (1 changed asset(s), last 3 window(s))" in result.stdout
    assert "== derive diff analytics.top_spenders --env pr_7" in result.stdout
    assert "rows: production 100, pr_7 50 (-50)" in result.stdout
    assert production.rows("pr_7__analytics.top_spenders") == 50
    assert production.rows("analytics.top_spenders") == 100  # production as it was
    text = summary.read_text()
    assert (
        "### Derive: environment `pr_7`" in text
        and "- `analytics.top_spenders`: differs from production" in text
    )


@pytest.mark.slow
def test_a_failed_blocking_check_fails_the_check_and_drop_cleans_up(repo, tmp_path, production):
    edit(
        repo,
        TOP_SPENDERS,
        "ROW_NUMBER() OVER (ORDER BY s.total_spent DESC, s.user_id) AS rank",
        "MOD(ROW_NUMBER() OVER (ORDER BY s.total_spent DESC, s.user_id), 2) AS rank",  # not unique any more
    )
    result = check_pr(
        repo, production.home, production.dagster_home, DERIVE_PR_ENV="pr_checks", DERIVE_PR_DROP="1"
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "blocking check" in result.stdout + result.stderr
    assert "FAILED: the build into pr_checks failed or a blocking check failed" in result.stderr
    assert "== derive diff" not in result.stdout
    assert "== derive env drop pr_checks" in result.stdout
    assert not {d for d in production.datasets() if d.startswith("pr_checks__")}
    assert production.rows("analytics.top_spenders") == 100


def test_changes_compares_code_versions_with_the_merge_base(repo):
    shutil.copy(repo / TOP_SPENDERS, repo / "table_specs/analytics/top_fifty.yaml")
    edit(
        repo,
        Path("table_specs/analytics/top_fifty.yaml"),
        "name: top_spenders",
        "name: top_fifty",
        commit=False,
    )
    git(repo, "add", "table_specs/analytics/top_fifty.yaml")
    (repo / "table_specs/exports/region_payments_online.yaml").unlink()
    edit(
        repo, Path("table_specs/core/user_detail.yaml"), "strategy: replace", "strategy: replace  # each run"
    )
    git(repo, "checkout", "-q", "main")  # the base moves on after the branch: not the PR's change
    edit(
        repo,
        Path("table_specs/analytics/order_facts.yaml"),
        "    o.status,",
        "    UPPER(o.status) AS status,",
    )
    git(repo, "checkout", "-q", "feature")
    edit(repo, TOP_SPENDERS, "rank <= 100", "rank <= 10", commit=False)  # uncommitted edits count

    found = changes(repo / "table_specs", "main")

    assert [v.key for v in found.new] == ["analytics/top_fifty"]
    assert [v.key for v in found.changed] == ["analytics/top_spenders"]
    assert [v.key for v in found.same_version] == ["core/user_detail"]
    assert found.removed == ["export:region_payments_online"]
    assert [v.key for v in found.to_build()] == ["analytics/top_fifty", "analytics/top_spenders"]
    assert "table_specs/analytics/order_facts.yaml" not in found.changed_files


def test_a_changed_source_table_is_built_and_a_changed_export_only_listed(repo):
    payments = Path("table_specs/sources/payments.yaml")
    edit(
        repo,
        payments,
        "    primary_key: [payment_id]\n",
        "    primary_key: [payment_id]\n    on_invalid: quarantine\n",
    )
    edit(repo, payments, "description: How the user paid.", "description: The payment method.")
    export = Path("table_specs/exports/user_profile_online.yaml")
    edit(
        repo,
        export,
        "columns: [user_id, display_name, region, country,",
        "columns: [user_id, region, country,",
    )

    found = changes(repo / "table_specs", "main")

    assert [v.key for v in found.changed] == ["export:user_profile_online", "payments/payments"]
    assert [v.key for v in found.to_build()] == ["payments/payments"]
    assert "not built:    export:user_profile_online: environments do not build exports" in found.report()


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"DERIVE_PR_ENV": "review_me"}, "review_me"),
        ({"DERIVE_PR_NUMBER": "42", "GITHUB_HEAD_REF": "x"}, "pr_42"),
        ({"CI_MERGE_REQUEST_IID": "9"}, "pr_9"),
        ({"GITHUB_REF": "refs/pull/1234/merge"}, "pr_1234"),
        ({"GITHUB_REF": "refs/heads/x", "GITHUB_HEAD_REF": "Feature/New-Table"}, "pr_feature_new_table"),
        ({"CI_COMMIT_REF_NAME": "fix--it"}, "pr_fix_it"),
    ],
)
def test_pr_env_name(environ, name):
    assert pr_env_name(environ) == name
