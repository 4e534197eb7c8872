"""A person in a real browser: headless Chromium (Debian's package) driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`ticketbot serve` as a user would start it: a real process in an empty folder."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'tb.db'}", "DATA_DIR": str(tmp_path / "data")}
    env.pop("PLAYGROUND", None)
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    import urllib.request

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
    yield url
    proc.terminate()
    proc.wait(10)


def test_customer_reports_fault_in_the_browser(served: str) -> None:
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("chromium is required under CI=true")
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page()
            page.goto(served + "/playground")
            page.wait_for_selector("#who option", state="attached")
            page.click("#newCustomer")
            page.fill("#text", "底盘有异响")
            page.click("#send")
            page.wait_for_selector("text=/GD-\\d{8}-\\d{4}/", timeout=10_000)
            assert "机械类" in page.inner_text("#log")
            page.fill("#text", "<b>粗体</b>")
            page.click("#send")
            page.wait_for_selector("text=<b>粗体</b>", timeout=10_000)  # shown as text, not as markup
        finally:
            browser.close()
