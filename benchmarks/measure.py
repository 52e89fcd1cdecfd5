"""Run one measured thing in a fresh subprocess and collect its timing and peak memory.

Every measurement is a new Python process (`python -m benchmarks.workers <task> <json>`), so imports, caches and
allocator state never carry over.

Peak memory is the process's own high-water mark, `VmHWM` in `/proc/self/status`, which each worker reports as it
exits. `ru_maxrss` (from `getrusage(RUSAGE_CHILDREN)` or `wait4`) would not do here: Linux carries the parent's
resident size into a forked child's `maxrss` and keeps it across `exec`, so every child would report at least the
orchestrator's own RSS (about 300 MB after it generated the data), which is what we first saw. Commands that are
not workers (the `dagster` CLI, which runs steps in child processes) are sampled with psutil instead: the summed
RSS of the process tree every 20 ms, its maximum.

A worker prints one JSON object as its last stdout line; the parent adds `rss_mb` and `process_seconds`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # optional (benchmarks/requirements.txt): without it, CLI runs report no peak RSS
    import psutil
except ImportError:
    psutil = None  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


class WorkerFailed(RuntimeError):
    """A measured subprocess exited non-zero; the message carries the end of its output."""


@dataclass
class Sample:
    """One run of one method: what the worker reported, plus the parent's view of the process."""

    seconds: float
    rss_mb: float
    process_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _tree_rss(proc: Any) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # exited between listing and reading
            total += p.memory_info().rss
    return total


def run_process(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 1800.0,
    cwd: Path = REPO,
) -> tuple[int, str, float, float]:
    """Run argv; return (exit code, combined output, wall seconds, sampled peak RSS of its process tree in MB)."""
    peak = 0
    with tempfile.TemporaryFile(mode="w+b") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, env=dict(env or os.environ), cwd=cwd
        )
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            if psutil is None:
                return
            try:
                watched = psutil.Process(proc.pid)
                while not done.wait(0.02):
                    peak = max(peak, _tree_rss(watched))
            except psutil.Error:
                pass

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        out.seek(0)
        text = out.read().decode(errors="replace")
    return proc.returncode, text, wall, peak / 2**20


def run_worker(
    task: str,
    args: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    module: str = "benchmarks.workers",
) -> Sample:
    """`python -m <module> task args` in a fresh process; its last stdout line is a JSON result."""
    argv = [PYTHON, "-m", module, task, json.dumps(dict(args), default=str)]
    return run_json(argv, env)


def run_json(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Sample:
    code, text, wall, rss = run_process(argv, env)
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        tail = "\n".join(text.splitlines()[-40:])
        raise WorkerFailed(f"{' '.join(argv[:4])} exited {code}:\n{tail}")
    result = json.loads(lines[-1])
    seconds = float(result.pop("seconds"))
    own = result.pop("peak_rss_mb", None)  # the worker's VmHWM: exact, where the sample could miss a peak
    rss_mb = own if own is not None else rss
    result["sampled_rss_mb"] = round(rss, 1)
    return Sample(seconds=seconds, rss_mb=round(rss_mb, 1), process_seconds=round(wall, 3), extra=result)


def run_cli(argv: Sequence[str], env: Mapping[str, str]) -> Sample:
    """A command whose whole wall time is the measurement (e.g. `dagster asset materialize`)."""
    code, text, wall, rss = run_process(argv, env)
    if code != 0:
        tail = "\n".join(text.splitlines()[-40:])
        raise WorkerFailed(f"{' '.join(argv[:4])} exited {code}:\n{tail}")
    return Sample(seconds=round(wall, 4), rss_mb=round(rss, 1), process_seconds=round(wall, 3))
