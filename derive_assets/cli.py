"""`derive`: validate specs, plan, rebuild and prune tables, look up online rows, generate sample data, run the demo."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from derive_assets.commands import (
    COMMAND_MODULES,
    OperatorError,
    existing_instance,
    open_instance,
    operator_errors,
)
from derive_assets.commands.build import add_env_argument, env_name
from derive_assets.settings import DeriveSettings
from derive_assets.specs.errors import SpecValidationError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="derive", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check every spec file; print all errors; exit 1 if any")
    validate.add_argument(
        "dir", nargs="?", type=Path, help="specs directory (default: $DERIVE_SPECS_DIR or table_specs/)"
    )

    plan = sub.add_parser(
        "plan",
        help="what the next run of each table, replication and export would do (schema changes, next window, "
        "DDL, rendered SQL, estimate), and orphaned tables; writes nothing",
    )
    plan.add_argument(
        "selection",
        nargs="*",
        help="assets to plan, as Dagster selects them: analytics/*, +analytics/foo, analytics/foo+, "
        "analytics.foo (default: all)",
    )
    add_env_argument(plan)

    rebuild = sub.add_parser(
        "rebuild",
        help="rebuild one table from scratch over its whole partition range, in one run, and swap it in",
    )
    rebuild.add_argument("table", help="the table, as dataset.name or dataset/name")
    rebuild.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_env_argument(rebuild)

    prune = sub.add_parser(
        "prune", help="drop the tables Derive created that no spec owns any more (listed by `derive plan`)"
    )
    prune.add_argument("--yes", action="store_true", help="do not ask for confirmation")

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

    pod = sub.add_parser(
        "pod",
        help="the Kubernetes Job k8s_job_executor would launch for each selected asset's step (resources, node "
        "selector, service account, Secrets by name), from deployments/k8s/; needs no cluster",
    )
    pod.add_argument(
        "selection",
        nargs="+",
        help="assets, as `derive plan` selects them: analytics.order_facts, online/user_profile_online, "
        "payments.payments (a source table), analytics/*",
    )
    pod.add_argument(
        "--instance", type=Path, help="the instance file (default: deployments/k8s/dagster.yaml)"
    )
    pod.add_argument("--values", type=Path, help="the Helm values (default: deployments/k8s/values.yaml)")
    pod.add_argument("--release", default="dagster", help="the Helm release name (default: dagster)")
    pod.add_argument("--deployment", help="the values' user-code deployment (default: the only one)")
    pod.add_argument(
        "--namespace",
        help="the release's namespace (default: the run launcher's job_namespace, else default)",
    )

    sub.add_parser(
        "pools",
        help="write the limit of every concurrency pool (sources' max_concurrent_extractions, tables) to the "
        "Dagster instance ($DAGSTER_HOME); run on deploy and before `dagster dev`",
    )

    demo = sub.add_parser(
        "demo",
        help="generate sample data (later runs: a batch of activity) in the sources the replication reads "
        "(each spec's connection_env URL, else embedded), then materialize the whole graph",
    )
    demo.add_argument("--users", type=int, default=10_000)
    demo.add_argument("--days", type=int, default=7, help="materialize windows of the last N days")
    demo.add_argument("--fresh", action="store_true", help="regenerate the sources and rebuild the warehouse")

    for module in COMMAND_MODULES:  # the commands that live in their own module (`derive_assets/commands/`)
        importlib.import_module(module).register(sub)

    args = parser.parse_args(argv)
    try:
        if hasattr(args, "run"):
            return args.run(args)
        return {
            "validate": _validate,
            "plan": _plan,
            "rebuild": _rebuild,
            "prune": _prune,
            "lookup": _lookup,
            "generate": _generate,
            "activity": _activity,
            "demo": _demo,
            "pools": _pools,
            "pod": _pod,
        }[args.command](args)
    except SpecValidationError as exc:
        print(exc, file=sys.stderr)
        return 1
    except SampleSourceError as exc:
        print(f"derive {args.command}: {exc}", file=sys.stderr)
        return 2
    except OperatorError as exc:
        print(f"derive {args.command}: {exc}", file=sys.stderr)
        return 2


TERMINAL_PROGRESS_LOGGERS = ("derive_assets.progress", "derive_assets.demo.generate")
"""The loggers whose INFO lines (progress of long reads and loads, of sample-data generation) a long command
prints on stderr; everything else a run logs stays in its Dagster run log."""


@contextmanager
def _progress_on_terminal() -> Iterator[None]:
    """While a long command runs, print the progress lines of `TERMINAL_PROGRESS_LOGGERS` on stderr (stdout keeps
    the command's result)."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    loggers = [logging.getLogger(name) for name in TERMINAL_PROGRESS_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _url_args(parser: argparse.ArgumentParser) -> None:
    """The `--<source>-url` options; each defaults to what the replication (and `derive demo`) reads: the URL in
    the source spec's `connection_env` variable (e.g. DERIVE_ACCOUNTS_URL), else the embedded store."""
    default = "default: the URL in the source spec's connection_env variable (shipped specs: {}), else {}"
    sqlite = "embedded SQLite under $DERIVE_HOME/sources"
    for source in ("accounts", "orders", "payments"):
        parser.add_argument(
            f"--{source}-url",
            help="sqlite:///…, postgresql://…/db or mysql://…/db; "
            + default.format(f"DERIVE_{source.upper()}_URL", sqlite),
        )
    parser.add_argument(
        "--profiles-url",
        help="mongodb://host/db (documents go to the database in the URL's path, else to the one the profiles "
        "spec reads); "
        + default.format("DERIVE_PROFILES_URL", "embedded montydb under $DERIVE_HOME/sources"),
    )


def _urls(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The sample sources' URLs (the options, else what the replication reads, `demo.sources.sample_urls`), and
    a note when the profiles go to a database the profiles spec does not read."""
    from derive_assets.demo.sources import sample_urls, spec_database_mismatch
    from derive_assets.replication.urls import SourceConnectionError
    from derive_assets.specs.project import load_project

    settings = DeriveSettings.from_env()
    project = load_project(settings.specs_dir, cache_dir=settings.cache_dir)
    given = {
        source: getattr(args, f"{source}_url") for source in ("accounts", "orders", "payments", "profiles")
    }
    try:
        urls = sample_urls(project, settings.embedded_sources_dir, given)
    except SourceConnectionError as exc:
        option = f"--{getattr(exc, 'source_name', None) or '<source>'}-url"
        raise OperatorError(f"{str(exc).rstrip('.')}. Or pass the source's URL with {option}.") from None
    return urls, spec_database_mismatch(project, urls)


def _print_sample_sources(urls: Any, mismatch: str | None) -> None:
    from derive_assets.demo.sources import describe

    print("sample sources:\n" + "\n".join(f"  {line}" for line in describe(urls)))
    if mismatch:
        print(f"note: {mismatch}.", file=sys.stderr)


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
    from dataclasses import replace

    from derive_assets.factory.build import build_warehouse
    from derive_assets.plan_report import full_plan, render_full
    from derive_assets.specs.project import load_project

    with operator_errors():
        settings = replace(DeriveSettings.from_env(), env=env_name(args.env))
        project = load_project(settings.specs_dir, cache_dir=settings.cache_dir)
        with existing_instance(settings) as instance:
            warehouse = build_warehouse(settings)
            if settings.env is not None:
                from derive_assets.env_plan import env_plan, render_env_plan

                print(render_env_plan(env_plan(settings, project, warehouse, args.selection, instance)))
                return 0
            print(render_full(full_plan(settings, project, warehouse, args.selection, instance)))
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from derive_assets.factory.build import build_warehouse
    from derive_assets.lifecycle import execute_rebuild, rebuild_run, rebuild_table
    from derive_assets.specs.project import load_project

    with operator_errors():
        settings = replace(DeriveSettings.from_env(), env=env_name(args.env))
        project = load_project(settings.specs_dir, cache_dir=settings.cache_dir)
        run = rebuild_run(rebuild_table(project, args.table), env=settings.env)
        if not _confirmed(f"{run.describe()}?", args.yes, "nothing done"):
            return 1
        warehouse = build_warehouse(settings)
        with open_instance(settings) as instance, _progress_on_terminal():
            result = execute_rebuild(settings, project, run, instance, warehouse)
    print(f"rebuilt {result.ref}: {result.rows:,} rows in {result.seconds:.1f}s (run {result.run_id})")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from derive_assets.factory.build import build_warehouse
    from derive_assets.lifecycle import orphans, prune
    from derive_assets.specs.project import load_project

    settings = DeriveSettings.from_env()
    project = load_project(settings.specs_dir, cache_dir=settings.cache_dir)
    with operator_errors():
        warehouse = build_warehouse(settings)
        found = orphans(project, warehouse)
        if not found:
            print("no orphaned tables: every table Derive created belongs to a spec")
            return 0
        print("tables Derive created that no spec owns any more:")
        for ref in found:
            print(f"  {ref}")
        if not _confirmed(f"drop these {len(found)} table(s)?", args.yes, "nothing dropped"):
            return 1
        prune(warehouse, found)
    return 0


def _confirmed(question: str, yes: bool, declined: str) -> bool:
    """`--yes`, or `y` typed on stdin (anything else, or no terminal input, is a no, and prints `declined` and
    how to go on)."""
    if yes:
        return True
    print(f"{question} [y/N] ", end="", flush=True)
    if sys.stdin.readline().strip().lower() in ("y", "yes"):
        return True
    print(f"{declined} (answer y, or pass --yes to go on without the question)", file=sys.stderr)
    return False


def _lookup(args: argparse.Namespace) -> int:
    import json

    from derive_assets.online import OnlineReader

    with operator_errors():
        rows = OnlineReader.from_env().lookup(args.export, *args.key)
    for row in rows:
        print(json.dumps(row, default=str))
    if not rows:
        print(f"no rows for {args.key} in {args.export}", file=sys.stderr)
    return 0 if rows else 1


def _generate(args: argparse.Namespace) -> int:
    from derive_assets.demo.generate import generate

    urls, mismatch = _urls(args)
    with _sample_source_errors(urls), _progress_on_terminal():
        counts = generate(urls, users=args.users, seed=args.seed)
    _print_sample_sources(urls, mismatch)
    for table, count in counts.items():
        print(f"{table}: {count:,} rows")
    return 0


def _activity(args: argparse.Namespace) -> int:
    from derive_assets.demo.generate import apply_activity

    urls, mismatch = _urls(args)
    with _sample_source_errors(urls):
        counts = apply_activity(urls, fraction=args.fraction)
    _print_sample_sources(urls, mismatch)
    for key, count in counts.items():
        print(f"{key}: {count:,}")
    return 0


class SampleSourceError(RuntimeError):
    """The sample data could not be written to one of the source databases."""


@contextmanager
def _sample_source_errors(urls: Any) -> Iterator[None]:
    """Driver errors while writing sample data, as one line without secrets (never a traceback)."""
    from derive_assets.demo.sources import SampleSourceUnavailable, sample_source_errors

    try:
        with sample_source_errors(
            urls,
            "could not write the sample data",
            "Check the --*-url options or the sources' connection variables (DERIVE_ACCOUNTS_URL, …), or start "
            "the servers: `make services`.",
        ):
            yield
    except SampleSourceUnavailable as exc:
        raise SampleSourceError(str(exc)) from None


def _pools(args: argparse.Namespace) -> int:
    """Write the pools' limits (`factory/pools.py`) to the instance, creating it on first use; lists what changed."""
    del args
    from derive_assets.factory.pools import apply_pool_limits
    from derive_assets.specs.project import load_project

    settings = DeriveSettings.from_env()
    project = load_project(settings.specs_dir, strict=settings.strict_specs, cache_dir=settings.cache_dir)
    with open_instance(settings) as instance:
        changed = apply_pool_limits(instance, project)
    for pool, limit in sorted(changed.items()):
        print(f"{pool}: {limit}")
    print(f"{len(changed)} pool limit(s) written" if changed else "pool limits up to date")
    return 0


def _pod(args: argparse.Namespace) -> int:
    """Print the step Job of each selected asset as YAML (`derive_assets/k8s_pods.py`), Secrets by name only."""
    from dataclasses import replace

    from derive_assets.factory.build import build_definitions
    from derive_assets.k8s_pods import (
        INSTANCE_YAML,
        VALUES_YAML,
        PodSpecError,
        Release,
        job_dict,
        job_yaml,
        step_jobs,
    )
    from derive_assets.metadata_keys import STEP_OP_LABEL
    from derive_assets.selection import select

    settings = replace(DeriveSettings.from_env(), executor="k8s")  # as the image runs: DERIVE_EXECUTOR=k8s
    with operator_errors():
        try:
            release = Release.load(
                args.instance or INSTANCE_YAML,
                args.values or VALUES_YAML,
                deployment=args.deployment,
                name=args.release,
                namespace=args.namespace,
            )
            defs = build_definitions(settings)
            graph = defs.resolve_asset_graph()
            keys = select(args.selection, graph, graph.get_all_asset_keys())
            jobs = step_jobs(defs, release, keys)
        except PodSpecError as exc:
            raise OperatorError(str(exc)) from None
    for key, job in jobs.items():
        step = job_dict(job)["metadata"]["labels"][STEP_OP_LABEL]
        print(f"---\n# {key.to_user_string()}: the Job of step {step} (its name follows the run id)")
        print(job_yaml(job, release), end="")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from derive_assets.demo.run import run_demo
    from derive_assets.demo.sources import SampleSourceMismatch, SampleSourceUnavailable
    from derive_assets.replication.urls import SourceConnectionError

    settings = DeriveSettings.from_env()
    home = settings.dagster_home()
    warehouse = settings.warehouse_config()
    try:
        with open_instance(settings) as instance, _progress_on_terminal():
            summary = run_demo(settings, instance, users=args.users, days=args.days, fresh=args.fresh)
    except (SampleSourceMismatch, SampleSourceUnavailable, SourceConnectionError) as exc:
        raise OperatorError(str(exc)) from None
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
