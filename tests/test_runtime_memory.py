"""A stopped runtime leaves nothing behind: start-up freezes what it loaded out of the collector's
generations (gc.freeze, bot/runtime.py), and a runtime that stops must give it back, or a process that
starts runtimes one after another — the test suite, ~2,600 tests — keeps every stopped one for ever
(the suite's RSS grew past 10 GB)."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bot.web.app import build_app
from tests.conftest import make_settings, runtime_of


async def test_a_stopped_runtime_unfreezes_what_its_start_froze(sqlite_url: str, tmp_path: Path) -> None:
    async with TestClient(TestServer(build_app(make_settings(sqlite_url, tmp_path)))) as client:
        assert runtime_of(client).processes_inbox
        for _ in range(600):  # the classifier's warm-up ends with the freeze (~1 s)
            if gc.get_freeze_count():
                break
            await asyncio.sleep(0.05)
        assert gc.get_freeze_count() > 0
    # Stopped: nothing stays frozen, so the stopped runtime's objects are collectable like any others.
    assert gc.get_freeze_count() == 0
