"""The `derive` commands that live in a module of their own: each module's `register(sub)` adds its parser to
`derive`'s subcommands and sets `run` (the function the command runs, returning the exit code).

The built-in commands (validate, plan, rebuild, ...) are in `derive_assets/cli.py`; a new command goes here, with
its heavy imports inside its `run`, so `derive --help` stays fast.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from derive_assets.settings import PROJECT_ROOT, DeriveSettings

COMMAND_MODULES: tuple[str, ...] = (
    "derive_assets.commands.build",
    "derive_assets.commands.diff",
    "derive_assets.commands.env",
    "derive_assets.commands.new",
)
"""The modules whose `register(sub)` `derive_assets.cli.main` calls, in the order `derive --help` lists them."""


class OperatorError(RuntimeError):
    """A mistake or an unreachable service behind an operator's command, already worded as one clear message."""


@contextmanager
def operator_errors() -> Iterator[None]:
    """The errors an operator's command may meet, each as one message (never a traceback): an unknown selection,
    table or export, a wrong key type, a warehouse or online store that cannot be reached or opened (the engines
    raise `WarehouseUnavailable` for that), a failed rebuild."""
    from derive_assets.environments import EnvironmentNameError
    from derive_assets.lifecycle import LifecycleError
    from derive_assets.online import BadKeyValue, UnknownExport
    from derive_assets.selection import SelectionError
    from resources.online_store import OnlineStoreError
    from resources.warehouse import WarehouseError

    try:
        yield
    except (
        SelectionError,
        LifecycleError,
        EnvironmentNameError,
        UnknownExport,
        BadKeyValue,
        WarehouseError,
        OnlineStoreError,
    ) as exc:
        raise OperatorError(str(exc)) from None


def use_dagster_home(settings: DeriveSettings) -> Path:
    """Point Dagster at the project's instance (`DAGSTER_HOME`, else under the Derive home); returns its path."""
    home = settings.dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)  # for the Dagster instance, which reads it
    return home


@contextmanager
def open_instance(settings: DeriveSettings) -> Iterator[Any]:
    """The project's Dagster instance, created on first use (telemetry off, run monitoring on)."""
    from dagster import DagsterInstance

    home = use_dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    with DagsterInstance.get() as instance:
        yield instance


@contextmanager
def existing_instance(settings: DeriveSettings) -> Iterator[Any]:
    """The project's Dagster instance if one exists (for watermarks and materialized partitions), else None;
    never creates one."""
    from dagster import DagsterInstance

    home = use_dagster_home(settings)
    if not (home / "dagster.yaml").exists():
        yield None
        return
    with DagsterInstance.get() as instance:
        yield instance
