"""WeCom end to end: the real app (build_app, real inbox/outbox/dispatcher, SQLite and PostgreSQL)
with WECOM_API_BASE pointing at the fake WeCom API on loopback. Callbacks are sealed and signed
with wechatpy's own crypto; replies are read from what the fake API received."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlmodel import col

from bot.runtime import Runtime
from bot.web.app import build_app
from core.model import Person, Role, Ticket
from storage.tables import InboxRow, OutboxRow, TicketRow, TimerRowTable
from tests.conftest import make_settings
from tests.fakes.wecom_server import (
    SAMPLE_AES_KEY,
    CallbackSigner,
    FakeWeCom,
    WeComMember,
    image_xml,
    text_xml,
)

NUMBER = re.compile(r"GD-\d{8}-\d{4}")
TOKEN = "e2e-callback-token"


class OffsetClock:
    """Real time plus an offset the test can push forward (outbox backoff, budgets, timers);
    optionally starting at a chosen moment. WeCom's side (signed timestamps, CreateTime, the
    fake's per-member window) reads the same clock."""

    def __init__(self, start: datetime | None = None) -> None:
        self.offset = (start - datetime.now(UTC)) if start is not None else timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def timestamp(self) -> float:
        return self.now().timestamp()


@dataclass
class WeComWorld:
    client: TestClient
    fake: FakeWeCom
    runtime: Runtime
    clock: OffsetClock
    signer: CallbackSigner

    def member(self, user_id: str) -> WeComMember:
        return WeComMember(self.client, self.fake, self.signer, user_id, clock=self.clock.timestamp)

    async def count(self, table: Any, *where: Any) -> int:
        async with self.runtime.sessions() as session:
            stmt = select(func.count()).select_from(table)
            for clause in where:
                stmt = stmt.where(clause)
            return int((await session.execute(stmt)).scalar_one())

    async def person_of(self, user_id: str) -> Person | None:
        async with self.runtime.uow() as uow:
            return await uow.person_by_identity("wecom", user_id)

    async def link(self, person_id: str, user_id: str) -> WeComMember:
        """Make a directory person reachable on WeCom: identity (wecom, UserID) + preferred channel."""
        async with self.runtime.uow() as uow:
            person = await uow.get_person(person_id)
            assert person is not None
            await uow.link_identity(person_id, "wecom", user_id)
            person.preferred_channel = "wecom"
            await uow.save_person(person)
            await uow.commit()
        self.fake.users.add(user_id)
        return self.member(user_id)

    async def advance_to(self, at: datetime) -> None:
        self.clock.advance(max(0.0, (at - self.clock.now()).total_seconds()))
        self.runtime.timer_engine.wake.set()
        self.runtime.dispatcher.wake.set()

    async def ticket(self, number: str) -> Ticket:
        async with self.runtime.uow() as uow:
            found = await uow.get_ticket(number)
        assert found is not None
        return found

    async def trail(self, number: str) -> list[str]:
        async with self.runtime.uow() as uow:
            return [e.kind for e in await uow.audit_for_ticket(number)]

    async def settled(self, timeout: float = 20.0) -> None:
        """Every inbox row processed, every due timer fired and every due outbox row delivered (or
        given up). (The dispatcher delivers as soon as a commit queues a message, so a card can
        arrive while timers that fell due with it are still firing.)"""

        async def quiet() -> bool:
            busy_in = await self.count(InboxRow, col(InboxRow.status).in_(["pending", "processing"]))
            due_timers = await self.count(TimerRowTable, col(TimerRowTable.state) == "pending",
                                          col(TimerRowTable.due_at) <= self.clock.now())
            busy_out = await self.count(
                OutboxRow,
                col(OutboxRow.status).in_(["pending", "sending"]),
                col(OutboxRow.next_attempt_at) <= self.clock.now(),
            )
            return not busy_in and not due_timers and not busy_out

        await eventually(quiet, timeout=timeout, what="inbox and outbox to settle")


async def eventually(probe: Callable[[], Any], *, timeout: float = 15.0, what: str = "") -> Any:
    """Poll until `probe` returns something truthy (the outbox delivers asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeCom]:
    server = FakeWeCom()
    await server.start()
    yield server
    await server.close()


async def start_world(
    database_url: str, tmp_path: Path, fake: FakeWeCom, *, start: datetime | None = None, **settings: Any
) -> tuple[WeComWorld, TestClient]:
    values: dict[str, Any] = {
        "wecom_corp_id": fake.corp_id,
        "wecom_agent_id": str(fake.agent_id),
        "wecom_secret": fake.secret,
        "wecom_token": TOKEN,
        "wecom_encoding_aes_key": SAMPLE_AES_KEY,
        "wecom_api_base": fake.base_url,
        **settings,
    }
    app_settings = make_settings(database_url, tmp_path, **values)
    clock = OffsetClock(start)
    fake.clock = clock.timestamp
    runtime = Runtime(app_settings, clock=clock)
    client = TestClient(TestServer(build_app(app_settings, runtime=runtime)))
    await client.start_server()
    signer = CallbackSigner(TOKEN, SAMPLE_AES_KEY, fake.corp_id, agent_id=fake.agent_id)
    return WeComWorld(client, fake, runtime, clock, signer), client


@pytest.fixture
async def world(database_url: str, tmp_path: Path, fake: FakeWeCom) -> AsyncIterator[WeComWorld]:
    w, client = await start_world(database_url, tmp_path, fake)
    try:
        yield w
    finally:
        await client.close()


# --- a fault report over WeCom -----------------------------------------------------------


async def test_unknown_member_reports_a_fault_and_gets_the_reply_over_wecom(world: WeComWorld) -> None:
    zhangsan = world.member("zhangsan")
    answer = await zhangsan.say("底盘有异响")
    assert (answer.status, answer.body) == (200, "")  # empty 200: received, no passive reply
    assert answer.elapsed_s < 1.0  # far inside WeCom's 5 s (the figure lives in bench/wecom_bench.py)

    reply = await eventually(lambda: [t for t in zhangsan.texts() if "已为您创建工单" in t], what="the reply")
    assert "机械类" in reply[0]
    person = await world.person_of("zhangsan")
    assert person is not None and person.role is Role.CUSTOMER and person.preferred_channel == "wecom"
    assert await world.count(TicketRow, TicketRow.customer_id == person.id) == 1
    (sent,) = [b for b in zhangsan.received() if b["msgtype"] == "text" and "已为您创建工单" in b["text"]["content"]]
    assert sent["agentid"] == world.fake.agent_id and sent["enable_duplicate_check"] == 1
    assert world.fake.gettoken_calls == 1


async def test_entering_the_app_greets_a_new_member_who_becomes_a_customer(world: WeComWorld) -> None:
    lisi = world.member("lisi")
    assert (await lisi.enter()).status == 200
    (greeting,) = await eventually(lisi.texts, what="the greeting")
    assert "工单助手" in greeting and "底盘有异响" in greeting  # says what the bot is and how to report
    person = await world.person_of("lisi")
    assert person is not None and person.role is Role.CUSTOMER
    assert await world.count(TicketRow) == 0


async def test_a_redelivered_msgid_makes_one_ticket_and_one_reply(world: WeComWorld) -> None:
    wangwu = world.member("wangwu")
    for _ in range(3):  # WeCom retries a callback up to 3 times
        answer = await wangwu.say("中控黑屏", msg_id=424242)
        assert (answer.status, answer.body) == (200, "")
    await eventually(lambda: [t for t in wangwu.texts() if "已为您创建工单" in t], what="the reply")
    await asyncio.sleep(0.8)  # a dispatcher round for any second reply
    assert await world.count(InboxRow, InboxRow.platform == "wecom") == 1
    assert await world.count(TicketRow) == 1
    assert len([t for t in wangwu.texts() if "已为您创建工单" in t]) == 1


async def test_url_verification_through_the_running_app(world: WeComWorld) -> None:
    resp = await world.client.get("/wecom/callback", params=world.signer.verify("5927381049"))
    assert resp.status == 200
    assert await resp.read() == b"5927381049"  # the raw echostr: no quotes, no newline


async def test_a_press_on_a_card_we_never_sent_gets_a_clear_answer(world: WeComWorld) -> None:
    lisi = world.member("lisi")
    await lisi.press({"task_id": "offer-doesnotexist@77", "card_type": "button_interaction"}, "accept")
    assert await eventually(lambda: [t for t in lisi.texts() if "卡片" in t]) == ["这张卡片不存在或已失效。"]
    assert world.fake.updates == []


async def test_an_image_wecom_cannot_hand_over_gets_a_clear_answer(world: WeComWorld) -> None:
    lisi = world.member("lisi")
    xml = image_xml("lisi", "MEDIA_expired", msg_id=99_001, created=int(world.clock.timestamp()))
    assert (await lisi.post(xml)).status == 200
    reply = await eventually(lambda: [t for t in lisi.texts() if "图片" in t], what="the refusal")
    assert reply == ["图片下载失败，请稍后重新发送。"]
    assert [r.query["media_id"] for r in world.fake.requests if r.path.endswith("media/get")] == ["MEDIA_expired"]


# --- bad input: refused before anything is stored ------------------------------------------


async def assert_nothing_stored(world: WeComWorld) -> None:
    await asyncio.sleep(0.2)
    assert await world.count(InboxRow) == 0
    assert await world.count(TicketRow) == 0
    assert await world.person_of("zhangsan") is None
    assert world.fake.sent == []


async def test_wrong_signature_stores_nothing(world: WeComWorld) -> None:
    query, body = world.signer.post(text_xml("zhangsan", "底盘有异响", msg_id=1, created=int(time.time())))
    query["msg_signature"] = "0" * 40
    resp = await world.client.post("/wecom/callback", params=query, data=body)
    assert resp.status == 403
    await assert_nothing_stored(world)


async def test_message_sealed_for_another_corp_stores_nothing(world: WeComWorld) -> None:
    other = WeComMember(world.client, world.fake, CallbackSigner(TOKEN, SAMPLE_AES_KEY, "wwOtherCorp"), "zhangsan")
    assert (await other.say("底盘有异响")).status == 403
    await assert_nothing_stored(world)


async def test_stale_timestamp_stores_nothing(world: WeComWorld) -> None:
    zhangsan = world.member("zhangsan")
    old = int(time.time()) - 3600  # a captured callback replayed an hour later
    answer = await zhangsan.post(text_xml("zhangsan", "底盘有异响", msg_id=2, created=old), timestamp=old)
    assert answer.status == 403
    await assert_nothing_stored(world)


@pytest.mark.parametrize(
    "inner",
    [
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        "<xml><FromUserName>zhangsan</FromUserName><MsgType>text</MsgType><Content>&b;</Content>"
        "<MsgId>3</MsgId></xml>",
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        "<xml><FromUserName>zhangsan</FromUserName><MsgType>text</MsgType><Content>&xxe;</Content>"
        "<MsgId>4</MsgId></xml>",
    ],
    ids=["billion-laughs", "external-entity"],
)
async def test_xml_entities_store_nothing(world: WeComWorld, inner: str) -> None:
    answer = await world.member("zhangsan").post(inner)  # validly signed and encrypted
    assert answer.status == 400
    await assert_nothing_stored(world)


async def test_oversized_body_stores_nothing(world: WeComWorld) -> None:
    query, _ = world.signer.post("<xml/>")
    resp = await world.client.post("/wecom/callback", params=query, data=b"<xml>" + b"A" * 70_000 + b"</xml>")
    assert resp.status == 413
    await assert_nothing_stored(world)


# --- the WeCom API failing: the outbox row waits and is delivered later --------------------


async def outbox_rows_for(world: WeComWorld, user_id: str) -> list[OutboxRow]:
    person = await world.person_of(user_id)
    if person is None:
        return []
    async with world.runtime.sessions() as session:
        stmt = select(OutboxRow).where(col(OutboxRow.recipient_id) == person.id).order_by(col(OutboxRow.id))
        return list((await session.execute(stmt)).scalars())


@pytest.mark.parametrize(
    ("breakage", "wait_s"),
    [("gettoken_bad_secret", 30), ("gettoken_ip_not_trusted", 300), ("rate_limit_45009", 60), ("http_500", 5)],
)
async def test_api_failure_is_retried_and_the_reply_delivered_after_recovery(
    world: WeComWorld, breakage: str, wait_s: float
) -> None:
    if breakage == "gettoken_bad_secret":
        world.fake.gettoken_errcode = 40001
    elif breakage == "gettoken_ip_not_trusted":
        world.fake.gettoken_errcode = 60020  # an admin still has to add the server's IP
    elif breakage == "rate_limit_45009":
        world.fake.rate_limit_next = 1
    else:
        world.fake.http_500_next = 1
    zhangsan = world.member("zhangsan")
    assert (await zhangsan.say("底盘有异响")).status == 200

    async def waiting() -> OutboxRow | None:
        failed = [r for r in await outbox_rows_for(world, "zhangsan") if r.status == "pending" and r.error]
        return failed[0] if failed else None

    row = await eventually(waiting, what="the failed attempt")
    delivered = lambda: any(row.payload["text"] in t for t in zhangsan.texts())  # noqa: E731 (texts may be merged)
    assert row.attempts == 1 and not delivered()
    delay = (row.next_attempt_at - world.clock.now()).total_seconds()
    assert wait_s - 3 <= delay <= wait_s  # WeCom's kind of failure decides the pause

    world.fake.gettoken_errcode = 0  # the fake recovers; the rate limit and 500 were one-shot
    world.clock.advance(delay - 1)
    await asyncio.sleep(0.8)  # a dispatcher round: not due yet
    assert not delivered()
    world.clock.advance(2)
    await eventually(delivered, what="the late reply")

    async def recorded() -> OutboxRow | None:  # the fake sees the text before the row is marked sent
        [again] = [r for r in await outbox_rows_for(world, "zhangsan") if r.id == row.id]
        return again if again.status != "sending" else None

    again = await eventually(recorded, timeout=5, what="the delivery to be recorded")
    assert again.status == "sent" and again.attempts == 2
    assert [t for t in zhangsan.texts() if "已为您创建工单" in t]
    assert await world.count(TicketRow) == 1


# --- WeCom's per-member limit: nothing over 30 a minute, nothing lost ----------------------


async def test_a_burst_for_one_member_is_spread_over_minutes_and_nothing_is_dropped(world: WeComWorld) -> None:
    zhangsan = world.member("zhangsan")
    await zhangsan.say("底盘有异响")
    (reply,) = await eventually(lambda: [t for t in zhangsan.texts() if "已为您创建工单" in t], what="the reply")
    number = NUMBER.search(reply).group(0)  # type: ignore[union-attr]
    for _ in range(35):  # 35 status cards: cards cannot be merged, each is one message
        assert (await zhangsan.say(f"工单 {number}")).status == 200

    await eventually(lambda: len(zhangsan.received()) >= 28, timeout=40, what="the first minute's messages")
    await asyncio.sleep(1.0)  # more dispatcher rounds: the budget holds
    assert len(zhangsan.received()) == 28  # our budget, under WeCom's 30
    person = await world.person_of("zhangsan")
    assert person is not None
    async with world.runtime.sessions() as session:
        stmt = select(OutboxRow).where(col(OutboxRow.recipient_id) == person.id)
        rows = (await session.execute(stmt)).scalars().all()
    waiting = [r for r in rows if r.status == "pending"]
    assert len(rows) >= 36 and len(waiting) >= len(rows) - 28 >= 8
    assert all("per-user message budget" in (r.error or "") for r in waiting)

    world.clock.advance(61)
    await eventually(lambda: len(zhangsan.cards()) == 35, timeout=40, what="the rest, a minute later")
    assert world.fake.dropped == []  # the fake drops like WeCom does past 30/min: nothing was
    assert all(c["main_title"]["title"] == f"工单 {number}" for c in zhangsan.cards())


# --- one access token for every process (Redis) -----------------------------------------


async def test_two_processes_share_one_access_token_through_redis(
    database_url: str, tmp_path: Path, fake: FakeWeCom, redis_url: str
) -> None:
    first, first_client = await start_world(database_url, tmp_path, fake, redis_url=redis_url)
    # What is shared is Redis. On SQLite the second "process" gets a file of its own: two runtimes on one
    # file in ONE event loop can deadlock for the busy timeout (5 s) — one's BEGIN IMMEDIATE waits on the
    # loop for a write lock that the other's group transaction, on the same blocked loop, cannot release
    # (1 run in ~8 failed with "database is locked"). Real processes have a loop each: they only wait.
    second_url, second_path = database_url, tmp_path
    if database_url.startswith("sqlite"):
        second_path = tmp_path / "second"
        second_path.mkdir()
        second_url = f"sqlite:///{second_path / 'ticketbot.db'}"
    second, second_client = await start_world(second_url, second_path, fake, redis_url=redis_url)
    try:
        senders = [w.runtime.dispatcher.senders["wecom"] for w in (first, second)]
        assert senders[0] is not senders[1]
        for i, sender in enumerate(senders):
            from core.cards import Notification
            from core.ports import OutboundDelivery

            note = Notification("p", text=f"来自进程 {i}")
            await sender.send(OutboundDelivery(outbox_id=900 + i, platform="wecom", recipient_external_id="lisi",
                                               notification=note))
        assert fake.gettoken_calls == 1
        assert [b["text"]["content"] for b in fake.delivered] == ["来自进程 0", "来自进程 1"]
        ttl = await first.runtime.redis.ttl(f"ticketbot:token:wecom:access_token:{fake.corp_id}:{fake.agent_id}")
        assert 6800 < ttl <= 6900  # refreshed 5 minutes before WeCom's 7200 s
    finally:
        await second_client.close()
        await first_client.close()
