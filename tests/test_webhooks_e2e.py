"""The hub end to end (issue 23): an external system files a ticket through API v1 with its own ref,
ticketbot dispatches it, the system receives `ticket.assigned` in its own field names (a body mapper,
the hook the field mappings use), its `resolve` without a signature is refused (409), and it receives
`ticket.signed` — before `closed` — once the customer signs. Its receiver is a real HTTP server on
loopback that checks every signature."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.web.app import build_app
from core.hub.webhook_events import install_body_mapper
from core.model import TicketStatus
from core.service import Context
from tests.api_v1_support import new_ticket, register
from tests.conftest import make_settings, runtime_of
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_lifecycle_support import Person, accept, png, ticket
from tests.test_signoff import GOOD
from tests.test_webhooks import ALL, receiver, subscribe, until  # noqa: F401  (fixture)

S = TicketStatus
THEIR_STATES = {"dispatched": "已派工", "closed": "已办结", "pending_signoff": "待确认"}


async def yida_fields(ctx: Context, system: str, body: dict[str, Any]) -> dict[str, Any]:
    """How 宜搭 names things (a stand-in for the declarative mapping of that system)."""
    if system != "yida":
        return body
    ticket = body["ticket"]
    return {"事件": body["type"], "单号": ticket["external_refs"].get("yida"), "服务单": ticket["number"],
            "状态": THEIR_STATES.get(body["status"], body["status"]), "处理人": ticket["assignee_id"]}


@pytest.fixture
async def hub(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    settings = make_settings(sqlite_url, tmp_path, api_token="admin-read-token", webhook_allow_private=True)
    app = build_app(settings)
    previous = install_body_mapper(yida_fields)
    try:
        async with TestClient(TestServer(app)) as client:
            runtime_of(client).webhooks.idle_s = 0.05
            yield client
    finally:
        install_body_mapper(previous)  # the real mappings (core/hub/mappings.py), not none


async def test_an_external_system_files_follows_and_cannot_close_early(
        hub: TestClient, receiver: WebhookReceiver) -> None:  # noqa: F811
    auth = await register(hub, "yida")
    _, yida = await subscribe(hub, receiver, "yida", ALL)
    created = await hub.post("/api/v1/tickets", json=new_ticket("YD-2026-77"), headers=auth)
    assert created.status == 201, await created.text()
    number = (await created.json())["number"]
    # the events of the creating command carry the ref the same command linked
    await until(lambda: any(e["事件"] == "ticket.assigned" for e in yida.events))
    assert yida.events[0]["事件"] == "ticket.created" and yida.events[0]["单号"] == "YD-2026-77"
    assigned = next(e for e in yida.events if e["事件"] == "ticket.assigned")
    assert assigned["单号"] == "YD-2026-77" and assigned["服务单"] == number and assigned["状态"] == "已派工"
    assert assigned["处理人"] and "ticket" not in assigned  # their names only, plus the golden fields
    assert assigned["global_id"] == (await created.json())["global_id"] and assigned["status"] == "dispatched"

    # the work is done in the chat; the customer has not signed yet
    technician = "tech-wang"
    await accept(hub, number, technician)
    tech = Person(hub, technician)
    await tech.location(31.2, 121.5)
    await tech.image(png("checkin"))
    await tech.say(f"开始 {number}")
    for i in range(3):
        await tech.image(png(f"work-{i}"))
    await tech.say(f"完工 {number}")
    assert (await ticket(hub, number)).status is S.PENDING_SIGNOFF, await tech.texts()
    early = await hub.post(f"/api/v1/tickets/{number}/transitions", json={"name": "resolve"}, headers=auth)
    assert early.status == 409
    await until(lambda: any(e["状态"] == "待确认" for e in yida.events))
    assert not any(e["状态"] == "已办结" or e["事件"] == "ticket.signed" for e in yida.events)

    # the customer has no chat (filed by another system): they sign on the technician's device
    await tech.say(f"现场签字 {number}")
    card = await tech.last_card("signoff")
    await tech.press(card["id"], "sign", GOOD)
    assert (await ticket(hub, number)).status is S.CLOSED
    await until(lambda: any(e["状态"] == "已办结" for e in yida.events))
    kinds = [e["事件"] for e in yida.events]
    signed = kinds.index("ticket.signed")
    closed = next(i for i, e in enumerate(yida.events) if e["状态"] == "已办结")
    assert signed < closed and yida.bad_signatures == 0
    assert all(e["单号"] == "YD-2026-77" for e in yida.events)
