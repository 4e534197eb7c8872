"""The work-order lifecycle with every participant on DingTalk, over the wire, on a controlled clock.

Customer, supervisor and technician are DingTalk users (identities map their staff ids to directory
people). Everything they see arrives at the fake's robot batchSend / DING endpoints; everything they
do is a stream frame: text, pictures (downloaded with fetch_media), typed locations and button
presses (the command text a dtmd:// button makes the client send).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from adapters.dingtalk.commands import command_text, parse_command
from bot.runtime import Runtime
from bot.web.app import build_app
from core.clock import FixedClock
from core.model import TicketStatus
from storage.tables import AuditEventRow, PhotoRow
from tests.fakes.dingtalk_gateway import FakeDingTalkGateway, RobotOut
from tests.test_e2e_dingtalk import CREATED, TECHNICIANS, World, dingtalk_settings, number_in
from tests.test_e2e_dingtalk import gateway as gateway  # the fixture
from tests.test_lifecycle_support import photo

S = TicketStatus
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai


@dataclass
class ClockedWorld(World):
    clock: FixedClock

    async def advance_to(self, at: datetime) -> None:
        self.clock.set(at)
        self.runtime.timer_engine.wake.set()
        self.runtime.dispatcher.wake.set()


@pytest.fixture
async def clocked(database_url: str, tmp_path: Path, gateway: FakeDingTalkGateway) -> AsyncIterator[ClockedWorld]:
    settings = dingtalk_settings(database_url, tmp_path)
    clock = FixedClock(START)
    runtime = Runtime(settings, clock=clock)
    async with TestClient(TestServer(build_app(settings, runtime=runtime))) as client:
        await gateway.wait_connections(1, timeout=15)
        yield ClockedWorld(client, gateway, runtime, clock)


def jpeg(tag: str) -> bytes:
    return photo(tag, kind="JPEG")  # a real image: the photo store decodes it


async def test_lifecycle_on_dingtalk_offer_accept_reminder_photos_signoff_closed(clocked: ClockedWorld):
    world, fake = clocked, clocked.gateway
    customer = world.user("staff-cust-life", nick="刘女士")
    techs = {pid: await world.link(pid, f"staff-{pid}", pid) for pid in TECHNICIANS}

    # Report over DingTalk: dispatch offers the job to the best technician, on DingTalk.
    await customer.say("洗衣机脱水时异响")
    number = number_in((await customer.wait_message(lambda m: CREATED in m.text)).text)
    ticket = await world.ticket(number)
    assert ticket.status is S.DISPATCHED and ticket.assignee_id in techs
    tech = techs[ticket.assignee_id]
    offer = await tech.wait_message(lambda m: number in m.title and bool(m.buttons))
    assert offer.buttons[0].label == "接单"
    assert any(b.label.endswith("· 拒单") for b in offer.buttons)

    # Someone else sending the technician's button text is refused, audited, and changes nothing.
    seen_customer = len(customer.received())
    await customer.press(offer.button("接单"))
    await customer.wait_message(lambda m: "不是发给您的" in m.text, after=seen_customer)
    refused = await world.rows(select(AuditEventRow).where(AuditEventRow.kind == "card_action_refused"))
    assert [r.payload["card_id"] for r in refused] == [_card_id_of(offer)]
    assert (await world.ticket(number)).status is S.DISPATCHED

    # 接单 over DingTalk: the action applies, the customer is told; a second press is refused politely.
    seen = len(tech.received())
    await tech.press(offer.button("接单"))
    await customer.wait_message(lambda m: number in m.text and "接单" in m.text, after=seen_customer + 1)
    accepted = await world.ticket(number)
    assert accepted.status is S.ACCEPTED
    await tech.press(offer.button("接单"))
    await tech.wait_message(lambda m: "已经处理过" in m.text, after=seen)
    again = await world.ticket(number)
    assert (again.status, again.version) == (accepted.status, accepted.version)

    # Strong reminder before the resolution deadline goes to the assignee: the urgent-styled
    # message, then a DING.
    assert accepted.resolution_due is not None
    lead = world.runtime.service.config.sla.reminder_lead
    await world.advance_to(accepted.resolution_due - lead + timedelta(seconds=1))
    reminder = await tech.wait_message(lambda m: number in m.text and "强提醒" in m.title)
    assert reminder.title.startswith("【紧急】")
    await fake.wait_for(lambda: bool(fake.dings), timeout=10)
    (ding,) = fake.dings
    assert ding.body["receiverUserIdList"] == [tech.staff_id] and number in ding.body["content"]
    assert ding.body["remindType"] == 1

    # Check-in: a picture (downloaded from DingTalk) and a typed location, in any order.
    seen = len(tech.received())
    checkin_photo = jpeg("checkin")
    await tech.send_picture(checkin_photo)
    await tech.wait_message(lambda m: "现场照片" in m.text, after=seen)
    assert len(fake.file_downloads) == 1
    await tech.say("位置 31.2041,121.5901")
    await tech.wait_message(lambda m: "已签到" in m.text, after=seen)
    assert (await world.ticket(number)).status is S.CHECKED_IN

    # 开始 → the SOP card arrives over DingTalk.
    seen = len(tech.received())
    await tech.say("开始")
    await tech.wait_message(lambda m: "SOP" in m.title, after=seen)
    assert (await world.ticket(number)).status is S.IN_PROGRESS

    # Work photos, then 完工; too few photos are refused first.
    for tag in ("part", "meter"):
        await tech.send_picture(jpeg(tag))
    await tech.wait_message(lambda m: "2/3" in m.text, after=seen)
    seen = len(tech.received())
    await tech.say("完工")
    await tech.wait_message(lambda m: "至少 3 张" in m.text, after=seen)
    assert (await world.ticket(number)).status is S.IN_PROGRESS
    nameplate = jpeg("nameplate")
    await tech.send_picture(nameplate)
    await tech.wait_message(lambda m: "3/3" in m.text, after=seen)
    seen_customer = len(customer.received())
    await tech.say("完工")
    signoff = await customer.wait_message(lambda m: any("确认签字" in b.label for b in m.buttons), after=seen_customer)
    assert (await world.ticket(number)).status is S.PENDING_SIGNOFF
    assert "已告知故障原因" in signoff.text and "配件更换已确认" in signoff.text
    card_id = _card_id_of(signoff)

    # The server validates the sign-off whatever the client sends: a hand-typed command without
    # the confirmations, and one with a rating out of range, are refused and change nothing.
    seen_customer = len(customer.received())
    await customer.say(command_text("签字", card_id, "sign", {"rating": "5"}))
    await customer.wait_message(lambda m: "请先勾选" in m.text, after=seen_customer)
    await customer.say(command_text("签字", card_id, "sign", {"cause_told": "true", "parts_confirmed": "true",
                                                           "rating": "9"}))
    await customer.wait_message(lambda m: "1–5 分" in m.text, after=seen_customer)
    assert (await world.ticket(number)).status is S.PENDING_SIGNOFF

    # The real button: two confirmations and 5 stars → 已结案.
    seen_customer = len(customer.received())
    button = signoff.button("5 分 · 确认签字")
    await customer.press(button)
    await customer.wait_message(lambda m: "已结案" in m.text, after=seen_customer)
    done = await world.ticket(number)
    assert done.status is S.CLOSED and done.data["signoff"]["signed"]["rating"] == 5

    # Pressing it again: refused politely, nothing changes.
    seen_customer = len(customer.received())
    await customer.press(button)
    await customer.wait_message(lambda m: "已经处理过" in m.text, after=seen_customer)
    again = await world.ticket(number)
    assert (again.status, again.version) == (done.status, done.version)

    # Evidence: the downloaded pictures are stored by hash, as the playground's are.
    photos = await world.rows(select(PhotoRow).where(PhotoRow.ticket_number == number).order_by(PhotoRow.id))
    assert [p.purpose for p in photos] == ["checkin", "work", "work", "work"]
    assert photos[0].sha256 == hashlib.sha256(checkin_photo).hexdigest()
    assert (world.runtime.settings.data_dir / photos[-1].path).read_bytes() == nameplate
    assert len(fake.file_downloads) == 4


def _card_id_of(message: RobotOut) -> str:
    command = parse_command(message.buttons[0].content)
    assert command is not None
    return command.card_id


async def test_escalation_on_dingtalk_reassign_button_and_root_cause_text(clocked: ClockedWorld):
    world, fake = clocked, clocked.gateway
    customer = world.user("staff-cust-esc")
    supervisors = {pid: await world.link(pid, f"staff-{pid}", pid) for pid in ("sup-li", "sup-chen")}
    techs = {pid: await world.link(pid, f"staff-{pid}", pid) for pid in TECHNICIANS}

    await customer.say("空压机漏气，压力上不去")
    number = number_in((await customer.wait_message(lambda m: CREATED in m.text)).text)
    ticket = await world.ticket(number)
    assert ticket.response_due is not None

    # Nobody accepts before the response deadline: the handler's supervisor gets the escalation card.
    await world.advance_to(ticket.response_due + timedelta(seconds=1))
    await fake.wait_for(lambda: any("超时升级" in m.title for pid in supervisors
                                    for m in supervisors[pid].received()), timeout=15)
    breached = (await world.ticket(number)).data["sla"]["response"]
    boss = supervisors[breached["escalated_to"][0]]
    card = await boss.wait_message(lambda m: "超时升级" in m.title and bool(m.buttons))
    assert card.title.startswith("【紧急】")
    assert card.buttons[0].label == "确认"
    reassign = next(b for b in card.buttons if b.label.endswith("· 转派"))
    chosen = parse_command(reassign.content)
    assert chosen is not None and chosen.action == "reassign"
    target = techs[chosen.values["technician"]]

    # 转派 with the technician chosen by the button: the ticket moves to them, they are told urgently.
    seen_target = len(target.received())
    await boss.press(reassign)
    told = await target.wait_message(lambda m: number in m.text and "转派给您" in m.text, after=seen_target)
    assert "紧急" in told.title
    await fake.wait_for(lambda: any(d.body["receiverUserIdList"] == [target.staff_id] for d in fake.dings))
    moved = await world.ticket(number)
    assert (moved.status, moved.assignee_id) == (S.DISPATCHED, chosen.values["technician"])

    # The root-cause task needs free text: the card is followed by a copyable command; pressing
    # 提交 without text is refused.
    task = await boss.wait_message(lambda m: "超时根因分析" in m.title and bool(m.buttons))
    prompt = await boss.wait_message(lambda m: "长按复制" in m.text)
    seen = len(boss.received())
    await boss.press(task.button("提交"))
    await boss.wait_message(lambda m: "请填写超时根因" in m.text, after=seen)
    await boss.say(prompt.text + "夜班没有安排接单人")
    closed = await boss.wait_message(lambda m: "根因已提交：夜班没有安排接单人" in m.text, after=seen + 1)
    assert not closed.buttons
    filled = await world.ticket(number)
    assert filled.data["sla"]["response"]["root_cause"]["reason"] == "夜班没有安排接单人"
    assert filled.data["sla"]["response"]["root_cause"]["by"] == breached["escalated_to"][0]
