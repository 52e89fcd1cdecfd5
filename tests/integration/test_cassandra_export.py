"""What only Cassandra has, exported to a real server (the CQL protocol ScyllaDB speaks): timestamps kept at
milliseconds, and an export's verification comparing at that precision (sub-millisecond warehouse values pass,
a changed value of any type fails).

The online-store behaviour shared with SQLite (types, upserts, clustering, TTL, counts, a refused NULL key, a
mismatching table) is the store contract in `tests/contract/test_online_store_contract.py`, run on both; the
export asset's own behaviour (window and cursor slices, re-exports, a failed run keeping the watermark) is tested
once, on SQLite, in `tests/embedded/test_export.py`.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, Definitions
from support import QUIET, run_assets, run_job

from derive_assets.demo.generate import embedded_urls, generate
from derive_assets.factory.build import build_definitions, build_online_store
from derive_assets.factory.export_verify import verify
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project
from resources.duckdb_warehouse import DuckDBWarehouse
from resources.online_store import OnlineTable
from resources.reads import TableSlice
from resources.schema import ColumnDef


@pytest.fixture
def cassandra_env(monkeypatch: pytest.MonkeyPatch, cassandra_server: tuple[str, str]) -> None:
    hosts, port = cassandra_server
    monkeypatch.setenv("DERIVE_CASSANDRA_HOSTS", hosts)
    monkeypatch.setenv("DERIVE_CASSANDRA_PORT", port)
    for name in ("DERIVE_ACCOUNTS_URL", "DERIVE_ORDERS_URL", "DERIVE_PAYMENTS_URL", "DERIVE_DUCKDB_PATH"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def settings(tmp_path: Path, cassandra_env: None) -> Iterator[DeriveSettings]:
    specs = tmp_path / "table_specs"
    shutil.copytree(PROJECT_ROOT / "table_specs", specs)
    keyspace = f"t_{uuid.uuid4().hex[:10]}"
    for spec in (specs / "exports").glob("*.yaml"):
        spec.write_text(spec.read_text().replace("keyspace: derive_online", f"keyspace: {keyspace}"))
    settings = DeriveSettings(specs_dir=specs, home=tmp_path / "home", online_store="cassandra")
    generate(embedded_urls(settings.embedded_sources_dir), users=400)
    yield settings
    store = build_online_store(settings)
    store.session().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    store.close()


run = run_job


def upstream(defs: Definitions, instance: DagsterInstance) -> None:
    for job in ("replicate_accounts", "replicate_profiles", "replicate_payments"):
        run(defs, instance, job)
    run_assets(defs, instance, "core/user_detail")


def warehouse_rows(settings: DeriveSettings, sql: str) -> list[tuple]:
    """A DuckDB query on the embedded warehouse (the demo's tables are written there)."""
    with DuckDBWarehouse(path=str(settings.duckdb_path)).get_connection() as con:
        return con.execute(sql).fetchall()


def test_export_with_sub_millisecond_timestamps_passes_its_verification(settings: DeriveSettings):
    """core.user_detail's TIMESTAMPs carry microseconds; Cassandra keeps milliseconds. Compared at ms: green."""
    defs = build_definitions(settings)
    with DagsterInstance.ephemeral() as instance:
        upstream(defs, instance)
        [(sub_ms,)] = warehouse_rows(
            settings, "SELECT count(*) FROM core.user_detail WHERE microsecond(updated_at) % 1000 <> 0"
        )
        assert sub_ms > 0
        result = materialize_keys(
            defs, [AssetKey(["online", "user_profile_online"])], instance=instance, run_config=QUIET
        )
    [check] = result.get_asset_check_evaluations()
    assert check.passed, check.description
    assert check.metadata["sampled_keys"].value == 100
    assert check.metadata["timestamp_precision_us"].value == 1000
    assert result.success


COLUMNS = {
    "id": ("INT64", "BIGINT"),
    "ts": ("TIMESTAMP", "TIMESTAMPTZ"),
    "wall": ("DATETIME", "TIMESTAMP"),
    "day": ("DATE", "DATE"),
    "amount": ("NUMERIC", "DECIMAL(38, 9)"),
    "ratio": ("FLOAT64", "DOUBLE"),
    "flag": ("BOOL", "BOOLEAN"),
    "doc": ("JSON", "JSON"),
    "blob": ("BYTES", "BLOB"),
    "name": ("STRING", "VARCHAR"),
}
ROWS: list[tuple[Any, ...]] = [
    (
        1,
        dt.datetime(2026, 11, 30, 9, 0, 0, 123456, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 30, 9, 0, 0, 999999),
        dt.date(2026, 11, 30),
        Decimal("12.340000000"),
        0.1,
        True,
        '{"b": [1, 2.5], "a": "é"}',
        b"\x00\xffbytes",
        "Zoë 🚀",
    ),
    (
        2,
        dt.datetime(1969, 12, 31, 23, 59, 59, 999501, tzinfo=dt.UTC),
        dt.datetime(1900, 1, 1, 0, 0, 0, 1),
        dt.date(1900, 1, 1),
        Decimal("-99999999999999999999999999999.000000001"),
        math.nan,
        False,
        "[]",
        b"",
        "",
    ),
    (3, None, None, None, None, math.inf, None, None, None, None),
]


@pytest.fixture
def typed(tmp_path: Path, settings: DeriveSettings) -> Iterator[tuple[DuckDBWarehouse, Any, OnlineTable]]:
    """A warehouse table of every column type (sub-ms and pre-1970 timestamps, NaN, NULLs), exported to Cassandra."""
    warehouse = DuckDBWarehouse(path=str(tmp_path / "typed.duckdb"))
    with warehouse.get_connection() as con:
        con.execute("CREATE SCHEMA core")
        con.execute(f"CREATE TABLE core.typed ({', '.join(f'{n} {t}' for n, (_, t) in COLUMNS.items())})")
        con.executemany(f"INSERT INTO core.typed VALUES ({', '.join('?' for _ in COLUMNS)})", ROWS)
    keyspace = load_project(settings.specs_dir).export("user_profile_online").spec.keyspace
    table = OnlineTable(
        keyspace=keyspace,
        name="typed",
        partition_key=("id",),
        clustering=(),
        columns=tuple(ColumnDef(n, t) for n, (t, _) in COLUMNS.items()),
    )
    store = build_online_store(settings)
    store.ensure_table(table)
    written = store.write(table, warehouse.iter_slice(TableSlice("core.typed", tuple(table.column_names)), 2))
    assert written.rows_written == len(ROWS)
    yield warehouse, store, table
    store.close()


def test_every_type_exported_to_cassandra_passes_at_millisecond_precision(typed):
    warehouse, store, table = typed
    check = verify(warehouse, store, table, TableSlice("core.typed"), len(ROWS), len(ROWS))
    assert check.passed, check.description
    [row] = store.lookup(table, [2])
    assert row["ts"] == dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC)  # rounded down, pre-1970
    assert math.isnan(row["ratio"]) and row["amount"] == ROWS[1][4]


@pytest.mark.parametrize(
    ("column", "key", "online"),
    [
        ("ts", 1, dt.datetime(2026, 11, 30, 9, 0, 0, 124000, tzinfo=dt.UTC)),  # one millisecond later
        ("ts", 2, dt.datetime(1969, 12, 31, 23, 59, 59, 998000, tzinfo=dt.UTC)),
        ("wall", 1, dt.datetime(2026, 11, 30, 9, 0, 1, tzinfo=dt.UTC)),
        ("amount", 1, Decimal("12.341")),
        ("ratio", 2, 0.0),  # NaN -> a number
        ("doc", 1, '{"a": "e", "b": [1, 2.5]}'),
        ("blob", 1, b"\x00\xff"),
        ("name", 1, None),
        ("flag", 3, False),  # NULL -> false
        ("day", 2, dt.date(1900, 1, 2)),
    ],
)
def test_one_value_changed_in_cassandra_fails_the_check(typed, column: str, key: int, online: Any):
    warehouse, store, table = typed
    store.session().execute(
        f'UPDATE "{table.keyspace}"."{table.name}" SET "{column}" = %s WHERE id = %s', (online, key)
    )
    check = verify(warehouse, store, table, TableSlice("core.typed"), len(ROWS), len(ROWS))
    assert not check.passed
    assert check.metadata["different_online"].value == 1
    assert f"key [{key}], column {column}:" in (check.description or "")
