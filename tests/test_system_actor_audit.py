"""Issue 19 item 20: what the system does is attributed to 系统, with who (or what) caused it.

The actor of a system step (dispatch, the SLA clock, a move a timer causes) is SYSTEM_ACTOR
("system", shown as 系统); the person whose command set it off — or the timer — is kept in the
event's `caused_by`. What a person does themselves stays theirs. Through the real app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from core.dispatch.handlers import DeclineOffer
from core.service import SYSTEM_ACTOR
from tests.playground_client import PlaygroundUser
from tests.test_dispatch_support import START, advance, clocked, person, report, the_offer, ticket

OFFER_TIMER_CAUSE = "timer:dispatch.offer_expiry"


async def trail(client: TestClient, number: str) -> list[dict[str, Any]]:
    body = await (await client.get(f"/api/tickets/{number}")).json()
    return [{"kind": e["kind"], "actor": e["actor_id"], **e["payload"]} for e in body["audit"]]


def pick(events: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]


async def test_a_new_ticket_is_created_by_the_customer_and_dispatched_by_the_system(database_url: str,
                                                                                    tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, _rt, _clock):
        number, _ = await report(client, "cust-sys-1", "中控黑屏")
        events = await trail(client, number)
        [created] = pick(events, "ticket_created")
        assert created["actor"] == "cust-sys-1" and "caused_by" not in created
        [started] = pick(events, "sla_started")
        [dispatched] = pick(events, "status_changed", transition="dispatch")
        [offered] = pick(events, "offer_sent")
        for event in (started, dispatched, offered):
            assert (event["actor"], event["caused_by"]) == (SYSTEM_ACTOR.id, "cust-sys-1"), event
        assert not [e for e in events if e["actor"] == "cust-sys-1" and e["kind"] != "ticket_created"]

        # The customer's own timeline says the system dispatched, not the customer.
        customer = PlaygroundUser(client, "cust-sys-1")
        await customer.say(f"工单 {number}")
        [status] = [c for c in await customer.cards("status") if c["ticket_number"] == number]
        lines = status["body"].splitlines()
        [dispatch_line] = [line for line in lines if "已派单" in line]
        assert "系统" in dispatch_line and "客户" not in dispatch_line
        [created_line] = [line for line in lines if "创建工单" in line]
        assert "系统" not in created_line


async def test_a_timer_driven_move_is_the_systems_with_the_timer_as_cause(database_url: str,
                                                                           tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path, START) as (client, rt, clock):
        number, _ = await report(client, "cust-sys-2", "中控黑屏")
        first = (await ticket(rt, number)).assignee_id
        await advance(rt, clock, minutes=16)  # the offer expires: the next technician gets it
        second = (await ticket(rt, number)).assignee_id
        assert second and second != first
        events = await trail(client, number)
        [expired_move] = pick(events, "status_changed", transition="expire_offer")
        [expired] = pick(events, "offer_expired")
        [redispatch] = pick(events, "status_changed", transition="dispatch", assignee=second)
        [reoffer] = pick(events, "offer_sent", person_id=second)
        for event in (expired_move, expired, redispatch, reoffer):
            assert (event["actor"], event["caused_by"]) == (SYSTEM_ACTOR.id, OFFER_TIMER_CAUSE), event


async def test_a_persons_own_steps_stay_theirs_and_what_follows_is_the_systems(database_url: str,
                                                                               tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-sys-3", "中控黑屏")
        first, _card = await the_offer(client, number)
        await rt.service.handle(DeclineOffer("距离太远", number), await person(rt, first))
        second, card = await the_offer(client, number)
        await PlaygroundUser(client, second).press(card["id"], "accept")
        events = await trail(client, number)
        [declined] = pick(events, "offer_declined")
        [decline_move] = pick(events, "status_changed", transition="decline")
        assert declined["actor"] == first and decline_move["actor"] == first
        [reoffer] = pick(events, "offer_sent", person_id=second)
        [redispatch] = pick(events, "status_changed", transition="dispatch", assignee=second)
        for event in (reoffer, redispatch):
            assert (event["actor"], event["caused_by"]) == (SYSTEM_ACTOR.id, first), event
        [accepted] = pick(events, "offer_accepted")
        [accept_move] = pick(events, "status_changed", transition="accept")
        assert accepted["actor"] == second and accept_move["actor"] == second
        [met] = pick(events, "sla_response_met")
        assert (met["actor"], met["caused_by"]) == (SYSTEM_ACTOR.id, second)
