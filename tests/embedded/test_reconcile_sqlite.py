"""Key reconciliation from a SQLite source into DuckDB, no servers: hard deletes and soft deletes side by side.

The table has a `soft_delete` column and `reconcile`: a row the source marks deleted leaves the warehouse with the
load that reads it, a row the source deletes outright leaves with the reconciliation, and `derive/rows_deleted`
counts both.
"""

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import yaml
from dagster import AssetKey, DagsterInstance
from support import execute

from derive_assets import metadata_keys as K
from derive_assets.factory.build import build_definitions
from derive_assets.settings import DeriveSettings

KEY = AssetKey(["shop", "accounts"])
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def at(seconds: int) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).replace(tzinfo=None).isoformat(sep=" ")


class Shop:
    def __init__(self, tmp_path: Path) -> None:
        self.settings = DeriveSettings(specs_dir=tmp_path / "specs", home=tmp_path / "home")
        (self.settings.specs_dir / "sources").mkdir(parents=True)
        spec = {
            "kind": "source",
            "name": "shop",
            "type": "sqlite",
            "connection_env": "DERIVE_TEST_SHOP_URL_UNSET",
            "owner": "team:shop",
            "tables": [
                {
                    "name": "accounts",
                    "primary_key": ["id"],
                    "cursor": "updated_at",
                    "cursor_overlap": 0,
                    "soft_delete": {"column": "deleted_at"},
                    "reconcile": {"every_runs": 1},
                    "columns": [
                        {"name": "id", "type": "INT64"},
                        {"name": "updated_at", "type": "TIMESTAMP"},
                        {"name": "deleted_at", "type": "TIMESTAMP"},
                    ],
                }
            ],
        }
        (self.settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(spec))
        self.settings.embedded_sources_dir.mkdir(parents=True)
        self.db = self.settings.embedded_sources_dir / "shop.db"
        self.execute("CREATE TABLE accounts (id INTEGER, updated_at TEXT, deleted_at TEXT)")
        with sqlite3.connect(self.db) as con:
            con.executemany("INSERT INTO accounts VALUES (?, ?, NULL)", [(i, at(i)) for i in range(1, 101)])
        self.defs = build_definitions(self.settings)
        self.instance = DagsterInstance.ephemeral()

    def execute(self, sql: str, *params: Any) -> None:
        with sqlite3.connect(self.db) as con:
            con.execute(sql, params)

    def run(self) -> dict[str, Any]:
        outcome = execute(self.defs, self.instance, "replicate_shop")
        assert outcome.success, outcome.errors
        [event] = [e for e in outcome.result.get_asset_materialization_events() if e.asset_key == KEY]
        return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}

    def ids(self) -> list[int]:
        with duckdb.connect(str(self.settings.duckdb_path), read_only=True) as con:
            return [r[0] for r in con.execute("SELECT id FROM shop.accounts ORDER BY id").fetchall()]


def test_soft_deletes_leave_with_the_load_hard_deletes_with_the_reconciliation(tmp_path):
    shop = Shop(tmp_path)
    shop.run()
    shop.execute("UPDATE accounts SET deleted_at = ?, updated_at = ? WHERE id = 10", at(500), at(500))
    shop.execute("DELETE FROM accounts WHERE id IN (20, 30)")

    meta = shop.run()
    assert shop.ids() == [i for i in range(1, 101) if i not in (10, 20, 30)]
    # One row deleted by its flag (the load), two by the reconciliation; both in rows_deleted.
    assert (
        meta[K.ROWS_DELETED],
        meta[K.RECONCILE_ROWS_DELETED],
        meta[K.extra("soft_deleted_rows_read")],
    ) == (3, 2, 1)
    assert meta[K.RECONCILE_KEYS_READ] == 98  # the soft-deleted row is still in the source: its key too
    assert meta[K.ROW_COUNT] == 97
