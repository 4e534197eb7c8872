"""Background inbox processing on SQLite (bot/jobs/delivery.py, `batch`): a few waiting rows per member
of the group commit, each in a savepoint of its own, in the order they were accepted. Through the real
app, its inbox and its processor, on a real SQLite file."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event, select, text
from sqlmodel import col

from bot.jobs.delivery import InboxProcessor
from bot.runtime import Runtime
from bot.web.app import build_app
from core.inbound import InboundKind, InboundMessage, Later
from storage.tables import InboxRow, OutboxRow, TicketRow
from tests.conftest import make_settings, runtime_of


@pytest.fixture
async def sqlite_app(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(make_settings(sqlite_url, tmp_path)))) as client:
        await runtime_of(client).rulebook.ready()
        yield client


async def accepted_unscheduled(runtime: Runtime, messages: list[InboundMessage]) -> list[int]:
    """Accept the messages with nobody scheduling them (as after a crash), for a backlog to schedule at once."""
    inbox = runtime.inbox
    saved, inbox.on_accepted = inbox.on_accepted, None
    try:
        rows = [await inbox.accept_row(m) for m in messages]
    finally:
        inbox.on_accepted = saved
    assert None not in rows
    return [r for r in rows if r is not None]


async def statuses(runtime: Runtime, rows: list[int]) -> list[tuple[str, str | None]]:
    async with runtime.sessions() as session:
        found = {r.id: r for r in (await session.execute(select(InboxRow).where(col(InboxRow.id).in_(rows)))).scalars()}
    return [(found[r].status, found[r].error) for r in rows]


async def texts_to(runtime: Runtime, person_id: str) -> list[str]:
    async with runtime.sessions() as session:
        payloads = (await session.execute(select(col(OutboxRow.payload)).where(col(OutboxRow.recipient_id) == person_id)
                                          .order_by(col(OutboxRow.id)))).scalars()
        return [p.get("text") or "" for p in payloads]


async def test_messages_of_one_sender_are_handled_in_the_order_they_arrived(sqlite_app: TestClient) -> None:
    """Accepted as they would be from a busy chat (interleaved senders, the processor working
    meanwhile): each sender's answers come in the order of their messages."""
    runtime = runtime_of(sqlite_app)
    senders = [f"cust-order-{s}" for s in range(4)]
    per_sender = 12
    for i in range(per_sender):
        for sender in senders:
            await runtime.inbox.accept_row(InboundMessage(
                "local", f"{sender}-{i}", sender, InboundKind.TEXT, text=f"工单 GD-20260101-{i + 1:04d}"))
    await runtime.processor.drain()
    for sender in senders:
        asked = [int(m.group(1)) for t in await texts_to(runtime, sender)
                 if (m := re.search(r"GD-20260101-(\d{4})", t))]
        assert asked == list(range(1, per_sender + 1)), sender


async def test_a_backlog_shares_its_commits(sqlite_app: TestClient) -> None:
    runtime = runtime_of(sqlite_app)
    backlog = 30
    rows = await accepted_unscheduled(runtime, [InboundMessage(
        "local", f"shared-{i}", f"cust-shared-{i}", InboundKind.TEXT, text="底盘有异响") for i in range(backlog)])
    commits: list[int] = []

    def counted(_conn: Any) -> None:
        commits.append(1)

    event.listen(runtime.engine.sync_engine, "commit", counted)
    try:
        for row in rows:
            runtime.processor.schedule(row)
        await runtime.processor.drain()
    finally:
        event.remove(runtime.engine.sync_engine, "commit", counted)
    assert await statuses(runtime, rows) == [("done", None)] * backlog
    # One per message before; the outbox's claims and marks (also members of the group) add a few.
    assert len(commits) <= backlog // 2, f"{len(commits)} commits for {backlog} messages"


async def test_a_row_that_cannot_be_read_fails_alone_and_for_good(sqlite_app: TestClient) -> None:
    """A row that cannot be read (a broken payload) fails at once, with why: reading it again would
    give the same (it stayed pending, undone with its claim, and the sweep retried it for ever). The
    rows handled with it in the same transaction are committed."""
    runtime = runtime_of(sqlite_app)
    rows = await accepted_unscheduled(runtime, [
        InboundMessage("local", "batch-ok-1", "cust-batch-1", InboundKind.TEXT, text="底盘有异响"),
        InboundMessage("local", "batch-broken", "cust-batch-2", InboundKind.TEXT, text="中控黑屏"),
        InboundMessage("local", "batch-ok-3", "cust-batch-3", InboundKind.TEXT, text="空调不制冷"),
    ])
    async with runtime.sessions() as session, session.begin():
        await session.execute(text("UPDATE inbox SET payload = json_set(payload, '$.kind', 'no-such-kind') "
                                   "WHERE id = :id"), {"id": rows[1]})
    for row in rows:
        runtime.processor.schedule(row)
    await runtime.processor.drain()
    found = await statuses(runtime, rows)
    assert found[0] == ("done", None) and found[2] == ("done", None)
    assert found[1][0] == "failed" and "no-such-kind" in (found[1][1] or "")
    assert await runtime.processor.sweep() == 0  # nothing left for the sweep to retry
    async with runtime.sessions() as session:
        owners = set((await session.execute(select(col(TicketRow.customer_id)))).scalars())
        broken = await session.get(InboxRow, rows[1])
        assert broken is not None and broken.attempts == 1
    assert {"cust-batch-1", "cust-batch-3"} <= owners and "cust-batch-2" not in owners


async def test_a_handling_that_fails_in_a_batch_keeps_its_error_and_the_others_are_answered(
        sqlite_app: TestClient) -> None:
    """The database fails under one conversation (a table fault reports need is gone): that row goes
    back with its error, a greeting handled with it is answered; once the table is back, processing
    the rows again makes each ticket once."""
    runtime = runtime_of(sqlite_app)

    async def rename(old: str, new: str) -> None:
        async with runtime.sessions() as session, session.begin():
            await session.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))

    rows = await accepted_unscheduled(runtime, [
        InboundMessage("local", "fail-1", "cust-fail-1", InboundKind.TEXT, text="底盘有异响"),
        InboundMessage("local", "fail-2", "cust-fail-2", InboundKind.TEXT, text="你好"),
        InboundMessage("local", "fail-3", "cust-fail-3", InboundKind.TEXT, text="中控黑屏"),
    ])
    await rename("ticket_counters", "ticket_counters_away")
    try:
        for row in rows:
            runtime.processor.schedule(row)
        await runtime.processor.drain()
    finally:
        await rename("ticket_counters_away", "ticket_counters")
    found = await statuses(runtime, rows)
    assert [s for s, _ in found] == ["pending", "done", "pending"]
    assert "ticket_counters" in (found[0][1] or "") and "ticket_counters" in (found[2][1] or "")
    assert await texts_to(runtime, "cust-fail-2")  # answered
    for row in (rows[0], rows[2]):
        runtime.processor.schedule(row)
    await runtime.processor.drain()
    assert [s for s, _ in await statuses(runtime, rows)] == ["done"] * 3
    async with runtime.sessions() as session:
        owners = list((await session.execute(select(col(TicketRow.customer_id)).where(
            col(TicketRow.customer_id).in_(["cust-fail-1", "cust-fail-3"])))).scalars())
    assert sorted(owners) == ["cust-fail-1", "cust-fail-3"]


async def test_an_unreadable_row_fails_on_either_engine(app_client: TestClient) -> None:
    """The same through one row's own transaction (PostgreSQL's path): failed with its error, once."""
    from sqlalchemy import update

    runtime = runtime_of(app_client)
    [row] = await accepted_unscheduled(runtime, [
        InboundMessage("local", "unreadable-1", "cust-unreadable", InboundKind.TEXT, text="底盘有异响")])
    async with runtime.sessions() as session, session.begin():
        await session.execute(update(InboxRow).where(col(InboxRow.id) == row).values(payload={"platform": "local"}))
    await runtime.processor.process(row)
    [(status, error)] = await statuses(runtime, [row])
    assert status == "failed" and "event_key" in (error or "")
    await runtime.processor.process(row)  # a second try finds nothing to claim
    async with runtime.sessions() as session:
        stored = await session.get(InboxRow, row)
    assert stored is not None and stored.attempts == 1


@pytest.mark.parametrize("batch", [1, 8])
async def test_a_row_with_work_for_after_its_transaction_stays_processing_until_that_work_is_done(
        sqlite_app: TestClient, batch: int) -> None:
    """A row is taken and finished in one statement (SqlInbox.take) when it is handled at once; one
    whose handling leaves a read for after its transaction (报表) is committed "processing" — a crash
    before the read's answer leaves it for the sweep — and is done only with that answer. Work that
    fails after the transaction puts the row back with its error."""
    runtime = runtime_of(sqlite_app)
    release = asyncio.Event()
    answered: list[str] = []

    async def read() -> str:
        await release.wait()
        if len(answered) == 1:
            raise RuntimeError("report store away")
        return "七天报表"

    async def answer(value: str) -> None:
        answered.append(value)

    async def handle(message: InboundMessage) -> Later | None:
        return Later(read, answer) if message.text == "报表" else None

    processor = InboxProcessor(runtime.inbox, handle, batch=batch)
    rows = await accepted_unscheduled(runtime, [
        InboundMessage("local", f"later-{batch}-{i}", f"sup-later-{i}", InboundKind.TEXT, text=text)
        for i, text in enumerate(["报表", "你好", "报表"])])
    for row in rows:
        processor.schedule(row)
    for _ in range(500):  # the rows' transaction commits; the reads wait
        if [s for s, _ in await statuses(runtime, rows)] == ["processing", "done", "processing"]:
            break
        await asyncio.sleep(0.01)
    assert [s for s, _ in await statuses(runtime, rows)] == ["processing", "done", "processing"]
    release.set()
    await processor.drain()
    found = await statuses(runtime, rows)
    assert answered == ["七天报表"]
    assert sorted(found) == [("done", None), ("done", None), ("pending", "RuntimeError: report store away")]
