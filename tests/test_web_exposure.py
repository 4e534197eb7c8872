"""Deployment safety of `ticketbot serve`: the real process on a loopback and on a non-loopback bind.

The playground lets anyone act as anyone: off on a non-loopback bind unless PLAYGROUND=on, and
then only with a loud warning. /api/ reachable from the network without API_TOKEN is warned
about. LOAD_DEMO=auto fills an empty database with the demo people only on a loopback bind.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def own_address() -> str:
    """A non-loopback address of this machine (the first of `hostname -I`), else 0.0.0.0."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
    except (OSError, subprocess.SubprocessError):
        out = []
    return next((a for a in out if "." in a and not a.startswith("127.")), "0.0.0.0")


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    database: Path
    log: str = ""

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def people(self) -> list[str]:
        with sqlite3.connect(self.database) as conn:
            return [row[0] for row in conn.execute("SELECT id FROM people ORDER BY id")]

    def warnings(self) -> list[str]:
        """Warnings about what the bind exposes (other start-up warnings are not this test's)."""
        return [line for line in self.log.splitlines()
                if " WARNING " in line and ("PLAYGROUND" in line or "API_TOKEN" in line)]


@contextmanager
def serve(tmp_path: Path, host: str, **env_values: str) -> Iterator[Served]:
    """`ticketbot serve --host HOST` as an operator would start it, in an empty folder."""
    connect = "127.0.0.1" if host == "0.0.0.0" else host
    port = free_port(connect)
    folder = tmp_path / f"{host}-{port}"
    folder.mkdir()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder / 'tb.db'}", "DATA_DIR": str(folder / "data")}
    for name in ("PLAYGROUND", "API_TOKEN", "LOAD_DEMO"):
        env.pop(name, None)
    env.update(env_values)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", host, "--port", str(port)],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    served = Served(f"http://{connect}:{port}", folder / "tb.db")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if served.status("/healthz") == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            proc.kill()
            pytest.fail("service did not become healthy: " + (proc.communicate()[0] or ""))
        yield served
    finally:
        proc.terminate()
        served.log = proc.communicate(timeout=20)[0] or ""


def test_loopback_bind_serves_the_playground_with_demo_people_and_no_warnings(tmp_path: Path) -> None:
    with serve(tmp_path, "127.0.0.1") as served:
        assert served.status("/playground") == 200
        assert served.status("/playground/api/people") == 200
        assert {"admin", "tech-wang", "cust-demo"} <= set(served.people())
    assert served.warnings() == [], served.log


def test_network_bind_has_no_playground_no_demo_and_warns_about_the_open_api(tmp_path: Path) -> None:
    with serve(tmp_path, own_address()) as served:
        assert served.status("/playground") == 404
        assert served.status("/playground/api/people") == 404
        assert served.status("/api/tickets") == 200  # open: that is what the warning is about
        assert served.people() == []
    warnings = "\n".join(served.warnings())
    assert "API_TOKEN" in warnings and "/api/" in warnings, served.log
    assert "PLAYGROUND=on" not in warnings


def test_all_interfaces_count_as_a_network_bind(tmp_path: Path) -> None:
    with serve(tmp_path, "0.0.0.0", API_TOKEN="s3cret") as served:
        assert served.status("/playground") == 404
        assert served.status("/api/tickets") == 401
        assert served.people() == []
    assert served.warnings() == [], served.log  # API_TOKEN set, playground off: nothing to warn about


def test_playground_forced_on_a_network_bind_is_served_with_a_loud_warning(tmp_path: Path) -> None:
    with serve(tmp_path, own_address(), PLAYGROUND="on", API_TOKEN="s3cret") as served:
        assert served.status("/playground") == 200
        assert served.status("/playground/api/people") == 200
        assert served.people() == []  # LOAD_DEMO=auto: no demo people on a network bind
    warnings = [w for w in served.warnings() if "PLAYGROUND=on" in w]
    assert warnings, served.log
    assert "anyone" in warnings[0] and "admin" in warnings[0]
    assert not any("API_TOKEN" in w for w in served.warnings())


def test_load_demo_on_loads_the_demo_on_any_bind_and_off_never(tmp_path: Path) -> None:
    with serve(tmp_path, own_address(), LOAD_DEMO="on", API_TOKEN="s3cret") as served:
        assert "admin" in served.people()
    with serve(tmp_path, "127.0.0.1", LOAD_DEMO="off") as served:
        assert served.people() == []
