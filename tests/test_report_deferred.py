"""`报表` runs its job after the message's transaction, not inside it (issue 24, "nothing blocks the
loop"): messages behind a report are handled and committed while its job runs, and the report arrives
as a message of its own once it is ready; the playground's answer still carries it. SQLite and
PostgreSQL, through the real app and its background inbox processing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlmodel import col

from bot.chat.report_reads import report_reads
from core.inbound import InboundKind, InboundMessage
from storage.tables import InboxRow, TicketRow
from tests.conftest import runtime_of
from tests.playground_client import PlaygroundUser

HOLD_S = 4.0


def hold_the_report_worker(_execute: Any, seconds: float) -> None:
    """A report job that takes `seconds` (module-level: the job is pickled by reference)."""
    time.sleep(seconds)


async def eventually(probe: Callable[[], Awaitable[object]], timeout_s: float) -> object:
    deadline = time.monotonic() + timeout_s
    while not (value := await probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s")
        await asyncio.sleep(0.02)
    return value


async def test_messages_behind_a_report_do_not_wait_for_its_job(app_client: TestClient) -> None:
    runtime = runtime_of(app_client)
    await runtime.rulebook.ready()  # the classifier's dictionary: nothing else to wait for
    supervisor = PlaygroundUser(app_client, "sup-li")
    # Report jobs take turns: one that holds the worker keeps the supervisor's job waiting for HOLD_S.
    blocker = asyncio.create_task(report_reads(runtime).run(hold_the_report_worker, HOLD_S))
    started = time.monotonic()
    report_row = await runtime.inbox.accept_row(
        InboundMessage("local", "deferred-report", "sup-li", InboundKind.TEXT, text="报表 30天"))
    await runtime.inbox.accept_row(
        InboundMessage("local", "behind-report", "cust-behind", InboundKind.TEXT, text="底盘有异响"))

    async def ticket_behind() -> bool:
        async with runtime.sessions() as session:
            return (await session.execute(select(col(TicketRow.number)).where(
                col(TicketRow.customer_id) == "cust-behind"))).first() is not None

    await eventually(ticket_behind, HOLD_S - 1)  # committed while the report's job waits
    assert not blocker.done() and time.monotonic() - started < HOLD_S
    assert not [t for t in await supervisor.texts() if "【工单报表】" in t]
    async with runtime.sessions() as session:
        row = await session.get(InboxRow, report_row)
        assert row is not None and row.status == "processing"  # handled; finished with its answer

    await blocker

    async def report_sent() -> list[str]:
        return [t for t in await supervisor.texts() if "【工单报表】近30天" in t]

    assert len(await eventually(report_sent, 30)) == 1  # type: ignore[arg-type]
    await runtime.processor.drain()
    async with runtime.sessions() as session:
        row = await session.get(InboxRow, report_row)
        assert row is not None and (row.status, row.attempts, row.error) == ("done", 1, None)


async def test_the_playground_answer_carries_the_report(app_client: TestClient) -> None:
    supervisor = PlaygroundUser(app_client, "sup-li")
    answer = await supervisor.say("报表 7天")
    assert any("【工单报表】近7天" in (m.get("text") or "") for m in answer["messages"])
    async with runtime_of(app_client).sessions() as session:
        rows = (await session.execute(select(InboxRow).where(col(InboxRow.event_key).startswith("sup-li:")))).scalars()
        assert [(r.status, r.attempts, r.error) for r in rows] == [("done", 1, None)]


async def test_a_bad_period_is_answered_at_once(app_client: TestClient) -> None:
    """Errors of the handler itself are answered in the message's transaction, as before."""
    answer = await PlaygroundUser(app_client, "sup-li").say("报表 999天")
    assert any("天数必须在" in (m.get("text") or "") for m in answer["messages"])
