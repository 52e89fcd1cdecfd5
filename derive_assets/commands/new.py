"""`derive new <dataset>/<name>`: write a commented spec skeleton that `derive validate` accepts as written
(`derive_assets/scaffold.py`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "new",
        help="write a commented spec skeleton for a new table (<specs dir>/<dataset>/<name>.yaml) that "
        "`derive validate` accepts as written; columns from --from <table> or --sql",
        description="Write a commented spec skeleton for a new table: the required fields filled and explained, "
        "the optional ones commented out. It passes `derive validate` as written. Default strategy: merge with "
        "--window, else replace (append needs a window and takes 1d when none is given).",
    )
    parser.add_argument("table", help="the new table, as <dataset>/<name> (e.g. analytics/daily_revenue)")
    parser.add_argument(
        "--strategy",
        choices=("merge", "append", "replace"),
        help="merge: upsert by unique_key; append: replace each window's rows; replace: rebuild the whole "
        "table (no window)",
    )
    parser.add_argument(
        "--window", choices=("1h", "1d", "1w", "1mo"), help="the time range one run processes (a partition)"
    )
    columns = parser.add_mutually_exclusive_group()
    columns.add_argument(
        "--from",
        dest="from_",
        metavar="TABLE",
        help="copy the columns (names, types, descriptions) of this table spec or replicated source table "
        "(dataset.name) and select them",
    )
    columns.add_argument(
        "--sql", help='the query ("SELECT ..."): its output columns and their types are declared'
    )
    parser.add_argument(
        "--dir", type=Path, help="specs directory (default: $DERIVE_SPECS_DIR or table_specs/)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from derive_assets.commands import OperatorError
    from derive_assets.environments import EnvironmentNameError, default_name
    from derive_assets.scaffold import ScaffoldError, next_steps, scaffold
    from derive_assets.settings import DeriveSettings

    settings = DeriveSettings.from_env()
    try:
        done = scaffold(
            args.dir or settings.specs_dir,
            args.table,
            strategy=args.strategy,
            window=args.window,
            from_=args.from_,
            sql=args.sql,
            force=args.force,
            cache_dir=settings.cache_dir,
        )
    except ScaffoldError as exc:
        raise OperatorError(str(exc)) from None
    for note in done.notes:
        print(f"derive new: note: {note}", file=sys.stderr)
    s = done.skeleton
    window = f", {s.window} windows" if s.window else ""
    origin = f" from {s.origin}" if s.origin else ""
    print(
        f"wrote {done.path} ({s.ref}: {s.strategy}{window}, {len(s.columns)} column{'s' if len(s.columns) != 1 else ''}{origin})"
    )
    try:
        env = default_name()
    except EnvironmentNameError:
        env = "dev_<you>"
    print("\n".join(next_steps(s, env)))
    return 0
