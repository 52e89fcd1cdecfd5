"""`derive plan --env NAME [selection]`: what an environment would build, and how its copies compare with
production.

For every selected table whose spec differs from production's table (or that production does not have yet, or of
which the environment holds a copy, e.g. one built over a changed upstream): the
plan of its copy (the SQL reading what the environment's run would read: production's unchanged upstreams, the
copies of changed ones; the estimate of bytes against the spec's `max_bytes_billed`; the schema diff against the
copy), and, once the copy is built, `derive diff`'s summary over the windows the environment built. Changed
replicated tables are listed (`derive build --env` replicates them into the environment). Unchanged selected
tables are named: an environment reads them from production.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from dagster import AssetKey, DagsterInstance

from derive_assets.env_build import changed
from derive_assets.environments import shadow_ref
from derive_assets.factory.environment import Environment
from derive_assets.plan import PlanEntry, entry, render
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import SpecProject
from resources.warehouse import Warehouse


@dataclass(frozen=True)
class ChangedTable:
    reason: str
    """`changed` (production's table records another version), `new` (production has no such table) or `built`
    (the spec is production's, and the environment holds a copy: built over changed upstreams, or selected)."""
    plan: PlanEntry
    diff: str
    """`derive diff`'s summary line, or why there is none yet."""


@dataclass
class EnvPlan:
    env: str
    tables: list[ChangedTable] = field(default_factory=list)
    replications: list[tuple[str, str]] = field(default_factory=list)
    """Changed replicated tables: (ref, reason)."""
    unchanged: list[str] = field(default_factory=list)
    """Selected tables and replicated tables whose spec is production's: read from production."""


def env_plan(
    settings: DeriveSettings,
    project: SpecProject,
    warehouse: Warehouse,
    selection: Sequence[str] = (),
    instance: DagsterInstance | None = None,
    now: dt.datetime | None = None,
) -> EnvPlan:
    """The plan of environment `settings.env` for what `selection` selects (everything when empty)."""
    from derive_assets.factory.build import build_definitions
    from derive_assets.selection import select

    assert settings.env is not None, "env_plan plans an environment: settings.env names it"
    now = now or dt.datetime.now(dt.UTC)
    production = build_definitions(replace(settings, env=None), project).resolve_asset_graph()
    chosen = select(selection, production, production.get_all_asset_keys())
    env_graph = build_definitions(settings, project).resolve_asset_graph()
    versions = {}
    for key in production.get_all_asset_keys():
        copy = Environment(settings.env).key(key)
        if env_graph.has(copy) and env_graph.get(copy).is_materializable:
            versions[".".join(key.path)] = env_graph.get(copy).code_version
    env = Environment(settings.env, versions)
    out = EnvPlan(settings.env)
    for rt in project.replicated:
        if AssetKey(rt.ref.split(".")) in chosen:
            why = changed(warehouse, rt.ref, versions[rt.ref])
            if why is None:
                out.unchanged.append(rt.ref)
            else:
                out.replications.append((rt.ref, why))
    for table in project.tables:
        ref = table.spec.ref
        if AssetKey(ref.split(".")) not in chosen:
            continue
        why = changed(warehouse, ref, versions[ref])
        if why is None and warehouse.table_exists(env.ref(ref)):
            why = (
                "built"  # the spec is production's, but the environment built a copy (over changed upstreams)
            )
        if why is None:
            out.unchanged.append(ref)
            continue
        planned = entry(table, warehouse, now, instance, env)
        out.tables.append(
            ChangedTable(why, planned, _diff_summary(table.spec, env.name, warehouse, instance, why))
        )
    return out


def _diff_summary(spec, env: str, warehouse: Warehouse, instance: DagsterInstance | None, why: str) -> str:
    """`derive diff`'s one line (`table_diff.environment_summary`) over the windows the environment built."""
    from derive_assets.commands import OperatorError
    from derive_assets.commands.diff import diff_windows
    from derive_assets.table_diff import environment_summary

    if why == "new":
        return f"production has no {spec.ref} yet: nothing to compare with"
    try:
        windows = diff_windows(spec, env, instance)
    except OperatorError as exc:  # e.g. the environment built no window of it yet
        return f"not compared: {exc}"
    return environment_summary(warehouse, spec, env, windows)


def render_env_plan(plan: EnvPlan) -> str:
    env = plan.env
    out = [
        f"== environment '{env}': {len(plan.tables)} changed or built table(s), {len(plan.replications)} "
        "changed replication(s); everything else is read from production"
    ]
    for t in plan.tables:
        p = t.plan
        out.append(f"== {p.ref} [{t.reason}] -> {p.relation}")
        reads = ", ".join(f"{r} ({'production' if v == r else 'copy ' + v})" for r, v in p.reads.items())
        out.append(f"-- reads: {reads or 'no Derive table'}")
        for upstream, reason in p.unbuilt.items():
            out.append(
                f"-- needs: {shadow_ref(env, upstream)} {reason}; `derive build --env {env} "
                f"{p.ref.replace('.', '/')}` builds it first"
            )
        out.append(f"-- diff against production: {t.diff}")
        out.append(render([p]))
    for ref, reason in plan.replications:
        out.append(
            f"== {ref} [{reason}] -> {shadow_ref(env, ref)} (replicated into the environment from its source)"
        )
    if plan.unchanged:
        out.append(f"== unchanged, read from production: {', '.join(sorted(plan.unchanged))}")
    return "\n".join(out)
