"""Write a run's results: `<date>.json` (everything), `<date>.md` (the tables) and `<date>.png` (the chart).

The chart can also be drawn from several result files, e.g. runs at different scales:

    .venv/bin/python -m benchmarks.report benchmarks/results/a.json benchmarks/results/b.json --png scales.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.core import fmt_rate

KIND_COLORS = {"derive": "tab:blue", "plain": "tab:gray", "peer": "tab:orange"}


def write_json(result: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def _value(r: dict[str, Any]) -> str:
    if r["value"] is None:
        return "not measured"
    unit = r["unit"]
    if unit.startswith("x"):  # a ratio: 0.36x
        return f"**{r['value']:.3f}{unit}**"
    return f"**{r['value']:g} {unit}**"


def _status(r: dict[str, Any]) -> str:
    return "not measured" if r["met"] is None else ("**MISSED**" if not r["met"] else "met")


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# Derive benchmarks, {result['date']}",
        "",
        f"Machine: {m['cores']} cores / {m['memory_gib']:.0f} GiB, {m['platform']}. Python {m['python']}, "
        f"DuckDB {m['duckdb']}, Dagster {m['dagster']}, connectorx {m['connectorx']}; servers on 127.0.0.1: "
        f"{m.get('postgres', '?')}, {m.get('mariadb', '?')}, Cassandra {m.get('cassandra', '?')}.",
        f"Scale: {result['rows']:,} source rows; CQL export and reads: {result['export_rows']:,} rows; "
        f"{result['repeats']} repeat(s) per method (median, min-max); total {result['total_seconds']:.0f} s.",
        _code_line(result),
        "",
        "## Targets",
        "",
        "| scenario | Derive | compared with (same run) | ratio / value | target | MISSED |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["ratios"]:
        compared = r["compared_with"] + (f" ({r['note']})" if r["note"] else "")
        lines.append(
            f"| {r['scenario']} | {r['derive']} | {compared} | {_value(r)} | {r['target']} | {_status(r)} |"
        )
    lines += [
        "",
        "## Measurements",
        "",
        "| scenario | method | rows | median s | min-max s | rows/s (median) | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, scenario in result["scenarios"].items():
        if scenario.get("not_measured"):
            lines.append(f"| {name} | not measured: {scenario['not_measured']} | | | | | |")
            continue
        for method in scenario["methods"].values():
            rows = f"{method['rows']:,}" if method.get("rows") else "—"
            lines.append(
                f"| {name} | {method['label']} | {rows} | {method['median_s']:.3f} | "
                f"{method['min_s']:.3f}-{method['max_s']:.3f} | {fmt_rate(method.get('rows_per_s'))} | "
                f"{method['peak_rss_mb']:.0f} |"
            )
    lines += [
        "",
        "Times are measured inside a fresh subprocess per run, after imports (see benchmarks/README.md); peak RSS",
        "is that process's VmHWM (for the CLI rows: the sampled RSS of the CLI's process tree).",
        "",
    ]
    return "\n".join(lines)


def _code_line(result: dict[str, Any]) -> str:
    code = result.get("code", {})
    trees = ", ".join(f"{k}/ {v}" for k, v in code.get("product_trees", {}).items())
    line = f"Code: commit {code.get('commit', '?')} (trees {trees})"
    if code.get("uncommitted_changes"):
        line += f" with uncommitted changes to {', '.join(code['uncommitted_changes'])}"
    if result.get("code_changed_during_run"):
        line += " (**the product code changed during the run**: the numbers mix versions)"
    return line + "."


def chart(results: list[dict[str, Any]], path: Path) -> Path | None:
    """Rows/s and peak RSS per method, one bar per result file (scale). None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    bars: dict[str, dict[int, tuple[float, float]]] = {}  # method -> run scale (--rows) -> (rows/s, MB)
    kinds: dict[str, str] = {}
    for result in results:
        for name, scenario in result["scenarios"].items():
            for method in scenario["methods"].values():
                if method.get("rows_per_s"):
                    label = f"{name}: {method['label']} ({method['rows']:,} rows)"
                    if len(results) > 1:
                        label = f"{name}: {method['label']}"
                    bars.setdefault(label, {})[result["rows"]] = (method["rows_per_s"], method["peak_rss_mb"])
                    kinds[label] = method["kind"]
    if not bars:
        return None
    labels = list(bars)
    scales = sorted({scale for by_scale in bars.values() for scale in by_scale})
    height = 0.8 / len(scales)
    fig, (ax_rate, ax_mem) = plt.subplots(
        1, 2, figsize=(15, 0.4 * len(labels) * len(scales) + 2), sharey=True
    )
    for j, scale in enumerate(scales):
        ys = [i + j * height for i, label in enumerate(labels) if scale in bars[label]]
        values = [bars[label][scale] for label in labels if scale in bars[label]]
        if len(scales) == 1:  # one run: colour by what a bar is (Derive, plain path, peer)
            colors: Any = [KIND_COLORS[kinds[label]] for label in labels if scale in bars[label]]
            legend = None
        else:
            colors, legend = None, f"run at --rows {scale:,}"
        ax_rate.barh(ys, [v[0] for v in values], height=height, label=legend, color=colors)
        ax_mem.barh(ys, [v[1] for v in values], height=height, label=legend, color=colors)
    ax_rate.set_yticks([i + height * (len(scales) - 1) / 2 for i in range(len(labels))], labels, fontsize=8)
    ax_rate.invert_yaxis()
    ax_rate.set_xscale("log")
    ax_rate.set_xlabel("rows/s (median; log scale)")
    ax_mem.set_xlabel("peak RSS, MB")
    ax_mem.axvline(600, color="red", linestyle="--", linewidth=1, label="600 MB target")
    if len(scales) == 1:
        from matplotlib.patches import Patch

        handles = [Patch(color=c, label=k) for k, c in KIND_COLORS.items()]
        ax_rate.legend(handles=handles, fontsize=8, title=f"run at --rows {scales[0]:,}", title_fontsize=8)
    else:
        ax_rate.legend(fontsize=8)
    ax_mem.legend(fontsize=8)
    fig.suptitle(f"Derive benchmarks, {results[-1]['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Chart one or more benchmark result files.")
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--png", type=Path, required=True)
    args = parser.parse_args()
    written = chart([json.loads(p.read_text()) for p in args.results], args.png)
    print(written or "matplotlib is not installed: pip install -r benchmarks/requirements.txt")


if __name__ == "__main__":
    main()
