"""`Sessions.shared_transaction()` (storage/database.py): the sessions a task opens inside it are
savepoints of one transaction, committed once at the end; the playground handles each message in one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.rulebook import RuleBook
from core.clock import FixedClock
from core.repository import TimerRow
from core.service import SYSTEM_ACTOR, ServiceConfig, TicketService
from storage.database import Sessions, create_engine, session_factory
from storage.migrate import upgrade
from storage.tables import AuditEventRow
from storage.unit_of_work import SqlUnitOfWork
from tests.sla_support import PROBE, ScheduleProbe

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[Sessions]:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def audit(sessions: Sessions, kind: str, *, commit: bool = True) -> None:
    async with SqlUnitOfWork(sessions) as uow:
        await uow.append_audit(kind=kind, actor_id="t", at=NOW, payload={}, ticket_number=None)
        if commit:
            await uow.commit()


async def kinds(sessions: Sessions) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(select(AuditEventRow.kind).order_by(AuditEventRow.seq))).scalars())


async def committed_count(database_url: str) -> int:
    """What another connection (another process) sees."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(AuditEventRow))).scalar_one())
    finally:
        await engine.dispose()


async def test_units_of_work_inside_commit_together_at_the_end(sessions: Sessions, database_url: str) -> None:
    async with sessions.shared_transaction():
        await audit(sessions, "one")
        await audit(sessions, "two")
        assert await kinds(sessions) == ["one", "two"]  # visible inside
        if database_url.startswith("postgresql"):
            assert await committed_count(database_url) == 0  # not outside, until the end
    assert await kinds(sessions) == ["one", "two"]
    assert await committed_count(database_url) == 2


async def test_a_failing_unit_of_work_is_undone_alone(sessions: Sessions) -> None:
    async with sessions.shared_transaction():
        await audit(sessions, "kept")
        await audit(sessions, "not committed", commit=False)  # rolled back to its savepoint
        with pytest.raises(RuntimeError):
            async with SqlUnitOfWork(sessions) as uow:
                await uow.append_audit(kind="failed", actor_id="t", at=NOW, payload={}, ticket_number=None)
                raise RuntimeError("handler failed")
        await audit(sessions, "after")
    assert await kinds(sessions) == ["kept", "after"]


async def test_an_error_out_of_the_block_keeps_nothing(sessions: Sessions, database_url: str) -> None:
    with pytest.raises(RuntimeError):
        async with sessions.shared_transaction():
            await audit(sessions, "lost")
            raise RuntimeError("the request failed")
    assert await kinds(sessions) == []
    assert await committed_count(database_url) == 0


async def test_the_timer_alarm_is_told_only_once_the_transaction_committed(sessions: Sessions) -> None:
    service = TicketService(lambda: SqlUnitOfWork(sessions), FixedClock(NOW), RuleBook(), ServiceConfig())
    told: list[list[TimerRow]] = []

    async def alarm(timers: list[TimerRow]) -> None:
        told.append(timers)

    service.timers_scheduled = alarm
    async with sessions.shared_transaction():
        await service.handle(ScheduleProbe("S", NOW + timedelta(minutes=5)), SYSTEM_ACTOR)
        assert told == []  # a worker could not see the row yet
    assert [t.kind for t in told[0]] == [PROBE]

    with pytest.raises(RuntimeError):
        async with sessions.shared_transaction():
            await service.handle(ScheduleProbe("T", NOW + timedelta(minutes=5)), SYSTEM_ACTOR)
            raise RuntimeError("rolled back")
    assert len(told) == 1  # nothing to wake for


async def test_a_task_spawned_inside_keeps_its_own_transaction(sessions: Sessions) -> None:
    async def elsewhere() -> None:
        await audit(sessions, "spawned")

    with pytest.raises(RuntimeError):
        async with sessions.shared_transaction():
            await audit(sessions, "inside")
            spawned = asyncio.get_running_loop().create_task(elsewhere())  # inherits the context variable
            await asyncio.sleep(0.05)
            raise RuntimeError("rolled back; the spawned task's work is its own (on SQLite it waits its turn)")
    await spawned
    assert await kinds(sessions) == ["spawned"]
