"""Heavy reads' worker processes run below the service's CPU priority (bot/background_processes.py):
a 30-day 报表 or an export on a busy machine must not slow a customer's fault report (issue 24)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.background_processes import BACKGROUND_NICENESS
from bot.chat.report_reads import report_reads
from bot.console.exports import run_job
from bot.web.app import build_app
from storage.tables import TicketRow
from tests.conftest import make_settings, runtime_of


def niceness_and_tickets(execute: Any) -> tuple[int, int, int]:
    """A report job (module-level: pickled by reference): where it runs, at which niceness, what it read."""
    rows: Sequence[Any] = execute(select(func.count()).select_from(TicketRow))
    return os.getpid(), os.nice(0), int(rows[0][0])


async def test_report_and_export_jobs_run_in_workers_below_the_service(sqlite_url: str, tmp_path: Path) -> None:
    service_niceness = os.nice(0)
    async with TestClient(TestServer(build_app(make_settings(sqlite_url, tmp_path)))) as client:
        runtime = runtime_of(client)
        report_pid, report_niceness, tickets = await report_reads(runtime).run(niceness_and_tickets)
        export_pid, export_niceness, _ = await run_job(runtime, niceness_and_tickets)
    expected = min(19, service_niceness + BACKGROUND_NICENESS)
    assert tickets == 0  # it read the service's database
    assert os.getpid() not in (report_pid, export_pid)
    assert (report_niceness, export_niceness) == (expected, expected)
    assert os.nice(0) == service_niceness  # the service itself keeps its priority

