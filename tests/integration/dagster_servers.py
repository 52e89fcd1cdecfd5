"""Shared code of the UI tests: a real `dagster-webserver` or `dagster dev` in its own process group, its GraphQL
API, and headless Chromium (Debian's `chromium`) to render its pages.

`serve` starts the command with `start_new_session=True` and kills the whole group (webserver, code server,
daemon, the runs they launched) when the block ends, so a failed assertion never leaves a server behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from derive_assets.settings import PROJECT_ROOT

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",  # the UI is a React app: let its queries and layout finish before the capture
    "--window-size=1600,1000",
)
STARTUP_BOUND_SECONDS = 180
"""A generous bound on the webserver's start on a busy 2-core machine (it usually answers in 10-30 s)."""
RENDER_BOUND_SECONDS = 120
"""A generous bound on one Chromium capture (about 7-12 s here)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_dagster_home(path: Path, base: Path | None = None) -> Path:
    """A Dagster instance directory: `base`'s dagster.yaml (the repository's, as `make dev` copies it), else one
    with only `telemetry` and `nux` off (the "what's new" pop-up would cover the page)."""
    path.mkdir(parents=True, exist_ok=True)
    text = base.read_text() if base else "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
    assert "nux:\n  enabled: false" in text and "telemetry:\n  enabled: false" in text, text
    (path / "dagster.yaml").write_text(text)
    return path


@dataclass
class Server:
    """A running webserver: its port, its process (the group leader) and its combined log."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of a GraphQL query; any error fails the test with the server's answer."""
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": dict(variables or {})}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        assert not body.get("errors"), body["errors"]
        return body["data"]


@contextmanager
def serve(command: Sequence[str], env: Mapping[str, str], log: Path, port: int) -> Iterator[Server]:
    """Run `command` (which must serve the UI on 127.0.0.1:`port`) until the block ends; wait until it answers."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command),
            cwd=PROJECT_ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(port, process, log)
    try:
        _wait_until_served(server)
        yield server
    finally:
        stop_group(process)


def _wait_until_served(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_BOUND_SECONDS
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"{server.process.args} exited:\n{server.log_tail()}"
        try:
            with urllib.request.urlopen(f"{server.url}/server_info", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"the webserver did not answer within {STARTUP_BOUND_SECONDS} s:\n{server.log_tail()}")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole process group (webserver, code server, daemon, runs), SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with suppress(ProcessLookupError):  # the leader may be gone while children (a run, the daemon) hold on
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@dataclass(frozen=True)
class Page:
    """One rendered page: its screenshot and the visible text of its DOM after the scripts ran."""

    png: Path
    text: list[str]

    def shows(self, *needles: str) -> list[str]:
        """The needles no text node of the page contains (empty: all are shown)."""
        return [n for n in needles if not any(n in t for t in self.text)]


def render(chromium: Path, url: str, png: Path, profile: Path) -> Page:
    """Load `url` in headless Chromium, save a screenshot to `png` and return it with the page's visible text."""
    result = subprocess.run(
        [
            str(chromium),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        timeout=RENDER_BOUND_SECONDS,
        check=False,
    )
    assert result.returncode == 0, (
        f"chromium failed on {url}:\n{result.stderr.decode(errors='replace')[-3000:]}"
    )
    assert png.is_file(), (
        f"chromium wrote no screenshot of {url}:\n{result.stderr.decode(errors='replace')[-3000:]}"
    )
    return Page(png, visible_text(result.stdout.decode(errors="replace")))


def visible_text(html: str) -> list[str]:
    """The non-blank text nodes of an HTML document, outside `<script>` and `<style>`."""
    parser = _TextParser()
    parser.feed(html)
    return parser.text


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden and data.strip():
            self.text.append(data.strip())


def assert_not_blank(png: Path) -> None:
    """A real capture of a page: a 1600x1000 PNG of some size, with many colours and not one flat background."""
    from PIL import Image  # Pillow: a dependency of matplotlib, in the `test` extra

    size = png.stat().st_size
    assert size > 20_000, f"{png} is only {size} bytes: a blank or failed capture"
    with Image.open(png) as image:
        assert image.size == (1600, 1000), image.size
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 50, f"{png} has only {len(colours)} colours: a blank page"
    background = max(count for count, _ in colours)
    assert background < 0.97 * 1600 * 1000, f"{png} is {background / 16_000:.1f} % one colour: a blank page"


def keep_for_humans(pngs: Sequence[Path], folder: str) -> Path:
    """Copy the screenshots to `.derive/ui-screenshots/<folder>/` of the project, for a person to look at."""
    dest = PROJECT_ROOT / ".derive" / "ui-screenshots" / folder
    dest.mkdir(parents=True, exist_ok=True)
    for png in pngs:
        shutil.copy2(png, dest / png.name)
    return dest
