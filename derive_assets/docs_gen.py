"""Generate the spec reference (`docs/spec-reference.md`) and the editor schema (`docs/spec.schema.json`).

Both come from the pydantic models in `derive_assets.specs.models`, whose field docstrings are the user
documentation (pydantic exposes them as `description`), so the docs cannot drift from what the loader accepts.
`tests/unit/test_docs.py` fails when the committed files differ from fresh output. Regenerate with

    .venv/bin/python -m derive_assets.docs_gen          # rewrite both files
    .venv/bin/python -m derive_assets.docs_gen --check  # exit 1 if either is out of date
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, TypeAdapter
from pydantic.fields import FieldInfo

from derive_assets.specs.kubernetes import (
    DefaultsFile,
    KubernetesSettings,
    ResourceName,
    Resources,
    SecretKeyRef,
    Toleration,
)
from derive_assets.specs.models import (
    IDENTIFIER,
    AppendStrategy,
    Column,
    ColumnType,
    Constraints,
    ExportSpec,
    FreshnessCheck,
    Granularity,
    MergeStrategy,
    Partition,
    Relationship,
    ReplaceStrategy,
    RowCountCheck,
    SnapshotSpec,
    SoftDelete,
    SourceSpec,
    SourceTable,
    SqlCheck,
    TableChecks,
    TableSpec,
    Window,
    WindowSize,
)
from derive_assets.specs.type_check import conversion
from resources.sql_text import DUCKDB_TYPES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOCS_DIR = PROJECT_ROOT / "docs"
REFERENCE_PATH = DOCS_DIR / "spec-reference.md"
SCHEMA_PATH = DOCS_DIR / "spec.schema.json"
REGENERATE = ".venv/bin/python -m derive_assets.docs_gen"

# Each documented model: (heading anchor name, where it appears in a spec file, a sentence about it).
SECTIONS: list[tuple[type[BaseModel], str, str]] = [
    (
        TableSpec,
        "a file under `table_specs/<dataset>/` (`kind: table`, the default)",
        "A core or derived table: the BigQuery SQL that builds it, run once per window (or once per run when "
        "it has no window).",
    ),
    (
        Column,
        "`columns[]` of a table or of a source table",
        "One output column, in the order the SQL outputs it.",
    ),
    (
        Constraints,
        "`columns[].constraints`",
        "Data-quality rules; each rule that is set becomes a Dagster asset check.",
    ),
    (
        Relationship,
        "`columns[].constraints.relationships`",
        "The key column another table's values must exist in (docs/checks.md).",
    ),
    (
        MergeStrategy,
        "`strategy` with `type: merge`",
        "Rows the run outputs replace the table's rows with the same `unique_key`; new keys are inserted.",
    ),
    (
        AppendStrategy,
        "`strategy` with `type: append` (shorthand `strategy: append`)",
        "The run's rows replace the table's rows inside the run's window (by `partition.key`); rows outside "
        "the window are never touched. Needs `window` and `partition`.",
    ),
    (
        ReplaceStrategy,
        "`strategy` with `type: replace` (shorthand `strategy: replace`)",
        "The table becomes exactly the query's output at each run. It has no `window` (each window's run would "
        "delete every other window's rows): a table processed window by window is `append` or `merge`.",
    ),
    (Window, "`window`", "The time range one run processes; each window is one Dagster partition."),
    (Partition, "`partition`", "How the table is time-partitioned; needs a `window`."),
    (
        TableChecks,
        "`checks` of a table or of a source table",
        "Table-level quality checks beyond column constraints (docs/checks.md).",
    ),
    (RowCountCheck, "`checks.row_count`", "Bounds on the rows of each window (or of the table)."),
    (FreshnessCheck, "`checks.freshness`", "How late the table may be; Dagster's freshness checks."),
    (SqlCheck, "`checks.sql[]`", "A query returning the rows that break a rule."),
    (
        SourceSpec,
        "a file under `table_specs/sources/` (`kind: source`)",
        "A transactional database whose tables are replicated incrementally into the warehouse.",
    ),
    (SourceTable, "`tables[]` of a source", "One replicated table."),
    (SoftDelete, "`tables[].soft_delete` of a source", "How deleted rows are recognised."),
    (SnapshotSpec, "`tables[].snapshot` of a source", "How a large first load is chunked and resumed."),
    (
        ExportSpec,
        "a file under `table_specs/exports/` (`kind: export`)",
        "A warehouse table exported to the online store (ScyllaDB/Cassandra in production, SQLite locally) for "
        "millisecond reads by key.",
    ),
    (
        KubernetesSettings,
        "`kubernetes` of a table, a source, a source table or an export, and of a `_defaults.yaml`",
        "The pod the asset's step runs in when runs execute with `DERIVE_EXECUTOR=k8s` (dagster-k8s "
        "`k8s_job_executor`, one pod per step): it becomes the step's `dagster-k8s/config` tag. Other executors "
        "ignore it. Never part of a code version. Inherited from directory defaults (see "
        "[Directory defaults](#directory-defaults)).",
    ),
    (
        Resources,
        "`kubernetes.resources`",
        "Requests and limits of the step's container, as [Kubernetes quantities](#quantity).",
    ),
    (Toleration, "`kubernetes.tolerations[]`", "A node taint the step's pod tolerates."),
    (SecretKeyRef, "`kubernetes.secret_env.<VARIABLE>`", "One key of one Secret, read into one variable."),
]

# Closed choices that get their own section (other Literals are short enough to show inline).
NAMED_LITERALS: list[tuple[str, Any, str]] = [
    (
        "ColumnType",
        ColumnType,
        "Column types use BigQuery's names (BigQuery is the production dialect). Write them in upper case "
        "(the loader also accepts lower case; the editor schema does not). Each warehouse maps them to its "
        "own types:",
    ),
    (
        "WindowSize",
        WindowSize,
        "`1h` hour, `1d` day, `1w` week, `1mo` calendar month; all windows are in UTC. A DATE partition key "
        "needs a window of at least a day.",
    ),
    ("Granularity", Granularity, "BigQuery time-partitioning unit of the table (`partition.granularity`)."),
    (
        "ResourceName",
        ResourceName,
        "The resources a `kubernetes.resources` block may request or limit (other Kubernetes resources, such as "
        "GPUs, are the run launcher's to configure).",
    ),
]

# ---------------------------------------------------------------------------------------------- markdown


def render_reference() -> str:
    """The whole `docs/spec-reference.md`, generated from the models."""
    out = [
        "# Spec reference",
        "",
        f"<!-- Generated from derive_assets/specs/models.py by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "Every YAML file under `table_specs/` is one spec: a **table** (core or derived, built by SQL) or "
        "a **source** (a transactional database replicated into the warehouse) or an **export** (a table "
        "copied to the online store for reads by key). Unknown keys are errors, so "
        "a typo fails when the specs load (`derive validate`), not halfway through a run. What each error "
        "means: [validation-errors.md](validation-errors.md). A first table, step by step: "
        "[adding-a-table.md](adding-a-table.md).",
        "",
        "## Editor support",
        "",
        "[`spec.schema.json`](spec.schema.json) is a JSON Schema of both kinds of spec, generated from the "
        "same models. With the YAML extension of VS Code (or any editor using yaml-language-server), put "
        "this first line in a spec file to get completion, hover documentation and errors as you type:",
        "",
        "```yaml",
        "# yaml-language-server: $schema=../../docs/spec.schema.json",
        "```",
        "",
        "(the path is relative to the spec file), or map all specs at once in `.vscode/settings.json`:",
        "",
        "```json",
        '{"yaml.schemas": {"./docs/spec.schema.json": "table_specs/**/*.yaml"}}',
        "```",
        "",
        "The schema checks each file on its own; the rules across fields and files below are checked by "
        "`derive validate` only.",
        "",
        "## Contents",
        "",
    ]
    out += [f"- [{model.__name__}](#{model.__name__.lower()}) — {where}" for model, where, _ in SECTIONS]
    out += [f"- [{name}](#{name.lower()}) — allowed values" for name, _, _ in NAMED_LITERALS]
    out += [
        "- [Quantity](#quantity) — CPU, memory and storage amounts",
        "- [Directory defaults](#directory-defaults) — `_defaults.yaml`",
        "- [Rules across fields and files](#rules-across-fields-and-files)",
        "",
    ]
    for model, where, about in SECTIONS:
        out += _model_section(model, where, about)
    for name, literal, about in NAMED_LITERALS:
        out += [f"## {name}", "", about, ""]
        if literal == ColumnType:
            out += ["| Type | DuckDB type |", "| --- | --- |"]
            out += [f"| `{t}` | `{DUCKDB_TYPES[t]}` |" for t in get_args(ColumnType)]
            out += ["", *_type_check_section()]
        else:
            out += [", ".join(f"`{v}`" for v in get_args(literal)), ""]
    out += _kubernetes_sections()
    out += _rules_section()
    return "\n".join(out).rstrip() + "\n"


def _kubernetes_sections() -> list[str]:
    """Quantities and `_defaults.yaml` (`derive_assets.specs.kubernetes`)."""
    return [
        "## Quantity",
        "",
        "A CPU, memory or storage amount in Kubernetes' notation, checked when the specs load: a non-negative "
        "number (`2`, `0.5`, `.5`, `1e3`) with an optional unit. CPU is counted in cores: `500m` is half a core "
        "(millicores), and nothing finer than `1m`. Memory and storage are counted in bytes: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei` are powers of "
        "1024 (`512Mi`, `2Gi`), `k`, `M`, `G`, `T`, `P`, `E` powers of 1000 (`1k`, `4G`). `2GB`, `1 Gi`, `-1` and "
        "`abc` are refused with the unit to write instead. A limit below its request (`limits.memory: 1Gi` with "
        "`requests.memory: 2Gi`) is refused too, also when one of them comes from a defaults file.",
        "",
        "## Directory defaults",
        "",
        "A file named `_defaults.yaml` (or `_defaults.yml`) in a directory under `table_specs/` is not a spec: it "
        "holds one field, `kubernetes` (a [KubernetesSettings](#kubernetessettings)), that every spec file in its "
        "directory and below inherits, e.g. a dataset's node pool and default pod size:",
        "",
        "```yaml",
        "# table_specs/analytics/_defaults.yaml",
        "kubernetes:",
        "  resources:",
        "    requests: {cpu: 250m, memory: 512Mi}",
        "    limits: {memory: 1Gi}",
        "  node_selector: {cloud.google.com/gke-nodepool: etl}",
        "```",
        "",
        "- Files nearer the spec win: the specs root's `_defaults.yaml` first, then each directory's down to the "
        "spec's own, then the spec's `kubernetes` block (a source table's over its source's).",
        "- Merging is field by field: mappings (`resources.requests`, `node_selector`, `secret_env`) key by key; "
        "lists (`tolerations`, `env_from_secrets`) are replaced whole, and `[]` clears an inherited list.",
        "- A defaults file is checked like a spec (unknown fields, quantities, names), and its errors name it. "
        "While it has errors, the specs it applies to are not loaded (each says so), rather than run in pods "
        "without their defaults.",
        "- `derive pod <dataset.table>` prints the Kubernetes Job a table's step gets, defaults included.",
        "",
    ]


def _model_section(model: type[BaseModel], where: str, about: str) -> list[str]:
    lines = [f"## {model.__name__}", "", f"*Where:* {where}.", "", about, ""]
    lines += ["| Field | Type | Required / default | Description |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        lines.append(
            f"| `{name}` | {_cell(_field_type(field))} | {_cell(_requirement(field))} | "
            f"{_cell(_description(field))} |"
        )
    return [*lines, ""]


def _type_check_section() -> list[str]:
    """How declared types are checked against the SQL's (`derive_assets.specs.type_check`)."""
    declared = [t for t in get_args(ColumnType) if t not in ("JSON", "BYTES")]
    lines = [
        "### Declared types against the SQL",
        "",
        "Each run casts the query's output to the declared types, so `derive validate` checks that the cast "
        "keeps the values: the type the SQL computes (DuckDB's bind of the translated query, and sqlglot's "
        "BigQuery types where they differ) must be the declared type or widen to it. A lossy conversion "
        "(values would change) or an impossible one is an error naming the column, both types and the fix; "
        "an explicit `CAST(… AS <declared>)` in the SQL is your decision and passes. A bare `NULL` takes any "
        "type. `TIMESTAMP` ↔ `DATETIME` passes because Derive runs in UTC (a TIMESTAMP stored as DATETIME is its "
        "UTC wall-clock time). JSON, BYTES, ARRAY and STRUCT results must be declared as what they are.",
        "",
        "| SQL computes ↓ / declared → | " + " | ".join(f"`{t}`" for t in declared) + " |",
        "| --- | " + " | ".join("---" for _ in declared) + " |",
    ]
    marks = {"same": "=", "widening": "ok", "lossy": "lossy", "impossible": "—"}
    for computed in declared:
        row = [marks[conversion(computed, want)] for want in declared]
        lines.append(f"| `{computed}` | " + " | ".join(row) + " |")
    return [*lines, ""]


def _rules_section() -> list[str]:
    return [
        "## Rules across fields and files",
        "",
        "Checked when the specs load, besides the types above. The messages are listed in "
        "[validation-errors.md](validation-errors.md).",
        "",
        "- Column names are unique within a table; `strategy.unique_key`, `partition.key` and `cluster` name "
        "declared columns.",
        "- `append` needs both `window` and `partition`; a `partition` needs a `window`.",
        "- `partition.key` is a DATE, DATETIME or TIMESTAMP column; a DATE key cannot have a `1h` window.",
        "- `window.start` and `window.end` are real dates (`YYYY-MM-DD`); `end` is after `start` and leaves room "
        "for at least one whole window.",
        "- `strategy.delete_missing` needs a `window` and a `partition` whose key is in `strategy.unique_key`.",
        "- At most four `cluster` columns (BigQuery's limit).",
        "- `owner` is an e-mail address or `team:<name>` (what Dagster accepts as an asset owner).",
        "- `sql` is exactly one SELECT (`WITH … SELECT` is fine) in BigQuery Standard SQL; it reads tables "
        "as `dataset.name`, only tables that a spec or a source defines, and never itself; the only "
        "parameters are `@window_start` and `@window_end`, and only when the table has a `window`.",
        "- The tables a query reads are the table's dependencies; they must not form a cycle.",
        "- The query's output columns are exactly `columns`, in the same order, and each column's computed "
        "type fits its declared type (see [Declared types against the SQL](#declared-types-against-the-sql)).",
        "- `@window_start`/`@window_end` are never written inside quotes (`'@window_end'` is a string).",
        "- `dataset.name` is unique across all specs, replicated source tables included.",
        "- A source table's `primary_key`, `cursor` and `soft_delete.column` are declared columns; the "
        "cursor is INT64, TIMESTAMP, DATETIME or DATE.",
        "- `constraints.min`/`max` fit the column's type (numbers for INT64, FLOAT64 and NUMERIC; dates for DATE; "
        "dates or timestamps for DATETIME and TIMESTAMP; no other type has a range), and min <= max.",
        "- `constraints.relationships` names a table some spec or source defines and one of its columns, of the "
        "same type (or both numbers).",
        "- `checks.freshness` needs a `schedule` or a `window` (a source table: the source's `schedule`); a "
        "windowed table's grace (plus its schedule's lag after a window ends) is shorter than one window.",
        "- `checks.sql[].query` follows the rules of `sql` (one SELECT, known tables, `@window_start`/"
        "`@window_end` only in a windowed table); check names are unique and are not `row_count`, "
        "`freshness_check` or a column check's `<column>_<rule>`.",
        "",
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _description(field: FieldInfo) -> str:
    return re.sub(r"\s+", " ", field.description or "").strip()


def _requirement(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    factory = field.default_factory
    default = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if isinstance(default, BaseModel):
        return "default: `{}` (all off)" if not default.model_dump(exclude_defaults=True) else f"`{default}`"
    return f"default: `{json.dumps(default)}`"


def _field_type(field: FieldInfo) -> str:
    return _type_text(field.annotation, list(field.metadata))


def _type_text(annotation: Any, metadata: Iterable[Any] = ()) -> str:
    metadata = list(metadata)
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        # `Annotated[str, Field(pattern=...)]` keeps its constraints in the FieldInfo's own metadata.
        flat = [x for m in extra for x in ([m, *m.metadata] if isinstance(m, FieldInfo) else [m])]
        return _type_text(base, [*metadata, *flat])
    for name, literal, _ in NAMED_LITERALS:
        if annotation == literal:
            return f"[{name}](#{name.lower()})"
    if origin is Literal:
        return " or ".join(f"`{v}`" for v in get_args(annotation))
    if origin in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        text = " or ".join(_type_text(a) for a in args)
        return f"{text} or null" if len(args) < len(get_args(annotation)) else text
    if origin is dict:
        key, value = get_args(annotation)
        return f"mapping of {_type_text(key)} to {_type_text(value)}"
    if origin is list:
        (item,) = get_args(annotation)
        text = _type_text(item)
        if get_origin(item) in (Union, UnionType):
            *first, last = text.split(" or ")
            text = f"({', '.join(first)} or {last})"
        return "list of " + text + _length_rules(metadata)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return _scalar_text(annotation, metadata)


def _scalar_text(annotation: Any, metadata: list[Any]) -> str:
    if any(isinstance(m, AfterValidator) and m.func.__name__ == "_check_owner" for m in metadata):
        return "e-mail address or `team:<name>`"
    pattern = next((getattr(m, "pattern", None) for m in metadata if getattr(m, "pattern", None)), None)
    if pattern == IDENTIFIER:
        return "identifier"
    checks = {m.func.__name__ for m in metadata if isinstance(m, AfterValidator | BeforeValidator)}
    for check, text in _K8S_SCALARS.items():
        if check in checks:
            return text
    if any(isinstance(m, AfterValidator) and m.func.__name__ == "_check_duration" for m in metadata):
        return "duration (`2h`, `30m`, `1d12h`)"
    if pattern and r"\." in pattern:
        return "`dataset.name`"
    if pattern:
        return "ENV_VAR_NAME (upper case)"
    names = {str: "string", int: "integer", bool: "boolean", float: "number", dt.date: "date (YYYY-MM-DD)"}
    text = names.get(annotation, getattr(annotation, "__name__", str(annotation)))
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            text += f", ≥ {m.ge}"
        if isinstance(m, annotated_types.MinLen) and annotation is str:
            text += ", not empty"
    return text


_K8S_SCALARS = {
    "_check_quantity": "[quantity](#quantity) (`500m`, `2Gi`)",
    "_check_dns_subdomain": "Kubernetes name (`payments-db`)",
    "_check_label_key": "label key (`cloud.google.com/gke-nodepool`)",
    "_check_label_value": "label value",
    "_check_secret_key": "Secret key (`token`)",
}
"""The Kubernetes strings of `derive_assets.specs.kubernetes`, by their check."""


def _length_rules(metadata: list[Any]) -> str:
    rules = []
    for m in metadata:
        if isinstance(m, annotated_types.MinLen):
            rules.append(f"at least {m.min_length}")
        if isinstance(m, annotated_types.MaxLen):
            rules.append(f"at most {m.max_length}")
    return f" ({', '.join(rules)})" if rules else ""


# ---------------------------------------------------------------------------------------------- JSON Schema

Spec = Annotated[SourceSpec | TableSpec | ExportSpec | DefaultsFile, Field(title="Derive spec")]


def render_schema() -> str:
    """The whole `docs/spec.schema.json`: a JSON Schema accepting a table spec or a source spec."""
    schema = TypeAdapter(Spec).json_schema(mode="validation")
    defs = schema.get("$defs", {})
    # `strategy: append` / `strategy: replace` is accepted as shorthand for `{type: ...}` by a validator that
    # pydantic cannot describe; allow it in the schema too (merge always needs `unique_key`).
    strategy = defs["TableSpec"]["properties"]["strategy"]
    defs["TableSpec"]["properties"]["strategy"] = {
        "description": strategy.pop("description", ""),
        "anyOf": [strategy, {"type": "string", "enum": ["append", "replace"]}],
    }
    # `owner` is checked by a validator; give editors the same rule as a pattern.
    for name in ("TableSpec", "SourceSpec", "ExportSpec"):
        defs[name]["properties"]["owner"]["pattern"] = (
            r"^([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}|team:.+)$"
        )
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": (
            "A Derive spec under table_specs/: a core/derived table (kind: table, the default), a source "
            "(kind: source), an online export (kind: export), or a directory's _defaults.yaml (kubernetes: only). "
            f"Generated from derive_assets/specs/models.py by `{REGENERATE}`."
        ),
        **schema,
    }
    return json.dumps(_tidy(schema), indent=2, ensure_ascii=False) + "\n"


def _tidy(node: Any) -> Any:
    """Docstrings wrap lines; an editor's hover text should not."""
    if isinstance(node, dict):
        return {
            k: re.sub(r"\s+", " ", v).strip() if k == "description" and isinstance(v, str) else _tidy(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    return node


# ---------------------------------------------------------------------------------------------- files


def _write(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def write_reference(path: Path = REFERENCE_PATH) -> bool:
    """Write the spec reference; return whether the file changed."""
    return _write(path, render_reference())


def write_schema(path: Path = SCHEMA_PATH) -> bool:
    """Write the JSON Schema; return whether the file changed."""
    return _write(path, render_schema())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m derive_assets.docs_gen", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    args = parser.parse_args(argv)
    outputs = [(REFERENCE_PATH, render_reference()), (SCHEMA_PATH, render_schema())]
    stale = [path for path, text in outputs if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(PROJECT_ROOT)} is out of date; run {REGENERATE}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs:
        changed = _write(path, text)
        print(f"{'wrote' if changed else 'unchanged'} {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
