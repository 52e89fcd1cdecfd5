"""Spec directories the benchmark runs Derive on, written as YAML like a team would write them."""

from __future__ import annotations

import random
from dataclasses import dataclass
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


# ----------------------------------------------------------------------------------------------- at scale

SCALE_SOURCE = "shop"
SCALE_SOURCE_TABLES = 5
SCALE_CRON = "30 0 * * *"
SCALE_START = "2026-01-01"
SCALE_STATUSES = ["placed", "shipped", "delivered", "cancelled"]
SCALE_COLUMNS = [
    {"name": "day", "type": "DATE", "constraints": {"not_null": True}},
    {
        "name": "status",
        "type": "STRING",
        "constraints": {"not_null": True, "accepted_values": SCALE_STATUSES},
    },
    {"name": "row_key", "type": "STRING", "constraints": {"not_null": True, "unique": True}},
    {"name": "orders", "type": "INT64"},
    {"name": "revenue", "type": "NUMERIC"},
]
SCALE_CHECKS = [
    "day_not_null",
    "status_not_null",
    "status_accepted_values",
    "row_key_not_null",
    "row_key_unique",
]
"""The five column checks of every generated table, as Derive names them (`factory/checks.py`)."""


@dataclass(frozen=True)
class ScaleNode:
    """One generated table: where it lives and which tables (`dataset.name`) it reads."""

    dataset: str
    name: str
    layer: int
    reads: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{self.dataset}.{self.name}"


@dataclass(frozen=True)
class ScaleGraph:
    """The layered graph both sides of the `definitions` benchmark are generated from."""

    sources: tuple[str, ...]
    """Replicated source tables (`shop.orders_<k>`), read by layer 1."""
    nodes: tuple[ScaleNode, ...]

    @property
    def datasets(self) -> list[str]:
        return sorted({n.dataset for n in self.nodes})


def scale_graph(n: int, seed: int = 12) -> ScaleGraph:
    """`n` tables in up to 5 layers, deterministic for (`n`, `seed`). Layer 1 (a fifth of the tables, at least
    one) each reads one source table; a table of a later layer reads one table of the layer before, and every
    second one joins a second table of any earlier layer. Datasets (asset key prefixes) hold ~100 tables each,
    assigned round-robin, so dependencies cross datasets as they do in a real project."""
    if n < 1:
        raise ValueError(f"scale_graph needs at least one table, got {n}")
    rng = random.Random(seed)
    sources = tuple(f"{SCALE_SOURCE}.orders_{k}" for k in range(SCALE_SOURCE_TABLES))
    datasets = max(1, n // 100)
    layers = min(5, n)
    sizes = [n // layers + (1 if i < n % layers else 0) for i in range(layers)]
    nodes: list[ScaleNode] = []
    by_layer: list[list[ScaleNode]] = []
    for layer, size in enumerate(sizes, start=1):
        current: list[ScaleNode] = []
        for _ in range(size):
            i = len(nodes)
            if layer == 1:
                reads: tuple[str, ...] = (sources[i % len(sources)],)
            else:
                first = rng.choice(by_layer[-1]).ref
                earlier = [x.ref for layer_nodes in by_layer for x in layer_nodes if x.ref != first]
                reads = (first, rng.choice(earlier)) if i % 2 and earlier else (first,)
            node = ScaleNode(f"bench_{i % datasets:02d}", f"t_{i:04d}", layer, reads)
            nodes.append(node)
            current.append(node)
        by_layer.append(current)
    return ScaleGraph(sources, tuple(nodes))


def _scale_sql(node: ScaleNode) -> str:
    if node.layer == 1:
        return (
            "SELECT DATE(o.created_at) AS day, o.status,\n"
            "       CONCAT(CAST(DATE(o.created_at) AS STRING), '/', o.status) AS row_key,\n"
            "       COUNT(*) AS orders, SUM(o.amount) AS revenue\n"
            f"FROM {node.reads[0]} AS o\n"
            "WHERE o.created_at >= @window_start AND o.created_at < @window_end\n"
            "GROUP BY day, status, row_key\n"
        )
    if len(node.reads) == 1:
        return (
            "SELECT u.day, u.status, u.row_key, u.orders, u.revenue\n"
            f"FROM {node.reads[0]} AS u\n"
            "WHERE u.day >= DATE(@window_start) AND u.day < DATE(@window_end)\n"
        )
    return (
        "SELECT a.day, a.status, a.row_key, a.orders + COALESCE(b.orders, 0) AS orders,\n"
        "       a.revenue + COALESCE(b.revenue, 0) AS revenue\n"
        f"FROM {node.reads[0]} AS a\n"
        f"LEFT JOIN {node.reads[1]} AS b ON b.row_key = a.row_key\n"
        "WHERE a.day >= DATE(@window_start) AND a.day < DATE(@window_end)\n"
    )


def scale_spec(node: ScaleNode) -> dict[str, Any]:
    """A daily-windowed, partitioned, clustered merge table with five column checks."""
    return {
        "name": node.name,
        "dataset": node.dataset,
        "description": f"Layer {node.layer}: orders and revenue per day and status.",
        "owner": OWNER,
        "strategy": {"type": "merge", "unique_key": ["day", "status"]},
        "schedule": SCALE_CRON,
        "window": {"size": "1d", "start": SCALE_START},
        "partition": {"key": "day", "granularity": "day"},
        "cluster": ["status"],
        "columns": SCALE_COLUMNS,
        "sql": _scale_sql(node),
    }


def scale_specs(dest: Path, graph: ScaleGraph) -> Path:
    """The Derive side: one sqlite source with the graph's source tables, and one YAML per table."""
    source = source_spec(SCALE_SOURCE, "sqlite", "DERIVE_BENCH_SHOP_URL")
    source["tables"] = [{**source["tables"][0], "name": ref.split(".")[1]} for ref in graph.sources]
    _write(dest / "sources" / f"{SCALE_SOURCE}.yaml", source)
    for node in graph.nodes:
        _write(dest / node.dataset / f"{node.name}.yaml", scale_spec(node))
    return dest


def _key(ref: str) -> str:
    return repr(ref.split("."))


def floor_module(graph: ScaleGraph) -> str:
    """The floor: a plain Dagster module with the same assets as `scale_specs(graph)` gives, by hand, no specs.

    The same keys, dependency edges, groups (the layers: `sources`, `derived`), owners, kinds, code versions,
    daily partitions, cron automation conditions and five blocking `AssetCheckSpec`s per table; the source tables
    are unpartitioned assets without checks or conditions, like the Derive source's replication assets here.
    Bodies do nothing (the benchmark only loads definitions and evaluates conditions)."""
    lines = [
        '"""Generated by benchmarks/specs.py `floor_module`: Dagster\'s floor for the definitions benchmark."""',
        "",
        "from dagster import AssetCheckSpec, AutomationCondition, DailyPartitionsDefinition, Definitions, asset",
        "",
        f"DAILY = DailyPartitionsDefinition(start_date={SCALE_START!r})",
        f"OWNERS = [{OWNER!r}]",
        "",
    ]
    names: list[str] = []
    for ref in graph.sources:
        fn = ref.replace(".", "__")
        names.append(fn)
        lines += [
            f"@asset(key={_key(ref)}, group_name='sources', owners=OWNERS, kinds={{'sqlite', 'duckdb'}},",
            f"       description='Replicated {ref}.')",
            f"def {fn}() -> None:",
            "    pass",
            "",
        ]
    for node in graph.nodes:
        fn = node.ref.replace(".", "__")
        names.append(fn)
        key = _key(node.ref)
        checks = ", ".join(f"AssetCheckSpec({c!r}, asset={key}, blocking=True)" for c in SCALE_CHECKS)
        lines += [
            "@asset(",
            f"    key={key},",
            f"    deps=[{', '.join(_key(r) for r in node.reads)}],",
            "    partitions_def=DAILY,",
            "    group_name='derived',",  # the specs' default layer
            "    owners=OWNERS,",
            "    kinds={'duckdb', 'sql'},",
            "    code_version='1',",
            f"    description={scale_spec(node)['description']!r},",
            f"    automation_condition=AutomationCondition.on_cron({SCALE_CRON!r}, 'UTC'),",
            f"    check_specs=[{checks}],",
            ")",
            f"def {fn}():",
            "    pass",
            "",
        ]
    lines += ["", "defs = Definitions(assets=[", *(f"    {name}," for name in names), "])", ""]
    return "\n".join(lines)


def write_floor(dest: Path, graph: ScaleGraph) -> Path:
    path = dest / "floor_definitions.py"
    dest.mkdir(parents=True, exist_ok=True)
    path.write_text(floor_module(graph))
    return path
