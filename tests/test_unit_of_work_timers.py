"""Several timers of one ticket scheduled in one statement (the SLA clock arms four at a time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.database import create_engine, session_factory
from storage.migrate import upgrade
from storage.unit_of_work import SqlUnitOfWork
from tests.statements import statements_sent

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_schedule_timers_creates_then_moves_each_kind(sessions: async_sessionmaker[AsyncSession]) -> None:
    plans = [("t.reminder", NOW + timedelta(hours=1), {"n": 1}), ("t.breach", NOW + timedelta(hours=2), {"n": 2}),
             ("u.breach", NOW + timedelta(hours=3), {"n": 3})]
    async with SqlUnitOfWork(sessions) as uow:
        first = await uow.schedule_timers(ticket_number="GD-1", timers=plans)
        await uow.commit()
    assert [(t.kind, t.due_at, t.payload, t.generation) for t in first] == [(k, d, p, 1) for k, d, p in plans]
    assert len({t.id for t in first}) == 3

    moved = [(kind, due + timedelta(minutes=5), {"moved": True}) for kind, due, _ in reversed(plans)]
    async with SqlUnitOfWork(sessions) as uow:
        again = await uow.schedule_timers(ticket_number="GD-1", timers=moved)
        assert uow.scheduled_timers == again  # handed to the alarm clock after the commit
        await uow.commit()
    ids = {t.kind: t.id for t in first}
    assert [(t.kind, t.id, t.generation) for t in again] == [(k, ids[k], 2) for k, _, _ in moved]
    async with SqlUnitOfWork(sessions) as uow:
        stored = await uow.get_timer("t.breach", "GD-1")
    assert stored is not None and stored.due_at == NOW + timedelta(hours=2, minutes=5)
    assert stored.payload == {"moved": True} and stored.generation == 2


async def test_schedule_timers_refuses_one_kind_twice_and_changes_nothing(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with SqlUnitOfWork(sessions) as uow:
        with pytest.raises(ValueError, match="one timer per kind"):
            await uow.schedule_timers(ticket_number="GD-2", timers=[("k", NOW, {}), ("k", NOW, {})])
        assert await uow.get_timer("k", "GD-2") is None and uow.scheduled_timers == []


async def test_schedule_timers_is_one_statement(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A None in the upsert's SET clause once made SQLAlchemy send the rows one at a time (and on
    SQLite the hot statement path, storage/sqlite/prepared.py, must keep them in one statement)."""
    async with statements_sent(sessions.kw["bind"]) as sent, SqlUnitOfWork(sessions) as uow:
        timers = await uow.schedule_timers(ticket_number="GD-3", timers=[(f"k{i}", NOW, {}) for i in range(4)])
        await uow.commit()
    assert len([s for s in sent if s.startswith("INSERT INTO timers")]) == 1
    assert sorted(t.kind for t in timers) == ["k0", "k1", "k2", "k3"] and len({t.id for t in timers}) == 4


async def test_a_ticket_created_in_the_transaction_has_only_the_timers_it_scheduled(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """cancel_timers and get_timer skip their statement for such a ticket unless a matching timer was
    scheduled here, and still find that one; get_person answers for a person added here without reading."""
    from core.model import Person, Role, Ticket, TicketStatus

    async with statements_sent(sessions.kw["bind"]) as sent, SqlUnitOfWork(sessions) as uow:
        await uow.add_person(Person(id="c-new", name="新客户", role=Role.CUSTOMER, preferred_channel="local"),
                             {"local": "c-new"})
        assert await uow.get_person("c-new") == Person(id="c-new", name="新客户", role=Role.CUSTOMER,
                                                       preferred_channel="local")
        await uow.add_ticket(Ticket(number="GD-9", customer_id="c-new", description="异响",
                                    status=TicketStatus.PENDING_DISPATCH, created_at=NOW, updated_at=NOW))
        assert await uow.cancel_timers("GD-9", {"offer"}) == 0
        before = len(sent)
        assert await uow.get_timer("offer", "GD-9") is None
        assert await uow.get_timer("offer", "GD-9", lock=True) is None
        assert sent[before:] == []  # nothing to read for a number that did not exist before this transaction
        await uow.schedule_timers(ticket_number="GD-9", timers=[("offer", NOW, {}), ("sla", NOW, {})])
        found = await uow.get_timer("offer", "GD-9")  # scheduled here: read as stored
        assert found is not None and found.state == "pending" and await uow.get_timer("dispatch", "GD-9") is None
        assert await uow.cancel_timers("GD-9", {"offer"}) == 1
        assert await uow.cancel_timers("GD-9") == 1  # the SLA timer; the offer timer is cancelled already
        await uow.commit()
        # Committed: another transaction may schedule its timers now, and this one sees them.
        async with SqlUnitOfWork(sessions) as other:
            await other.schedule_timers(ticket_number="GD-9", timers=[("reminder", NOW, {})])
            await other.commit()
        assert await uow.cancel_timers("GD-9", {"reminder"}) == 1
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        states = [(await uow.get_timer(kind, "GD-9")).state for kind in ("offer", "sla", "reminder")]  # type: ignore[union-attr]
    assert states == ["cancelled", "cancelled", "cancelled"]
