"""`derive demo` regenerates sample sources that are missing or empty instead of failing on them."""

from __future__ import annotations

from derive_assets.demo.run import incomplete_sources, run_demo
from derive_assets.settings import DeriveSettings


def test_complete_sources_are_kept_and_an_emptied_file_is_found(settings: DeriveSettings):
    base = settings.embedded_sources_dir
    assert incomplete_sources(base) == []
    (base / "accounts.db").write_bytes(b"")  # e.g. a generation killed before its first table
    assert incomplete_sources(base) == ["accounts.db"]
    assert incomplete_sources(base / "nowhere") == ["accounts.db", "orders.db", "payments.db", "profiles"]


def test_demo_over_an_emptied_source_generates_the_sources_afresh(settings: DeriveSettings, instance):
    (settings.embedded_sources_dir / "accounts.db").write_bytes(b"")
    lines: list[str] = []
    summary = run_demo(settings, instance, users=300, days=1, say=lines.append)
    text = "\n".join(lines)
    assert "are incomplete (accounts.db)" in text and "==> generating sample sources: 300 users" in text
    assert not summary.errors
    assert summary["accounts.auth"]["rows"] == 300
    assert incomplete_sources(settings.embedded_sources_dir) == []
