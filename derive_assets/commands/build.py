"""`derive build --env [NAME] <selection> [--last N]`: build tables into an environment (`derive_assets/env_build.py`).

Always an environment, never production (production is built by automation, `dagster asset materialize` or
`derive rebuild`). A bare `--env` (or none) means the default environment: `DERIVE_ENV`, else the git branch,
else `dev_<user>` (`derive_assets/environments.py`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

ENV_HELP = (
    "the environment (shadow datasets NAME__<dataset>); bare --env or none: $DERIVE_ENV, else the git branch, "
    "else dev_<user>"
)


def add_env_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """`--env [NAME]` as `derive plan`, `derive rebuild`, `derive build` and `derive diff` take it."""
    parser.add_argument(
        "--env",
        nargs="?",
        const="",
        default="" if required else None,
        metavar="NAME",
        help=ENV_HELP,
    )


def env_name(value: str | None) -> str | None:
    """The environment an `--env` value names: None (no flag: production), a name, or the default for a bare flag."""
    from derive_assets.environments import EnvironmentNameError, default_name, validate_name

    if value is None:
        return None
    if not value:
        return default_name()
    try:
        return validate_name(value)
    except EnvironmentNameError:
        if any(c in value for c in "/.*+"):  # `--env analytics/foo`: the bare flag took the table as its name
            raise EnvironmentNameError(
                value,
                "looks like a table, not an environment: a bare --env takes the next word as its name, so put "
                "--env after the tables (`derive build analytics/foo --env`) or name it (`--env dev_alice`)",
            ) from None
        raise


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "build",
        help="build the selected tables, and the changed tables they read, into an environment's shadow datasets "
        "over their last windows (reads unchanged upstreams from production; never writes production)",
    )
    parser.add_argument(
        "selection",
        nargs="*",
        help="tables, as `derive plan` selects them: analytics/order_facts, +analytics/foo, analytics/*",
    )
    add_env_argument(parser, required=True)
    parser.add_argument(
        "--last", type=int, default=3, help="build each selected table's last N complete windows (default 3)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be built, build nothing")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from derive_assets.commands import OperatorError, open_instance, operator_errors
    from derive_assets.env_build import EnvBuildError, plan_build, run_build
    from derive_assets.factory.build import build_warehouse
    from derive_assets.settings import DeriveSettings
    from derive_assets.specs.project import load_project

    with operator_errors():
        settings = replace(DeriveSettings.from_env(), env=env_name(args.env), executor="in_process")
        if not args.selection:
            raise OperatorError(
                "name the tables to build, as `derive plan` selects them: `derive build analytics/foo --env` "
                "(a changed table's changed upstreams are built with it)"
            )
        project = load_project(settings.specs_dir, cache_dir=settings.cache_dir)
        warehouse = build_warehouse(settings)
        try:
            plan, defs = plan_build(settings, project, warehouse, args.selection, args.last)
            print(plan.describe())
            if args.dry_run:
                return 0
            with open_instance(settings) as instance:
                built = run_build(plan, defs, instance, warehouse, say=lambda line: print(line, flush=True))
        except EnvBuildError as exc:
            raise OperatorError(str(exc)) from None
    print(
        f"environment '{plan.env}': {len(built)} table(s) built; compare with production: derive diff <table> "
        f"--env {plan.env}",
        file=sys.stderr,
    )
    return 0
