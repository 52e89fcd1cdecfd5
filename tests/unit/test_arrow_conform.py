"""`resources.arrow_conform`: exact casts in Arrow, everything else left to the warehouse's cast; and
`resources.batch_stream`: one statement per run of one schema, source errors raised as they are."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from resources.arrow_conform import BIGQUERY_ARROW_TYPES, DUCKDB_ARROW_TYPES, conform, conform_array
from resources.batch_stream import scan_in_thread
from resources.duckdb_warehouse import DuckDBWarehouse
from resources.schema import ColumnDef
from resources.warehouse import LoadRequest, NullKeys, TargetTable

NUMERIC = DUCKDB_ARROW_TYPES["NUMERIC"]
UTC_US = pa.timestamp("us", tz="UTC")


def test_a_drivers_decimal_38_10_becomes_the_warehouses_38_9_when_exact() -> None:
    values = [Decimal("12.3400000000"), Decimal("-0.0100000000"), Decimal("0"), None]
    out = conform_array(pa.array(values, pa.decimal128(38, 10)), NUMERIC)
    assert out.type == pa.decimal128(38, 9)
    assert out.to_pylist() == [Decimal("12.34"), Decimal("-0.01"), Decimal("0"), None]


def test_a_decimal_with_more_places_than_the_scale_is_left_for_the_warehouses_rounding() -> None:
    raw = pa.array([Decimal("1.0000000001"), Decimal("2")], pa.decimal128(38, 10))
    assert conform_array(raw, NUMERIC) is raw  # ArrowInvalid: DuckDB's CAST rounds it, as before


def test_a_decimal_too_large_for_38_9_is_left_for_the_warehouses_error() -> None:
    raw = pa.array([Decimal("1" + "0" * 30)], pa.decimal128(38, 0))  # 31 integer digits > 29
    assert conform_array(raw, NUMERIC) is raw


def test_integers_widen_and_an_out_of_range_unsigned_is_left_for_the_warehouse() -> None:
    assert conform_array(pa.array([1, None, -5], pa.int32()), pa.int64()).type == pa.int64()
    big = pa.array([2**63], pa.uint64())
    assert conform_array(big, pa.int64()) is big


def test_integers_become_exact_decimals() -> None:
    out = conform_array(pa.array([7, -3, None], pa.int64()), NUMERIC)
    assert out.to_pylist() == [Decimal("7"), Decimal("-3"), None]


def test_naive_timestamps_are_tagged_utc_and_aware_ones_keep_their_instant() -> None:
    naive = pa.array([dt.datetime(2026, 1, 2, 3, 4, 5, 123456), None], pa.timestamp("us"))
    out = conform_array(naive, UTC_US)
    assert out.to_pylist() == [dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC), None]
    paris = pa.array([dt.datetime(2026, 1, 2, 3, 0, tzinfo=dt.UTC)], pa.timestamp("us", tz="Europe/Paris"))
    wall = conform_array(paris, DUCKDB_ARROW_TYPES["DATETIME"])
    assert wall.type == pa.timestamp("us")
    assert wall.to_pylist() == [dt.datetime(2026, 1, 2, 3, 0)]  # the UTC wall clock, as DuckDB's UTC session


def test_nanoseconds_below_a_microsecond_are_left_for_the_warehouse() -> None:
    exact = pa.array([1_000_000_000_000_000], pa.timestamp("ns"))
    assert conform_array(exact, UTC_US).type == UTC_US
    lossy = pa.array([1_000_000_000_000_001], pa.timestamp("ns"))
    assert conform_array(lossy, UTC_US) is lossy


@pytest.mark.parametrize(
    ("array", "spec_type"),
    [
        (pa.array(["2026-01-01 00:00:00"]), "TIMESTAMP"),
        (pa.array([1.25]), "NUMERIC"),  # float -> decimal rounding is the warehouse's
        (pa.array(['{"a": 1}']), "JSON"),
        (pa.array([1], pa.int64()), "FLOAT64"),
    ],
)
def test_casts_whose_rules_are_the_warehouses_are_never_done_in_arrow(
    array: pa.Array, spec_type: str
) -> None:
    assert conform_array(array, DUCKDB_ARROW_TYPES[spec_type]) is array


@pytest.mark.parametrize(
    "text",
    ["-0.01", "0", "-0", "+5", ".5", "5.", "00012.50", "1e3", "1E-2", "99999999999999999999999999999.999999999",
     "  5", "1_000", "1.0000000001", "NaN", "1,5", ""],
)  # fmt: skip
def test_numeric_text_becomes_a_decimal_exactly_as_duckdbs_cast_or_is_left_to_it(text: str) -> None:
    """PostgreSQL and MariaDB numerics arrive as text: where Arrow parses one, it gives DuckDB's value; where
    it does not (`  5`, `1_000`, a 10th place), DuckDB's CAST gets the text as before, and rounds or refuses."""
    raw = pa.array([text, None])
    out = conform_array(raw, NUMERIC)
    con = duckdb.connect()
    try:
        by_duckdb = con.execute("SELECT CAST(? AS DECIMAL(38, 9))", [text]).fetchone()
    except duckdb.ConversionException:
        by_duckdb = None
    if out is raw:
        assert text in ("  5", "1_000", "1.0000000001", "NaN", "1,5", "")
    else:
        assert by_duckdb is not None
        assert out.to_pylist() == [by_duckdb[0], None]


def test_an_all_null_column_takes_the_declared_type() -> None:
    assert conform_array(pa.nulls(3), NUMERIC).type == NUMERIC


def test_conform_picks_declared_columns_case_insensitively_in_declared_order() -> None:
    batch = pa.record_batch(
        {
            "EXTRA": [1],
            "Amount": pa.array([Decimal("1.5")], pa.decimal128(38, 10)),
            "id": pa.array([1], pa.int32()),
        }
    )
    columns = (ColumnDef("id", "INT64"), ColumnDef("amount", "NUMERIC"))
    out = conform(batch, columns, BIGQUERY_ARROW_TYPES)
    assert out.schema == pa.schema([("id", pa.int64()), ("amount", pa.decimal128(38, 9))])


def test_every_exact_cast_gives_what_duckdbs_cast_gives() -> None:
    """The same values through Arrow and through DuckDB's CAST (in a UTC session): equal, value for value."""
    source = pa.table(
        {
            "d": pa.array(
                [Decimal("99999999999999999999999999.99"), Decimal("-0.01"), None], pa.decimal128(38, 10)
            ),
            "t": pa.array([dt.datetime(1970, 1, 1), dt.datetime(2262, 4, 11, 23, 47, 16, 854775), None]),
            "i": pa.array([2**31 - 1, -(2**31), None], pa.int32()),
        }
    )
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    by_duckdb = con.execute(
        "SELECT CAST(d AS DECIMAL(38, 9)) AS d, CAST(t AS TIMESTAMPTZ) AS t, CAST(i AS BIGINT) AS i FROM source"
    ).fetch_arrow_table()
    types = {"d": NUMERIC, "t": UTC_US, "i": pa.int64()}
    for name, want in types.items():
        assert conform_array(source.column(name), want).to_pylist() == by_duckdb.column(name).to_pylist(), (
            name
        )


# ----------------------------------------------------------------------------------------------- streams


def _batch(values: list[int | None], kind: pa.DataType | None = None) -> pa.RecordBatch:
    return pa.record_batch({"a": pa.array(values, kind or pa.int64())})


def test_one_statement_per_run_of_one_schema_and_per_max_rows() -> None:
    seen: list[list[int | None]] = []
    batches = [_batch([1, 2]), _batch([3]), _batch([4], pa.int32()), _batch([5, 6]), _batch([7])]
    scan_in_thread(lambda reader: seen.append(reader.read_all().column("a").to_pylist()), batches, max_rows=2)
    assert seen == [[1, 2], [3], [4], [5, 6], [7]]


def test_batches_are_read_on_the_callers_thread() -> None:
    readers: set[int] = set()

    def source():  # e.g. sqlite3 objects refuse any other thread
        for i in range(3):
            readers.add(threading.get_ident())
            yield _batch([i])

    scan_in_thread(lambda reader: reader.read_all(), source())
    assert readers == {threading.get_ident()}


class SourceDropped(Exception):
    pass


def test_a_source_error_is_raised_as_it_is_and_the_statement_is_rolled_back() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a BIGINT)")

    def source():
        yield _batch([1])
        yield _batch([2])
        raise SourceDropped("server closed the connection")

    def insert(reader: pa.RecordBatchReader) -> None:
        con.register("r", reader)
        con.execute("INSERT INTO t SELECT a FROM r")

    con.begin()
    with pytest.raises(SourceDropped, match="server closed the connection"):
        scan_in_thread(insert, source())
    con.rollback()
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_an_engine_error_is_raised_as_the_engine_raised_it() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a TINYINT)")

    def insert(reader: pa.RecordBatchReader) -> None:
        con.register("r", reader)
        con.execute("INSERT INTO t SELECT a FROM r")

    with pytest.raises(duckdb.ConversionException, match="out of range"):
        scan_in_thread(insert, iter([_batch([1]), _batch([1000]), _batch([2])]))


# ----------------------------------------------------------------------------------------------- DuckDB loads


def _warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), memory_limit="1GB", load_memory_limit="300MB")


TARGET = TargetTable("d", "t", (ColumnDef("id", "INT64", not_null=True), ColumnDef("x", "NUMERIC")), ("id",))
REQUEST = LoadRequest(TARGET, ("id",), "id")


def test_a_load_rounds_what_arrow_cannot_cast_exactly_as_duckdb_always_did(tmp_path: Path) -> None:
    wh = _warehouse(tmp_path)
    lossy = [Decimal("0.1234567895"), Decimal("-0.1234567895"), Decimal("2.5")]
    batch = pa.record_batch({"id": [1, 2, 3], "x": pa.array(lossy, pa.decimal128(38, 10))})
    result = wh.load(REQUEST, [batch])
    assert (result.rows_read, result.row_count) == (3, 3)
    stored = [r[0] for r in wh._query_rows("SELECT x FROM d.t ORDER BY id", {})]
    assert stored == [Decimal("0.123456790"), Decimal("-0.123456790"), Decimal("2.500000000")]


def test_a_load_whose_batches_change_type_goes_in_one_statement_per_run(tmp_path: Path) -> None:
    wh = _warehouse(tmp_path)
    batches = [
        pa.record_batch({"id": pa.array([1], pa.int32()), "x": pa.nulls(1)}),  # x all NULL: null type
        pa.record_batch(
            {"id": pa.array([2], pa.int32()), "x": pa.array([Decimal("1.25")], pa.decimal128(12, 2))}
        ),
        pa.record_batch(
            {"id": pa.array([3], pa.int64()), "x": pa.array(["7.5"])}
        ),  # text: DuckDB's CAST parses it
    ]
    assert wh.load(REQUEST, batches).row_count == 3
    assert wh._query_rows("SELECT id, x FROM d.t ORDER BY id", {}) == [
        (1, None),
        (2, Decimal("1.250000000")),
        (3, Decimal("7.500000000")),
    ]


def test_a_refused_load_counts_the_first_bad_batch_and_leaves_the_memory_limit_as_it_was(
    tmp_path: Path,
) -> None:
    wh = _warehouse(tmp_path)
    good = pa.record_batch({"id": [1, 2], "x": [1, 2]})
    bad = pa.record_batch({"id": pa.array([None, None, 5], pa.int64()), "x": [1, 2, 3]})
    worse = pa.record_batch({"id": pa.array([None] * 4, pa.int64()), "x": [1, 2, 3, 4]})
    with pytest.raises(NullKeys, match=r"d\.t: the source sent 2 rows with a NULL in primary key \['id'\]"):
        wh.load(REQUEST, [good, bad, worse])
    assert not wh.table_exists("d.t")  # the first load's CREATE TABLE rolled back with it
    with wh.get_connection() as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone() == ("953.6 MiB",)  # 1GB


def test_a_load_never_raises_a_memory_limit_set_below_load_memory_limit(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), memory_limit="100MB", load_memory_limit="300MB")
    seen: list[str] = []

    def batches():
        with wh.get_connection() as con:  # a second connection to the same instance, during the load
            seen.append(str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0]))  # type: ignore[index]
        yield pa.record_batch({"id": [1], "x": [1]})

    # the load's session holds the file: DuckDB shares one instance between connections of one process
    assert wh.load(REQUEST, batches()).row_count == 1
    assert seen == ["95.3 MiB"]  # 100MB, not 300MB
    with wh.get_connection() as con:  # and set back to memory_limit exactly (no drift through its rendering)
        assert con.execute("SELECT current_setting('memory_limit')").fetchone() == ("95.3 MiB",)
