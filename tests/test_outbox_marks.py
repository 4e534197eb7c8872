"""Deliveries the platform accepted together are marked sent in one transaction (bot/jobs/delivery.py,
`_mark_sent`): not a transaction and a statement per message (issue 24: the outbox's round trips). Each
delivery is still marked durably before its task ends, and a mark that fails leaves its batch "sending",
claimed and sent again later. Real database (SQLite and PostgreSQL), a platform sender of the test's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from bot.jobs.delivery import OutboxDispatcher
from core.cards import Notification
from core.model import Person, Role
from core.ports import DeliveryReceipt, OutboundDelivery
from storage.database import Sessions, create_engine, session_factory
from storage.migrate import upgrade
from storage.outbox import SqlOutbox
from storage.tables import OutboxRow
from storage.unit_of_work import SqlUnitOfWork
from tests.statements import statements_sent


class FixedClock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def now(self) -> datetime:
        return self.at


class Platform:
    """A channel whose API answers every send at once (one loop turn), numbering the messages."""

    platform = "marks"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        await asyncio.sleep(0)
        self.sent.append(delivery.recipient_external_id)
        return DeliveryReceipt(external_message_id=f"msg-{len(self.sent)}")

    async def fetch_media(self, media_ref: str) -> bytes:
        raise NotImplementedError


@pytest.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> Sessions:
    return session_factory(engine)


async def queued(sessions: Sessions, count: int, tag: str) -> None:
    now = datetime.now(UTC)
    async with SqlUnitOfWork(sessions) as uow:
        for i in range(count):
            person = Person(id=f"{tag}-{i}", name=f"客户{i}", role=Role.CUSTOMER, preferred_channel="marks")
            await uow.add_person(person, {"marks": f"ext-{tag}-{i}"})
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        for i in range(count):
            await uow.enqueue(Notification(f"{tag}-{i}", text="您的工单已受理"), at=now, reply_context=None)
        await uow.commit()


async def rows(sessions: Sessions, tag: str) -> list[Any]:
    async with sessions() as session:
        return list(await session.execute(
            select(col(OutboxRow.status), col(OutboxRow.external_id), col(OutboxRow.attempts))
            .where(col(OutboxRow.recipient_id).like(f"{tag}-%")).order_by(col(OutboxRow.id))))


async def test_deliveries_sent_together_are_marked_in_one_transaction(engine: AsyncEngine, sessions: Sessions) -> None:
    await queued(sessions, 20, "together")
    platform = Platform()
    dispatcher = OutboxDispatcher(SqlOutbox(sessions, FixedClock()), {"marks": platform})
    async with statements_sent(engine, with_control=True) as sent:
        assert await dispatcher.run_once() == 20
    assert sorted(platform.sent) == sorted(f"ext-together-{i}" for i in range(20))
    found = await rows(sessions, "together")
    assert [r.status for r in found] == ["sent"] * 20
    assert sorted(r.external_id for r in found) == sorted(f"msg-{i}" for i in range(1, 21))
    marks = [s for s in sent if s.upper().startswith("UPDATE OUTBOX SET STATUS") and "sent_at" in s]
    if engine.dialect.name == "postgresql":
        assert len(marks) == 1  # one executemany for the twenty: one pipelined round trip
    else:  # sqlite3's trace shows every row; one member of the group commit for the claim, one for the marks
        assert len(marks) == 20 and sum(s.startswith("SAVEPOINT") for s in sent) == 2, sent


async def test_a_mark_that_fails_leaves_its_batch_to_be_sent_again(sessions: Sessions) -> None:
    await queued(sessions, 5, "again")
    clock = FixedClock()
    platform = Platform()
    outbox = SqlOutbox(sessions, clock)
    dispatcher = OutboxDispatcher(outbox, {"marks": platform})
    async with sessions() as session, session.begin():
        await session.execute(text("ALTER TABLE outbox RENAME COLUMN sent_at TO sent_at_away"))
    try:
        with pytest.raises(Exception, match="sent_at"):
            await dispatcher.run_once()
    finally:
        async with sessions() as session, session.begin():
            await session.execute(text("ALTER TABLE outbox RENAME COLUMN sent_at_away TO sent_at"))
    assert len(platform.sent) == 5
    assert [r.status for r in await rows(sessions, "again")] == ["sending"] * 5
    assert await dispatcher.run_once() == 0  # not due yet: the claim's sending timeout
    clock.at += timedelta(minutes=3)
    assert await dispatcher.run_once() == 5
    found = await rows(sessions, "again")
    assert [(r.status, r.attempts) for r in found] == [("sent", 2)] * 5
    assert len(platform.sent) == 10  # at least once: the platform got each message twice


async def test_a_stop_during_the_sends_still_writes_the_marks_of_what_was_sent(sessions: Sessions) -> None:
    """The dispatcher's loop is cancelled (Runtime.stop) after the platform took the messages and
    before their marks: the marks are written all the same (the mark is shielded from its deliveries'
    cancellation; Runtime.stop then waits for it with `drain`, before the engine goes)."""
    await queued(sessions, 6, "stopped")
    platform = Platform()
    dispatcher = OutboxDispatcher(SqlOutbox(sessions, FixedClock()), {"marks": platform})
    loop_task = asyncio.create_task(dispatcher.run_once())
    while len(platform.sent) < 6:
        await asyncio.sleep(0)
    loop_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop_task
    await dispatcher.drain()
    assert [r.status for r in await rows(sessions, "stopped")] == ["sent"] * 6
