"""The `definitions` benchmark's measured subprocesses: `python -m benchmarks.workers_defs <task> '<json args>'`.

Unlike `benchmarks.workers`, this entry point imports nothing before the task (no pandas): import time is part
of what is measured. Each task loads one side, either Derive (`build_definitions(DeriveSettings.from_env())`: the
spec directory, home and spec cache come from `DERIVE_*` variables the parent sets, as in a code server) or the
floor (a generated plain Dagster module, `benchmarks/specs.py` `floor_module`), and times one phase:

- `load`: from before `import dagster` (the floor) or the Derive factory's import, to a resolved repository
  (`Definitions.get_repository_def()`, what every Dagster tool does next); split into import, build, resolve;
- `validate`: `Definitions.validate_loadable(defs)` on freshly built definitions;
- `tick`: two evaluations of every asset's automation condition with `evaluate_automation_conditions` on an
  ephemeral instance (what the default automation condition sensor evaluates each tick), the second from the
  first's cursor and across the cron tick.

Each also reports `cpu_seconds`, the process's CPU time over the same section (`time.process_time()`): on a
2-core machine shared with other work, wall time also counts the time the process waited for a core.

The last stdout line is one JSON object (`seconds` and the rest), as for `benchmarks.workers`.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.workers import peak_rss_mb, profiled

FIRST_TICK = dt.datetime(2026, 11, 30, 0, 20, tzinfo=dt.UTC)
"""The first evaluation: 10 minutes before the generated tables' `30 0 * * *` cron tick."""
NEXT_TICK = dt.datetime(2026, 11, 30, 0, 40, tzinfo=dt.UTC)
"""The second: after it, so each `on_cron` condition sees its tick pass."""


def _floor(path: str) -> Any:
    """Execute the generated floor module (building its `@asset`s and `Definitions`) and return its `defs`."""
    spec = importlib.util.spec_from_file_location("bench_floor_definitions", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the floor module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.defs


def _derive() -> Any:
    from derive_assets.factory.build import build_definitions
    from derive_assets.settings import DeriveSettings

    return build_definitions(DeriveSettings.from_env())


def _build(a: dict[str, Any]) -> Any:
    return _floor(a["floor"]) if a["side"] == "floor" else _derive()


def _shape(defs: Any) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    return {
        "assets": len(graph.get_all_asset_keys()),
        "checks": len(list(graph.asset_check_keys)),
        "jobs": len(list(defs.jobs or [])),
        "schedules": len(list(defs.schedules or [])),
    }


def _cache_files(a: dict[str, Any]) -> int | None:
    cache = a.get("cache_dir")
    return sum(1 for p in Path(cache).rglob("*") if p.is_file()) if cache else None


def load(a: dict[str, Any]) -> dict[str, Any]:
    with profiled(a.get("profile"), show_all=True):
        cpu = time.process_time()
        started = time.perf_counter()
        if a["side"] == "floor":
            import dagster  # noqa: F401  (the import is part of the floor's load, as Derive's is of its own)
        else:
            import derive_assets.factory.build
            import derive_assets.settings  # noqa: F401
        imported = time.perf_counter()
        defs = _build(a)
        built = time.perf_counter()
        defs.get_repository_def()
        resolved = time.perf_counter()
        cpu = time.process_time() - cpu
    return {
        "seconds": resolved - started,
        "cpu_seconds": cpu,
        "import_seconds": imported - started,
        "build_seconds": built - imported,
        "resolve_seconds": resolved - built,
        "cache_files": _cache_files(a),
        **_shape(defs),
    }


def validate(a: dict[str, Any]) -> dict[str, Any]:
    from dagster import Definitions

    defs = _build(a)
    with profiled(a.get("profile"), show_all=True):
        cpu = time.process_time()
        started = time.perf_counter()
        Definitions.validate_loadable(defs)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, **_shape(defs)}


def tick(a: dict[str, Any]) -> dict[str, Any]:
    from dagster import DagsterInstance, evaluate_automation_conditions

    defs = _build(a)
    defs.resolve_asset_graph()
    with DagsterInstance.ephemeral() as instance, profiled(a.get("profile"), show_all=True):
        cpu = time.process_time()
        started = time.perf_counter()
        first = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=FIRST_TICK)
        first_s = time.perf_counter() - started
        cpu = time.process_time() - cpu
        second = evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=NEXT_TICK, cursor=first.cursor
        )
        next_s = time.perf_counter() - started - first_s
    return {
        "seconds": first_s,
        "cpu_seconds": cpu,
        "next_tick_seconds": next_s,
        "requested_first": first.total_requested,
        "requested_next": second.total_requested,
        "evaluated": len(first.results),
        **_shape(defs),
    }


TASKS = {"load": load, "validate": validate, "tick": tick}

if __name__ == "__main__":
    name, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({**TASKS[name](args), "peak_rss_mb": peak_rss_mb()}, default=str))
