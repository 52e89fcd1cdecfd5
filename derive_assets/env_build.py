"""`derive build --env NAME <selection>`: build tables into an environment over their recent windows.

What is built: the selected tables and replicated tables, and every table or replication they read (directly or
through other tables) whose spec differs from production's table (the code version on production's marker, or no
production table yet): those must be read from the environment's copy, so they are built first, over the same
span of time. Everything else they read comes from production, as it is. Python tables and exports are not
built in environments (the selection may name them: they are listed as left out).

Each table runs once, in dependency order, over its complete windows that overlap the span of the selected
tables' last `last` windows (one single-run backfill per table; an unpartitioned table or a replication is one
run). A failed run stops the build and names the spec and the cause; a failed blocking check fails the build
after its table is written (the environment keeps the rows, production is never touched).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dagster import AssetKey, DagsterInstance, Definitions, TimeWindowPartitionsDefinition

from derive_assets import metadata_keys as K
from derive_assets.environments import shadow_ref
from derive_assets.factory.environment import Environment
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import SpecProject
from resources.warehouse import Warehouse


class EnvBuildError(ValueError):
    """A build that cannot run as asked, or whose run failed; the message names the spec and what to do."""


@dataclass(frozen=True)
class Member:
    """One table of the build."""

    ref: str
    key: AssetKey
    """The environment's asset key."""
    reason: str
    """`selected`, or why an upstream is built too (`changed`, `new`)."""
    partitions: tuple[str, str, int] | None
    """First and last partition key and their count; None for an unpartitioned table or a replication."""


@dataclass(frozen=True)
class BuildPlan:
    env: str
    members: tuple[Member, ...]
    """In dependency order."""
    left_out: tuple[str, ...]
    """Selected assets an environment does not build (Python tables, exports), as keys."""

    def describe(self) -> str:
        lines = [f"build into environment '{self.env}' ({len(self.members)} table(s), dependency order):"]
        for m in self.members:
            windows = (
                f"{m.partitions[2]} window(s) {m.partitions[0]} .. {m.partitions[1]}"
                if m.partitions
                else "all rows"
            )
            lines.append(f"  {shadow_ref(self.env, m.ref)}  [{m.reason}]  {windows}")
        for key in self.left_out:
            lines.append(f"  left out: {key} (Python tables and exports are not built in environments)")
        return "\n".join(lines)


@dataclass(frozen=True)
class Built:
    ref: str
    rows: int
    seconds: float
    run_id: str


def changed(warehouse: Warehouse, ref: str, version: str | None) -> str | None:
    """Why production's table `ref` is not current for the checkout's `version`: `new` (no table), `changed` (its
    marker records another version); None when it is current (or records no version)."""
    existing = warehouse.describe(ref)
    if existing is None:
        return "new"
    recorded = existing.layout.code_version if existing.layout else None
    return "changed" if recorded is not None and recorded != version else None


def plan_build(
    settings: DeriveSettings,
    project: SpecProject,
    warehouse: Warehouse,
    selection: Sequence[str],
    last: int,
    now: dt.datetime | None = None,
) -> tuple[BuildPlan, Definitions]:
    """What `derive build --env` runs (and the environment's definitions it runs them with)."""
    from derive_assets.factory.build import build_definitions
    from derive_assets.selection import select

    env = settings.env
    if env is None:
        raise EnvBuildError("derive build needs an environment: --env NAME (or DERIVE_ENV)")
    if last < 1:
        raise EnvBuildError(f"--last {last}: build at least one window (--last 1 or more)")
    now = now or dt.datetime.now(dt.UTC)
    production = build_definitions(replace(settings, env=None), project).resolve_asset_graph()
    chosen = select(list(selection), production, production.get_all_asset_keys())
    env_defs = build_definitions(settings, project)
    env_graph = env_defs.resolve_asset_graph()

    def env_key(key: AssetKey) -> AssetKey:
        return Environment(env).key(key)

    buildable = {k for k in production.get_all_asset_keys() if env_graph.has(env_key(k))}
    left_out = sorted(k.to_user_string() for k in chosen if k not in buildable)
    reasons: dict[AssetKey, str] = {k: "selected" for k in chosen if k in buildable}
    pending = list(reasons)
    while pending:  # the changed upstreams of what is built, and theirs
        key = pending.pop()
        for parent in production.get(key).parent_keys:
            if parent in reasons or parent not in buildable:
                continue
            why = changed(warehouse, _ref(parent), env_graph.get(env_key(parent)).code_version)
            if why is not None:
                reasons[parent] = why
                pending.append(parent)
    if not reasons:
        raise EnvBuildError(
            f"nothing to build: {', '.join(selection) or 'the selection'} selects only {', '.join(left_out)}, "
            "which environments do not build (Python tables, exports)"
        )
    order = [k for k in production.toposorted_asset_keys if k in reasons]
    span_start = _span_start(
        [env_graph.get(env_key(k)).partitions_def for k in chosen if k in reasons], last, now
    )
    members = tuple(
        Member(
            _ref(k), env_key(k), reasons[k], _partitions(_ref(k), env_graph.get(env_key(k)), span_start, now)
        )
        for k in order
    )
    return BuildPlan(env, members, tuple(left_out)), env_defs


def run_build(
    plan: BuildPlan,
    defs: Definitions,
    instance: DagsterInstance,
    warehouse: Warehouse,
    say: Callable[[str], None] = print,
) -> list[Built]:
    """Run each member of `plan` on `instance`, in order; `EnvBuildError` naming the spec at the first failure."""
    from derive_assets.factory.runs import materialize_keys
    from derive_assets.lifecycle import QUIET, failed_run_message

    built = []
    for member in plan.members:
        target = shadow_ref(plan.env, member.ref)
        started = time.perf_counter()
        partition_range = (member.partitions[0], member.partitions[1]) if member.partitions else None
        result = materialize_keys(
            defs,
            [member.key],
            instance=instance,
            partition_range=partition_range,
            tags={K.ENV_TAG: plan.env},
            run_config=QUIET,
        )
        if not result.success:
            raise EnvBuildError(failed_run_message(target, result, "build", f"derive build --env {plan.env}"))
        seconds = time.perf_counter() - started
        built.append(Built(target, warehouse.row_count(target), seconds, result.run_id))
        say(f"built {target}: {built[-1].rows:,} rows in {seconds:.1f}s (run {result.run_id})")
    return built


def _ref(key: AssetKey) -> str:
    return ".".join(key.path)


def _span_start(partitions_defs: Iterable[Any], last: int, now: dt.datetime) -> dt.datetime | None:
    """The start of the earliest of the selected tables' last `last` complete windows (None: none partitioned)."""
    starts = []
    for pdef in partitions_defs:
        if isinstance(pdef, TimeWindowPartitionsDefinition):
            windows = _complete_windows(pdef, now)
            if windows:
                starts.append(windows[-last:][0][1])
    return min(starts) if starts else None


def _complete_windows(
    pdef: TimeWindowPartitionsDefinition, now: dt.datetime
) -> list[tuple[str, dt.datetime, dt.datetime]]:
    from dagster import partition_loading_context

    with partition_loading_context(effective_dt=now):
        keys = pdef.get_partition_keys(current_time=now)
    out = []
    for key in keys:
        window = pdef.time_window_for_partition_key(key)
        out.append((key, window.start, window.end))
    return out


def _partitions(
    ref: str, node: Any, span_start: dt.datetime | None, now: dt.datetime
) -> tuple[str, str, int] | None:
    """A table's complete windows that end after `span_start` (its last one when nothing selected has windows)."""
    pdef = node.partitions_def
    if not isinstance(pdef, TimeWindowPartitionsDefinition):
        return None
    windows = _complete_windows(pdef, now)
    if not windows:
        raise EnvBuildError(
            f"{ref}: no window of it is complete yet, so there is nothing to build; build it once its first "
            "window (window.start) has passed"
        )
    chosen = [w for w in windows if span_start is None or w[2] > span_start] or windows[-1:]
    return chosen[0][0], chosen[-1][0], len(chosen)
