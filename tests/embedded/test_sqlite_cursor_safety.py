"""Replication never loses or changes a row silently: SQLite sources through Dagster into DuckDB, no servers.

Each test writes a one-table source spec and a SQLite database, runs the replication job in process, changes the
source, and runs it again. Breaking the watermark code (ignoring the overlap, moving the watermark backwards,
forgetting it after an idle run, reading from the stored watermark instead of the overlapped one) fails one of
these tests.
"""

import datetime as dt
import re
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from support import execute

from derive_assets.factory.build import build_definitions
from derive_assets.settings import DeriveSettings

KEY = AssetKey(["shop", "events"])
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def sql_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")


class Shop:
    """A SQLite `shop` source with one table, `events`, replicated by `updated_at` (or `id`)."""

    def __init__(self, tmp_path: Path, **table_options: Any) -> None:
        self.settings = DeriveSettings(specs_dir=tmp_path / "specs", home=tmp_path / "home")
        (self.settings.specs_dir / "sources").mkdir(parents=True)
        table = {
            "name": "events",
            "primary_key": ["id"],
            "cursor": "updated_at",
            "columns": [
                {"name": "id", "type": "INT64"},
                {"name": "flag", "type": "BOOL"},
                {"name": "qty", "type": "INT64"},
                {"name": "updated_at", "type": "TIMESTAMP"},
            ],
            **table_options,
        }
        spec = {
            "kind": "source",
            "name": "shop",
            "type": "sqlite",
            "connection_env": "DERIVE_TEST_SHOP_URL_UNSET",
            "owner": "team:shop",
            "tables": [table],
        }
        (self.settings.specs_dir / "sources" / "shop.yaml").write_text(yaml.safe_dump(spec))
        self.settings.embedded_sources_dir.mkdir(parents=True)
        self.db = self.settings.embedded_sources_dir / "shop.db"
        with sqlite3.connect(self.db) as con:
            con.execute("CREATE TABLE events (id INTEGER, flag, qty INTEGER, updated_at TEXT)")
        self.defs = build_definitions(self.settings)
        self.instance = DagsterInstance.ephemeral()

    def insert(self, *rows: tuple[Any, ...]) -> None:
        with sqlite3.connect(self.db) as con:
            con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)

    def execute(self, sql: str, *params: Any) -> None:
        with sqlite3.connect(self.db) as con:
            con.execute(sql, params)

    def run(self, ok: bool = True) -> dict[str, Any]:
        """Replicate; the run's metadata (ok) or its failure message (not ok)."""
        outcome = execute(self.defs, self.instance, "replicate_shop")
        assert outcome.success is ok, outcome.errors
        if not ok:
            return {"error": outcome.errors}
        result = outcome.result
        [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == KEY]
        meta = event.step_materialization_data.materialization.metadata
        return {k: v.value for k, v in meta.items()}

    def watermark(self) -> Any:
        event = self.instance.get_latest_materialization_event(KEY)
        assert event is not None and event.asset_materialization is not None
        return event.asset_materialization.metadata["derive/watermark"].value

    def rows(self, table: str = "shop.events") -> list[tuple]:
        with duckdb.connect(str(self.settings.duckdb_path), read_only=True) as con:
            return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()

    def ids(self) -> list[int]:
        return [r[0] for r in self.rows()]


def test_a_late_commit_with_an_earlier_timestamp_is_read_by_the_default_overlap(tmp_path):
    shop = Shop(tmp_path)
    shop.insert((1, 1, 1, sql_time(NOW - dt.timedelta(hours=1))), (2, 1, 1, sql_time(NOW)))
    shop.run()
    # A transaction that began 2 minutes before row 2's and committed after the read:
    shop.insert((3, 1, 1, sql_time(NOW - dt.timedelta(minutes=2))))
    second = shop.run()
    assert shop.ids() == [1, 2, 3]
    assert second["derive/rows_inserted"] == 1
    assert shop.watermark() == NOW.isoformat()


def test_an_explicit_overlap_is_honoured_and_a_late_commit_beyond_it_is_the_documented_limit(tmp_path):
    shop = Shop(tmp_path, cursor_overlap=3600)
    shop.insert((1, 1, 1, sql_time(NOW)))
    shop.run()
    shop.insert((2, 1, 1, sql_time(NOW - dt.timedelta(minutes=50))))
    shop.insert((3, 1, 1, sql_time(NOW - dt.timedelta(minutes=70))))
    shop.run()
    assert shop.ids() == [1, 2]


def test_an_idle_run_keeps_the_watermark_and_the_next_run_reads_only_new_rows(tmp_path):
    shop = Shop(tmp_path, cursor="id")  # INT64 cursors have no default overlap: an idle run reads nothing
    shop.insert((1, 1, 1, None), (2, 1, 1, None))
    shop.run()
    mark = shop.watermark()
    idle = shop.run()
    assert idle["derive/rows_read"] == 0
    assert shop.watermark() == mark == "2"
    shop.insert((3, 1, 1, None))
    after = shop.run()
    assert after["derive/rows_read"] == 1
    assert after["derive/watermark_before"] == mark


def test_a_time_cursor_without_overlap_rereads_at_most_the_boundary_row(tmp_path):
    shop = Shop(tmp_path, cursor_overlap=0)
    shop.insert(
        (1, 1, 1, sql_time(NOW - dt.timedelta(hours=2))), (2, 1, 1, sql_time(NOW - dt.timedelta(hours=1)))
    )
    shop.run()
    mark = shop.watermark()
    idle = shop.run()
    assert idle["derive/rows_read"] == 1 and idle["derive/rows_inserted"] == 0  # row 2, at the watermark
    assert shop.watermark() == mark


def test_the_watermark_never_moves_back_when_the_newest_row_disappears(tmp_path):
    shop = Shop(tmp_path)
    shop.insert((1, 1, 1, sql_time(NOW - dt.timedelta(minutes=3))), (2, 1, 1, sql_time(NOW)))
    shop.run()
    shop.execute(
        "DELETE FROM events WHERE id = 2"
    )  # the overlap now re-reads only row 1, older than the mark
    again = shop.run()
    assert again["derive/rows_read"] == 1
    assert shop.watermark() == NOW.isoformat()


def test_text_timestamps_with_offsets_are_compared_as_instants(tmp_path):
    shop = Shop(tmp_path, cursor_overlap=0)
    shop.insert((1, 1, 1, "2026-11-30 10:00:00"))
    shop.run()
    # 09:00 at UTC-5 is 14:00 UTC: later than the watermark, though smaller as a string.
    shop.insert((2, 1, 1, "2026-11-30 09:00:00-05:00"), (3, 1, 1, "2026-11-30T11:30:00+09:00"))
    shop.run()
    assert shop.rows() == [
        (1, True, 1, dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)),
        (2, True, 1, dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.UTC)),
    ]
    assert shop.watermark() == "2026-11-30T14:00:00+00:00"


def test_booleans_stored_as_text_are_read_by_value(tmp_path):
    shop = Shop(tmp_path)
    t = sql_time(NOW)
    values = ["false", "0", "no", "F", 0, "true", "1", "yes", "T", 1, None]
    shop.insert(*[(i, v, 1, t) for i, v in enumerate(values)])
    shop.run()
    assert [r[1] for r in shop.rows()] == [False] * 5 + [True] * 5 + [None]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ((1, "maybe", 1, None), r"column 'flag' holds 'maybe', which is not a valid BOOL"),
        ((1, 1, "abc", None), r"column 'qty' holds 'abc', which is not a valid INT64"),
        ((1, 1, 2.5, None), r"column 'qty' holds 2.5, which is not a valid INT64 \(has a fractional part\)"),
        ((1, 1, 1, "yesterday"), r"column 'updated_at' holds 'yesterday', which is not a valid TIMESTAMP"),
        ((1, 1, 1, 1764493200), r"column 'updated_at' holds '1764493200', which is not a valid TIMESTAMP"),
    ],
)
def test_a_value_that_is_not_its_declared_type_fails_the_run_naming_column_and_row(tmp_path, row, message):
    shop = Shop(tmp_path)
    good = (2, 1, 1, sql_time(NOW))
    row = (*row[:3], row[3] if row[3] is not None else sql_time(NOW))
    shop.insert(good, row)
    error = shop.run(ok=False)["error"]
    assert "source 'shop' table 'events': 1 invalid rows, so nothing was written" in error
    assert '{"id": 1}' in error
    assert "on_invalid: quarantine" in error
    assert re.search(message, error), error


def test_invalid_values_in_later_runs_are_found_even_when_their_cursor_cannot_be_compared(tmp_path):
    shop = Shop(tmp_path, cursor_overlap=0)
    shop.insert((1, 1, 1, sql_time(NOW)))
    shop.run()
    shop.execute("UPDATE events SET updated_at = 'soon' WHERE id = 1")
    assert "column 'updated_at' holds 'soon'" in shop.run(ok=False)["error"]
    shop.execute(
        "UPDATE events SET updated_at = 12 WHERE id = 1"
    )  # a number: julianday() would call it 4700 BC
    assert "column 'updated_at' holds '12'" in shop.run(ok=False)["error"]


def test_null_keys_and_null_cursors_fail_the_run_and_nothing_is_written(tmp_path):
    shop = Shop(tmp_path)
    shop.insert((1, 1, 1, sql_time(NOW)))
    shop.run()
    before = shop.rows()
    shop.insert((None, 1, 1, sql_time(NOW)), (5, 1, 1, None), (6, 1, 1, sql_time(NOW)))
    error = shop.run(ok=False)["error"]
    assert "2 invalid rows" in error
    assert "1 with a NULL primary key column 'id'" in error
    assert "1 with a NULL cursor 'updated_at' (e.g. {\"id\": 5})" in error
    assert shop.rows() == before  # row 6 was valid, but the run wrote nothing
    assert shop.watermark() == NOW.isoformat()


def test_quarantine_sets_invalid_rows_aside_loads_the_rest_and_reports_them(tmp_path):
    shop = Shop(tmp_path, on_invalid="quarantine")
    shop.insert(
        (1, 1, 1, sql_time(NOW - dt.timedelta(hours=1))), (2, 1, 1, sql_time(NOW - dt.timedelta(hours=1)))
    )
    shop.run()
    # An update that sets the cursor to NULL, a new row without one, a NULL key and a poisoned cursor:
    shop.execute("UPDATE events SET updated_at = NULL, qty = 9 WHERE id = 2")
    shop.insert((3, 1, 1, None), (None, 1, 1, sql_time(NOW)), (4, 1, 1, "9999-12-31 00:00:00"))
    shop.insert((5, 1, 1, sql_time(NOW)))
    meta = shop.run()
    assert meta["derive/rows_invalid"] == 4
    assert meta["derive/quarantine_table"] == "shop.events__quarantine"
    assert shop.ids() == [1, 2, 5]
    quarantined = {(r[0], r[1].split(" (")[0]) for r in shop.rows("shop.events__quarantine")}
    assert ('{"id": 2}', "a NULL cursor 'updated_at'") in quarantined
    assert ('{"id": 3}', "a NULL cursor 'updated_at'") in quarantined
    assert ('{"id": 4}', "cursor 'updated_at' beyond " + quarantined_limit(quarantined)) in quarantined
    assert any(key.startswith("row:") for key, _ in quarantined)
    # The poisoned cursor did not move the watermark: a later row is still read.
    assert shop.watermark() == NOW.isoformat()
    shop.insert((6, 1, 1, sql_time(NOW + dt.timedelta(seconds=1))))
    again = shop.run()
    assert 6 in shop.ids()
    assert again["derive/rows_invalid"] == 4  # still in the source, still reported, not duplicated
    assert len(shop.rows("shop.events__quarantine")) == 4


def quarantined_limit(quarantined: set[tuple[str, str]]) -> str:
    [reason] = [r for k, r in quarantined if k == '{"id": 4}']
    return reason.removeprefix("cursor 'updated_at' beyond ")


def test_a_poisoned_future_cursor_fails_the_run_without_moving_the_watermark(tmp_path):
    shop = Shop(tmp_path)
    shop.insert((1, 1, 1, sql_time(NOW)))
    shop.run()
    shop.insert((2, 1, 1, "9999-12-31 23:59:59"), (3, 1, 1, sql_time(NOW + dt.timedelta(hours=2))))
    error = shop.run(ok=False)["error"]
    assert "1 with cursor 'updated_at' beyond" in error and "max_future_seconds" in error
    assert shop.watermark() == NOW.isoformat()
    assert shop.ids() == [1]


def test_an_integer_cursor_is_read_by_value(tmp_path):
    shop = Shop(tmp_path, cursor="id")
    shop.insert((1, 1, 1, None), (2, 1, 1, None))
    first = shop.run()
    assert first["derive/watermark"] == "2"
    shop.insert((3, 1, 1, None))
    assert shop.run()["derive/rows_read"] == 1
    assert shop.ids() == [1, 2, 3]
