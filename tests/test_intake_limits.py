"""Issue 19 item 4: a per-sender report limit and repeated reports as follow-ups.

One sender's burst of reports opens at most REPORT_LIMIT_PER_SENDER tickets per window; every
message over the limit is answered politely and kept (its inbox row and an audited
`report_limited` event with its text). A report that repeats an open ticket of the same customer
(same asset, or same category, within FOLLOW_UP_WINDOW_HOURS) is recorded on that ticket as a
follow-up; `新问题` turns it into a ticket of its own. The limit counts what the database holds, so it
holds across processes and platforms. Real app, real SQLite and PostgreSQL, FixedClock.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlmodel import col

from bot.runtime import Runtime
from core.clock import FixedClock
from core.inbound import InboundKind, InboundMessage
from core.model import Ticket, TicketStatus
from storage.tables import AuditEventRow, InboxRow
from tests.conftest import make_settings
from tests.sla_support import NUMBER, at, fixed_clock_app, runtime
from tests.test_lifecycle_support import Person as User
from tests.test_lifecycle_support import accept

S = TicketStatus
WED_1000 = at(2026, 11, 18, 10, 0)  # a Wednesday, working time


async def tickets_of(rt: Runtime, customer: str) -> list[Ticket]:
    async with rt.uow() as uow:
        return await uow.list_tickets(customer_id=customer, limit=500)


async def audit_events(rt: Runtime, kind: str) -> list[AuditEventRow]:
    async with rt.sessions() as session:
        rows = await session.execute(select(AuditEventRow).where(col(AuditEventRow.kind) == kind)
                                     .order_by(col(AuditEventRow.seq)))
        return list(rows.scalars())


async def inbox_texts(rt: Runtime, sender: str) -> list[tuple[str, str | None]]:
    async with rt.sessions() as session:
        rows = (await session.execute(select(InboxRow).order_by(col(InboxRow.id)))).scalars()
        return [(r.status, r.payload.get("text")) for r in rows if r.payload.get("sender") == sender]


async def answers(user: User) -> list[str]:
    return await user.texts()


# --- the limit ---------------------------------------------------------------------------------


async def test_a_burst_from_one_sender_stops_at_the_limit_politely_and_loses_nothing(
        database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(WED_1000)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:  # the default limit: 5 per 10 minutes
        rt = runtime(client)
        flood = User(client, "cust-flood")
        texts = [f"设备编号 M-{i:02d} 底盘有异响" for i in range(12)]  # distinct assets: no follow-ups
        for text in texts:
            before = len(await answers(flood))
            await flood.say(text)
            assert len(await answers(flood)) > before, f"no answer to {text!r}"  # never silently dropped
            clock.advance(timedelta(seconds=1))
        made = await tickets_of(rt, "cust-flood")
        assert len(made) == 5
        assert sorted(t.subject for t in made) == ["M-00", "M-01", "M-02", "M-03", "M-04"]
        said = await answers(flood)
        limited = [t for t in said if "暂未建单" in t]
        assert len(limited) == 7, said
        assert all("10 分钟" in t and "已记录" in t for t in limited), limited
        # Nothing lost: every message is in the inbox with its text, and each one over the limit is audited.
        assert await inbox_texts(rt, "cust-flood") == [("done", t) for t in texts]
        events = await audit_events(rt, "report_limited")
        assert [e.payload["text"] for e in events] == texts[5:]
        assert all(e.actor_id == "cust-flood" and e.payload["limit"] == 5 for e in events)
        # The supervisors hear about it once, not once per message.
        notices = [t for t in await answers(User(client, "sup-li")) if "cust-flood" in t or "报修过于频繁" in t]
        assert len(notices) == 1, notices

        # A slot frees up when the oldest report of the window is 10 minutes old.
        clock.set(made[-1].created_at + timedelta(minutes=10, seconds=1))
        await flood.say("设备编号 M-99 底盘有异响")
        assert NUMBER.search(await flood.last_text()), await flood.last_text()
        assert len(await tickets_of(rt, "cust-flood")) == 6


async def test_the_limit_is_a_setting_and_zero_turns_it_off(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(WED_1000)
    async with fixed_clock_app(database_url, tmp_path, clock, report_limit_per_sender=2) as client:
        rt = runtime(client)
        user = User(client, "cust-two")
        for i in range(3):
            await user.say(f"设备编号 K-{i} 中控黑屏")
        assert len(await tickets_of(rt, "cust-two")) == 2
        assert "暂未建单" in await user.last_text()
    async with fixed_clock_app(database_url, tmp_path / "off", clock, report_limit_per_sender=0) as client:
        rt = runtime(client)
        user = User(client, "cust-many")
        for i in range(8):
            await user.say(f"设备编号 Z-{i} 中控黑屏")
        assert len(await tickets_of(rt, "cust-many")) == 8


async def test_the_limit_counts_from_the_database_across_processes_and_platforms(
        database_url: str, tmp_path: Path) -> None:
    """Two service processes on one database, the sender's messages arriving on WeCom through both
    (on PostgreSQL all at once): the limit holds exactly, as no process counts in memory."""
    clock = FixedClock(WED_1000)
    settings = make_settings(database_url, tmp_path)
    first, second = Runtime(settings, clock=clock), Runtime(settings, clock=clock)
    await first.prepare_database(bind="127.0.0.1")
    try:
        # A known sender (a new one's concurrent first messages race to create them: not what this tests).
        await first.conversation.handle(InboundMessage("wecom", "ev-hello", "wx-flood", InboundKind.TEXT, text="你好"))
        messages = [InboundMessage("wecom", f"ev-{uuid.uuid4().hex}", "wx-flood", InboundKind.TEXT,
                                   text=f"设备编号 W-{i:02d} 中控黑屏") for i in range(10)]
        handlers = [(first if i % 2 else second).conversation.handle(m) for i, m in enumerate(messages)]
        if first.database_url.startswith("postgresql"):
            await asyncio.gather(*handlers)
        else:  # one SQLite writer at a time
            for handler in handlers:
                await handler
        async with first.uow() as uow:
            person = await uow.person_by_identity("wecom", "wx-flood")
        assert person is not None
        assert len(await tickets_of(first, person.id)) == 5
        assert len(await audit_events(first, "report_limited")) == 5
    finally:
        await first.stop()
        await second.stop()


# --- repeats become follow-ups ----------------------------------------------------------------


async def test_a_repeat_of_an_open_ticket_is_a_follow_up_and_its_technician_is_told_once(
        app_client: TestClient) -> None:
    customer = User(app_client, "cust-repeat")
    await customer.say("底盘有异响")
    number = NUMBER.search(await customer.last_text())
    assert number
    first = number.group(0)
    await accept(app_client, first, "tech-wang")
    tech = User(app_client, "tech-wang")
    told_before = len(await tech.texts())

    await customer.say("底盘异响越来越大了")
    answer = await customer.last_text()
    assert first in answer and "补充" in answer and "新问题" in answer, answer
    rt = runtime(app_client)
    assert [t.number for t in await tickets_of(rt, "cust-repeat")] == [first]
    trail = [e for e in await audit_events(rt, "report_follow_up") if e.ticket_number == first]
    assert [e.payload["text"] for e in trail] == ["底盘异响越来越大了"]
    assert trail[0].actor_id == "cust-repeat" and trail[0].payload["match"] == "category"
    tech_texts = (await tech.texts())[told_before:]
    assert [t for t in tech_texts if "底盘异响越来越大了" in t and first in t], tech_texts

    await customer.say("底盘还在响")  # a second follow-up right away: on the trail, the technician not told again
    assert len([e for e in await audit_events(rt, "report_follow_up") if e.ticket_number == first]) == 2
    assert not [t for t in (await tech.texts())[told_before:] if "底盘还在响" in t]
    # The customer sees the follow-ups on the ticket.
    await customer.say(f"工单 {first}")
    status = (await customer.cards("status"))[-1]
    assert "客户补充说明" in status["body"], status["body"]


async def test_the_same_asset_is_a_follow_up_even_in_another_category(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(WED_1000)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        customer = User(client, "cust-asset")
        await customer.say("设备编号 A-7 底盘有异响")
        await customer.say("设备编号 A-7 中控也黑屏了")
        await customer.say("设备编号 B-8 底盘有异响")  # another asset: its own ticket, same category or not
        made = await tickets_of(rt, "cust-asset")
        assert sorted(t.subject for t in made) == ["A-7", "B-8"]
        (follow_up,) = await audit_events(rt, "report_follow_up")
        assert follow_up.payload["match"] == "asset"
        assert follow_up.ticket_number == next(t.number for t in made if t.subject == "A-7")


async def test_a_different_category_is_a_new_ticket(app_client: TestClient) -> None:
    customer = User(app_client, "cust-two-faults")
    await customer.say("底盘有异响")
    await customer.say("中控黑屏")
    made = await tickets_of(runtime(app_client), "cust-two-faults")
    assert sorted(t.category or "" for t in made) == ["机械类", "电控类"]
    assert not await audit_events(runtime(app_client), "report_follow_up")


async def test_after_the_window_or_once_closed_a_repeat_is_a_new_ticket(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(WED_1000)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        customer = User(client, "cust-later")
        await customer.say("中控黑屏")
        clock.advance(timedelta(hours=24, minutes=1))  # FOLLOW_UP_WINDOW_HOURS=24 by default
        await customer.say("中控又黑屏了")
        assert len(await tickets_of(rt, "cust-later")) == 2
        other = User(client, "cust-cancelled")
        await other.say("中控黑屏")
        (ticket,) = await tickets_of(rt, "cust-cancelled")
        await other.say(f"取消工单 {ticket.number} 自己好了")
        assert (await tickets_of(rt, "cust-cancelled"))[0].status is S.CANCELLED
        await other.say("中控又黑屏了")
        assert len(await tickets_of(rt, "cust-cancelled")) == 2


# --- 新问题: the customer says it is a new problem --------------------------------------------


async def test_new_problem_turns_the_last_follow_up_into_a_ticket_of_its_own(app_client: TestClient) -> None:
    rt = runtime(app_client)
    customer = User(app_client, "cust-split")
    await customer.say("底盘有异响")
    await customer.say("后备箱门关不上")  # 机械类 too: taken as a follow-up
    (only,) = await tickets_of(rt, "cust-split")
    await customer.say("新问题")
    answer = await customer.last_text()
    created = NUMBER.search(answer)
    assert created and created.group(0) != only.number, answer
    made = {t.number: t for t in await tickets_of(rt, "cust-split")}
    assert made[created.group(0)].description == "后备箱门关不上"
    split = await audit_events(rt, "follow_up_split")
    assert [(e.ticket_number, e.payload["new_ticket"]) for e in split] == [(only.number, created.group(0))]
    await customer.say("新问题")  # nothing left to split
    assert "新问题 故障描述" in await customer.last_text()
    assert len(await tickets_of(rt, "cust-split")) == 2


async def test_new_problem_with_a_description_always_makes_a_ticket(app_client: TestClient) -> None:
    rt = runtime(app_client)
    customer = User(app_client, "cust-explicit")
    await customer.say("底盘有异响")
    await customer.say("新问题 底盘另一侧也有异响")
    await customer.say("新工单 刹车有异响")
    made = await tickets_of(rt, "cust-explicit")
    assert sorted(t.description for t in made) == ["刹车有异响", "底盘另一侧也有异响", "底盘有异响"]
    assert not await audit_events(rt, "report_follow_up")


async def test_new_problem_is_in_the_customers_help_and_still_limited(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(WED_1000)
    async with fixed_clock_app(database_url, tmp_path, clock, report_limit_per_sender=1) as client:
        customer = User(client, "cust-help")
        await customer.say("帮助")
        assert "新问题" in await customer.last_text()
        await customer.say("中控黑屏")
        await customer.say("新问题 底盘有异响")
        assert "暂未建单" in await customer.last_text()
        assert len(await tickets_of(runtime(client), "cust-help")) == 1
