"""One lock order for a ticket and its timers (card → ticket → timer rows → audit head), on real
PostgreSQL: a timer firing and a command on its ticket, or an offer answered while it expires, never
wait for each other in a cycle (issue 19, item 29: a `fire_timer` job hit DeadlockDetectedError).

A raw connection plays the other transaction, so each interleaving is forced, not hoped for: it holds
the ticket's row lock as a command does, the test waits until the service's transaction is blocked
(pg_stat_activity), and only then takes the next lock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select
from sqlmodel import col

from bot.runtime import Runtime
from core.clock import FixedClock
from core.commands import ReportFault
from core.dispatch.handlers import AcceptOffer
from core.dispatch.offers import OFFER_TIMER
from core.model import Ticket, TicketStatus
from core.service import SYSTEM_ACTOR
from core.sla.reminder_digest import DIGEST_KIND, digest_key
from core.timers import FireTimer
from storage.tables import TimerRowTable
from tests.conftest import make_settings
from tests.sla_support import person, ticket

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

NOW = datetime(2026, 11, 18, 2, 0, tzinfo=UTC)  # a working day, 10:00 in Shanghai


def raw_url(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


async def timer_of(rt: Runtime, number: str, kind: str) -> TimerRowTable:
    async with rt.sessions() as session:
        row = (await session.execute(select(TimerRowTable).where(
            col(TimerRowTable.ticket_key) == number, col(TimerRowTable.kind) == kind))).scalar_one()
    return row


async def blocked_backends(watch: asyncpg.Connection) -> int:
    return int(await watch.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"))


async def wait_blocked(watch: asyncpg.Connection, count: int, *tasks: asyncio.Task[object]) -> None:
    """Until `count` backends of this database wait for a lock (a task that failed meanwhile raises)."""
    for _ in range(200):
        for task in tasks:
            if task.done():
                task.result()
                raise AssertionError("finished instead of waiting for the lock the test holds")
        if await blocked_backends(watch) >= count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"expected {count} transaction(s) waiting for a lock")


@asynccontextmanager
async def service_on_postgres(database_url: str, tmp_path: Path, clock: FixedClock) -> AsyncIterator[Runtime]:
    """The service on the demo directory, no background engine: only the test fires timers."""
    rt = Runtime(make_settings(database_url, tmp_path), clock=clock)
    await rt.prepare_database(bind="127.0.0.1")
    try:
        yield rt
    finally:
        await rt.stop()


async def new_ticket(rt: Runtime, customer: str = "cust-demo") -> str:
    created: Ticket = await rt.service.handle(ReportFault(text="中控黑屏"), await person(rt, customer))
    return created.number


async def test_a_timer_firing_while_a_command_holds_its_ticket_does_not_deadlock(
        database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    async with service_on_postgres(database_url, tmp_path, clock) as rt:
        number = await new_ticket(rt)
        reminder = await timer_of(rt, number, "sla.response.reminder")
        assert reminder.id is not None and reminder.state == "pending"
        clock.set(reminder.due_at + timedelta(seconds=1))
        command = await asyncpg.connect(raw_url(database_url))
        watch = await asyncpg.connect(raw_url(database_url))
        try:
            # A command on the ticket: it locks the ticket first ...
            held = command.transaction()
            await held.start()
            await command.execute("SELECT 1 FROM tickets WHERE number = $1 FOR UPDATE", number)
            fire = asyncio.create_task(rt.service.handle(FireTimer(reminder.id, reminder.generation), SYSTEM_ACTOR))
            await wait_blocked(watch, 1, fire)  # the firing waits for the ticket
            # ... then moves the ticket's timers (as re-planning the SLA or meeting the response does).
            await asyncio.wait_for(command.execute(
                "UPDATE timers SET generation = generation + 1, due_at = due_at + interval '1 hour' WHERE id = $1",
                reminder.id), timeout=10)
            await held.commit()
            assert await asyncio.wait_for(fire, timeout=10) is False  # its alarm went stale meanwhile
        finally:
            await command.close()
            await watch.close()
        moved = await timer_of(rt, number, "sla.response.reminder")
        assert (moved.state, moved.generation) == ("pending", reminder.generation + 1)


async def offered(rt: Runtime) -> tuple[str, str, TimerRowTable]:
    """A new ticket offered to a technician: (number, technician id, the offer's expiry timer)."""
    number = await new_ticket(rt)
    current = await ticket(rt, number)
    assert current.status is TicketStatus.DISPATCHED and current.assignee_id, current.status
    return number, current.assignee_id, await timer_of(rt, number, OFFER_TIMER)


async def test_an_offer_answered_while_its_expiry_fires_does_not_deadlock(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    async with service_on_postgres(database_url, tmp_path, clock) as rt:
        number, technician, expiry = await offered(rt)
        assert expiry.id is not None
        clock.set(expiry.due_at + timedelta(seconds=1))
        tech = await person(rt, technician)
        command = await asyncpg.connect(raw_url(database_url))
        watch = await asyncpg.connect(raw_url(database_url))
        try:
            held = command.transaction()
            await held.start()
            await command.execute("SELECT 1 FROM tickets WHERE number = $1 FOR UPDATE", number)
            # The expiry comes first and waits for the ticket; the technician's 接单 comes next.
            fire = asyncio.create_task(rt.service.handle(FireTimer(expiry.id, expiry.generation), SYSTEM_ACTOR))
            await wait_blocked(watch, 1, fire)
            accept = asyncio.create_task(rt.service.handle(AcceptOffer(number), tech))
            await wait_blocked(watch, 2, fire, accept)
            await held.commit()  # the expiry gets the ticket first, then the answer
            await asyncio.wait_for(asyncio.gather(fire, accept), timeout=15)
        finally:
            await command.close()
            await watch.close()
        # The expiry stepped aside for the answer being given; the answer stands.
        assert (await ticket(rt, number)).status is TicketStatus.ACCEPTED


async def test_an_offer_answered_while_a_command_moves_its_expiry_does_not_deadlock(
        database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    async with service_on_postgres(database_url, tmp_path, clock) as rt:
        number, technician, expiry = await offered(rt)
        tech = await person(rt, technician)
        command = await asyncpg.connect(raw_url(database_url))
        watch = await asyncpg.connect(raw_url(database_url))
        try:
            # A staff command on the ticket (a reassignment re-arms the offer's expiry) holds the ticket ...
            held = command.transaction()
            await held.start()
            await command.execute("SELECT 1 FROM tickets WHERE number = $1 FOR UPDATE", number)
            accept = asyncio.create_task(rt.service.handle(AcceptOffer(number), tech))
            await wait_blocked(watch, 1, accept)
            # ... and moves the expiry timer while the technician's 接单 waits.
            await asyncio.wait_for(command.execute(
                "UPDATE timers SET generation = generation + 1 WHERE id = $1", expiry.id), timeout=10)
            await held.commit()
            await asyncio.wait_for(accept, timeout=10)
        finally:
            await command.close()
            await watch.close()
        assert (await ticket(rt, number)).status is TicketStatus.ACCEPTED


# --- the audit head: a firing holds it before any row but its ticket's -----------------------------
# A breach locks the head early (dispatch ranking reads the chain head under its lock, for the
# escalation card's technician list) and then the per-person digest timers of the people it reminds;
# a reminder firing used to lock those digest timers first and the head last.


async def digest_row(database_url: str, person_id: str) -> int:
    """An open reminder window for a person (as an earlier reminder leaves it): the row to contend on."""
    conn = await asyncpg.connect(raw_url(database_url))
    try:
        return int(await conn.fetchval(
            "INSERT INTO timers (kind, ticket_key, due_at, generation, state, payload) "
            "VALUES ($1, $2, $3, 1, 'pending', $4) RETURNING id",
            DIGEST_KIND, digest_key(person_id), NOW + timedelta(days=1),
            json.dumps({"person": person_id, "items": [], "extra": 0})))
    finally:
        await conn.close()


async def head_then_digest(database_url: str, fire: Callable[[], Awaitable[bool]], person_id: str) -> bool:
    """Another transaction holds the audit head (as a breach does) while the firing runs, then locks the
    person's digest timer (as the breach's reminder does). Returns what the firing returned."""
    command = await asyncpg.connect(raw_url(database_url))
    watch = await asyncpg.connect(raw_url(database_url))
    try:
        held = command.transaction()
        await held.start()
        assert await command.fetchval("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE") is not None
        firing = asyncio.create_task(fire())
        await wait_blocked(watch, 1, firing)
        await asyncio.wait_for(command.execute(
            "SELECT 1 FROM timers WHERE kind = $1 AND ticket_key = $2 FOR UPDATE",
            DIGEST_KIND, digest_key(person_id)), timeout=10)
        await held.commit()
        return await asyncio.wait_for(firing, timeout=10)
    finally:
        await command.close()
        await watch.close()


async def test_a_reminder_firing_while_a_breach_holds_the_audit_head_does_not_deadlock(
        database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    async with service_on_postgres(database_url, tmp_path, clock) as rt:
        number, technician, _expiry = await offered(rt)
        await digest_row(database_url, technician)
        reminder = await timer_of(rt, number, "sla.response.reminder")
        assert reminder.id is not None
        clock.set(reminder.due_at + timedelta(seconds=1))
        fired = await head_then_digest(database_url, lambda: rt.service.handle(
            FireTimer(reminder.id, reminder.generation), SYSTEM_ACTOR), technician)  # type: ignore[arg-type]
        assert fired is True
        # The reminder joined the technician's open window (nothing sent at once, listed in the digest).
        window = await timer_of(rt, digest_key(technician), DIGEST_KIND)
        assert [item["ticket"] for item in window.payload["items"]] == [number]


async def test_a_digest_window_closing_while_a_breach_holds_the_audit_head_does_not_deadlock(
        database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    async with service_on_postgres(database_url, tmp_path, clock) as rt:
        await new_ticket(rt)  # the chain has a head
        window = await digest_row(database_url, "sup-li")
        clock.set(NOW + timedelta(days=1, seconds=1))
        fired = await head_then_digest(database_url, lambda: rt.service.handle(FireTimer(window, 1), SYSTEM_ACTOR),
                                       "sup-li")
        assert fired is True  # a quiet window just closes
        assert (await timer_of(rt, digest_key("sup-li"), DIGEST_KIND)).state == "fired"
