"""`derive env list` and `derive env drop`: see and clean up environments' shadow datasets
(`derive_assets/env_cleanup.py`, docs/env-cleanup.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any


def register(sub: Any) -> None:
    env = sub.add_parser(
        "env",
        help="list environments (their NAME__dataset shadow datasets, Derive's tables in them, last activity) or "
        "drop one, or every idle one",
    )
    commands = env.add_subparsers(dest="env_command", required=True)

    listing = commands.add_parser(
        "list", help="every environment, its datasets, tables, rows and last activity"
    )
    listing.add_argument(
        "--no-rows", action="store_true", help="do not count rows (one count per table; slower on BigQuery)"
    )
    listing.set_defaults(run=_list)

    drop = commands.add_parser(
        "drop",
        help="drop an environment's tables (only those Derive created), its emptied datasets and its event-log "
        "history",
    )
    drop.add_argument("name", nargs="?", help="the environment, e.g. dev_alice or pr_1234")
    drop.add_argument(
        "--older-than",
        metavar="AGE",
        help="instead of NAME: every environment last active longer ago than AGE (14d, 36h); an environment "
        "whose last activity is unknown is never dropped this way",
    )
    drop.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    drop.set_defaults(run=_drop)


def _list(args: argparse.Namespace) -> int:
    from derive_assets.commands import existing_instance, operator_errors
    from derive_assets.env_cleanup import environments
    from derive_assets.factory.build import build_warehouse
    from derive_assets.settings import DeriveSettings

    settings = DeriveSettings.from_env()
    now = dt.datetime.now(dt.UTC)
    with operator_errors(), existing_instance(settings) as instance:
        found = environments(build_warehouse(settings), instance, count_rows=not args.no_rows)
    if not found:
        print(
            "no environments: no NAME__dataset datasets in the warehouse, no environment assets in the event log"
        )
        return 0
    for env in found:
        rows = "" if env.rows is None else f", {env.rows:,} rows"
        print(
            f"{env.name}: {len(env.tables)} Derive table(s){rows}, last activity {env.describe_activity(now)}"
        )
        for dataset in env.datasets:
            print(f"  {dataset}")
        if not env.datasets:
            print("  (no datasets in the warehouse; only its history in the event log)")
    if instance is None:
        print("no Dagster instance yet: last activity is unknown for every environment", file=sys.stderr)
    return 0


def _drop(args: argparse.Namespace) -> int:
    from derive_assets.cli import _confirmed  # `derive prune`'s confirmation, the same for every command
    from derive_assets.commands import OperatorError, existing_instance, operator_errors
    from derive_assets.env_cleanup import (
        EnvCleanupError,
        drop_environment,
        environment,
        environments,
        idle,
        parse_age,
    )
    from derive_assets.factory.build import build_warehouse
    from derive_assets.settings import DeriveSettings

    if (args.name is None) == (args.older_than is None):
        raise OperatorError(
            "give either an environment NAME or --older-than AGE (e.g. 14d), not both or neither"
        )
    settings = DeriveSettings.from_env()
    now = dt.datetime.now(dt.UTC)
    with operator_errors(), existing_instance(settings) as instance:
        warehouse = build_warehouse(settings)
        if args.name is not None:
            targets = [environment(warehouse, instance, args.name)]
            if not (targets[0].datasets or targets[0].asset_keys):
                print(f"no environment {args.name}: no {args.name}__* datasets, no assets in the event log")
                return 0
        else:
            try:
                age = parse_age(args.older_than)
            except EnvCleanupError as exc:
                raise OperatorError(str(exc)) from None
            targets, unknown = idle(environments(warehouse, instance, count_rows=False), age, now)
            for env in unknown:
                print(
                    f"not dropping {env.name}: its last activity is unknown (drop it by name: derive env drop {env.name})"
                )
            if not targets:
                print(f"no environment was last active more than {args.older_than} ago")
                return 0
        for env in targets:
            print(
                f"{env.name}: {len(env.tables)} Derive table(s) in {len(env.datasets)} dataset(s), "
                f"{len(env.asset_keys)} asset key(s), last activity {env.describe_activity(now)}"
            )
            for ref in env.tables:
                print(f"  {ref}")
        if not _confirmed(f"drop {len(targets)} environment(s)?", args.yes, "nothing dropped"):
            return 1
        kept = 0
        for env in targets:
            result = drop_environment(warehouse, instance, env)
            kept += sum(1 for tables in result.kept.values() if tables)
    if kept:
        print(
            f"{kept} dataset(s) kept: they hold tables Derive did not create (listed above)", file=sys.stderr
        )
    return 0
