"""A bare one-asset Dagster project: the reference for `dagster asset materialize` of one Derive spec.

It does what the Derive spec `bench.one` does (benchmarks/specs.py, `one_asset_specs`): build a one-row table by
SQL in a DuckDB file. Run it with

    BENCH_DUCKDB_PATH=/tmp/bare.duckdb dagster asset materialize -f benchmarks/bare_project/definitions.py \
        --select bench/one
"""

import os

import duckdb
from dagster import Definitions, MaterializeResult, asset


@asset(key_prefix=["bench"])
def one() -> MaterializeResult:
    con = duckdb.connect(os.environ["BENCH_DUCKDB_PATH"])
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS bench")
        con.execute("CREATE OR REPLACE TABLE bench.one AS SELECT 1 AS n, 'x' AS label")
        rows = con.execute("SELECT count(*) FROM bench.one").fetchone()
    finally:
        con.close()
    return MaterializeResult(metadata={"dagster/row_count": rows[0] if rows else 0})


defs = Definitions(assets=[one])
