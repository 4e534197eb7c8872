"""The outbox dispatcher is told when a transaction that queued rows commits, so an answer leaves at
once instead of at the dispatcher's next idle poll (issue 24: most of a chat answer's latency), and
never before the rows are durable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.cards import Notification
from storage.database import create_engine, session_factory
from storage.migrate import upgrade
from storage.outbox import on_rows_queued
from storage.unit_of_work import SqlUnitOfWork


@pytest.fixture
async def sessions(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def test_a_commit_that_queued_rows_wakes_the_dispatcher_once(sessions) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    unregister = on_rows_queued(lambda: calls.append("woken"))
    try:
        now = datetime.now(UTC)
        async with SqlUnitOfWork(sessions) as uow:
            await uow.enqueue(Notification("someone", text="甲"), at=now, reply_context=None)
            await uow.enqueue(Notification("someone", text="乙"), at=now, reply_context=None)
            assert calls == []  # not before the commit
            await uow.commit()
        assert calls == ["woken"]

        async with SqlUnitOfWork(sessions) as uow:  # rolled back: nothing to deliver, nobody woken
            await uow.enqueue(Notification("someone", text="丙"), at=now, reply_context=None)
        async with SqlUnitOfWork(sessions) as uow:  # committed without rows
            await uow.commit()
        assert calls == ["woken"]

        async with sessions.shared_transaction():  # a member of a group: woken after the group's COMMIT
            async with SqlUnitOfWork(sessions) as uow:
                await uow.enqueue(Notification("someone", text="丁"), at=now, reply_context=None)
                await uow.commit()
            assert calls == ["woken"]
        assert calls == ["woken", "woken"]
    finally:
        unregister()
