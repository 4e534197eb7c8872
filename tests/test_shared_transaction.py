"""`Sessions.shared_transaction()` (storage/database.py): the sessions a task opens inside it are
savepoints of one transaction, committed once at the end; the playground handles each message in one."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.rules.rulebook import RuleBook
from core.clock import FixedClock
from core.repository import TimerRow
from core.service import SYSTEM_ACTOR, ServiceConfig, TicketService
from storage.database import Sessions, create_engine
from storage.tables import AuditEventRow
from storage.unit_of_work import SqlUnitOfWork
from tests.sla_support import PROBE, ScheduleProbe

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
def sessions(db_sessions: Sessions) -> Sessions:
    return db_sessions


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
    if database_url.startswith("sqlite"):  # a plain reader: a second engine here would wait for the write lock
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as raw:
            return int(raw.execute("SELECT count(*) FROM audit_events").fetchone()[0])
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


# --- SQLite: consecutive shared transactions commit as a group ---


async def test_concurrent_blocks_on_sqlite_are_one_commit(sqlite_sessions: Sessions, sqlite_url: str) -> None:
    sessions = sqlite_sessions
    sent: list[str] = []
    visible_when_answered: list[int] = []

    async def member(n: int) -> None:
        async with sessions.shared_transaction():
            await audit(sessions, f"m{n}")
        visible_when_answered.append(await committed_count(sqlite_url))  # durable before the member goes on

    async with sessions.kw["bind"].connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection._connection  # type: ignore[union-attr]
    raw.set_trace_callback(sent.append)
    try:
        await asyncio.gather(*(member(n) for n in range(10)))
    finally:
        raw.set_trace_callback(None)
    assert sent.count("COMMIT") == 1 and sum(s.startswith("BEGIN") for s in sent) == 1
    assert sorted(await kinds(sessions)) == sorted(f"m{n}" for n in range(10))
    assert visible_when_answered == [10] * 10


async def test_a_failing_member_leaves_the_others_in_the_group(sqlite_sessions: Sessions) -> None:
    sessions = sqlite_sessions

    async def member(n: int) -> None:
        async with sessions.shared_transaction():
            await audit(sessions, f"m{n}")
            if n == 2:
                raise RuntimeError("this request failed")

    results = await asyncio.gather(*(member(n) for n in range(4)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["NoneType", "NoneType", "RuntimeError", "NoneType"]
    assert sorted(await kinds(sessions)) == ["m0", "m1", "m3"]


async def test_a_failed_commit_fails_every_member_and_the_next_group_works(
        sqlite_sessions: Sessions, sqlite_url: str) -> None:
    """A deferred foreign key makes COMMIT itself fail, as a full disk would."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    sessions = sqlite_sessions
    async with sessions.kw["bind"].begin() as conn:
        await conn.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        await conn.execute(text("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER "
                                "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"))

    async def member(n: int) -> None:
        async with sessions.shared_transaction():
            await audit(sessions, f"m{n}")
            if n == 1:
                async with sessions() as session, session.begin():
                    await session.execute(text("INSERT INTO child (parent_id) VALUES (42)"))  # no parent 42

    results = await asyncio.gather(*(member(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, IntegrityError) for r in results), results
    assert await committed_count(sqlite_url) == 0
    await asyncio.gather(*(member(n) for n in (0, 2)))
    assert sorted(await kinds(sessions)) == ["m0", "m2"]


async def test_other_sessions_wait_for_the_group_and_then_run(sqlite_sessions: Sessions) -> None:
    sessions = sqlite_sessions

    async def member(n: int) -> None:
        async with sessions.shared_transaction():
            await audit(sessions, f"m{n}")
            await asyncio.sleep(0.01)  # holds the only connection meanwhile

    async def outsider() -> None:
        await asyncio.sleep(0.005)
        await audit(sessions, "outsider")  # its own transaction, once the group let go

    await asyncio.wait_for(asyncio.gather(*(member(n) for n in range(3)), outsider()), timeout=10)
    assert sorted(await kinds(sessions)) == ["m0", "m1", "m2", "outsider"]
