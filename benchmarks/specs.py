"""Spec directories the benchmark runs Derive on, written as YAML like a team would write them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

OWNER = "team-bench@example.com"
ORDER_COLUMNS = [
    {"name": "id", "type": "INT64"},
    {"name": "user_id", "type": "INT64"},
    {"name": "status", "type": "STRING"},
    {"name": "amount", "type": "NUMERIC"},
    {"name": "created_at", "type": "TIMESTAMP"},
    {"name": "updated_at", "type": "TIMESTAMP"},
]
DERIVED_COLUMNS = [
    {"name": "day", "type": "DATE", "constraints": {"not_null": True}},
    {"name": "status", "type": "STRING"},
    {"name": "orders", "type": "INT64"},
    {"name": "buyers", "type": "INT64"},
    {"name": "revenue", "type": "NUMERIC"},
]
DERIVED_SQL = """\
SELECT DATE(o.created_at) AS day, o.status, COUNT(*) AS orders, COUNT(DISTINCT o.user_id) AS buyers,
       SUM(o.amount) AS revenue
FROM {source}.orders AS o
WHERE o.created_at >= @window_start AND o.created_at < @window_end
GROUP BY day, status
"""


def _write(path: Path, spec: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def source_spec(name: str, source_type: str, env_var: str) -> dict[str, Any]:
    """One source with the `orders` table: primary key `id`, cursor `updated_at`, no column checks (the
    replication asset alone is measured, not the checks that would follow it)."""
    return {
        "kind": "source",
        "name": name,
        "type": source_type,
        "connection_env": env_var,
        "owner": OWNER,
        "tables": [
            {"name": "orders", "primary_key": ["id"], "cursor": "updated_at", "columns": ORDER_COLUMNS}
        ],
    }


def replication_specs(dest: Path, name: str, source_type: str, env_var: str) -> Path:
    _write(dest / "sources" / f"{name}.yaml", source_spec(name, source_type, env_var))
    return dest


def export_specs(dest: Path, source: str, env_var: str, keyspace: str) -> Path:
    """The replicated `<source>.orders` and an export of all of it, keyed by `id`, to `keyspace.orders_online`."""
    replication_specs(dest, source, "postgres", env_var)
    export = {
        "kind": "export",
        "name": "orders_online",
        "table": f"{source}.orders",
        "owner": OWNER,
        "keyspace": keyspace,
        "partition_key": ["id"],
        "consistency": "LOCAL_ONE",
    }
    _write(dest / "exports" / "orders_online.yaml", export)
    return dest


def derived_spec(name: str, source: str) -> dict[str, Any]:
    """A daily merge table like `analytics.daily_payments_by_region`: window, partition, cluster, checks."""
    return {
        "name": name,
        "dataset": "bench",
        "owner": OWNER,
        "strategy": {"type": "merge", "unique_key": ["day", "status"]},
        "schedule": "30 0 * * *",
        "window": {"size": "1d", "start": "2026-01-01"},
        "partition": {"key": "day", "granularity": "day"},
        "cluster": ["status"],
        "columns": DERIVED_COLUMNS,
        "sql": DERIVED_SQL.format(source=source),
    }


def many_derived_specs(dest: Path, copies: int) -> Path:
    """`copies` derived specs over one (sqlite) source table, as a large spec project would have."""
    replication_specs(dest, "shop", "sqlite", "DERIVE_BENCH_SHOP_URL")
    for i in range(copies):
        _write(dest / "bench" / f"orders_daily_{i:04d}.yaml", derived_spec(f"orders_daily_{i:04d}", "shop"))
    return dest


def one_asset_specs(dest: Path) -> Path:
    """The smallest Derive project: one table built by SQL, the same as benchmarks/bare_project's asset."""
    spec = {
        "name": "one",
        "dataset": "bench",
        "owner": OWNER,
        "strategy": {"type": "replace"},
        "columns": [{"name": "n", "type": "INT64"}, {"name": "label", "type": "STRING"}],
        "sql": "SELECT 1 AS n, 'x' AS label",
    }
    _write(dest / "bench" / "one.yaml", spec)
    return dest
