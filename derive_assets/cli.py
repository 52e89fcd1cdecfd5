"""`derive`: validate specs, generate sample data, run the demo."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.errors import SpecValidationError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="derive", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check every spec file; print all errors; exit 1 if any")
    validate.add_argument(
        "dir", nargs="?", type=Path, help="specs directory (default: $DERIVE_SPECS_DIR or table_specs/)"
    )

    sub.add_parser(
        "plan",
        help="the next window of every table: rendered SQL, DDL and cost estimate, in the warehouse's dialect",
    )

    look = sub.add_parser("lookup", help="read an exported row from the online store by key")
    look.add_argument("export", help="export name (table_specs/exports/*.yaml)")
    look.add_argument("key", nargs="+", help="partition key values, then optionally clustering values")

    gen = sub.add_parser("generate", help="(re)create the sample source databases")
    gen.add_argument("--users", type=int, default=10_000)
    gen.add_argument("--seed", type=int, default=7)
    _url_args(gen)

    act = sub.add_parser("activity", help="apply a batch of new activity (inserts, updates, soft deletes)")
    act.add_argument("--fraction", type=float, default=0.01)
    _url_args(act)

    demo = sub.add_parser(
        "demo", help="generate sample data and materialize the whole graph, embedded engines"
    )
    demo.add_argument("--users", type=int, default=10_000)
    demo.add_argument("--days", type=int, default=7, help="materialize windows of the last N days")
    demo.add_argument("--fresh", action="store_true", help="regenerate the sources and rebuild the warehouse")

    args = parser.parse_args(argv)
    try:
        return {
            "validate": _validate,
            "plan": _plan,
            "lookup": _lookup,
            "generate": _generate,
            "activity": _activity,
            "demo": _demo,
        }[args.command](args)
    except SpecValidationError as exc:
        print(exc, file=sys.stderr)
        return 1
    except SampleSourceError as exc:
        print(f"derive {args.command}: {exc}", file=sys.stderr)
        return 2


def _url_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts-url", help="default: embedded SQLite under $DERIVE_HOME/sources")
    parser.add_argument("--orders-url")
    parser.add_argument("--payments-url")
    parser.add_argument(
        "--profiles-url", help="mongodb://… (default: embedded montydb under $DERIVE_HOME/sources)"
    )


def _urls(args: argparse.Namespace):
    from derive_assets.demo.generate import SourceUrls, embedded_urls

    default = embedded_urls(DeriveSettings.from_env().embedded_sources_dir)
    return SourceUrls(
        accounts=args.accounts_url or default.accounts,
        orders=args.orders_url or default.orders,
        payments=args.payments_url or default.payments,
        profiles=args.profiles_url or default.profiles,
    )


def _validate(args: argparse.Namespace) -> int:
    from derive_assets.specs.project import load_project

    root = args.dir or DeriveSettings.from_env().specs_dir
    project = load_project(root)
    print(
        f"{root}: OK — {len(project.sources())} sources ({len(project.replicated)} tables), "
        f"{len(project.tables)} core/derived tables"
    )
    return 0


def _plan(args: argparse.Namespace) -> int:
    from derive_assets.factory.build import build_warehouse
    from derive_assets.plan import plan, render
    from derive_assets.specs.project import load_project

    settings = DeriveSettings.from_env()
    print(render(plan(load_project(settings.specs_dir), build_warehouse(settings))))
    return 0


def _lookup(args: argparse.Namespace) -> int:
    import json

    from derive_assets.online import OnlineReader

    rows = OnlineReader.from_env().lookup(args.export, *args.key)
    for row in rows:
        print(json.dumps(row, default=str))
    if not rows:
        print(f"no rows for {args.key} in {args.export}", file=sys.stderr)
    return 0 if rows else 1


def _generate(args: argparse.Namespace) -> int:
    from derive_assets.demo.generate import generate

    urls = _urls(args)
    with _sample_source_errors(urls):
        counts = generate(urls, users=args.users, seed=args.seed)
    for table, count in counts.items():
        print(f"{table}: {count:,} rows")
    return 0


def _activity(args: argparse.Namespace) -> int:
    from derive_assets.demo.generate import apply_activity

    urls = _urls(args)
    with _sample_source_errors(urls):
        counts = apply_activity(urls, fraction=args.fraction)
    for key, count in counts.items():
        print(f"{key}: {count:,}")
    return 0


class SampleSourceError(RuntimeError):
    """The sample data could not be written to one of the source databases."""


@contextmanager
def _sample_source_errors(urls: Any) -> Iterator[None]:
    """Driver errors while writing sample data, as one line without secrets (never a traceback)."""
    import pymongo.errors
    import sqlalchemy.exc

    from derive_assets.replication.urls import scrub

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, pymongo.errors.PyMongoError, OSError) as exc:
        every = (urls.accounts, urls.orders, urls.payments, urls.profiles)
        reason = scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, *every)
        raise SampleSourceError(
            f"could not write the sample data: {reason}. Check the --*-url options (or start the servers: "
            "`make services`)."
        ) from None


def _demo(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from derive_assets.demo.run import run_demo

    settings = DeriveSettings.from_env()
    home = settings.dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)  # for the Dagster instance, which reads it
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():  # the project's instance: telemetry off, run monitoring on
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    warehouse = settings.warehouse_config()
    with DagsterInstance.get() as instance:
        summary = run_demo(settings, instance, users=args.users, days=args.days, fresh=args.fresh)
    width = max(len(ref) for ref in summary)
    print(f"\n{'table':<{width}} {'rows':>9}  watermark / strategy")
    for ref, info in summary.items():
        print(f"{ref:<{width}} {info['rows']:>9,}  {info.get('watermark') or info.get('strategy')}")
    print(
        "\nRead it online: .venv/bin/derive lookup user_profile_online 42\n"
        f"Warehouse: {warehouse.local_file or warehouse.type}\nOpen the UI with `make dev` (dagster dev, DAGSTER_HOME={home}).\n"
        "Materialize one window: DAGSTER_HOME=" + str(home) + " .venv/bin/dagster asset materialize "
        "-m derive_assets.definitions --select analytics/daily_payments_by_region --partition <YYYY-MM-DD>"
    )
    return 1 if summary.errors else 0  # a failed ERROR check (listed above) fails the demo


if __name__ == "__main__":
    sys.exit(main())
