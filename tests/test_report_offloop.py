"""报表 at a million tickets (issue 24): the report is one job run off the event loop — in a worker
process on SQLite, in a thread of its own on PostgreSQL — and its figures are the ones the tickets
give (tests/test_reports.py checks each figure; here: the same report from the job and from the
tickets computed in this process, and the first-time-fix section on its narrow reads)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import col

from bot.chat.report_reads import THREAD_NAME, Execute, report_reads
from bot.chat.reports import _SECTIONS, parse_period, read_report_data
from core.clock import FixedClock
from core.lifecycle.rework import REPEAT_WINDOW_DAYS, first_time_fix
from core.model import Ticket, TicketStatus
from core.reports.metrics import Period
from storage.tables import AuditEventRow, TicketRow
from storage.unit_of_work import ticket_from_row
from tests.playground_client import PlaygroundUser
from tests.sla_support import SH, assign_and_accept, at, fixed_clock_app, force, report, runtime


def where_am_i(_execute: Execute, _period: Period, tickets: Sequence[Ticket]) -> list[str]:
    """A report section that says where it ran (sections run in the report's job)."""
    return [f"  job pid={os.getpid()} thread={threading.current_thread().name} tickets={len(tickets)}"]


@pytest.fixture
def located() -> Iterator[None]:
    _SECTIONS.append(where_am_i)
    yield
    _SECTIONS.remove(where_am_i)


async def test_the_report_runs_off_the_event_loop(database_url: str, tmp_path: Path, located: None) -> None:
    clock = FixedClock(at(2026, 11, 18, 9, 0))
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        for n in range(3):
            await report(client, f"cust-offloop-{n}", "中控黑屏")
        sup = PlaygroundUser(client, "sup-li")
        await sup.say("报表 7天")
        text = await sup.last_text()
        assert "报修 3 张" in text and "tickets=3" in text, text
        line = next(line for line in text.splitlines() if "job pid=" in line)
        pid = int(line.split("pid=")[1].split()[0])
        thread = line.split("thread=")[1].split()[0]
        if database_url.startswith("sqlite"):
            assert pid != os.getpid(), "on SQLite the report runs in the worker process"
        else:
            assert pid == os.getpid() and thread.startswith(THREAD_NAME), line
        assert report_reads(rt).path is not None or not database_url.startswith("sqlite")


async def test_the_job_gives_the_figures_of_the_tickets(database_url: str, tmp_path: Path) -> None:
    """The job's reads (narrow, indexed, state from the payload by the database) give the same tickets,
    open breaches and trail as reading the rows whole, and the same first-time-fix line."""
    clock = FixedClock(at(2026, 11, 18, 9, 0))
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        first = await report(client, "cust-ftf-1", "中控黑屏")
        await assign_and_accept(rt, first, "tech-wang")
        await report(client, "cust-ftf-2", "空调不制冷")
        await force(rt, first, status=TicketStatus.CLOSED, closed_at=clock.now() + timedelta(hours=1))
        clock.set(at(2026, 11, 19, 10, 0))
        again = await report(client, "cust-ftf-1", "中控黑屏")  # the same asset again, within 30 days
        now = clock.now()
        period, _ = parse_period(["7天"], now, SH)

        async def reference() -> tuple[list[Ticket], dict[str, list[tuple[datetime, TicketStatus]]]]:
            """Whole rows, the trail's payloads parsed here (the report's former reads)."""
            async with rt.sessions() as session:
                rows = (await session.execute(select(TicketRow).order_by(col(TicketRow.id)))).scalars().all()
                trail = (await session.execute(
                    select(col(AuditEventRow.ticket_number), col(AuditEventRow.kind), col(AuditEventRow.at),
                           col(AuditEventRow.payload))
                    .where(col(AuditEventRow.kind).in_(["ticket_created", "status_changed"]))
                    .order_by(col(AuditEventRow.seq)))).all()
            trails: dict[str, list[tuple[datetime, TicketStatus]]] = {r.number: [] for r in rows}
            for number, kind, when, payload in trail:
                trails[number].append((when, TicketStatus(payload["status" if kind == "ticket_created" else "to"])))
            return [ticket_from_row(r) for r in rows], trails

        for _ in range(20):  # deliveries in the background set first_response_at: compare at a quiet moment
            before = await reference()
            tickets, open_tickets, history = await report_reads(rt).run(read_report_data, period, now)
            everything, expected = await reference()
            if before == (everything, expected):
                break
            await asyncio.sleep(0.1)
        assert [t.number for t in tickets] == [t.number for t in everything] and len(tickets) == 3
        assert tickets == everything
        assert history == expected and history[first][-1][1] is TicketStatus.ACCEPTED
        assert [t.number for t in open_tickets] == [t.number for t in everything if t.status.is_open and (
            (t.response_due is not None and t.response_due < now)
            or (t.resolution_due is not None and t.resolution_due < now))]

        from bot.chat.lifecycle import first_time_fix_section

        line = (await report_reads(rt).run(first_time_fix_section, period, tickets))[0]
        ftf = first_time_fix(everything, period.start, period.end, window_days=REPEAT_WINDOW_DAYS).text()
        assert line == ftf and "返修/重复报修 1 张" in line, (line, again)
