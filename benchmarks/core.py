"""What the scenarios share: the run's context, repeated measurements summarised, and the ratio records."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.measure import Sample, WorkerFailed


@dataclass
class Context:
    rows: int
    repeats: int
    export_rows: int
    lookups: int
    work: Path
    """Scratch directory (DuckDB files, Dagster homes, spec dirs); removed after the run."""
    urls: dict[str, str]
    """Service URLs: postgres, mysql, cassandra_hosts, cassandra_port (absent: not configured)."""
    profile_dir: Path | None = None
    specs: tuple[int, ...] = (1000,)
    """Spec counts the `definitions` scenario measures (`--specs`)."""
    cli_specs: int = 2500
    """Spec count of the large project in the `cli` scenario's one-asset run (`--cli-specs`)."""
    results: dict[str, Any] = field(default_factory=dict)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    """Handed from one scenario to the next (the source databases, the last full load's homes)."""
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def scratch(self, name: str) -> Path:
        path = self.work / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path

    def profile(self, name: str) -> str | None:
        return str(self.profile_dir / f"{name}.txt") if self.profile_dir else None


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any `DERIVE_*` or `DAGSTER_HOME` variable, plus `extra`: a measured
    Derive process sees only the settings the scenario gives it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DERIVE_", "DAGSTER_HOME"))}
    return {**env, **extra}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def dagster_home(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    return path


def summarize(label: str, kind: str, samples: list[Sample], rows: int | None) -> dict[str, Any]:
    """Median and range of a method's repeats; rows/s from the median time (and from the range's ends)."""
    seconds = [s.seconds for s in samples]
    median = statistics.median(seconds)
    out: dict[str, Any] = {
        "label": label,
        "kind": kind,
        "repeats": len(samples),
        "median_s": round(median, 4),
        "min_s": round(min(seconds), 4),
        "max_s": round(max(seconds), 4),
        "peak_rss_mb": max(s.rss_mb for s in samples),
        "process_s_median": round(statistics.median(s.process_seconds for s in samples), 3),
        "samples": [asdict(s) for s in samples],
    }
    if rows:
        out["rows"] = rows
        out["rows_per_s"] = round(rows / median) if median > 0 else None
        out["rows_per_s_min"] = round(rows / max(seconds)) if max(seconds) > 0 else None
        out["rows_per_s_max"] = round(rows / min(seconds)) if min(seconds) > 0 else None
    numeric = {k for s in samples for k, v in s.extra.items() if isinstance(v, int | float)}
    for key in sorted(numeric):
        values = [s.extra[key] for s in samples if isinstance(s.extra.get(key), int | float)]
        out[f"{key}_median"] = round(statistics.median(values), 4)
    return out


def repeat(
    ctx: Context, methods: dict[str, Callable[[int], Sample]], repeats: int | None = None
) -> dict[str, list[Sample]]:
    """Run every method `repeats` times, interleaved (A B C A B C …) so drift in the machine's load is shared."""
    samples: dict[str, list[Sample]] = {name: [] for name in methods}
    for i in range(repeats or ctx.repeats):
        for name, run in methods.items():
            sample = run(i)
            log(f"  {name} #{i + 1}: {sample.seconds:.3f} s, {sample.rss_mb:.0f} MB")
            samples[name].append(sample)
    return samples


def record(ctx: Context, scenario: str, title: str, methods: dict[str, dict[str, Any]], **notes: Any) -> None:
    ctx.results[scenario] = {"title": title, "methods": methods, **notes}


def not_measured(ctx: Context, scenario: str, title: str, reason: str) -> None:
    log(f"{scenario}: not measured: {reason}")
    ctx.results[scenario] = {"title": title, "methods": {}, "not_measured": reason}


def ratio(
    ctx: Context,
    rid: str,
    scenario: str,
    derive: str,
    compared: str,
    value: float | None,
    unit: str,
    target: str,
    met: bool | None,
    note: str = "",
) -> None:
    """One line of the targets table; `met` None means not measured."""
    ctx.ratios.append(
        {
            "id": rid,
            "scenario": scenario,
            "derive": derive,
            "compared_with": compared,
            "value": None if value is None else round(value, 3),
            "unit": unit,
            "target": target,
            "met": met,
            "note": note,
        }
    )


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.0f} k"
    return f"{value:.0f}"


__all__ = ["Context", "Sample", "WorkerFailed"]
