"""Playground user ids: the whole id is checked, and an id that belongs to a person of another
platform is refused clearly (409, Chinese and English) with nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from core.model import Person, Role
from storage.tables import IdentityRow, InboxRow, PersonRow, TicketRow
from tests.conftest import runtime_of
from tests.playground_client import PlaygroundUser


async def count(client: TestClient, table: Any, *where: Any) -> int:
    async with runtime_of(client).sessions() as session:
        return int((await session.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


@pytest.mark.parametrize("user", ["abc\n", "abc\r\n", "\nabc", "abc\x00", "ab c"])
async def test_user_id_must_match_whole(app_client: TestClient, user: str) -> None:
    people_before = await count(app_client, PersonRow)
    resp = await app_client.post("/playground/api/messages", json={"user": user, "text": "底盘有异响"})
    assert resp.status == 400, await resp.text()
    assert "error" in await resp.json()
    resp = await app_client.post("/playground/api/actions",
                                 json={"user": user, "card_id": "offer-x", "action": "accept", "values": {}})
    assert resp.status == 400
    assert (await app_client.get("/playground/api/messages", params={"user": user})).status == 400
    assert await count(app_client, PersonRow) == people_before
    assert await count(app_client, InboxRow) == 0
    assert await count(app_client, TicketRow) == 0


async def test_id_of_a_person_on_another_platform_is_refused_clearly(app_client: TestClient) -> None:
    runtime = runtime_of(app_client)
    async with runtime.uow() as uow:
        await uow.add_person(Person(id="wx-zhang", name="企业微信 张三", role=Role.CUSTOMER,
                                    preferred_channel="wecom"), {"wecom": "zhangsan"})
        await uow.commit()

    resp = await app_client.post("/playground/api/messages", json={"user": "wx-zhang", "text": "底盘有异响"})
    assert resp.status == 409, await resp.text()
    error = (await resp.json())["error"]
    assert "wx-zhang" in error
    assert "其他平台" in error and "another platform" in error  # Chinese for the person, English for a script

    resp = await app_client.post("/playground/api/actions",
                                 json={"user": "wx-zhang", "card_id": "offer-x", "action": "accept", "values": {}})
    assert resp.status == 409
    # Nothing stored or half-written: no inbox row (so no retries by the sweep), no ticket, no
    # playground identity attached to the other platform's person.
    assert await count(app_client, InboxRow) == 0
    assert await count(app_client, TicketRow) == 0
    assert await count(app_client, IdentityRow, IdentityRow.person_id == "wx-zhang") == 1
    assert (await app_client.get("/playground/api/messages", params={"user": "wx-zhang"})).status == 200

    # Another id still works at once.
    user = PlaygroundUser(app_client, "wx-zhang-2")
    await user.say("底盘有异响")
    assert await count(app_client, TicketRow) == 1
