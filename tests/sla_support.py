"""Helpers for the SLA/timer tests: a real app on a FixedClock, and ways to move time and tickets."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlmodel import col

from bot.runtime import Runtime
from bot.web.app import build_app
from core.clock import FixedClock
from core.commands import Transition
from core.model import Person, Ticket, TicketStatus
from core.service import SYSTEM_ACTOR, Context, handles
from core.timers import timer_handler
from storage.tables import AuditEventRow, TimerRowTable
from tests.conftest import make_settings
from tests.playground_client import PlaygroundUser

SH = ZoneInfo("Asia/Shanghai")
NUMBER = re.compile(r"GD-\d{8}-\d{4}")


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


@asynccontextmanager
async def fixed_clock_app(database_url: str, tmp_path: Path, clock: FixedClock,
                          **settings: Any) -> AsyncIterator[TestClient]:
    """The real app (demo directory, playground, in-process timer engine) on a FixedClock."""
    config = make_settings(database_url, tmp_path, **settings)
    runtime = Runtime(config, clock=clock)
    async with TestClient(TestServer(build_app(config, runtime=runtime))) as client:
        yield client


def runtime(client: TestClient) -> Runtime:
    from bot.web.api import RUNTIME

    return client.app[RUNTIME]  # type: ignore[index]


async def settle(rt: Runtime) -> int:
    """Fire every due timer (and the ones they schedule for now) with the in-process engine."""
    fired = 0
    for _ in range(50):
        n = await rt.timer_engine.fire_due()
        fired += n
        if n == 0 and not await rt.timer_store.due(rt.clock.now()):
            return fired
    raise AssertionError("timers keep firing")


async def advance(rt: Runtime, clock: FixedClock, **delta: float) -> int:
    clock.advance(timedelta(**delta))
    return await settle(rt)


async def advance_to(rt: Runtime, clock: FixedClock, moment: datetime) -> int:
    clock.set(moment)
    return await settle(rt)


async def report(client: TestClient, user: str, text: str) -> str:
    customer = PlaygroundUser(client, user)
    await customer.say(text)
    for message in reversed(await customer.messages()):
        found = NUMBER.search(message.get("text") or "")
        if found:
            return found.group(0)
    raise AssertionError(f"no ticket number in the replies to {text!r}")


async def ticket(rt: Runtime, number: str) -> Ticket:
    async with rt.uow() as uow:
        found = await uow.get_ticket(number)
    assert found is not None, number
    return found


async def person(rt: Runtime, person_id: str) -> Person:
    async with rt.uow() as uow:
        found = await uow.get_person(person_id)
    assert found is not None, person_id
    return found


async def move(rt: Runtime, number: str, name: str, actor_id: str | None = None) -> Ticket:
    actor = SYSTEM_ACTOR if actor_id is None else await person(rt, actor_id)
    result: Ticket = await rt.service.handle(Transition(number, name), actor)
    return result


async def force(rt: Runtime, number: str, **fields: Any) -> None:
    """Test setup only: write ticket fields directly (e.g. skip the check-in steps)."""
    async with rt.uow() as uow:
        found = await uow.get_ticket(number, lock=True)
        assert found is not None
        for key, value in fields.items():
            setattr(found, key, value)
        await uow.save_ticket(found)
        await uow.commit()


async def assign_and_accept(rt: Runtime, number: str, technician: str) -> Ticket:
    """The technician accepts the job (dispatch is another feature: the assignee is set directly)."""
    current = await ticket(rt, number)
    await force(rt, number, assignee_id=technician)
    if current.status in {TicketStatus.PENDING_DISPATCH, TicketStatus.TRIAGE}:
        await move(rt, number, "dispatch", "sup-li")
    return await move(rt, number, "accept", technician)


async def timers(rt: Runtime, number: str, state: str | None = "pending", prefix: str = "sla.") -> dict[str, datetime]:
    """kind → due_at of the ticket's SLA timers (pending ones by default; other features have theirs)."""
    async with rt.sessions() as session:
        stmt = select(TimerRowTable).where(col(TimerRowTable.ticket_key) == number)
        if state:
            stmt = stmt.where(col(TimerRowTable.state) == state)
        rows = (await session.execute(stmt)).scalars().all()
    return {r.kind: r.due_at for r in rows if r.kind.startswith(prefix)}


async def cards(client: TestClient, user: str, kind: str | None = None) -> list[dict[str, Any]]:
    return await PlaygroundUser(client, user).cards(kind)


# --- a probe timer kind for the engine tests (no ticket needed) ---

PROBE = "test.probe"


@dataclass(frozen=True, slots=True)
class ScheduleProbe:
    """Test-only command: (re)schedule the probe timer with this key."""

    key: str
    due_at: datetime


@handles(ScheduleProbe)
async def _schedule_probe(ctx: Context, cmd: ScheduleProbe) -> int:
    row = await ctx.uow.schedule_timer(kind=PROBE, ticket_number=cmd.key, due_at=cmd.due_at, payload={"key": cmd.key})
    return row.id


@timer_handler(PROBE)
async def _probe_fired(ctx: Context, _ticket: Ticket | None, payload: dict[str, Any]) -> None:
    await ctx.audit("probe_fired", {"key": payload["key"]})


async def probe_hits(rt: Any) -> list[str]:
    """Keys of the probes fired so far (one audit event per firing)."""
    async with rt.sessions() as session:
        stmt = select(col(AuditEventRow.payload)).where(col(AuditEventRow.kind) == "probe_fired")
        rows = (await session.execute(stmt)).all()
    return [r[0]["key"] for r in rows]
