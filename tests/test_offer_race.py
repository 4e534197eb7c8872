"""Concurrent answers to the same offer on PostgreSQL: exactly one wins.

Each race runs two transactions of the real service at once (separate pooled connections):
  * the same technician presses 接单 twice (two devices): the card row lock serialises them and the
    loser finds the card used;
  * the card and the chat command 「接单」 race: both lock the card, then the ticket;
  * 接单 races the expiry timer: either the acceptance stands (the alarm is stale, or it found the card
    held by the press and looked again 2 s later), or the offer expired, moved on, and the press finds
    its card closed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from core.commands import PressCardAction, Transition
from core.dispatch.handlers import AcceptOffer
from core.errors import Conflict, TicketbotError
from core.model import TicketStatus
from core.service import SYSTEM_ACTOR
from core.timers import FireTimer
from tests.conftest import _truncate_postgres
from tests.test_dispatch_support import clocked, events, offer_timer, person, report, the_offer, ticket

S = TicketStatus
ROUNDS = 4


@pytest.fixture
def pg_url(postgres_database: str) -> Iterator[str]:
    asyncio.run(_truncate_postgres(postgres_database))
    yield postgres_database


async def _both(first: object, second: object) -> list[object]:
    return list(await asyncio.gather(first, second, return_exceptions=True))  # type: ignore[arg-type]


def _wins(results: list[object]) -> int:
    for r in results:
        assert not isinstance(r, AssertionError), r
    return sum(1 for r in results if not isinstance(r, BaseException))


async def test_double_press_on_two_devices_one_wins(pg_url: str, tmp_path: Path) -> None:
    async with clocked(pg_url, tmp_path) as (client, rt, _clock):
        for i in range(ROUNDS):
            number, _ = await report(client, f"cust-race-{i}", "中控黑屏")
            tech, card = await the_offer(client, number)
            offered = await person(rt, tech)
            press = PressCardAction(card["id"], "accept")
            results = await _both(rt.service.handle(press, offered), rt.service.handle(press, offered))
            assert _wins(results) == 1, results
            assert any(isinstance(r, Conflict) for r in results), results
            t = await ticket(rt, number)
            assert t.status is S.ACCEPTED and t.assignee_id == tech
            assert len(await events(rt, number, "offer_accepted")) == 1
            await rt.service.handle(_cancel(number), await person(rt, STAFF))


STAFF = "sup-li"  # once a technician accepted, only staff may cancel (issue 19 item 28)


def _cancel(number: str) -> Transition:
    return Transition(number, "cancel")


async def test_card_and_chat_accept_race_one_wins(pg_url: str, tmp_path: Path) -> None:
    async with clocked(pg_url, tmp_path) as (client, rt, _clock):
        for i in range(ROUNDS):
            number, _ = await report(client, f"cust-chat-{i}", "中控黑屏")
            tech, card = await the_offer(client, number)
            offered = await person(rt, tech)
            results = await _both(rt.service.handle(PressCardAction(card["id"], "accept"), offered),
                                  rt.service.handle(AcceptOffer(number), offered))
            assert _wins(results) == 1, results
            # The loser was refused: the card is used or the ticket accepted (no deadlock: same lock order).
            (loser,) = [r for r in results if isinstance(r, BaseException)]
            assert isinstance(loser, Conflict), repr(loser)
            t = await ticket(rt, number)
            assert t.status is S.ACCEPTED and t.assignee_id == tech
            assert len(await events(rt, number, "offer_accepted")) == 1
            await rt.service.handle(_cancel(number), await person(rt, STAFF))


async def test_accept_racing_the_expiry_one_outcome(pg_url: str, tmp_path: Path) -> None:
    async with clocked(pg_url, tmp_path) as (client, rt, clock):
        outcomes = set()
        for round_no in range(ROUNDS):
            customer = f"cust-exp-{uuid.uuid4().hex[:6]}"
            number, _ = await report(client, customer, "中控黑屏")
            tech, card = await the_offer(client, number)
            offered = await person(rt, tech)
            timer = await offer_timer(rt, number)
            assert timer is not None and timer.id is not None
            clock.advance(timedelta(minutes=15))
            press = rt.service.handle(PressCardAction(card["id"], "accept"), offered)
            fire = rt.service.handle(FireTimer(timer.id, timer.generation), SYSTEM_ACTOR)
            if round_no % 2:  # who starts first alternates
                results = (await _both(fire, press))[::-1]
            else:
                results = await _both(press, fire)
            assert _wins(results) >= 1, results
            assert all(isinstance(r, TicketbotError) for r in results if isinstance(r, BaseException)), results
            # The expiry steps aside while a press holds the card (it looks again 2 s later): fire what is due.
            clock.advance(timedelta(seconds=3))
            await rt.timer_engine.fire_due()
            t = await ticket(rt, number)
            accepted = await events(rt, number, "offer_accepted")
            expired = await events(rt, number, "offer_expired")
            if t.status is S.ACCEPTED:
                assert t.assignee_id == tech and len(accepted) == 1 and expired == [] and not t.needs_review
                outcomes.add("accepted")
            else:
                assert t.status is S.DISPATCHED and t.assignee_id not in {tech, None} and t.needs_review
                assert accepted == [] and len(expired) == 1 and expired[0]["person_id"] == tech
                assert isinstance(results[0], Conflict)  # the press found its card closed
                outcomes.add("expired")
            await rt.service.handle(_cancel(number), await person(rt, STAFF))
        assert outcomes  # at least one round ran to a definite outcome
