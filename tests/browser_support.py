"""Shared parts of the browser tests: headless Chromium (Debian's package) driven by Playwright, a real
`ticketbot serve` process, screenshots.

Screenshots go to the test's folder and to the test artefacts, `test-artifacts/screenshots/` at the
repository root (git-ignored; $SCREENSHOTS_DIR overrides it). Pages are shot at phone width (390 px)
and on a wide screen (1440 px).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
WIDE = {"width": 1440, "height": 900}
ARTEFACTS = Path(os.environ.get("SCREENSHOTS_DIR") or Path(__file__).resolve().parents[1] / "test-artifacts"
                 / "screenshots")


class PlaygroundApi:
    """The playground's JSON API (CONTRACTS.md), as the pages' tests use it to move a ticket along."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(self.base + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    def say(self, user: str, **body: Any) -> None:
        self.call("POST", "/playground/api/messages", {"user": user, **body})

    def messages(self, user: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/playground/api/messages?user={user}"))

    def cards(self, user: str, kind: str) -> list[dict[str, Any]]:
        return [m["card"] for m in self.messages(user) if m.get("card") and m["card"]["kind"] == kind]

    def image(self, user: str, seed: int) -> None:
        self.say(user, image=base64.b64encode(png(seed)).decode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`ticketbot serve` as a user would start it: a real process in an empty folder; yields its base URL."""
    port = free_port()
    full_env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'tb.db'}", "DATA_DIR": str(tmp_path / "data")}
    for key in ("PLAYGROUND", "LOAD_DEMO", "PUBLIC_BASE_URL"):
        full_env.pop(key, None)
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("service did not become healthy: " + (proc.stdout.read().decode() if proc.stdout else ""))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with serve(tmp_path) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("chromium is required under CI=true")
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            yield instance
        finally:
            instance.close()


def screenshot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / name, ARTEFACTS / name)


def screenshot_both_widths(page: Any, tmp_path: Path, name: str) -> None:
    """`name`-390.png and `name`-1440.png; the page's viewport is left as it was."""
    before = page.viewport_size
    for size in (PHONE, WIDE):
        page.set_viewport_size(size)
        screenshot(page, tmp_path, f"{name}-{size['width']}.png")
    if before:
        page.set_viewport_size(before)


def png(seed: int, width: int = 320, height: int = 240) -> bytes:
    """A real, decodable PNG (a coloured pattern per seed): photo checks may decode it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes((x * (seed + 3) + y * 7 + seed * 50) % 256 for x in range(width * 3))
                    for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
