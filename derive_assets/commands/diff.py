"""`derive diff <table> --env NAME [--windows N | --partition KEY ...] [--sample 5]`: compare an environment's
shadow table with production over the same windows (`derive_assets/table_diff.py`, docs/diff.md).

Windows: by default the partitions the environment has materialized for the table (its event log, under the
asset key `NAME__dataset/name`); `--windows N` the last N complete windows; `--partition` the given partition
keys; an unpartitioned table is compared whole. Exit code 0 when the tables are identical, 1 when they differ, 2
on an error (a missing table, an unknown table, a bad argument).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from derive_assets.specs.models import TableSpec
    from resources.warehouse import TimeWindow

IDENTICAL, DIFFERENT = 0, 1
"""Exit codes (2: an error, as every `derive` command's)."""


def register(sub: Any) -> None:
    from derive_assets.commands.build import add_env_argument

    parser = sub.add_parser(
        "diff",
        help="compare an environment's copy of a table with production over the same windows (schema, rows, "
        "keys only on one side, changed values per column, numeric sums), in the warehouse; exit 0 identical, "
        "1 different, 2 error",
    )
    parser.add_argument(
        "table", nargs="?", help="the table, as dataset.name or dataset/name (the production name)"
    )
    add_env_argument(parser, required=True)
    windows = parser.add_mutually_exclusive_group()
    windows.add_argument(
        "--windows",
        type=int,
        metavar="N",
        help="compare the last N complete windows (default: the windows the environment has built)",
    )
    windows.add_argument(
        "--partition",
        nargs="+",
        metavar="KEY",
        help="compare these partitions (Dagster partition keys, e.g. 2026-11-30)",
    )
    parser.add_argument(
        "--sample", type=int, default=5, metavar="N", help="examples shown per difference (default 5)"
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from derive_assets.commands import OperatorError, existing_instance, operator_errors
    from derive_assets.commands.build import env_name
    from derive_assets.environments import shadow_ref
    from derive_assets.factory.build import build_warehouse
    from derive_assets.lifecycle import normalize_ref
    from derive_assets.selection import near
    from derive_assets.settings import DeriveSettings
    from derive_assets.specs.project import load_project
    from derive_assets.table_diff import TableDiffError, diff_tables, render_diff

    if args.sample < 0 or (args.windows is not None and args.windows < 1):
        raise OperatorError("--sample must be 0 or more and --windows 1 or more")
    with operator_errors():
        env = env_name(args.env)
        assert env is not None  # `--env` is required: a bare one names the default environment
        if args.table is None:
            raise OperatorError("name the table to compare: `derive diff analytics/order_facts --env NAME`")
        settings = DeriveSettings.from_env()
        project = load_project(settings.specs_dir, cache_dir=settings.cache_dir)
        ref = normalize_ref(args.table)
        table = next((t for t in project.tables if t.spec.ref == ref), None)
        if table is None:
            names = sorted(t.spec.ref for t in project.tables)
            raise OperatorError(
                f"no table spec under {project.root} defines '{args.table}'; {near(ref, names)}"
            )
        spec = table.spec
        with existing_instance(settings) as instance:
            windows = diff_windows(spec, env, instance, args.windows, args.partition)
        try:
            diff = diff_tables(
                build_warehouse(settings), spec, ref, shadow_ref(env, ref), windows, args.sample
            )
        except TableDiffError as exc:
            raise OperatorError(str(exc)) from None
    print(render_diff(diff))
    return IDENTICAL if diff.identical else DIFFERENT


def diff_windows(
    spec: TableSpec,
    env: str,
    instance: Any,
    last: int | None = None,
    partitions: Sequence[str] | None = None,
    now: dt.datetime | None = None,
) -> tuple[TimeWindow, ...] | None:
    """The windows `derive diff` compares: `partitions` (keys), else the `last` N complete windows, else the
    partitions `env` has materialized for the table (`instance`: the Dagster instance, or None when there is
    none). None for a table without windows or a partition column: compared whole. Raises `OperatorError`."""
    from dagster import AssetKey

    from derive_assets.commands import OperatorError
    from derive_assets.environments import shadow_dataset
    from derive_assets.factory.windows import partitions_for
    from derive_assets.plan import partition_keys
    from resources.warehouse import TimeWindow

    partitions_def = partitions_for(spec.window)
    if partitions_def is None or spec.partition is None:
        if last is not None or partitions:
            raise OperatorError(
                f"{spec.ref} has no windows with a partition column (`window` and `partition`), so it is compared "
                "as a whole table; drop --windows/--partition"
            )
        return None
    complete = partition_keys(partitions_def, now or dt.datetime.now(dt.UTC))
    if partitions:
        keys = list(dict.fromkeys(partitions))
        unknown = [k for k in keys if k not in set(complete)]
        if unknown:
            example = complete[-1] if complete else "YYYY-MM-DD"
            raise OperatorError(
                f"{spec.ref}: {unknown} are not complete windows of the table (its partition keys look like "
                f"{example}); give keys of complete windows, or use --windows N"
            )
    elif last is not None:
        keys = complete[-last:]
        if not keys:
            raise OperatorError(
                f"{spec.ref}: no window of it is complete yet, so there is nothing to compare"
            )
    else:
        key = AssetKey([shadow_dataset(env, spec.dataset), spec.name])
        found = instance.get_materialized_partitions(key) if instance is not None else set()
        keys = [k for k in complete if k in found]  # a key of an older window definition is not a window now
        if not keys:
            raise OperatorError(
                f"environment '{env}' has built no window of {spec.ref} (asset {key.to_user_string()} has no "
                f"materialized partition in the Dagster instance): build it first with `derive build --env {env} "
                f"{spec.dataset}/{spec.name}`, or compare the last N windows with --windows N"
            )
    return tuple(
        TimeWindow(w.start, w.end) for w in (partitions_def.time_window_for_partition_key(k) for k in keys)
    )
