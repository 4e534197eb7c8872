"""Shared drivers for the dispatch tests (no tests here): the real app on a FixedClock, the
playground people, and ways to read tickets, audit events, cards and timers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.runtime import Runtime
from core.clock import FixedClock
from core.commands import Transition
from core.dispatch.admin import SetDuty
from core.model import Person, Ticket
from storage.tables import CardRow, ConfigVersionRow, TimerRowTable
from tests.playground_client import PlaygroundUser
from tests.sla_support import fixed_clock_app, runtime

NUMBER = re.compile(r"GD-\d{8}-\d{4}")
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai
OBD_TECHS = {"tech-wang", "tech-liu", "tech-xu"}
ALL_TECHS = ("tech-huang", "tech-liu", "tech-wang", "tech-xu", "tech-zhang")
OFFER_TIMER = "dispatch.offer_expiry"
REFUSALS = {"command_refused", "card_action_refused"}  # audited attempts that changed nothing


@asynccontextmanager
async def clocked(database_url: str, tmp_path: Path,
                  at: datetime = START) -> AsyncIterator[tuple[TestClient, Runtime, FixedClock]]:
    clock = FixedClock(at)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        yield client, runtime(client), clock


async def report(client: TestClient, user: str, text: str) -> tuple[str, dict[str, Any]]:
    """A customer reports a fault; returns the ticket number and the playground's answer."""
    customer = PlaygroundUser(client, user)
    answer = await customer.say(text)
    for message in reversed(answer["messages"]):
        text = message.get("text") or ""
        if text.startswith("已为您创建工单") and (found := NUMBER.search(text)):
            return found.group(0), answer
    raise AssertionError(f"no ticket number in {answer}")


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


async def events(rt: Runtime, number: str, kind: str | None = None) -> list[dict[str, Any]]:
    """Audit events of a ticket (kind, actor and payload), oldest first."""
    async with rt.uow() as uow:
        trail = await uow.audit_for_ticket(number)
    return [{"kind": e.kind, "actor": e.actor_id, **e.payload} for e in trail if kind is None or e.kind == kind]


async def snapshot(rt: Runtime, number: str) -> tuple[str, int, str | None, int, bool]:
    """(status, version, assignee, audit length, needs_review): equal before and after = nothing changed.

    Refusals are recorded on the ticket's trail (core/audit/refusals.py) but change nothing: not counted."""
    t = await ticket(rt, number)
    changes = [e for e in await events(rt, number) if e["kind"] not in REFUSALS]
    return t.status.value, t.version, t.assignee_id, len(changes), t.needs_review


async def open_offer_cards(client: TestClient, number: str) -> dict[str, dict[str, Any]]:
    """technician -> their open OFFER card for the ticket, as the playground shows it to them."""
    async with runtime(client).sessions() as session:
        rows = (await session.execute(select(CardRow).where(
            CardRow.ticket_number == number, CardRow.kind == "offer", CardRow.state == "open"))).scalars().all()
    out = {}
    for row in rows:
        shown = [c for c in await PlaygroundUser(client, row.recipient_id).cards("offer") if c["id"] == row.id]
        assert len(shown) == 1, f"the offer card {row.id} was not delivered to {row.recipient_id}"
        out[row.recipient_id] = shown[0]
    return out


async def the_offer(client: TestClient, number: str) -> tuple[str, dict[str, Any]]:
    offers = await open_offer_cards(client, number)
    assert len(offers) == 1, offers
    return next(iter(offers.items()))


async def offer_timer(rt: Runtime, number: str) -> TimerRowTable | None:
    async with rt.sessions() as session:
        return (await session.execute(select(TimerRowTable).where(
            TimerRowTable.ticket_key == number, TimerRowTable.kind == OFFER_TIMER))).scalar_one_or_none()


async def dispatch_versions(rt: Runtime) -> int:
    async with rt.sessions() as session:
        return len((await session.execute(select(ConfigVersionRow).where(
            ConfigVersionRow.kind == "dispatch"))).scalars().all())


async def advance(rt: Runtime, clock: FixedClock, **delta: float) -> int:
    clock.advance(timedelta(**delta))
    fired = 0
    for _ in range(20):
        n = await rt.timer_engine.fire_due()
        fired += n
        if n == 0:
            break
    return fired


async def move(rt: Runtime, number: str, name: str, actor_id: str) -> Ticket:
    result: Ticket = await rt.service.handle(Transition(number, name), await person(rt, actor_id))
    return result


async def set_duty(rt: Runtime, person_id: str, on_duty: bool) -> None:
    """An admin sets a technician's duty (the real command)."""
    await rt.service.handle(SetDuty(on_duty, person_id), await person(rt, "admin"))
