"""Shared code of the replication integration tests: a spec project pointed at a real source server, the Dagster
instance that keeps its watermarks, and read access to both the source database and the DuckDB warehouse.

The three demo sources (accounts, orders, payments) all live in the one fresh database the `postgres_url` /
`mysql_url` fixture hands out; their table names do not collide.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pytest
import sqlalchemy as sa
import yaml
from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult, MetadataValue

from derive_assets.demo.generate import SourceUrls, apply_activity, generate, sqlalchemy_url
from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.replication.mongo_client import MONGO_DATABASE, open_mongo
from derive_assets.settings import PROJECT_ROOT, DeriveSettings

SOURCES = ("accounts", "orders", "payments")
TABLES: dict[str, tuple[str, ...]] = {
    "accounts.auth": ("user_id", "email", "created_at", "updated_at", "deleted_at"),
    "orders.orders": ("order_id", "user_id", "status", "amount", "created_at", "updated_at"),
    "payments.payments": (
        "payment_id", "order_id", "user_id", "amount", "currency", "method", "status", "paid_at", "updated_at",
    ),
}  # fmt: skip
"""Warehouse table (`dataset.name`, the source table being `name`) -> declared columns; the first is the key.
The profiles live in a document store (embedded montydb here; FerretDB in test_mongo_replication.py)."""
DECLARED_DUCKDB_TYPES = {
    "accounts.auth": {
        "user_id": "BIGINT", "email": "VARCHAR", "created_at": "TIMESTAMP WITH TIME ZONE",
        "updated_at": "TIMESTAMP WITH TIME ZONE", "deleted_at": "TIMESTAMP WITH TIME ZONE",
    },
    "orders.orders": {
        "order_id": "BIGINT", "user_id": "BIGINT", "status": "VARCHAR", "amount": "DECIMAL(38,9)",
        "created_at": "TIMESTAMP WITH TIME ZONE", "updated_at": "TIMESTAMP WITH TIME ZONE",
    },
    "payments.payments": {
        "payment_id": "BIGINT", "order_id": "BIGINT", "user_id": "BIGINT", "amount": "DECIMAL(38,9)",
        "currency": "VARCHAR", "method": "VARCHAR", "status": "VARCHAR",
        "paid_at": "TIMESTAMP WITH TIME ZONE", "updated_at": "TIMESTAMP WITH TIME ZONE",
    },
}  # fmt: skip
"""What `information_schema.columns.data_type` must say for each replicated column (spec types, mapped)."""
USERS = 2000
SECRET_IN_URL = "derive:derive@"


def env_var(source: str) -> str:
    """The test-only variable each rewritten source spec reads its URL from."""
    return f"DERIVE_IT_{source.upper()}_URL"


def write_specs(
    dest: Path, source_type: str, cursor_overlap: Mapping[str, int] | None = None, exact: bool = True
) -> Path:
    """Copy the project's `table_specs/` to `dest`, the sources rewritten to `source_type` and test variables.

    `cursor_overlap` sets that option on the named source tables (e.g. `{"orders": 300}`).
    """
    shutil.copytree(PROJECT_ROOT / "table_specs", dest)
    for path in sorted((dest / "sources").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if spec["type"] != "mongodb":
            spec["type"] = source_type
        spec["connection_env"] = env_var(spec["name"])
        for table in spec["tables"]:
            if exact and spec["type"] != "mongodb":
                # These scenarios count rows exactly: each read is the rows changed since the watermark, with
                # no default overlap and no open-transaction fence (test_cursor_safety tests those defaults).
                table.update(cursor_overlap=0, wait_for_open_transactions=False)
            if table["name"] in (cursor_overlap or {}):
                table["cursor_overlap"] = cursor_overlap[table["name"]]  # type: ignore[index]
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def utc(value: Any) -> Any:
    """Timestamps as aware UTC datetimes (MySQL DATETIME holds naive UTC), Decimals normalised; others as-is."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, Decimal):
        return value.normalize()
    return value


def normalised(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(utc(v) for v in row) for row in rows]


class Replication:
    """One spec project replicating from a real server into a DuckDB file, with one Dagster instance.

    The same instance serves every run of a test, so watermarks carry over from run to run as in production.
    """

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, source_type: str) -> None:
        self.url = url
        self.source_type = source_type
        self.monkeypatch = monkeypatch
        for source in SOURCES:
            monkeypatch.setenv(env_var(source), url)
        profiles = f"montydb:///{tmp_path.as_posix()}/profiles"
        monkeypatch.setenv(env_var("profiles"), profiles)
        self.urls = SourceUrls(url, url, url, profiles)
        self.home = tmp_path / "home"
        specs = write_specs(tmp_path / "specs", source_type)
        self.defs = build_definitions(DeriveSettings(specs_dir=specs, home=self.home))
        self.instance = DagsterInstance.ephemeral()
        self.engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)

    # ------------------------------------------------------------------------------------------- source

    def generate(self, users: int = USERS) -> dict[str, int]:
        return generate(self.urls, users=users)

    def apply_activity(self, **kwargs: Any) -> dict[str, int]:
        return apply_activity(self.urls, **kwargs)

    def source(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return normalised(conn.execute(sa.text(sql), dict(params or {})).all())

    def source_execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        with self.engine.begin() as conn:
            return conn.execute(sa.text(sql), dict(params or {})).rowcount

    def source_rows(self, ref: str) -> list[tuple[Any, ...]]:
        columns = TABLES[ref]
        return self.source(f"SELECT {', '.join(columns)} FROM {ref.split('.')[1]} ORDER BY {columns[0]}")

    def source_max_updated_at(self, ref: str) -> dt.datetime:
        return self.source(f"SELECT max(updated_at) FROM {ref.split('.')[1]}")[0][0]

    def bind_time(self, moment: dt.datetime) -> dt.datetime:
        """An aware UTC datetime as the source's timestamp columns hold it (naive UTC on MySQL)."""
        return moment if self.source_type == "postgres" else moment.replace(tzinfo=None)

    def source_changed_since(self, ref: str, since: dt.datetime) -> int:
        """Rows of the source table whose `updated_at` is beyond `since` (an aware UTC datetime)."""
        sql = f"SELECT count(*) FROM {ref.split('.')[1]} WHERE updated_at > :since"
        return self.source(sql, {"since": self.bind_time(since)})[0][0]

    # ------------------------------------------------------------------------------------------- runs

    def use_specs(self, cursor_overlap: Mapping[str, int]) -> None:
        """Rebuild the definitions from specs with other options (same warehouse, same instance)."""
        specs = write_specs(self.home.parent / "specs_overlap", self.source_type, cursor_overlap)
        self.defs = build_definitions(DeriveSettings(specs_dir=specs, home=self.home))

    def run(self, job: str, partition_key: str | None = None, ok: bool = True) -> ExecuteInProcessResult:
        """Run a job (a `replicate_<source>` job)."""
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, partition_key=partition_key, raise_on_error=False
        )
        if ok:
            assert result.success, self.failure_text(result)
        return result

    def materialize(
        self, ref: str, partition_key: str | None = None, ok: bool = True
    ) -> ExecuteInProcessResult:
        """Materialize the table `ref` (`dataset.name`) by its asset key."""
        result = materialize_keys(
            self.defs, [AssetKey(ref.split("."))], instance=self.instance, partition_key=partition_key
        )
        if ok:
            assert result.success, self.failure_text(result)
        return result

    def replicate(self, source: str, ok: bool = True) -> ExecuteInProcessResult:
        return self.run(f"replicate_{source}", ok=ok)

    def replicate_all(self) -> dict[str, dict[str, Any]]:
        """Run every replication job; returns the materialization metadata of each table."""
        found: dict[str, dict[str, Any]] = {}
        for source in (*SOURCES, "profiles"):
            found.update(materializations(self.replicate(source)))
        assert set(found) == {*TABLES, "profiles.profile"}
        return found

    def failure_text(self, result: ExecuteInProcessResult) -> str:
        """Every message and error the run logged, as one string."""
        parts = []
        for record in self.instance.all_logs(result.run_id):
            parts.append(record.user_message or "")
            event = record.dagster_event
            if event is None:
                continue
            parts.append(event.message or "")
            data = event.event_specific_data
            error = getattr(data, "error", None)
            if error is not None:
                parts.append(error.to_string())
        return "\n".join(parts)

    def watermark(self, ref: str) -> str | None:
        event = self.instance.get_latest_materialization_event(AssetKey(ref.split(".")))
        if event is None or event.asset_materialization is None:
            return None
        return value(event.asset_materialization.metadata.get("derive/watermark"))

    def watermark_time(self, ref: str) -> dt.datetime:
        text = self.watermark(ref)
        assert text is not None, f"{ref}: no watermark in the event log"
        return utc(dt.datetime.fromisoformat(text))

    # ------------------------------------------------------------------------------------------- warehouse

    def warehouse(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a query on the DuckDB file, opened read-only (and closed again before the next run)."""
        con = duckdb.connect(str(self.home / "warehouse.duckdb"), read_only=True)
        try:
            con.execute("SET TimeZone = 'UTC'")
            return normalised(con.execute(sql, list(params or [])).fetchall())
        finally:
            con.close()

    def warehouse_rows(self, ref: str) -> list[tuple[Any, ...]]:
        columns = TABLES[ref]
        return self.warehouse(f"SELECT {', '.join(columns)} FROM {ref} ORDER BY {columns[0]}")

    def warehouse_snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return {ref: self.warehouse_rows(ref) for ref in TABLES}

    def warehouse_types(self, ref: str) -> dict[str, str]:
        dataset, name = ref.split(".")
        rows = self.warehouse(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [dataset, name],
        )
        return {column: data_type.replace(" ", "") if "DECIMAL" in data_type else data_type
                for column, data_type in rows}  # fmt: skip


def value(entry: Any) -> Any:
    return entry.value if isinstance(entry, MetadataValue) else entry


def materializations(result: ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """`dataset.name` -> metadata values of the run's materialization of that asset."""
    found = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        ref = ".".join(materialization.asset_key.path)
        found[ref] = {k: value(v) for k, v in materialization.metadata.items()}
    return found


def free_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    return parts._replace(netloc=f"{netloc}:{port}").geturl()


# ----------------------------------------------------------------------------------------------- scenarios
# Each takes a fresh `Replication` on an empty database; the test modules run them against their server.


def full_first_load(rep: Replication) -> None:
    counts = rep.generate()
    meta = rep.replicate_all()
    for ref in TABLES:
        assert counts[ref] > 0
        assert meta[ref]["derive/rows_read"] == counts[ref], ref
        assert meta[ref]["derive/rows_inserted"] == counts[ref], ref
        assert (meta[ref]["derive/rows_updated"], meta[ref]["derive/rows_deleted"]) == (0, 0), ref
        assert meta[ref]["dagster/row_count"] == counts[ref], ref
        assert rep.warehouse(f"SELECT count(*) FROM {ref}") == [(counts[ref],)], ref
        assert rep.warehouse_types(ref) == DECLARED_DUCKDB_TYPES[ref], ref
        # Every value, timestamps compared as UTC instants and amounts as exact decimals.
        assert rep.warehouse_rows(ref) == rep.source_rows(ref), ref
        assert rep.watermark_time(ref) == rep.source_max_updated_at(ref), ref
    # The same instants, spelled out in UTC on both sides (DuckDB session zone UTC; source values taken as UTC).
    first = rep.source("SELECT order_id, amount, created_at FROM orders ORDER BY order_id LIMIT 1")[0]
    got = rep.warehouse(
        "SELECT order_id, CAST(amount AS VARCHAR), strftime(created_at, '%Y-%m-%d %H:%M:%S.%f') "
        "FROM orders.orders WHERE order_id = ?",
        [first[0]],
    )
    assert got == [(first[0], f"{first[1]:.9f}", first[2].strftime("%Y-%m-%d %H:%M:%S.%f"))]


def incremental(rep: Replication) -> None:
    rep.generate()
    rep.replicate_all()
    before = {ref: rep.watermark_time(ref) for ref in TABLES}
    activity = rep.apply_activity()
    changed = {ref: rep.source_changed_since(ref, before[ref]) for ref in TABLES}
    moved = rep.source(
        "SELECT order_id, status FROM orders WHERE updated_at > :since ORDER BY order_id",
        {"since": rep.bind_time(before["orders.orders"])},
    )
    stale = dict(rep.warehouse("SELECT order_id, status FROM orders.orders"))
    moved_old = [(order_id, status) for order_id, status in moved if order_id in stale]
    assert any(stale[order_id] != status for order_id, status in moved_old), "no order changed status"

    meta = rep.replicate_all()
    for ref in TABLES:
        inserted = activity[f"{ref}.inserted"]
        assert changed[ref] == inserted + activity[f"{ref}.updated"] + activity[f"{ref}.deleted"], ref
        assert meta[ref]["derive/rows_read"] == changed[ref], ref
        assert meta[ref]["derive/rows_inserted"] == inserted, ref
        assert meta[ref]["derive/rows_updated"] == activity[f"{ref}.updated"], ref
        assert meta[ref]["derive/rows_deleted"] == activity[f"{ref}.deleted"], ref
        after = rep.watermark_time(ref)
        assert after > before[ref], ref
        assert after == rep.source_max_updated_at(ref), ref
        key = TABLES[ref][0]
        assert rep.warehouse(f"SELECT count(*) - count(DISTINCT {key}) FROM {ref}") == [(0,)], ref
        live = "WHERE deleted_at IS NULL" if ref == "accounts.auth" else ""
        expected = rep.source(
            f"SELECT {', '.join(TABLES[ref])} FROM {ref.split('.')[1]} {live} ORDER BY {key}"
        )
        assert rep.warehouse_rows(ref) == expected, ref
    now = dict(rep.warehouse("SELECT order_id, status FROM orders.orders"))
    assert [(order_id, now[order_id]) for order_id, _ in moved] == moved


def no_change(rep: Replication) -> None:
    rep.generate()
    rep.replicate_all()
    rep.apply_activity()
    rep.replicate_all()
    snapshot = rep.warehouse_snapshot()
    watermarks = {ref: rep.watermark(ref) for ref in TABLES}
    meta = rep.replicate_all()
    for ref in TABLES:
        counters = ("derive/rows_read", "derive/rows_inserted", "derive/rows_updated", "derive/rows_deleted")
        assert [meta[ref][k] for k in counters] == [0, 0, 0, 0], ref
        assert meta[ref]["derive/watermark"] == watermarks[ref], ref
        assert rep.watermark(ref) == watermarks[ref], ref
    assert rep.warehouse_snapshot() == snapshot


def soft_delete(rep: Replication) -> None:
    rep.generate()
    rep.replicate("accounts")
    activity = rep.apply_activity(fraction=0.02)
    deleted = [row[0] for row in rep.source("SELECT user_id FROM auth WHERE deleted_at IS NOT NULL")]
    assert len(deleted) == activity["accounts.auth.deleted"] > 0
    in_warehouse = {row[0] for row in rep.warehouse("SELECT user_id FROM accounts.auth")}
    assert set(deleted) <= in_warehouse

    meta = materializations(rep.replicate("accounts"))["accounts.auth"]
    assert meta["derive/rows_deleted"] == len(deleted)
    assert meta["derive/rows_read"] == len(deleted) + activity["accounts.auth.inserted"]
    remaining = {row[0] for row in rep.warehouse("SELECT user_id FROM accounts.auth")}
    assert not remaining & set(deleted)
    assert rep.warehouse("SELECT count(*) FROM accounts.auth WHERE deleted_at IS NOT NULL") == [(0,)]
    assert len(remaining) == rep.source("SELECT count(*) FROM auth WHERE deleted_at IS NULL")[0][0]
    assert meta["dagster/row_count"] == len(remaining)
    # Profiles have no soft-delete column: closed accounts keep theirs.
    rep.replicate("profiles")
    profiles = {row[0] for row in rep.warehouse("SELECT user_id FROM profiles.profile")}
    assert set(deleted) <= profiles


BREAKAGES = ("unreachable", "dropped_column")


def failing_run(rep: Replication, breakage: str) -> None:
    rep.generate()
    rep.replicate_all()
    rep.apply_activity()  # changes are pending: a run that half-worked would show
    snapshot = rep.warehouse_snapshot()
    watermarks = {ref: rep.watermark(ref) for ref in TABLES}
    if breakage == "unreachable":
        rep.monkeypatch.setenv(env_var("orders"), with_port(rep.url, free_port()))
    else:
        rep.source_execute("ALTER TABLE orders DROP COLUMN status")

    result = rep.replicate("orders", ok=False)
    assert not result.success
    text = rep.failure_text(result)
    assert SECRET_IN_URL not in text
    assert "source 'orders'" in text, text
    assert rep.warehouse_snapshot() == snapshot
    assert {ref: rep.watermark(ref) for ref in TABLES} == watermarks


def derived_graph(rep: Replication) -> None:
    rep.generate()
    rep.replicate_all()
    rep.apply_activity(fraction=0.02)  # refunds, region moves and closed accounts reach the derived tables
    rep.replicate_all()
    rep.materialize("core.user_detail")
    open_accounts = rep.source("SELECT count(*) FROM auth WHERE deleted_at IS NULL")[0][0]
    assert rep.warehouse("SELECT count(*) FROM core.user_detail") == [(open_accounts,)]

    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)
    result = rep.materialize("analytics.daily_payments_by_region", partition_key=day.isoformat())
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    bounds = {"start": rep.bind_time(start), "end": rep.bind_time(start + dt.timedelta(days=1))}
    # core.user_detail holds open accounts only: payments of closed accounts count as region 'unknown'.
    # Regions come from the profile documents themselves, read with the document store's own client.
    with open_mongo(rep.urls.profiles) as client:
        regions = {d["user_id"]: d["address"]["region"] for d in client[MONGO_DATABASE]["profile"].find({})}
    payments = rep.source(
        """
        SELECT p.user_id, a.deleted_at IS NULL AND a.user_id IS NOT NULL, p.amount
        FROM payments AS p
        LEFT JOIN auth AS a ON a.user_id = p.user_id
        WHERE p.status = 'succeeded' AND p.paid_at >= :start AND p.paid_at < :end
        """,
        bounds,
    )
    groups: dict[str, list[tuple[int, Decimal]]] = {}
    for user_id, is_open, amount in payments:
        region = regions.get(user_id) if is_open else None
        groups.setdefault(region or "unknown", []).append((user_id, amount))
    expected = [
        (region, len(rows), len({u for u, _ in rows}), utc(sum(a for _, a in rows)))
        for region, rows in sorted(groups.items())
    ]
    assert len(expected) >= 4
    got = rep.warehouse(
        "SELECT region, payments, payers, revenue FROM analytics.daily_payments_by_region "
        "WHERE day = ? ORDER BY region",
        [day],
    )
    assert got == expected
    assert rep.warehouse("SELECT DISTINCT day FROM analytics.daily_payments_by_region") == [(day,)]
    meta = materializations(result)["analytics.daily_payments_by_region"]
    assert meta["derive/rows_inserted"] == len(expected)


def overlap_keeps_watermark(rep: Replication) -> None:
    """With `cursor_overlap`, a run that reads nothing must keep the watermark where it was.

    The newest rows are hard-deleted at the source (no soft-delete column on orders), so the overlap window
    holds no rows and the next runs read nothing.
    """
    overlap = 600
    rep.use_specs(cursor_overlap={"orders": overlap})
    rep.generate()
    rep.replicate("orders")
    stored = rep.watermark_time("orders.orders")
    cutoff = stored - dt.timedelta(seconds=2 * overlap)
    assert rep.source_execute(
        "DELETE FROM orders WHERE updated_at > :cutoff", {"cutoff": rep.bind_time(cutoff)}
    )
    for _ in range(2):
        meta = materializations(rep.replicate("orders"))["orders.orders"]
        assert meta["derive/rows_read"] == 0
        assert rep.watermark_time("orders.orders") == stored, "the watermark moved backwards"
