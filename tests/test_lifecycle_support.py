"""Shared drivers for the lifecycle tests (no tests here).

`accept` puts a fresh ticket into 已接单 for a technician through dispatch's real flow
(offer card → 接单).
"""

from __future__ import annotations

import base64
import io
import itertools
import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bot.runtime import Runtime
from bot.web.app import build_app
from core.clock import FixedClock
from core.model import Ticket, TicketStatus
from tests.conftest import make_settings, runtime_of
from tests.playground_client import PlaygroundUser

NUMBER = re.compile(r"GD-\d{8}-\d{4}")
_counter = itertools.count(1)
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai


def photo(tag: str | None = None, *, kind: str = "PNG", size: tuple[int, int] = (96, 72)) -> bytes:
    """A real image (the store decodes it), the same for the same tag and a distinct one per call without."""
    noise = random.Random(tag or f"photo-{next(_counter)}").randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, noise).save(buffer, format=kind)
    return buffer.getvalue()


def png(tag: str | None = None) -> bytes:
    return photo(tag, kind="PNG")


def jpeg(tag: str | None = None) -> bytes:
    return photo(tag, kind="JPEG")


class Person(PlaygroundUser):
    async def image(self, data: bytes | None = None) -> dict[str, Any]:
        body = base64.b64encode(data or png()).decode()
        resp = await self.client.post("/playground/api/messages", json={"user": self.user, "image": body})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def location(self, lat: float, lng: float) -> dict[str, Any]:
        resp = await self.client.post("/playground/api/messages",
                                      json={"user": self.user, "location": {"lat": lat, "lng": lng}})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def last_card(self, kind: str) -> dict[str, Any]:
        cards = await self.cards(kind)
        assert cards, f"{self.user} has no {kind} card"
        return cards[-1]


async def ticket(client: TestClient, number: str) -> Ticket:
    async with runtime_of(client).uow() as uow:
        found = await uow.get_ticket(number)
    assert found is not None
    return found


async def trail(client: TestClient, number: str) -> list[str]:
    async with runtime_of(client).uow() as uow:
        return [e.kind for e in await uow.audit_for_ticket(number)]


async def report(client: TestClient, customer: str, text: str = "底盘有异响") -> str:
    user = Person(client, customer)
    await user.say(text)
    match = NUMBER.search(await user.last_text())
    assert match, await user.last_text()
    return match.group(0)


async def accept(client: TestClient, number: str, technician: str) -> Ticket:
    """The real dispatch flow: the ticket is offered to `technician` (by dispatch's own choice, or a
    supervisor's 转派 when it chose someone else) and they press 接单 on the OFFER card."""
    current = await ticket(client, number)
    if not (current.status == TicketStatus.DISPATCHED and current.assignee_id == technician):
        boss = Person(client, "sup-li")
        await boss.say(f"转派 {number} {technician} 测试指定")
    tech = Person(client, technician)
    offers = [c for c in await tech.cards("offer") if c["ticket_number"] == number and c["state"] == "open"]
    assert offers, await tech.texts()
    await tech.press(offers[-1]["id"], "accept")
    accepted = await ticket(client, number)
    assert accepted.status == TicketStatus.ACCEPTED and accepted.assignee_id == technician, await tech.texts()
    return accepted


async def in_progress(client: TestClient, customer: str, technician: str, text: str = "底盘有异响",
                      photos: int = 0) -> str:
    """A ticket checked in and started by `technician`, with `photos` work photos."""
    number = await report(client, customer, text)
    await accept(client, number, technician)
    tech = Person(client, technician)
    await tech.location(31.2, 121.5)
    await tech.image()
    await tech.say(f"开始 {number}")
    for _ in range(photos):
        await tech.image()
    assert (await ticket(client, number)).status == TicketStatus.IN_PROGRESS, await tech.texts()
    return number


async def snapshot(client: TestClient, number: str) -> tuple[str, int, int]:
    """(status, version, audit length): equal before and after means nothing changed.

    Refusals are recorded on the ticket's trail (core/audit/refusals.py) but change nothing: not counted."""
    t = await ticket(client, number)
    refusals = {"command_refused", "card_action_refused"}
    return t.status.value, t.version, len([k for k in await trail(client, number) if k not in refusals])


@pytest.fixture
async def clock_client(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[TestClient, FixedClock]]:
    """The real app on a clock the test moves (for timers: 45 s callback, 48 h parts escalation)."""
    settings = make_settings(database_url, tmp_path)
    clock = FixedClock(START)
    runtime = Runtime(settings, clock=clock)
    async with TestClient(TestServer(build_app(settings, runtime=runtime))) as client:
        yield client, clock
