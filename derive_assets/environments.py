"""Environments: a named copy of some tables, built into shadow datasets next to production.

An environment `alice` writes table `analytics.order_facts` into `alice__analytics.order_facts` (the dataset
prefixed with the environment's name and `__`), under the asset key `alice__analytics/order_facts`, so its
watermarks, code versions and partitions live apart from production's in the same event log. It never writes a
production dataset, and it reads every upstream table whose spec is unchanged from production.

Spec datasets may not contain `__` (`specs/models.py`), so a dataset name says by itself whether it is an
environment's: `env_of_dataset("alice__analytics")` is `("alice", "analytics")`, `env_of_dataset("analytics")` is
None.
"""

from __future__ import annotations

import getpass
import re
import subprocess
from pathlib import Path

SEPARATOR = "__"
"""Between an environment's name and a production dataset: `alice__analytics`."""
NAME_PATTERN = r"^[a-z](?:[a-z0-9_]{0,38}[a-z0-9])?$"
"""An environment name: lower case letters, digits and `_`, starting with a letter and not ending with `_` (so
`alice___x` can only be `alice`'s copy of dataset `_x`), at most 40 characters, and no `__` (BigQuery dataset names are case-sensitive, DuckDB schema names are not: lower case means the same on
both)."""
PRODUCTION_BRANCHES = ("main", "master", "trunk", "production", "prod")
"""Branches whose name is never a default environment: work on them builds `dev_<user>`."""


class EnvironmentNameError(ValueError):
    """An environment name that cannot name shadow datasets; the message says what is allowed."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(
            f"environment name {name!r} {reason}; allowed: lower case letters, digits and '_', starting with a "
            f"letter, not ending with '_', at most 40 characters, no '{SEPARATOR}' (e.g. dev_alice, pr_1234)"
        )


def validate_name(name: str) -> str:
    """`name` when it can name an environment, else `EnvironmentNameError`."""
    if SEPARATOR in name:
        raise EnvironmentNameError(name, f"contains '{SEPARATOR}', which separates it from the dataset")
    if not re.match(NAME_PATTERN, name):
        raise EnvironmentNameError(name, "is not a valid environment name")
    return name


def shadow_dataset(env: str, dataset: str) -> str:
    """`alice__analytics`: the environment's copy of production dataset `dataset`."""
    return f"{validate_name(env)}{SEPARATOR}{dataset}"


def shadow_ref(env: str, ref: str) -> str:
    """`alice__analytics.order_facts` for `analytics.order_facts`."""
    dataset, name = ref.split(".", 1)
    return f"{shadow_dataset(env, dataset)}.{name}"


def env_of_dataset(dataset: str) -> tuple[str, str] | None:
    """`(env, production dataset)` of a shadow dataset, None for a production one."""
    env, sep, rest = dataset.partition(SEPARATOR)
    if not sep or not rest or not re.match(NAME_PATTERN, env):
        return None
    return env, rest


def sanitize(text: str) -> str:
    """`text` (a branch or user name) made into a valid environment name: lower case, every other character `_`,
    runs of `_` folded, cut to 40 characters, `e_` in front when it does not start with a letter."""
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    name = re.sub(r"_+", "_", name)
    if not name or not name[0].isalpha():
        name = f"e_{name}"
    return name[:40].rstrip("_")


def default_name(cwd: Path | None = None) -> str:
    """The environment a bare `--env` means: the git branch (sanitized) when it is not a production branch,
    else `dev_<user>`. `DERIVE_ENV` set in the environment wins over both."""
    from derive_assets.settings import env_from_env

    if (given := env_from_env()) is not None:
        return validate_name(given)
    branch = _branch(cwd)
    if branch and branch not in PRODUCTION_BRANCHES:
        return sanitize(branch)
    return sanitize(f"dev_{getpass.getuser()}")


def _branch(cwd: Path | None) -> str | None:
    """The checked-out git branch, None outside a repository or on a detached head."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    branch = out.stdout.strip()
    return branch if out.returncode == 0 and branch and branch != "HEAD" else None
