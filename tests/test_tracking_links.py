"""Issue 21: every message to a ticket's customer about the ticket carries its tracking URL, and the URL
opens the ticket's tracking page; the token is a capability (forged, revoked, expired → nothing)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlmodel import col

from core.clock import FixedClock
from core.model import TicketStatus
from storage.tables import OutboxRow
from tests.conftest import runtime_of
from tests.statements import statements_sent
from tests.test_lifecycle_support import Person, accept, clock_client, in_progress, png, report, ticket  # noqa: F401

S = TicketStatus
URL = re.compile(r"查看进度：(http://\S+/t/[A-Za-z0-9_-]+)")
BASE = "http://127.0.0.1:8080"  # the default PUBLIC_BASE_URL of the test app (its bind)


def about(message: dict[str, object], number: str) -> bool:
    card = message.get("card") or {}
    assert isinstance(card, dict)
    return number in str(message.get("text") or "") or card.get("ticket_number") == number \
        or number in str(card.get("body") or "")


def shown(message: dict[str, object]) -> str:
    card = message.get("card") or {}
    assert isinstance(card, dict)
    return f"{message.get('text') or ''}\n{card.get('body') or ''}"


async def test_every_customer_message_of_a_lifecycle_carries_the_link_that_opens_the_page(
        app_client: TestClient) -> None:
    client = app_client
    runtime = runtime_of(client)
    customer, tech = Person(client, "cust-track"), Person(client, "tech-wang")
    number = await report(client, "cust-track", "空调不制冷了，出风口是热风")
    await customer.location(31.2, 121.5)
    await accept(client, number, "tech-wang")
    await tech.image(png("checkin"))
    await tech.location(31.2041, 121.5901)
    await tech.say("开始")
    await customer.image(png("customer-extra"))
    for shot in ("a", "b", "c"):
        await tech.image(png(shot))
    await tech.say("方案 更换压缩机继电器，费用约 300 元")
    plan = await customer.last_card("task")
    await customer.press(plan["id"], "approve")
    await tech.say("完工")
    assert (await ticket(client, number)).status == S.PENDING_SIGNOFF
    card = await customer.last_card("signoff")
    await customer.press(card["id"], "sign", {"cause_told": "true", "parts_confirmed": "true", "rating": "5"})
    closed = await ticket(client, number)
    assert closed.status == S.CLOSED

    expected = runtime.tracking.url_for(closed)
    assert expected.startswith(BASE + "/t/") and number not in expected
    messages = [m for m in await customer.messages() if about(m, number)]
    async with runtime.sessions() as session:  # the sign-off card also names its page, for form-less channels
        payloads = [row.payload for row in (await session.execute(
            select(OutboxRow).where(col(OutboxRow.recipient_id) == "cust-track"))).scalars()]
    signoff = [p for p in payloads if (p.get("card") or {}).get("kind") == "signoff" and p.get("text")]
    assert [p["extra"]["signoff_url"] for p in signoff] == [expected + "/sign"]
    assert len(messages) >= 8, messages  # created, accepted, arrived, started, photo, plan, sign-off, closed
    for message in messages:
        found = URL.findall(shown(message))
        assert found == [expected], message
    # The same URL in every message (one per link generation), and it opens the page.
    path = urlsplit(expected).path
    page = await client.get(path)
    assert page.status == 200, await page.text()
    body = await page.text()
    assert "已结案" in body and number in body
    assert (await runtime.tracking.resolve(path.rsplit("/", 1)[1])) is not None

    # Staff messages about the ticket do not carry the customer's link.
    for message in await tech.messages():
        assert "/t/" not in shown(message), message


async def test_a_revoked_link_stops_working_and_the_customer_gets_the_new_one(app_client: TestClient) -> None:
    client = app_client
    runtime = runtime_of(client)
    customer, boss = Person(client, "cust-revoke"), Person(client, "sup-li")
    number = await report(client, "cust-revoke")
    old = runtime.tracking.url_for(await ticket(client, number))
    old_token = old.rsplit("/", 1)[1]
    assert await runtime.tracking.resolve(old_token) is not None

    await boss.say(f"链接 作废 {number}")
    assert "已作废" in await boss.last_text()
    new = runtime.tracking.url_for(await ticket(client, number))
    assert new != old
    assert await runtime.tracking.resolve(old_token) is None
    assert (await client.get(urlsplit(old).path)).status == 404
    assert (await client.get(urlsplit(new).path)).status == 200
    last = await customer.last_text()
    assert "已更新" in last and new in last and old not in last
    kinds = [e["kind"] for e in (await (await client.get(f"/api/tickets/{number}")).json())["audit"]]
    assert "tracking_link_revoked" in kinds

    # Someone else's customer may not revoke it.
    stranger = Person(client, "cust-stranger")
    await stranger.say(f"链接 作废 {number}")
    assert runtime.tracking.url_for(await ticket(client, number)) == new


async def test_forged_tampered_and_expired_tokens_resolve_to_nothing(app_client: TestClient) -> None:
    client = app_client
    runtime = runtime_of(client)
    links = runtime.tracking
    number = await report(client, "cust-forge")
    current = await ticket(client, number)
    token = links.token_for(current)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in ("", "x", tampered, token + "A", token[:-1], "é" * 10, "A" * 500, "../../etc/passwd", number):
        assert await links.resolve(bad) is None, bad
        resp = await client.get(f"/t/{bad}") if bad and "/" not in bad else None
        if resp is not None:
            assert resp.status == 404
            text = await resp.text()
            assert number not in text and "GD-" not in text
    # Expired: a closed ticket's link works TRACKING_LINK_DAYS_AFTER_CLOSE days after closing, then no more.
    closed_at = current.created_at
    current.status, current.closed_at = S.CLOSED, closed_at
    days = runtime.settings.tracking_link_days_after_close
    assert links.is_current(current, 0, closed_at + timedelta(days=days) - timedelta(seconds=1))
    assert not links.is_current(current, 0, closed_at + timedelta(days=days))
    current.status, current.closed_at = S.CANCELLED, None
    assert not links.is_current(current, 0, current.updated_at + timedelta(days=days, seconds=1))


async def test_a_closed_tickets_link_expires_after_the_set_days(
        clock_client: tuple[TestClient, FixedClock]) -> None:  # noqa: F811
    client, clock = clock_client
    runtime = runtime_of(client)
    number = await in_progress(client, "cust-expiry", "tech-wang", photos=3)
    await Person(client, "tech-wang").say(f"完工 {number}")
    card = await Person(client, "cust-expiry").last_card("signoff")
    await Person(client, "cust-expiry").press(card["id"], "sign",
                                              {"cause_told": "true", "parts_confirmed": "true", "rating": "4"})
    closed = await ticket(client, number)
    assert closed.status == S.CLOSED and closed.closed_at is not None
    path = urlsplit(runtime.tracking.url_for(closed)).path
    days = runtime.settings.tracking_link_days_after_close
    clock.set(closed.closed_at + timedelta(days=days) - timedelta(seconds=1))
    assert (await client.get(path)).status == 200
    assert (await client.get(path + "/sign")).status == 200
    clock.set(closed.closed_at + timedelta(days=days))
    for suffix in ("", "/sign", "/events"):
        resp = await client.get(path + suffix)
        assert resp.status == 404 and number not in await resp.text()


async def test_adding_the_link_sends_no_statement_more_on_the_intake_path(app_client: TestClient) -> None:
    """The same report (and location), with the port and without it: as many statements reach the database
    (the link is made from what the command has in hand). Alternating rounds, fewest of each compared:
    background loops (retention, sweeps) may add statements to any one round."""
    client = app_client
    runtime = runtime_of(client)
    links = runtime.service.config.tracking
    await report(client, "cust-warm")  # warm caches (rules, people) for both alike
    counts: dict[bool, list[int]] = {False: [], True: []}
    for round_ in range(3):
        for attached in (False, True):
            user = f"cust-count-{round_}-{attached}"
            runtime.service.config.tracking = links if attached else None
            async with statements_sent(runtime.engine) as sent:
                await report(client, user, "空调不制冷了")
                await Person(client, user).location(31.2, 121.5)
            counts[attached].append(len(sent))
            assert any("查看进度：" in t for t in await Person(client, user).texts()) is attached
    runtime.service.config.tracking = links
    assert min(counts[True]) == min(counts[False]), counts
