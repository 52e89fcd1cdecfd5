"""`resources.schema_diff`: which spec changes a run applies, which it refuses, in what order, with what words."""

from __future__ import annotations

import dataclasses

import pytest

from resources.schema import ColumnDef
from resources.schema_diff import (
    BreakingSchemaChange,
    ExistingTable,
    SchemaChange,
    SchemaDiff,
    TableLayout,
    diff,
)
from resources.warehouse import TargetTable, WarehouseError

COLUMNS = (
    ColumnDef("day", "DATE", not_null=True),
    ColumnDef("region", "STRING"),
    ColumnDef("orders", "INT64"),
)
SPEC = TargetTable(
    "analytics",
    "daily",
    COLUMNS,
    cluster=("region",),
    partition_key="day",
    unique_key=("day", "region"),
    code_version="v1",
)


def table(columns: tuple[ColumnDef, ...] = COLUMNS, layout: TableLayout | None = None) -> ExistingTable:
    return ExistingTable("analytics.daily", columns, layout if layout is not None else TableLayout.of(SPEC))


def spec(*columns: ColumnDef, **layout: object) -> TargetTable:
    return dataclasses.replace(SPEC, columns=columns or COLUMNS, **layout)  # type: ignore[arg-type]


def kinds(found: SchemaDiff) -> list[tuple[str, str | None, bool]]:
    return [(c.kind, c.column, c.breaking) for c in found.changes]


# ----------------------------------------------------------------------------------------------- columns


def test_the_same_spec_has_no_changes_even_with_a_new_code_version():
    found = diff(spec(code_version="v2"), table())
    assert found.changes == ()
    assert found.describe() == ""


def test_a_new_nullable_column_is_additive():
    found = diff(spec(*COLUMNS, ColumnDef("avg_amount", "NUMERIC")), table())
    assert found.changes == (SchemaChange("add_column", "avg_amount", None, "NUMERIC", False),)
    assert found.additive == found.changes and found.breaking == ()
    assert found.describe() == "add column avg_amount NUMERIC (old rows hold NULL)"


def test_a_new_not_null_column_is_breaking():
    found = diff(spec(*COLUMNS, ColumnDef("n", "INT64", not_null=True)), table())
    assert kinds(found) == [("add_column", "n", True)]
    assert found.describe() == "add column n INT64 NOT NULL (the existing rows have no value for it)"


@pytest.mark.parametrize(
    ("before", "after"), [("INT64", "NUMERIC"), ("INT64", "FLOAT64"), ("NUMERIC", "FLOAT64")]
)
def test_widenings_are_additive(before, after):
    found = diff(
        spec(*COLUMNS[:2], ColumnDef("orders", after)), table((*COLUMNS[:2], ColumnDef("orders", before)))
    )
    assert found.changes == (SchemaChange("widen_type", "orders", before, after, False),)
    assert found.describe() == f"widen column orders {before} -> {after} (values kept)"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("NUMERIC", "INT64"),
        ("FLOAT64", "INT64"),
        ("FLOAT64", "NUMERIC"),
        ("STRING", "INT64"),
        ("INT64", "STRING"),
        ("TIMESTAMP", "DATE"),
        ("HUGEINT", "INT64"),
    ],
)
def test_narrowing_or_incompatible_type_changes_are_breaking(before, after):
    existing = table((*COLUMNS[:2], ColumnDef("orders", before)))  # type: ignore[arg-type]
    found = diff(spec(*COLUMNS[:2], ColumnDef("orders", after)), existing)  # type: ignore[arg-type]
    assert found.changes == (SchemaChange("change_type", "orders", before, after, True),)
    assert (
        found.describe()
        == f"change column orders {before} -> {after} (a narrowing or incompatible type change)"
    )


def test_a_dropped_or_renamed_column_is_breaking():
    renamed = spec(*COLUMNS[:2], ColumnDef("order_count", "INT64"))
    found = diff(renamed, table())
    assert kinds(found) == [("drop_column", "orders", True), ("add_column", "order_count", False)]
    assert found.changes[0].describe() == (
        "column orders INT64 is in the table but not in the spec (dropped or renamed)"
    )


def test_dropping_not_null_is_additive_adding_it_is_breaking():
    relaxed = diff(spec(ColumnDef("day", "DATE"), *COLUMNS[1:]), table())
    assert relaxed.changes == (SchemaChange("not_null", "day", "NOT NULL", "NULL", False),)
    assert relaxed.describe() == "column day becomes nullable (drop NOT NULL)"
    required = diff(spec(*COLUMNS[:2], ColumnDef("orders", "INT64", not_null=True)), table())
    assert required.changes == (SchemaChange("not_null", "orders", "NULL", "NOT NULL", True),)
    assert required.describe() == "column orders becomes NOT NULL (existing rows may hold NULL)"


def test_column_names_compare_case_insensitively():
    existing = table(
        (ColumnDef("DAY", "DATE", True), ColumnDef("Region", "STRING"), ColumnDef("orders", "INT64"))
    )
    assert diff(spec(), existing).changes == ()


# ----------------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize(
    ("layout", "kind", "line"),
    [
        ({"partition_key": "region"}, "partition", "partitioning day on day -> day on region"),
        ({"partition_key": None}, "partition", "partitioning day on day -> none"),
        ({"partition_granularity": "month"}, "partition", "partitioning day on day -> month on day"),
        ({"cluster": ("day",)}, "cluster", "cluster keys [region] -> [day]"),
        ({"cluster": ()}, "cluster", "cluster keys [region] -> none"),
        ({"unique_key": ("day",)}, "unique_key", "unique_key [day, region] -> [day]"),
    ],
)
def test_layout_changes_are_breaking(layout, kind, line):
    found = diff(spec(**layout), table())
    assert [(c.kind, c.breaking) for c in found.changes] == [(kind, True)]
    assert found.describe() == line


def test_the_order_of_unique_key_columns_and_the_case_of_names_do_not_matter():
    assert diff(spec(unique_key=("REGION", "day")), table()).changes == ()


def test_a_unique_key_is_compared_only_when_both_sides_have_one():
    assert diff(spec(unique_key=()), table()).changes == ()  # the table stops merging: append, replace
    unkeyed = dataclasses.replace(TableLayout.of(SPEC), unique_key=())
    assert diff(spec(), table(layout=unkeyed)).changes == ()  # an append table starts merging


def test_granularity_does_not_matter_without_a_partition_key():
    unpartitioned = dataclasses.replace(
        TableLayout.of(SPEC), partition_key=None, partition_granularity="month"
    )
    assert diff(spec(partition_key=None), table(layout=unpartitioned)).changes == ()


def test_a_table_without_a_marker_is_compared_by_its_columns_only():
    existing = ExistingTable("analytics.daily", COLUMNS, None)
    other_layout = spec(
        *COLUMNS, ColumnDef("x", "STRING"), partition_key=None, cluster=(), unique_key=("day",)
    )
    assert kinds(diff(other_layout, existing)) == [("add_column", "x", False)]


def test_changes_come_in_table_order_then_new_columns_then_layout():
    existing = table(
        (ColumnDef("a", "STRING"), ColumnDef("b", "INT64"), *COLUMNS, ColumnDef("c", "INT64", not_null=True))
    )
    changed = spec(
        ColumnDef("z", "STRING"),
        ColumnDef("c", "NUMERIC"),
        *COLUMNS,
        ColumnDef("b", "FLOAT64"),
        ColumnDef("y", "DATE"),
        cluster=("day",),
        partition_granularity="month",
        unique_key=("day",),
    )
    assert kinds(diff(changed, existing)) == [
        ("drop_column", "a", True),
        ("widen_type", "b", False),
        ("widen_type", "c", False),
        ("not_null", "c", False),
        ("add_column", "z", False),
        ("add_column", "y", False),
        ("partition", "day", True),
        ("cluster", None, True),
        ("unique_key", None, True),
    ]


# ----------------------------------------------------------------------------------------------- marker


def test_the_marker_round_trips_the_layout():
    layout = TableLayout.of(SPEC)
    assert TableLayout.from_marker(layout.to_marker()) == layout
    assert layout == TableLayout("day", "day", ("region",), ("day", "region"), "v1")


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "Daily orders per region",
        "{not json",
        "[1, 2]",
        '{"derive": 2}',
        '{"derive": 1, "cluster": 5}',
    ],
)
def test_text_that_is_not_a_derive_marker_reads_as_no_marker(text):
    assert TableLayout.from_marker(text) is None


# ----------------------------------------------------------------------------------------------- the error


def test_the_breaking_error_names_the_table_each_change_and_the_fix():
    changed = spec(*COLUMNS[:2], ColumnDef("orders", "STRING"), ColumnDef("avg", "NUMERIC"), cluster=("day",))
    found = diff(changed, table())
    with pytest.raises(BreakingSchemaChange) as caught:
        raise BreakingSchemaChange(found)
    assert isinstance(caught.value, WarehouseError)
    assert caught.value.diff is found
    assert str(caught.value).splitlines() == [
        "analytics.daily: the spec no longer matches the existing table:",
        "  - change column orders INT64 -> STRING (a narrowing or incompatible type change)",
        "  - cluster keys [region] -> [day]",
        "Also different (additive: a run applies these by itself):",
        "  - add column avg NUMERIC (old rows hold NULL)",
        "Run `derive rebuild analytics.daily` to rebuild it from the spec (the old table stays until the new one "
        "is complete), or change the spec back. Nothing was written.",
    ]
