"""Issue 19 item 27: first response is the moment the first offer reached a technician's chat.

`first_response_at` is recorded when the outbox delivery of the first OFFER card succeeded (the
platform's API accepted it; for the playground, the moment the offer became readable there) and
`accepted_at` when a technician first accepted. Both are in GET /api/tickets/{number} and in
`报表`. Driven through the real app with the fake Feishu and WeCom servers and the playground.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlmodel import col

from bot.runtime import Runtime
from bot.web.app import build_app
from core.clock import FixedClock
from core.dispatch.handlers import AcceptOffer
from storage.tables import OutboxRow
from tests.fakes.feishu_server import BOT_OPEN_ID, FakeFeishu, eventually
from tests.fakes.wecom_server import FakeWeCom
from tests.playground_client import PlaygroundUser
from tests.sla_support import advance, fixed_clock_app, person, report, runtime, ticket
from tests.test_e2e_feishu import feishu_settings
from tests.test_e2e_wecom import start_world

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai
TECHS = ("tech-huang", "tech-liu", "tech-wang", "tech-xu", "tech-zhang")


async def api_ticket(client: TestClient, number: str) -> dict[str, Any]:
    resp = await client.get(f"/api/tickets/{number}")
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


def moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def offer_rows(rt: Runtime, number: str) -> list[OutboxRow]:
    """Outbox rows that carry the ticket's OFFER cards to technicians (not the in-place updates)."""
    async with rt.sessions() as session:
        rows = (await session.execute(select(OutboxRow).order_by(col(OutboxRow.id)))).scalars().all()
    return [r for r in rows if (r.payload.get("card") or {}).get("kind") == "offer"
            and r.payload.get("ticket_number") == number and not r.payload.get("replaces_card_id")]


async def link_all(rt: Runtime, platform: str) -> None:
    """Technicians are reachable on `platform` (customers and supervisors stay in the playground)."""
    async with rt.uow() as uow:
        for tech in TECHS:
            found = await uow.get_person(tech)
            assert found is not None
            await uow.link_identity(tech, platform, f"ou_{tech}" if platform == "feishu" else tech)
            found.preferred_channel = platform
            await uow.save_person(found)
        await uow.commit()


@asynccontextmanager
async def feishu_app(database_url: str, tmp_path: Path,
                     clock: FixedClock) -> AsyncIterator[tuple[TestClient, Runtime, FakeFeishu]]:
    fake = FakeFeishu()
    await fake.start()
    settings = feishu_settings(database_url, tmp_path, fake, playground="on")
    runtime = Runtime(settings, clock=clock)
    try:
        async with TestClient(TestServer(build_app(settings, runtime=runtime))) as client:
            [adapter] = runtime.adapters
            await eventually(lambda: getattr(adapter, "bot_open_id", "") == BOT_OPEN_ID, what="the bot's open_id")
            await link_all(runtime, "feishu")
            yield client, runtime, fake
    finally:
        await fake.close()


async def held_then_delivered(client: TestClient, rt: Runtime, fake: FakeFeishu, clock: FixedClock, customer: str,
                              delay: timedelta) -> str:
    """A report whose offer is in flight to Feishu for `delay`; returns the ticket number once delivered."""
    fake.hold()
    before = len(fake.calls("POST", "/im/v1/messages"))
    number = await report(client, customer, "中控黑屏")
    rt.dispatcher.wake.set()
    await eventually(lambda: len(fake.calls("POST", "/im/v1/messages")) > before, what="the offer in flight")
    body = await api_ticket(client, number)
    assert body["status"] == "dispatched"
    assert body["first_response_at"] is None  # queued and being sent is not received
    assert body["accepted_at"] is None
    clock.advance(delay)
    fake.release()

    async def recorded() -> bool:
        return (await api_ticket(client, number))["first_response_at"] is not None

    await eventually(recorded, what="the delivery to be recorded")
    return number


async def test_feishu_first_response_is_the_delivery_and_the_report_uses_real_times(database_url: str,
                                                                                    tmp_path: Path) -> None:
    clock = FixedClock(START)
    async with feishu_app(database_url, tmp_path, clock) as (client, rt, fake):
        first = await held_then_delivered(client, rt, fake, clock, "cust-fr-1", timedelta(seconds=40))
        body = await api_ticket(client, first)
        assert moment(body["first_response_at"]) == START + timedelta(seconds=40)
        [row] = await offer_rows(rt, first)
        assert row.channel == "feishu" and row.status == "sent" and row.sent_at == START + timedelta(seconds=40)

        second = await held_then_delivered(client, rt, fake, clock, "cust-fr-2", timedelta(seconds=150))
        assert moment((await api_ticket(client, second))["first_response_at"]) == START + timedelta(seconds=190)

        # The human response: each technician accepts a while later.
        for number, wait in ((first, 0), (second, 60)):
            clock.advance(timedelta(seconds=wait))
            tech = await person(rt, (await ticket(rt, number)).assignee_id or "")
            await rt.service.handle(AcceptOffer(number), tech)
        assert moment((await api_ticket(client, first))["accepted_at"]) == START + timedelta(seconds=190)
        assert moment((await api_ticket(client, second))["accepted_at"]) == START + timedelta(seconds=250)

        clock.advance(timedelta(minutes=5))
        sup = PlaygroundUser(client, "sup-li")
        await sup.say("报表 今天")
        text = await sup.last_text()
        # first: 40 s, second: 150 s (from its own report at +40 s)
        assert "中位数 95秒｜P90 150秒｜≤90秒占比 50.0%（2 张" in text, text
        # accepted: first 190 s after its report, second 210 s after its report
        assert "接单 中位数 200秒｜P90 210秒（2 张" in text, text


async def test_wecom_failed_delivery_gives_a_later_first_response(database_url: str, tmp_path: Path) -> None:
    fake = FakeWeCom()
    fake.users.update(TECHS)
    await fake.start()
    world, client = await start_world(database_url, tmp_path, fake, start=START)
    try:
        rt = world.runtime
        await link_all(rt, "wecom")
        fake.http_500_next = 1  # the first message/send — the offer — fails once
        number = await report(client, "cust-fr-3", "中控黑屏")
        created = (await ticket(rt, number)).created_at

        async def failed_once() -> OutboxRow | None:
            rows = [r for r in await offer_rows(rt, number) if r.status == "pending" and r.error]
            return rows[0] if rows else None

        row = await eventually(failed_once, what="the failed offer delivery")
        assert (await api_ticket(client, number))["first_response_at"] is None
        world.clock.advance((row.next_attempt_at - world.clock.now()).total_seconds() + 1)
        rt.dispatcher.wake.set()

        async def delivered() -> OutboxRow | None:
            rows = [r for r in await offer_rows(rt, number) if r.status == "sent"]
            return rows[0] if rows else None

        sent = await eventually(delivered, what="the retried offer delivery")
        recorded = moment((await api_ticket(client, number))["first_response_at"])
        assert recorded == sent.sent_at
        assert recorded is not None and recorded - created >= timedelta(seconds=2)  # the retry's backoff
        assert [b for b in fake.delivered if b["touser"] == sent.recipient_id and b["msgtype"] == "template_card"]
    finally:
        await client.close()
        await fake.close()


async def test_playground_offer_counts_once_readable_and_acceptance_separately(database_url: str,
                                                                                tmp_path: Path) -> None:
    clock = FixedClock(START)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-fr-4", "机器坏了")  # no category: waits in triage, nobody notified
        body = await api_ticket(client, number)
        assert body["status"] == "triage" and body["first_response_at"] is None and body["accepted_at"] is None
        await advance(rt, clock, minutes=5)
        sup = PlaygroundUser(client, "sup-li")
        await sup.say(f"分诊 {number} 电控类")  # the offer goes to a technician's playground chat now
        body = await api_ticket(client, number)
        assert moment(body["first_response_at"]) == START + timedelta(minutes=5)
        assert body["accepted_at"] is None
        tech_id = body["assignee_id"]
        [card] = [c for c in await PlaygroundUser(client, tech_id).cards("offer") if c["ticket_number"] == number]
        await advance(rt, clock, minutes=3)
        await PlaygroundUser(client, tech_id).press(card["id"], "accept")
        body = await api_ticket(client, number)
        assert body["status"] == "accepted"
        assert moment(body["accepted_at"]) == START + timedelta(minutes=8)
        assert moment(body["first_response_at"]) == START + timedelta(minutes=5)


async def test_top10_lists_real_waits_only(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(START)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        quick = await report(client, "cust-fr-5", "中控黑屏")
        clock.advance(timedelta(seconds=20))  # accepted 20 s later: no wait worth a row
        tech = await person(rt, (await ticket(rt, quick)).assignee_id or "")
        await rt.service.handle(AcceptOffer(quick), tech)
        slow = await report(client, "cust-fr-6", "中控黑屏")
        await advance(rt, clock, minutes=12)
        sup = PlaygroundUser(client, "sup-li")
        await sup.say("报表 今天")
        top = (await sup.last_text()).split("四、")[1].split("五、")[0]
        assert f"{slow}｜已派单｜12分钟（仍在此状态）" in top
        assert f"{quick}｜已派单" not in top
        assert "｜0分钟" not in top


async def test_a_stale_save_never_erases_a_recorded_delivery(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(START)
    async with feishu_app(database_url, tmp_path, clock) as (client, rt, fake):
        fake.hold()
        number = await report(client, "cust-fr-7", "中控黑屏")
        rt.dispatcher.wake.set()
        await eventually(lambda: fake.calls("POST", "/im/v1/messages"), what="the offer in flight")
        async with rt.uow() as uow:
            stale = await uow.get_ticket(number)  # read before the delivery is recorded
        assert stale is not None and stale.first_response_at is None
        clock.advance(timedelta(seconds=30))
        fake.release()

        async def recorded() -> bool:
            return (await ticket(rt, number)).first_response_at is not None

        await eventually(recorded, what="the delivery to be recorded")
        stale.description = stale.description + "（补充）"
        async with rt.uow() as uow:
            await uow.save_ticket(stale)  # a command that read the ticket before the delivery
            await uow.commit()
        after = await ticket(rt, number)
        assert after.description.endswith("（补充）")
        assert after.first_response_at == START + timedelta(seconds=30)
