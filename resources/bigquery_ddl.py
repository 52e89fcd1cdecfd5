"""BigQuery table layout from a spec: the API `Table` that creates it (with Derive's marker), the DDL text that
would, and the check that an existing table still has the spec's partitioning and clustering.

Tables are created through the API, not with DDL statements: the emulator (and older tooling) does not record
`PARTITION BY`/`CLUSTER BY` given in DDL, while `TimePartitioning` and `clustering_fields` work everywhere.
`ddl_for` is the same layout as text, for people to read (`derive plan`).
"""

from __future__ import annotations

from google.cloud import bigquery

from resources.schema import COLUMN_TYPES
from resources.schema_diff import TableLayout
from resources.sql_text import quote, table_name
from resources.warehouse import TargetTable, WarehouseError

B = "bigquery"
MAX_CLUSTER_KEYS = 4
MANAGED_LABEL = "derive-managed"
"""The label on every table Derive creates (its marker is the description: `set_marker`)."""

BIGQUERY_TYPES: dict[str, str] = {t: t for t in COLUMN_TYPES}
"""Spec type -> BigQuery type: the spec already speaks BigQuery (NUMERIC is (38, 9), TIMESTAMP is UTC)."""

CAST_TYPES: dict[str, str] = {**BIGQUERY_TYPES, "NUMERIC": "NUMERIC(38, 9)"}
"""Spec type -> type to `CAST` to. `NUMERIC(38, 9)` is the same type as `NUMERIC` on BigQuery; spelled out
because the emulator turns a bare `CAST(x AS NUMERIC)` into DECIMAL(18, 3) and would round to three places."""

_LEGACY_NAMES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}

_PARTITION_TYPES = {
    "hour": bigquery.TimePartitioningType.HOUR,
    "day": bigquery.TimePartitioningType.DAY,
    "month": bigquery.TimePartitioningType.MONTH,
    "year": bigquery.TimePartitioningType.YEAR,
}

_DAY_MS = 86_400_000


def standard_type(field_type: str) -> str:
    """The GoogleSQL name of a type the API reports (it may say INTEGER, FLOAT, BOOLEAN)."""
    upper = field_type.upper()
    return _LEGACY_NAMES.get(upper, upper)


def schema_for(target: TargetTable) -> list[bigquery.SchemaField]:
    return [
        bigquery.SchemaField(
            c.name,
            BIGQUERY_TYPES[c.type],
            mode="REQUIRED" if c.not_null else "NULLABLE",
            description=c.description,
        )
        for c in target.columns
    ]


def cluster_fields(target: TargetTable) -> list[str] | None:
    """The table's cluster keys: the spec's (at most four), or the first four of a replicated table's key."""
    return list(target.cluster[:MAX_CLUSTER_KEYS]) or None


def time_partitioning(target: TargetTable) -> bigquery.TimePartitioning | None:
    if target.partition_key is None:
        return None
    key_type = target.column(target.partition_key).type
    if key_type == "DATE" and target.partition_granularity == "hour":
        raise WarehouseError(
            f"{target.ref}: partition key '{target.partition_key}' is a DATE, which BigQuery cannot partition by "
            "hour; set partition.granularity to day, month or year, or partition by a DATETIME or TIMESTAMP "
            "column."
        )
    expiration = target.partition_expiration_days
    return bigquery.TimePartitioning(
        type_=_PARTITION_TYPES[target.partition_granularity],
        field=target.partition_key,
        expiration_ms=expiration * _DAY_MS if expiration else None,
    )


def table_for(target: TargetTable, project: str) -> bigquery.Table:
    """The API object that creates the table with the spec's columns, modes and layout."""
    table = bigquery.Table(f"{project}.{target.ref}", schema=schema_for(target))
    table.time_partitioning = time_partitioning(target)
    table.clustering_fields = cluster_fields(target)
    if target.partition_key is not None and target.require_partition_filter:
        table.require_partition_filter = True
    set_marker(table, target)
    return table


def set_marker(table: bigquery.Table, target: TargetTable) -> None:
    """Put Derive's marker on an API table object (before `create_table` or `update_table`): the description
    is the target's `TableLayout` as JSON, and the label `derive-managed` says so to people and filters."""
    table.description = TableLayout.of(target).to_marker()
    table.labels = {**(table.labels or {}), MANAGED_LABEL: "true"}


def ddl_for(target: TargetTable) -> str:
    """The `CREATE TABLE` statement with the same layout as `table_for`, for display (e.g. `derive plan`).

    Example:
        ```sql
        CREATE TABLE IF NOT EXISTS `analytics`.`daily` (
          `day` DATE NOT NULL,
          `region` STRING
        )
        PARTITION BY `day`
        CLUSTER BY `region`
        OPTIONS (partition_expiration_days = 30, require_partition_filter = TRUE)
        ```
    """
    columns = ",\n".join(
        f"  {quote(c.name, B)} {BIGQUERY_TYPES[c.type]}" + (" NOT NULL" if c.not_null else "")
        for c in target.columns
    )
    lines = [f"CREATE TABLE IF NOT EXISTS {table_name(target.ref, B)} (\n{columns}\n)"]
    options = []
    if target.partition_key is not None:
        time_partitioning(target)  # rejects an hourly DATE partition
        lines.append(f"PARTITION BY {partition_expression(target)}")
        if target.partition_expiration_days:
            options.append(f"partition_expiration_days = {int(target.partition_expiration_days)}")
        if target.require_partition_filter:
            options.append("require_partition_filter = TRUE")
    cluster = cluster_fields(target)
    if cluster:
        lines.append("CLUSTER BY " + ", ".join(quote(c, B) for c in cluster))
    if options:
        lines.append(f"OPTIONS ({', '.join(options)})")
    return "\n".join(lines)


def partition_expression(target: TargetTable) -> str:
    """`PARTITION BY` expression: the column for daily DATE partitions, else `<TYPE>_TRUNC(column, UNIT)`."""
    assert target.partition_key is not None
    col = quote(target.partition_key, B)
    key_type = target.column(target.partition_key).type
    unit = target.partition_granularity.upper()
    if key_type == "DATE":
        return col if unit == "DAY" else f"DATE_TRUNC({col}, {unit})"
    return f"{key_type}_TRUNC({col}, {unit})"


def layout_problems(target: TargetTable, table: bigquery.Table) -> list[str]:
    """How an existing table's partitioning and clustering differ from the spec (empty when they match).

    `require_partition_filter` is not compared: the emulator does not keep it, and BigQuery can change it in
    place (`ALTER TABLE ... SET OPTIONS (require_partition_filter = ...)`).
    """
    problems = []
    want = time_partitioning(target)
    have = table.time_partitioning
    if table.range_partitioning is not None:
        problems.append(
            f"partitioning: expected {_describe_partitioning(want)}, "
            f"actual integer-range partitioning on '{table.range_partitioning.field}'"
        )
    elif _partitioning_key(want) != _partitioning_key(have):
        problems.append(
            f"partitioning: expected {_describe_partitioning(want)}, actual {_describe_partitioning(have)}"
        )
    elif (
        want is not None and have is not None and (want.expiration_ms or None) != (have.expiration_ms or None)
    ):
        problems.append(
            f"partition expiration: expected {_describe_expiration(want)}, actual {_describe_expiration(have)}"
        )
    want_cluster = cluster_fields(target)
    have_cluster = list(table.clustering_fields or []) or None
    if want_cluster != have_cluster:
        problems.append(f"clustering: expected {want_cluster or 'none'}, actual {have_cluster or 'none'}")
    return problems


def check_layout(target: TargetTable, table: bigquery.Table) -> None:
    """Raise `WarehouseError` when an existing table's layout differs from the spec (never altered here)."""
    problems = layout_problems(target, table)
    if not problems:
        return
    listed = "\n".join(f"  - {p}" for p in problems)
    raise WarehouseError(
        f"{target.ref}: the existing BigQuery table does not have the layout its spec declares:\n{listed}\n"
        "Derive does not change an existing table's partitioning or clustering. Recreate or migrate the table "
        "(e.g. `CREATE TABLE <new> PARTITION BY ... CLUSTER BY ... AS SELECT * FROM <old>`, then swap the "
        f"names; `derive plan` prints the DDL; `derive rebuild {target.ref}` does it from the spec), or change "
        "the spec to match the table. Nothing was written."
    )


def _partitioning_key(p: bigquery.TimePartitioning | None) -> tuple[str, str | None] | None:
    return None if p is None else (str(p.type_).upper(), p.field)


def _describe_partitioning(p: bigquery.TimePartitioning | None) -> str:
    if p is None:
        return "no partitioning"
    unit = str(p.type_).lower()
    return f"{unit} partitions on '{p.field}'" if p.field else f"{unit} partitions on ingestion time"


def _describe_expiration(p: bigquery.TimePartitioning) -> str:
    if not p.expiration_ms:
        return "none"
    days = p.expiration_ms / _DAY_MS
    return f"{days:g} days"
