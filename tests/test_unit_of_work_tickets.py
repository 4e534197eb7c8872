"""Tickets are written once per transaction (SqlUnitOfWork.add_ticket): what a command saves several
times goes in as one statement, and nothing inside or outside the transaction can tell."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import Conflict
from core.model import Ticket, TicketStatus
from storage.database import Sessions
from storage.unit_of_work import SqlUnitOfWork
from tests.statements import statements_sent

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
S = TicketStatus


@pytest.fixture
def sessions(db_sessions: Sessions) -> Sessions:
    return db_sessions


def new_ticket(number: str) -> Ticket:
    return Ticket(number=number, customer_id="c1", description="底盘有异响", status=S.PENDING_DISPATCH,
                  created_at=NOW, updated_at=NOW, category="机械类")


async def stored(sessions: Sessions, number: str) -> Ticket:
    async with SqlUnitOfWork(sessions) as uow:
        found = await uow.get_ticket(number)
    assert found is not None
    return found


async def test_a_new_ticket_saved_twice_is_one_insert_of_its_last_state(sessions: Sessions) -> None:
    async with statements_sent(sessions.kw["bind"]) as sent, SqlUnitOfWork(sessions) as uow:
        ticket = await uow.add_ticket(new_ticket("GD-1"))
        ticket.data["sla"] = {"cell": "常规"}
        await uow.save_ticket(ticket)
        ticket.assignee_id, ticket.status = "tech-1", S.DISPATCHED
        await uow.save_ticket(ticket)
        await uow.commit()
    assert [s.split()[0:3] for s in sent if "tickets" in s] == [["INSERT", "INTO", "tickets"]]
    assert ticket.id is not None
    found = await stored(sessions, "GD-1")
    assert (found.status, found.assignee_id, found.data, found.version) == (S.DISPATCHED, "tech-1",
                                                                            {"sla": {"cell": "常规"}}, 3)


async def test_reads_in_the_transaction_see_what_was_saved(sessions: Sessions) -> None:
    async with SqlUnitOfWork(sessions) as uow:
        ticket = await uow.add_ticket(new_ticket("GD-2"))
        assert (await uow.get_ticket("GD-2")) == ticket  # written first, then read
        ticket.assignee_id, ticket.status = "tech-1", S.DISPATCHED
        await uow.save_ticket(ticket)
        assert [t.assignee_id for t in await uow.list_tickets(customer_id="c1")] == ["tech-1"]
        ticket.status = S.ACCEPTED
        await uow.save_ticket(ticket)
        # The dispatch index asks the store: it answers this transaction's unwritten state, unasked.
        assignments = await uow.dispatch_store().assignments({S.ACCEPTED}, ["GD-2", "GD-none"])
        assert assignments == {"GD-2": ("tech-1", True)}
        await uow.commit()
    assert (await stored(sessions, "GD-2")).status is S.ACCEPTED
    async with SqlUnitOfWork(sessions) as uow:  # and the full scan (a rebuild) after a save here
        ticket = await uow.get_ticket("GD-2")
        assert ticket is not None
        ticket.status = S.IN_PROGRESS
        await uow.save_ticket(ticket)
        assert await uow.dispatch_store().assignments({S.IN_PROGRESS}) == {"GD-2": ("tech-1", True)}


async def test_a_rolled_back_transaction_writes_no_ticket(sessions: Sessions) -> None:
    async with SqlUnitOfWork(sessions) as uow:
        await uow.add_ticket(new_ticket("GD-3"))
    async with SqlUnitOfWork(sessions) as uow:
        assert await uow.get_ticket("GD-3") is None


async def test_a_stale_save_is_still_a_conflict(sessions: Sessions) -> None:
    async with SqlUnitOfWork(sessions) as uow:
        await uow.add_ticket(new_ticket("GD-4"))
        await uow.commit()
    async with SqlUnitOfWork(sessions) as first, SqlUnitOfWork(sessions) as second:
        mine = await first.get_ticket("GD-4")
        assert mine is not None
        await first.commit()  # read, then someone else saves and commits
        theirs = await stored(sessions, "GD-4")
        theirs.status = S.CANCELLED
        await second.save_ticket(theirs)
        await second.commit()
        mine.status = S.DISPATCHED
        await first.save_ticket(mine)
        with pytest.raises(Conflict):
            await first.commit()  # written at the commit: the version it read is gone
    assert (await stored(sessions, "GD-4")).status is S.CANCELLED

    async with SqlUnitOfWork(sessions) as uow:  # an older copy saved after a newer one, in one transaction
        newer = await uow.get_ticket("GD-4")
        older = await uow.get_ticket("GD-4")
        assert newer is not None and older is not None
        await uow.save_ticket(newer)
        with pytest.raises(Conflict):
            await uow.save_ticket(older)
