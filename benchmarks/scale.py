"""Definitions at scale against Dagster's own floor, and what a run's processes pay for loading them.

`definitions`: for each `--specs N`, a generated project of N daily merge tables with layered dependencies
(`benchmarks/specs.py` `scale_graph`) and, from the same graph, the floor: a plain Dagster module with the same
`@asset`s, checks, partitions, owners, groups and automation conditions and no specs. Interleaved, each in a fresh
subprocess (`benchmarks/workers_defs.py`): the floor's load, Derive's load with an empty spec cache (cold) and
again on the cache that run filled (warm), `Definitions.validate_loadable` on both, and one tick of every asset's
automation condition on both.

`cli`: one-asset `dagster asset materialize` of a Derive spec against the bare one-asset Dagster project; the
same CLI on one partition of a generated table in a `--cli-specs` project against a 10-spec one; and a step
process's import-and-load (`import derive_assets.definitions` on the demo's `table_specs/`) against the bare
project's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import specs
from benchmarks.core import Context, clean_env, dagster_home, log, ratio, record, repeat, summarize
from benchmarks.measure import PYTHON, REPO, Sample, WorkerFailed, run_cli, run_process, run_worker

DAGSTER = str(Path(sys.executable).parent / "dagster")
DEFS_WORKER = "benchmarks.workers_defs"
TARGETS = {"warm": 1.5, "cold": 3.0, "flag": 2.0, "cli": 1.5, "cli_scale": 2.0, "step": 1.3}
SMALL_PROJECT = 10
"""Spec count of the small project the one-asset CLI at scale is compared with."""
CLI_ASSET = "bench_00/t_0000"
CLI_PARTITION = "2026-01-02"


def _derive_env(spec_dir: Path, home: Path, cache: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        DERIVE_SPECS_DIR=str(spec_dir), DERIVE_HOME=str(home), DERIVE_CACHE_DIR=str(cache), **extra
    )


def _x(a: dict[str, Any], b: dict[str, Any], key: str = "median_s") -> float:
    return a[key] / b[key] if b[key] > 0 else float("inf")


def _cpu(s: dict[str, Any]) -> str:
    return f"CPU {s['cpu_seconds_median']:.2f} s" if "cpu_seconds_median" in s else "CPU not measured"


def _cpu_x(a: dict[str, Any], b: dict[str, Any]) -> str:
    if "cpu_seconds_median" not in a or "cpu_seconds_median" not in b:
        return ""
    return f"; CPU time {_x(a, b, 'cpu_seconds_median'):.2f}x"


def _load_text(s: dict[str, Any]) -> str:
    return (
        f"{s['median_s']:.2f} s, {_cpu(s)} (import {s['import_seconds_median']:.2f} + build {s['build_seconds_median']:.2f}"
        f" + resolve {s['resolve_seconds_median']:.2f}; whole process {s['process_s_median']:.1f} s, "
        f"{s['peak_rss_mb']:.0f} MB)"
    )


def _shape_text(s: dict[str, Any]) -> str:
    return (
        f"{s['assets_median']:,.0f} assets, {s['checks_median']:,.0f} checks, {s['jobs_median']:,.0f} jobs, "
        f"{s['schedules_median']:,.0f} schedules"
    )


# ----------------------------------------------------------------------------------------------- definitions


def definitions(ctx: Context) -> None:
    for n in ctx.specs:
        definitions_at(ctx, n)


def definitions_at(ctx: Context, n: int) -> None:
    """The `definitions` scenario at `n` specs: four ratio lines (warm, cold, validate_loadable, tick)."""
    graph = specs.scale_graph(n)
    spec_dir = specs.scale_specs(ctx.scratch(f"specs-{n}"), graph)
    floor = str(specs.write_floor(ctx.scratch(f"floor-{n}"), graph))
    home = ctx.scratch(f"home-defs-{n}")
    caches: dict[int, Path] = {}
    log(f"definitions: {n:,} specs ({len(graph.datasets)} datasets) against the floor module")

    def floor_run(task: str) -> Callable[[int], Sample]:
        return lambda i: run_worker(task, {"side": "floor", "floor": floor}, clean_env(), DEFS_WORKER)

    def derive_run(task: str, fresh: bool = False, profile: str | None = None) -> Callable[[int], Sample]:
        def run(i: int) -> Sample:
            if fresh or i not in caches:  # cold: a new, empty cache dir; warm: the one the cold run filled
                caches[i] = ctx.scratch(f"cache-{n}-{i}")
            args = {"side": "derive", "cache_dir": str(caches[i]), "profile": profile}
            return run_worker(task, args, _derive_env(spec_dir, home, caches[i]), DEFS_WORKER)

        return run

    samples = repeat(
        ctx,
        {
            "floor_load": floor_run("load"),
            "derive_cold": derive_run("load", fresh=True),
            "derive_warm": derive_run("load"),
            "floor_validate": floor_run("validate"),
            "derive_validate": derive_run("validate"),
            "floor_tick": floor_run("tick"),
            "derive_tick": derive_run("tick"),
        },
    )
    if ctx.profile_dir:
        log(f"definitions: profiling the Derive side at {n:,} specs")
        for what, task, fresh in (("cold", "load", True), ("warm", "load", False)):
            derive_run(task, fresh, ctx.profile(f"definitions_{n}_{what}"))(99)
        derive_run("validate", profile=ctx.profile(f"definitions_{n}_validate"))(99)
        derive_run("tick", profile=ctx.profile(f"definitions_{n}_tick"))(99)
        args = {"side": "floor", "floor": floor, "profile": ctx.profile(f"definitions_{n}_floor_load")}
        run_worker("load", args, clean_env(), DEFS_WORKER)
    labels = {
        "floor_load": "floor: plain Dagster module, import + build + resolve",
        "derive_cold": "Derive build_definitions, empty spec cache",
        "derive_warm": "Derive build_definitions, warm spec cache",
        "floor_validate": "floor: Definitions.validate_loadable",
        "derive_validate": "Derive: Definitions.validate_loadable",
        "floor_tick": "floor: one automation condition tick",
        "derive_tick": "Derive: one automation condition tick",
    }
    s = {
        k: summarize(labels[k], "plain" if k.startswith("floor") else "derive", v, None)
        for k, v in samples.items()
    }
    scenario = f"definitions_{n}"
    record(ctx, scenario, f"definitions with {n:,} generated specs", s, specs=n)
    same = all(s["floor_load"][k] == s["derive_warm"][k] for k in ("assets_median", "checks_median"))
    note = "" if same else f"**the graphs differ**: Derive has {_shape_text(s['derive_warm'])}"
    floor_text = f"floor: {_load_text(s['floor_load'])}; {_shape_text(s['floor_load'])}"
    for what in ("warm", "cold"):
        value = _x(s[f"derive_{what}"], s["floor_load"])
        cached = s[f"derive_{what}"].get("cache_files_median")
        ratio(
            ctx,
            f"definitions_{what}_{n}",
            f"definitions, {n:,} specs, {what} spec cache",
            f"load {_load_text(s[f'derive_{what}'])}"
            + f"; {_shape_text(s[f'derive_{what}'])}"
            + (f"; {cached:.0f} files in the cache after the run" if cached is not None else ""),
            floor_text,
            value,
            "x time",
            f"≤ {TARGETS[what]}x",
            value <= TARGETS[what],
            (note + _cpu_x(s[f"derive_{what}"], s["floor_load"])).lstrip("; "),
        )
    value = _x(s["derive_validate"], s["floor_validate"])
    ratio(
        ctx,
        f"validate_loadable_{n}",
        f"Definitions.validate_loadable, {n:,} specs",
        f"{s['derive_validate']['median_s']:.2f} s, {_cpu(s['derive_validate'])}",
        f"floor: {s['floor_validate']['median_s']:.2f} s, {_cpu(s['floor_validate'])}",
        value,
        "x time",
        f"report; flag > {TARGETS['flag']}x",
        value <= TARGETS["flag"],
        (note + _cpu_x(s["derive_validate"], s["floor_validate"])).lstrip("; "),
    )
    d, f = s["derive_tick"], s["floor_tick"]
    value = _x(d, f)
    ratio(
        ctx,
        f"automation_tick_{n}",
        f"one automation condition tick, {n:,} specs",
        f"{d['median_s']:.2f} s, {_cpu(d)} (next tick {d['next_tick_seconds_median']:.2f} s); "
        f"{d['evaluated_median']:,.0f} conditions evaluated",
        f"floor: {f['median_s']:.2f} s, {_cpu(f)} (next tick {f['next_tick_seconds_median']:.2f} s); "
        f"{f['evaluated_median']:,.0f} conditions",
        value,
        "x time",
        f"report; flag > {TARGETS['flag']}x",
        value <= TARGETS["flag"],
        (note + _cpu_x(d, f)).lstrip("; "),
    )


# ----------------------------------------------------------------------------------------------- CLI


def cli(ctx: Context) -> None:
    cli_one_asset(ctx)
    cli_at_scale(ctx)
    step_import(ctx)


def cli_one_asset(ctx: Context) -> None:
    """`dagster asset materialize` of one asset, as a subprocess: a Derive spec against a bare Dagster project
    doing the same work. Each side has its own instance, initialised by one uncounted run first."""
    title = "one-asset `dagster asset materialize`"
    spec_dir = specs.one_asset_specs(ctx.scratch("specs-one"))
    derive_home = ctx.scratch("home-cli")
    bare_home = ctx.scratch("home-bare")
    derive_env = clean_env(
        DERIVE_SPECS_DIR=str(spec_dir),
        DERIVE_HOME=str(derive_home),
        DAGSTER_HOME=str(dagster_home(derive_home / "dagster_home")),
    )
    bare_env = clean_env(
        BENCH_DUCKDB_PATH=str(bare_home / "warehouse.duckdb"),
        DAGSTER_HOME=str(dagster_home(bare_home / "dagster_home")),
    )
    derive_argv = [
        DAGSTER,
        "asset",
        "materialize",
        "-m",
        "derive_assets.definitions",
        "--select",
        "bench/one",
    ]
    bare_file = str(REPO / "benchmarks" / "bare_project" / "definitions.py")
    bare_argv = [DAGSTER, "asset", "materialize", "-f", bare_file, "--select", "bench/one"]
    log("cli: one uncounted run each to initialise the instances")
    run_cli(derive_argv, derive_env)
    run_cli(bare_argv, bare_env)
    samples = repeat(
        ctx,
        {
            "derive_cli": lambda i: run_cli(derive_argv, derive_env),
            "bare_cli": lambda i: run_cli(bare_argv, bare_env),
        },
    )
    summary = {
        "derive_cli": summarize(
            "Derive spec (`-m derive_assets.definitions`)", "derive", samples["derive_cli"], None
        ),
        "bare_cli": summarize(
            "bare one-asset project (benchmarks/bare_project)", "plain", samples["bare_cli"], None
        ),
    }
    record(ctx, "cli", title, summary)
    value = _x(summary["derive_cli"], summary["bare_cli"])
    ratio(
        ctx,
        "cli",
        title,
        f"{summary['derive_cli']['median_s']:.2f} s",
        f"bare project: {summary['bare_cli']['median_s']:.2f} s",
        value,
        "x time",
        f"≤ {TARGETS['cli']}x",
        value <= TARGETS["cli"],
    )


def _scale_project(ctx: Context, n: int) -> tuple[list[str], dict[str, str]]:
    """A generated n-spec project with its warehouse's source tables, its own instance and spec cache, and one
    uncounted run (initialising the instance, filling the cache); returns the CLI's argv and env."""
    graph = specs.scale_graph(n)
    spec_dir = specs.scale_specs(ctx.scratch(f"specs-cli-{n}"), graph)
    home = ctx.scratch(f"home-cli-{n}")
    tables = [ref.split(".")[1] for ref in graph.sources]
    run_worker("scale_setup", {"duckdb": str(home / "warehouse.duckdb"), "tables": tables})
    env = _derive_env(spec_dir, home, home / "cache", DAGSTER_HOME=str(dagster_home(home / "dagster_home")))
    argv = [DAGSTER, "asset", "materialize", "-m", "derive_assets.definitions"]
    argv += ["--select", CLI_ASSET, "--partition", CLI_PARTITION]
    log(f"cli: one uncounted run of {CLI_ASSET} in the {n:,}-spec project")
    run_cli(argv, env)
    return argv, env


def cli_at_scale(ctx: Context) -> None:
    """One partition of the same generated table with `dagster asset materialize`, in a `cli_specs`-spec
    project and in a 10-spec one: what a project's size adds to a run (the CLI and the step process both load
    the definitions)."""
    n = ctx.cli_specs
    title = f"one-asset `dagster asset materialize --partition`, {n:,} specs"
    large, small = _scale_project(ctx, n), _scale_project(ctx, SMALL_PROJECT)
    samples = repeat(ctx, {"large": lambda i: run_cli(*large), "small": lambda i: run_cli(*small)})
    summary = {
        "large": summarize(f"{CLI_ASSET} in a {n:,}-spec project", "derive", samples["large"], None),
        "small": summarize(
            f"{CLI_ASSET} in a {SMALL_PROJECT}-spec project", "derive", samples["small"], None
        ),
    }
    record(ctx, "cli_scale", title, summary, specs=n)
    value = _x(summary["large"], summary["small"])
    ratio(
        ctx,
        "cli_scale",
        title,
        f"{summary['large']['median_s']:.2f} s ({summary['large']['peak_rss_mb']:.0f} MB, process tree)",
        f"{SMALL_PROJECT}-spec project: {summary['small']['median_s']:.2f} s "
        f"({summary['small']['peak_rss_mb']:.0f} MB)",
        value,
        "x time",
        f"≤ {TARGETS['cli_scale']}x",
        value <= TARGETS["cli_scale"],
    )


PEAK = (
    "import json, time\nfrom benchmarks.workers import peak_rss_mb\n"
    "print(json.dumps({'peak_rss_mb': peak_rss_mb(), 'cpu_seconds': time.process_time()}))"
)


def run_import(module: str, env: dict[str, str]) -> Sample:
    """`python -c "import <module>"` as a step process starts: the whole process's wall time and its VmHWM."""
    code, text, wall, sampled = run_process([PYTHON, "-c", f"import {module}\n{PEAK}"], env)
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        tail = "\n".join(text.splitlines()[-40:])
        raise WorkerFailed(f"import {module} exited {code}:\n{tail}")
    reported = json.loads(lines[-1])
    extra = {"sampled": sampled, "cpu_seconds": reported["cpu_seconds"]}
    return Sample(round(wall, 4), float(reported["peak_rss_mb"]), round(wall, 3), extra)


def step_import(ctx: Context) -> None:
    """What every step process (multiprocess executor, one Kubernetes pod per step) pays before its work: the
    demo's definitions module against the bare one-asset project's, on a warm spec cache."""
    title = "step process import-and-load"
    home = ctx.scratch("home-step")
    derive_env = _derive_env(REPO / "table_specs", home, home / "cache")
    bare_env = clean_env(BENCH_DUCKDB_PATH=str(home / "bare.duckdb"))
    derive_module, bare_module = "derive_assets.definitions", "benchmarks.bare_project.definitions"
    log("cli: step import, one uncounted run each (fills the demo's spec cache)")
    run_import(derive_module, derive_env)
    run_import(bare_module, bare_env)
    samples = repeat(
        ctx,
        {
            "derive_step": lambda i: run_import(derive_module, derive_env),
            "bare_step": lambda i: run_import(bare_module, bare_env),
        },
    )
    summary = {
        "derive_step": summarize(
            "python -c 'import derive_assets.definitions' (table_specs/, 10 specs)",
            "derive",
            samples["derive_step"],
            None,
        ),
        "bare_step": summarize(
            "python -c 'import benchmarks.bare_project.definitions'", "plain", samples["bare_step"], None
        ),
    }
    record(ctx, "step_import", title, summary)
    d, b = summary["derive_step"], summary["bare_step"]
    for rid, key, unit, shown in (
        ("step_import", "median_s", "x time", lambda s: f"{s['median_s']:.2f} s, {_cpu(s)}"),
        ("step_rss", "peak_rss_mb", "x peak RSS", lambda s: f"{s['peak_rss_mb']:.0f} MB"),
    ):
        value = _x(d, b, key)
        ratio(
            ctx,
            rid,
            f"{title} ({'wall time' if rid == 'step_import' else 'peak RSS'})",
            shown(d),
            f"bare project: {shown(b)}",
            value,
            unit,
            f"≤ {TARGETS['step']}x",
            value <= TARGETS["step"],
        )
