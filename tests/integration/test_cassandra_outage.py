"""Cassandra outages during an export, against the real server: a closed port, and connections cut mid-export by
a TCP proxy between the driver and Cassandra (the driver sees real resets; nothing in it is mocked).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, Definitions, ExecuteInProcessResult
from support import QUIET

from derive_assets.factory.build import build_definitions, build_online_store, build_warehouse
from derive_assets.factory.export_assets import online_table
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import PROJECT_ROOT, DeriveSettings
from derive_assets.specs.project import load_project
from resources.cassandra_online_store import CassandraOnlineStore
from resources.online_store import OnlineStoreUnavailable

EXPORT = AssetKey(["online", "user_profile_online"])
USERS = 2_000


class CuttingProxy:
    """Forwards TCP to Cassandra. Once armed, it counts the bytes the driver sends after a request holding a marker
    (the export's `INSERT` being prepared), and past `cut_after` bytes resets every connection and refuses new ones
    until `restore()`."""

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.refusing = False
        self.cut_after: int | None = None
        self.marker = b"INSERT INTO"
        self.sent_since_insert: int | None = None
        self.cut_at: float | None = None
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, cut_after: int, marker: bytes = b"INSERT INTO") -> None:
        """Cut once the driver has sent `cut_after` bytes after a request containing `marker`."""
        with self.lock:
            self.cut_after, self.sent_since_insert, self.marker = cut_after, None, marker

    def restore(self) -> None:
        with self.lock:
            self.refusing = False

    def close(self) -> None:
        self.listener.close()
        self._cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_driver: bool) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
                if from_driver and self._count(data):
                    self._cut()
                    return
        except OSError:
            pass
        for s in (source, target):
            _close(s)

    def _count(self, data: bytes) -> bool:
        with self.lock:
            if self.cut_after is None:
                return False
            if self.sent_since_insert is None:
                if self.marker in data:
                    self.sent_since_insert = 0
                return False
            self.sent_since_insert += len(data)
            if self.sent_since_insert < self.cut_after:
                return False
            self.cut_after, self.refusing, self.cut_at = None, True, time.monotonic()
            self.cuts += 1
            return True

    def _cut(self) -> None:
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for s in sockets:
            _close(s)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()


@pytest.fixture
def proxy(cassandra_server: tuple[str, str]) -> Iterator[CuttingProxy]:
    hosts, port = cassandra_server
    p = CuttingProxy(hosts.split(",")[0].strip(), int(port))
    yield p
    p.close()


@pytest.fixture
def settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cassandra_server: tuple[str, str]
) -> Iterator[DeriveSettings]:
    for name in ("DERIVE_ACCOUNTS_URL", "DERIVE_ORDERS_URL", "DERIVE_PAYMENTS_URL", "DERIVE_DUCKDB_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DERIVE_CASSANDRA_HOSTS", cassandra_server[0])
    monkeypatch.setenv("DERIVE_CASSANDRA_PORT", cassandra_server[1])
    specs = tmp_path / "table_specs"
    shutil.copytree(PROJECT_ROOT / "table_specs", specs)
    keyspace = f"t_{uuid.uuid4().hex[:10]}"
    for spec in (specs / "exports").glob("*.yaml"):
        spec.write_text(spec.read_text().replace("keyspace: derive_online", f"keyspace: {keyspace}"))
    settings = DeriveSettings(specs_dir=specs, home=tmp_path / "home", online_store="cassandra")
    fill_user_detail(settings)
    yield settings
    store = direct_store(cassandra_server)
    store.session().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    store.close()


def fill_user_detail(settings: DeriveSettings) -> None:
    """The export's warehouse table, written directly (sub-millisecond timestamps, as `now()` gives them)."""
    with build_warehouse(settings).get_connection() as con:
        con.execute("CREATE SCHEMA core")
        con.execute(
            "CREATE TABLE core.user_detail (user_id BIGINT NOT NULL, email VARCHAR, display_name VARCHAR, "
            "region VARCHAR, country VARCHAR, signed_up_at TIMESTAMPTZ, updated_at TIMESTAMPTZ)"
        )
        con.execute(
            "INSERT INTO core.user_detail SELECT i, 'u' || i || '@example.com', 'User ' || i, "
            "['eu', 'na', 'apac'][1 + i % 3], 'C' || (i % 50), TIMESTAMPTZ '2026-01-01 00:00:00.000123+00' "
            "+ i * INTERVAL 1 MINUTE, now() - i * INTERVAL 1 SECOND FROM range(1, $n + 1) t(i)",
            {"n": USERS},
        )


def export(defs: Definitions, instance: DagsterInstance) -> ExecuteInProcessResult:
    return materialize_keys(
        defs, [AssetKey(["online", "user_profile_online"])], instance=instance, run_config=QUIET
    )


def failure_text(result: ExecuteInProcessResult) -> str:
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data.user_failure_data
    assert data is not None and data.description is not None
    return data.description


def direct_store(server: tuple[str, str]) -> CassandraOnlineStore:
    """A store connected straight to the test Cassandra, not through the proxy or the test's settings."""
    return CassandraOnlineStore(contact_points=[h.strip() for h in server[0].split(",")], port=int(server[1]))


def online_count(settings: DeriveSettings, server: tuple[str, str]) -> int:
    table = online_table(load_project(settings.specs_dir).export("user_profile_online"))
    store = direct_store(server)
    try:
        return store.count(table)
    finally:
        store.close()


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def test_unreachable_cassandra_fails_fast_and_names_the_settings(
    settings: DeriveSettings, monkeypatch: pytest.MonkeyPatch
):
    port = closed_port()
    monkeypatch.setenv("DERIVE_CASSANDRA_PORT", str(port))
    defs = build_definitions(settings)
    with DagsterInstance.ephemeral() as instance:
        started = time.monotonic()
        result = export(defs, instance)
        elapsed = time.monotonic() - started
        assert not result.success
        assert instance.get_latest_materialization_event(EXPORT) is None
    text = failure_text(result)
    assert elapsed < 30, f"a refused port took {elapsed:.0f} s to fail"
    assert f"cannot connect to Cassandra at 127.0.0.1:{port}" in text
    assert "DERIVE_CASSANDRA_HOSTS / DERIVE_CASSANDRA_PORT" in text
    assert "stopped after 0 rows were written" in text and "the export's watermark did not move" in text
    assert "Traceback" not in text

    table = online_table(load_project(settings.specs_dir).export("user_profile_online"))
    with pytest.raises(
        OnlineStoreUnavailable, match=rf"cannot connect to Cassandra at 127\.0\.0\.1:{port}: "
    ):
        build_online_store(settings).lookup(table, [1])


def test_connection_lost_mid_export_is_retried_and_every_row_arrives(
    settings: DeriveSettings,
    monkeypatch: pytest.MonkeyPatch,
    proxy: CuttingProxy,
    cassandra_server: tuple[str, str],
):
    monkeypatch.setenv("DERIVE_CASSANDRA_PORT", str(proxy.port))
    defs = build_definitions(settings)
    with DagsterInstance.ephemeral() as instance:
        proxy.arm(cut_after=60_000)  # a few hundred rows into the export

        def come_back() -> None:
            while proxy.cut_at is None:
                time.sleep(0.05)
            time.sleep(1.0)
            proxy.restore()

        threading.Thread(target=come_back, daemon=True).start()
        result = export(defs, instance)
        assert proxy.cuts == 1
        assert result.success, result.get_step_failure_events()
    [event] = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}
    assert meta["derive/rows_written"] == USERS
    assert meta["derive/write_retries"] > 0
    [check] = result.get_asset_check_evaluations()
    assert check.passed, check.description
    assert online_count(settings, cassandra_server) == USERS


def test_connection_lost_for_good_gives_up_in_bounded_time_and_the_rerun_completes(
    settings: DeriveSettings,
    monkeypatch: pytest.MonkeyPatch,
    proxy: CuttingProxy,
    cassandra_server: tuple[str, str],
):
    monkeypatch.setenv("DERIVE_CASSANDRA_PORT", str(proxy.port))
    monkeypatch.setenv("DERIVE_CASSANDRA_WRITE_RETRIES", "2")
    monkeypatch.setenv("DERIVE_CASSANDRA_RETRY_BACKOFF", "0.2")
    defs = build_definitions(settings)
    with DagsterInstance.ephemeral() as instance:
        proxy.arm(cut_after=60_000)
        result = export(defs, instance)
        assert proxy.cut_at is not None
        gave_up_after = time.monotonic() - proxy.cut_at
        assert not result.success
        assert (
            instance.get_latest_materialization_event(EXPORT) is None
        )  # nothing recorded: watermark unmoved

        text = failure_text(result)
        written = int(text.split("stopped after ")[1].split(" of ")[0].replace(",", ""))
        assert 0 < written < USERS
        assert f"stopped after {written:,} of {USERS:,} rows were written online" in text
        assert f"could not be written to Cassandra at 127.0.0.1:{proxy.port} after 2 retries" in text
        assert "DERIVE_CASSANDRA_HOSTS / DERIVE_CASSANDRA_PORT" in text
        assert "the export's watermark did not move" in text and "writes the same rows again" in text
        assert "TypeError" not in text and "RecursionError" not in text
        assert gave_up_after < 60, f"gave up {gave_up_after:.0f} s after the cut"
        assert written <= online_count(settings, cassandra_server) < USERS

        proxy.restore()
        rerun = export(defs, instance)
        assert rerun.success
        [check] = rerun.get_asset_check_evaluations()
        assert check.passed, check.description
    assert online_count(settings, cassandra_server) == USERS


def test_unresponsive_cassandra_fails_within_the_configured_connect_timeout(
    settings: DeriveSettings, monkeypatch: pytest.MonkeyPatch
):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts TCP (backlog) but never answers CQL
        monkeypatch.setenv("DERIVE_CASSANDRA_PORT", str(silent.getsockname()[1]))
        monkeypatch.setenv("DERIVE_CASSANDRA_CONNECT_TIMEOUT", "1.5")
        table = online_table(load_project(settings.specs_dir).export("user_profile_online"))
        started = time.monotonic()
        with pytest.raises(
            OnlineStoreUnavailable, match=r"Timed out creating connection \(1\.5 seconds\)"
        ) as err:
            build_online_store(settings).ensure_table(table)
        assert time.monotonic() - started < 30
    assert "each contact point is given 1.5 s (DERIVE_CASSANDRA_CONNECT_TIMEOUT)" in str(err.value)


def test_a_cassandra_setting_that_is_not_a_number_is_refused_by_name(
    settings: DeriveSettings, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DERIVE_CASSANDRA_WRITE_RETRIES", "many")
    with pytest.raises(
        ValueError, match=r"DERIVE_CASSANDRA_WRITE_RETRIES='many' is not an integer; set a value"
    ):
        build_online_store(settings)


def test_connection_lost_while_verifying_fails_the_run_without_recording_it(
    settings: DeriveSettings, monkeypatch: pytest.MonkeyPatch, proxy: CuttingProxy
):
    monkeypatch.setenv("DERIVE_CASSANDRA_PORT", str(proxy.port))
    defs = build_definitions(settings)
    with DagsterInstance.ephemeral() as instance:
        proxy.arm(cut_after=1, marker=b'SELECT "user_id"')  # the verification's first lookup by key
        result = export(defs, instance)
        assert proxy.cuts == 1 and not result.success
        assert instance.get_latest_materialization_event(EXPORT) is None
    text = failure_text(result)
    assert (
        f"export user_profile_online wrote {USERS:,} rows to cassandra but could not read them back" in text
    )
    assert (
        f"reading {online_table(load_project(settings.specs_dir).export('user_profile_online')).ref} by key "
        in text
    )
    assert "DERIVE_CASSANDRA_HOSTS / DERIVE_CASSANDRA_PORT" in text


def test_connection_lost_while_creating_the_table_fails_clearly(
    settings: DeriveSettings, monkeypatch: pytest.MonkeyPatch, proxy: CuttingProxy
):
    monkeypatch.setenv("DERIVE_CASSANDRA_PORT", str(proxy.port))
    defs = build_definitions(settings)
    with DagsterInstance.ephemeral() as instance:
        proxy.arm(cut_after=1, marker=b"CREATE TABLE IF NOT EXISTS")  # then the layout check is cut
        result = export(defs, instance)
        assert proxy.cuts == 1 and not result.success
        assert instance.get_latest_materialization_event(EXPORT) is None
    text = failure_text(result)
    assert "stopped after 0 rows were written online: creating or checking " in text
    assert f"failed on Cassandra at 127.0.0.1:{proxy.port}" in text and "DERIVE_CASSANDRA_PORT" in text
