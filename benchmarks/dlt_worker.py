"""The dlt peer: `sql_database` -> DuckDB, run with benchmarks/.venv-dlt/bin/python (dlt has its own venv, so
its dependencies never touch the project's). Prints one JSON line like the other workers.

    benchmarks/.venv-dlt/bin/python benchmarks/dlt_worker.py '{"url": ..., "backend": "connectorx", ...}'
"""

from __future__ import annotations

import json
import sys
import time


def main(a: dict) -> dict:
    import dlt
    import pandas  # noqa: F401  (imported before timing, as in benchmarks/workers.py)
    from dlt.sources.sql_database import sql_database

    started = time.perf_counter()
    source = sql_database(
        credentials=a["url"],
        table_names=["orders"],
        backend=a["backend"],
        chunk_size=100_000,
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{a['backend']}",
        pipelines_dir=a["pipelines_dir"],
        destination=dlt.destinations.duckdb(a["duckdb"]),
        dataset_name="bench",
        progress="log" if a.get("verbose") else None,
    )
    pipeline.run(source, write_disposition="replace")
    seconds = time.perf_counter() - started
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("orders", 0)
    return {"seconds": seconds, "rows": rows, "dlt": dlt.__version__, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """VmHWM, as benchmarks/workers.py reports it."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return round(int(line.split()[1]) / 1024, 1)


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
