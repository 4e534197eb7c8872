"""The work order over WeCom, end to end, on a clock that ticks from a Monday 10:00 (Shanghai).

Customer, technicians and supervisors are WeCom members (the identities table maps their
UserIDs to directory people). Everything they see arrives at the fake's message/send (cards as
template_card) and message/update_template_card (a pressed card, updated in place with the
press's ResponseCode); everything they do is a sealed, signed callback: text, images (fetched
through media/get), locations and template_card_event presses with SelectedItems.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from core.model import TicketStatus
from storage.tables import PhotoRow
from tests.fakes.wecom_server import FakeWeCom, WeComMember
from tests.test_e2e_wecom import NUMBER, WeComWorld, eventually, start_world
from tests.test_lifecycle_support import photo

S = TicketStatus
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai
CREATED = "已为您创建工单"
UNSET = "ticketbot-unset"  # the "请选择" option WeCom sends back when nothing was chosen
# Directory person -> WeCom UserID (demo people have none until linked).
WECOM_IDS = {
    "tech-wang": "wangshifu",
    "tech-zhang": "zhangshifu",
    "tech-liu": "liushifu",
    "tech-huang": "huangshifu",
    "tech-xu": "xushifu",
    "sup-li": "liqiang",
    "sup-chen": "chenjing",
    "wh-zhao": "zhaomin",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeCom]:
    server = FakeWeCom()
    server.users.add("kehu-zhao")
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def world(database_url: str, tmp_path: Path, fake: FakeWeCom) -> AsyncIterator[WeComWorld]:
    w, client = await start_world(database_url, tmp_path, fake, start=START)
    try:
        for person_id, user_id in WECOM_IDS.items():
            await w.link(person_id, user_id)
        yield w
    finally:
        await client.close()


def png(tag: str) -> bytes:
    return photo(tag)  # a real image: the photo store decodes it


def titled(member: WeComMember, part: str) -> list[dict[str, Any]]:
    return [c for c in member.cards() if part in c["main_title"]["title"]]


async def card_for(member: WeComMember, part: str, *, after: int = 0) -> dict[str, Any]:
    found = await eventually(lambda: titled(member, part)[after:], what=f"a card「{part}」for {member.user_id}")
    return found[0]


async def text_for(member: WeComMember, part: str, *, after: int = 0) -> str:
    found = await eventually(lambda: [t for t in member.texts()[after:] if part in t],
                             what=f"a text「{part}」for {member.user_id}")
    return found[0]


async def update_with(member: WeComMember, code: str) -> dict[str, Any]:
    found = await eventually(lambda: [u for u in member.updates() if u["response_code"] == code],
                             what=f"update_template_card with {code}")
    return found[0]


async def report(world: WeComWorld, customer: WeComMember, text: str) -> str:
    assert (await customer.say(text)).status == 200
    reply = await text_for(customer, CREATED)
    match = NUMBER.search(reply)
    assert match, reply
    return match.group(0)


async def offered(world: WeComWorld, number: str) -> tuple[WeComMember, dict[str, Any]]:
    """The technician dispatch chose, and the offer card they received over WeCom."""

    def probe() -> tuple[WeComMember, dict[str, Any]] | None:
        for person_id, user_id in WECOM_IDS.items():
            if person_id.startswith("tech-"):
                member = world.member(user_id)
                for card in member.cards():
                    if card["main_title"]["title"] == f"新派单：{number}":
                        return member, card
        return None

    return await eventually(probe, what="the offer card")


async def test_whole_lifecycle_over_wecom(world: WeComWorld) -> None:
    fake = world.fake
    customer = world.member("kehu-zhao")
    number = await report(world, customer, "底盘有异响")

    # Dispatch: the best technician gets the offer as a button_interaction card — 接单 / 拒单 and
    # the 拒单原因 dropdown ("请选择" first).
    tech, offer = await offered(world, number)
    assert (await world.ticket(number)).status is S.DISPATCHED
    assert offer["card_type"] == "button_interaction"
    assert [(b["text"], b["key"]) for b in offer["button_list"]] == [("接单", "accept"), ("拒单", "decline")]
    assert offer["button_selection"]["question_key"] == "reason"
    assert offer["button_selection"]["option_list"][0] == {"id": UNSET, "text": "请选择"}

    # 接单 on the card: the card is updated in place with the press's ResponseCode.
    answer, code = await tech.press(offer, "accept", selected=[("reason", [UNSET])])
    assert (answer.status, answer.body) == (200, "")
    update = await update_with(tech, code)
    assert update["button"]["replace_name"].startswith("已由 技师") and update["agentid"] == fake.agent_id
    assert fake.response_codes[code] is True
    accepted = await world.ticket(number)
    assert accepted.status is S.ACCEPTED and accepted.assignee_id is not None
    await text_for(customer, "已接单")

    # The same card pressed again: refused politely, nothing changes, no second update.
    trail = await world.trail(number)
    world.clock.advance(1)  # a later press (WeCom dedupes events by user + CreateTime)
    seen = len(tech.texts())
    await tech.press(offer, "accept")
    assert await text_for(tech, "已经处理过了", after=seen) == "这张卡片已经处理过了。"
    await world.settled()
    assert await world.trail(number) == trail and (await world.ticket(number)).version == accepted.version
    assert len(tech.updates()) == 1

    # Check-in: a photo (downloaded with media/get) and the position, in any order.
    await tech.send_image(png("checkin"))
    await text_for(tech, "签到还需要")
    assert (await tech.send_location(31.2041, 121.5901, label="张江店")).status == 200
    await text_for(tech, "已签到")
    assert (await world.ticket(number)).status is S.CHECKED_IN
    assert len([r for r in fake.requests if r.path.endswith("media/get")]) == 1

    # 开始 → 检修中 and the SOP card (a text_notice: nothing to press).
    await tech.say("开始")
    sop = await card_for(tech, "SOP")
    assert sop["card_type"] == "text_notice"
    assert (await world.ticket(number)).status is S.IN_PROGRESS

    # Photos: two, 完工 refused; the third, 完工 → the customer's sign-off form.
    for tag in ("part", "meter"):
        await tech.send_image(png(tag))
    await text_for(tech, "2/3")
    seen = len(tech.texts())
    await tech.say("完工")
    await text_for(tech, "至少 3 张", after=seen)
    assert (await world.ticket(number)).status is S.IN_PROGRESS
    await tech.send_image(png("nameplate"))
    await text_for(tech, "3/3")
    await tech.say("完工")
    signoff = await card_for(customer, "请确认完工并签字")
    assert (await world.ticket(number)).status is S.PENDING_SIGNOFF
    assert signoff["card_type"] == "multiple_interaction"
    assert [s["question_key"] for s in signoff["select_list"]] == ["cause_told", "parts_confirmed", "rating"]
    assert all(s["selected_id"] == UNSET and s["option_list"][0]["text"] == "请选择" for s in signoff["select_list"])
    assert signoff["submit_button"] == {"text": "确认签字", "key": "sign"}
    assert "请直接回复「仍未修好」" in signoff["sub_title_text"]
    async with world.runtime.sessions() as session:
        photos = (await session.execute(select(PhotoRow).where(col(PhotoRow.ticket_number) == number))).scalars().all()
    assert {p.sha256 for p in photos} == {hashlib.sha256(png(t)).hexdigest()
                                          for t in ("checkin", "part", "meter", "nameplate")}

    # The form left on "请选择": refused on the server with a clear message; nothing changes.
    trail = await world.trail(number)
    seen = len(customer.texts())
    await customer.press(signoff, "sign", selected=[("cause_told", ["true"]), ("parts_confirmed", [UNSET]),
                                                    ("rating", ["5"])])
    assert await text_for(customer, "请先勾选", after=seen) == "请先勾选「配件更换已确认」再签字。"
    world.clock.advance(1)
    await customer.press(signoff, "sign", selected=[("cause_told", ["true"]), ("parts_confirmed", ["true"]),
                                                    ("rating", [UNSET])])
    assert await text_for(customer, "满意度评分", after=seen) == "请选择 1–5 分的满意度评分（收到的是：未选择）。"
    await world.settled()
    assert (await world.ticket(number)).status is S.PENDING_SIGNOFF and await world.trail(number) == trail
    assert customer.updates() == []

    # Complete: 已结案, the form updated in place, the technician hears the rating.
    world.clock.advance(1)
    _, code = await customer.press(signoff, "sign", selected=[("cause_told", ["true"]), ("parts_confirmed", ["true"]),
                                                              ("rating", ["5"])])
    update = await update_with(customer, code)
    assert update["button"]["replace_name"].startswith("已签字 · 评分 5 分")
    await text_for(customer, "已结案")
    await text_for(tech, "评分 5 分")
    closed = await world.ticket(number)
    assert closed.status is S.CLOSED and closed.data["signoff"]["signed"]["rating"] == 5
    assert fake.dropped == []


async def test_declining_the_offer_needs_a_reason_then_the_next_technician_gets_it(world: WeComWorld) -> None:
    customer = world.member("kehu-zhao")
    number = await report(world, customer, "底盘有异响")
    first, offer = await offered(world, number)

    # 拒单 with the dropdown still on "请选择": a clear refusal, the offer stands.
    seen = len(first.texts())
    await first.press(offer, "decline", selected=[("reason", [UNSET])])
    assert "拒单需要原因" in await text_for(first, "拒单需要原因", after=seen)
    await world.settled()
    assert (await world.ticket(number)).status is S.DISPATCHED and first.updates() == []

    world.clock.advance(1)
    _, code = await first.press(offer, "decline", selected=[("reason", ["too_far"])])
    update = await update_with(first, code)
    assert update["button"]["replace_name"].startswith("已拒单（距离太远）")

    def next_offer() -> WeComMember | None:
        for person_id, user_id in WECOM_IDS.items():
            member = world.member(user_id)
            if person_id.startswith("tech-") and member is not first and user_id != first.user_id and any(
                c["main_title"]["title"] == f"新派单：{number}" for c in member.cards()
            ):
                return member
        return None

    second = await eventually(next_offer, what="the offer to the next technician")
    assert second.user_id != first.user_id
    assert "offer_declined" in await world.trail(number)


async def test_offer_expiry_strong_reminder_and_escalation_card_over_wecom(world: WeComWorld) -> None:
    fake = world.fake
    customer = world.member("kehu-zhao")
    number = await report(world, customer, "底盘有异响")
    ticket = await world.ticket(number)
    assert ticket.response_due is not None
    first, offer = await offered(world, number)
    [sent_offer] = [b for b in first.received() if b.get("template_card") is offer]

    # Strong reminder before the response deadline. On the way there the first offer expired
    # (15 min): nobody pressed it, so its card is updated in place with the ResponseCode WeCom
    # returned when the card was sent, and the next technician holds the offer.
    lead = world.runtime.service.config.sla.reminder_lead
    await world.advance_to(ticket.response_due - lead + timedelta(seconds=1))
    expired = await eventually(first.updates, what="the expired offer card to be updated")
    assert expired[0]["response_code"] in fake.response_codes
    assert expired[0]["button"]["replace_name"].startswith("15 分钟未响应")
    assert [b["template_card"]["task_id"] for b in first.received() if b["msgtype"] == "template_card"].count(
        sent_offer["template_card"]["task_id"]) == 1
    holder_id = (await world.ticket(number)).assignee_id
    assert holder_id is not None and holder_id != first.user_id
    holder = world.member(WECOM_IDS[holder_id])
    reminder = await card_for(holder, "SLA 强提醒")
    # The loudest card an app has: 【紧急】 title, red source, the person called by name.
    assert reminder["card_type"] == "text_notice" and reminder["main_title"]["title"].startswith("【紧急】")
    assert reminder["source"]["desc_color"] == 2
    assert reminder["sub_title_text"].startswith(f"$userName={holder.user_id}$")
    [sent] = [b for b in holder.received() if b.get("template_card") is reminder]
    assert sent["enable_id_trans"] == 1

    # The deadline passes: an escalation card (确认 / 转派 + the technician dropdown) to the
    # handler's supervisor.
    await world.advance_to(ticket.response_due + timedelta(seconds=1))

    def escalated() -> tuple[WeComMember, dict[str, Any]] | None:
        for user_id in ("liqiang", "chenjing"):
            cards = titled(world.member(user_id), "SLA 超时升级")
            if cards:
                return world.member(user_id), cards[0]
        return None

    boss, esc = await eventually(escalated, what="the escalation card")
    assert esc["card_type"] == "button_interaction" and esc["main_title"]["title"].startswith("【紧急】")
    assert [b["key"] for b in esc["button_list"]] == ["ack", "reassign"]
    options = [o["id"] for o in esc["button_selection"]["option_list"]]
    assert options[0] == UNSET and len(options) > 2

    # 转派 with the dropdown on "请选择": refused, nothing changes.
    await world.settled()  # what fell due with the deadline has fired
    trail = await world.trail(number)
    seen = len(boss.texts())
    await boss.press(esc, "reassign", selected=[("technician", [UNSET])])
    assert "请先在「转派给」中选择一位技师" in await text_for(boss, "转派给", after=seen)
    await world.settled()
    assert boss.updates() == [] and await world.trail(number) == trail

    # 转派 to a chosen technician: the card is updated with the press's ResponseCode and the
    # chosen technician gets the offer.
    chosen_id = next(o for o in options[1:] if o in WECOM_IDS)
    world.clock.advance(1)
    _, code = await boss.press(esc, "reassign", selected=[("technician", [chosen_id])])
    await update_with(boss, code)
    chosen = world.member(WECOM_IDS[chosen_id])
    await eventually(lambda: [c for c in chosen.cards() if c["main_title"]["title"].endswith(f"新派单：{number}")],
                     what="the offer to the chosen technician")
    assert (await world.ticket(number)).assignee_id == chosen_id

    # The escalation card pressed again: refused politely.
    world.clock.advance(1)
    seen = len(boss.texts())
    await boss.press(esc, "ack")
    assert await text_for(boss, "已经处理过了", after=seen) == "这张卡片已经处理过了。"
    assert fake.dropped == []


async def started(world: WeComWorld, customer: WeComMember) -> tuple[str, WeComMember]:
    """A ticket accepted on the offer card, checked in and started over WeCom."""
    number = await report(world, customer, "底盘有异响")
    tech, offer = await offered(world, number)
    _, code = await tech.press(offer, "accept")
    await update_with(tech, code)
    await tech.send_location(31.2041, 121.5901)
    await tech.send_image(png(f"checkin-{number}"))
    await text_for(tech, "已签到")
    await tech.say("开始")
    await card_for(tech, "SOP")
    assert (await world.ticket(number)).status is S.IN_PROGRESS
    return number, tech


async def test_parts_plan_and_still_broken_over_wecom(world: WeComWorld) -> None:
    customer, keeper = world.member("kehu-zhao"), world.member("zhaomin")
    number, tech = await started(world, customer)

    # 等待备件: the warehouse gets a to-do card; its 备件到位 button releases the ticket.
    await tech.say("等待备件 压缩机继电器 B325")
    todo = await card_for(keeper, "备件待办")
    assert (await world.ticket(number)).status is S.WAITING_PARTS
    assert todo["card_type"] == "button_interaction"
    assert [(b["text"], b["key"]) for b in todo["button_list"]] == [("备件到位", "ready")]
    _, code = await keeper.press(todo, "ready")
    await update_with(keeper, code)
    await text_for(tech, "备件已到位")
    assert (await world.ticket(number)).status is S.IN_PROGRESS

    # 方案: the customer approves on the card.
    await tech.say("方案 更换压缩机继电器，费用约 300 元")
    plan = await card_for(customer, "请确认维修方案")
    assert (await world.ticket(number)).status is S.WAITING_CUSTOMER_PLAN
    assert "300 元" in plan["sub_title_text"]
    assert [b["key"] for b in plan["button_list"]] == ["approve", "reject"]
    _, code = await customer.press(plan, "approve")
    await update_with(customer, code)
    assert (await world.ticket(number)).status is S.IN_PROGRESS

    # 完工 → the sign-off form; the customer answers with the reply the card names: 仍未修好.
    for tag in ("a", "b", "c"):
        await tech.send_image(png(f"{tag}-{number}"))
    await text_for(tech, "3/3")
    await tech.say("完工")
    signoff = await card_for(customer, "请确认完工并签字")
    assert "请直接回复「仍未修好」" in signoff["sub_title_text"]
    await customer.say("仍未修好")
    await text_for(customer, "已退回技师继续维修")
    assert (await world.ticket(number)).status is S.IN_PROGRESS
    # The technician hears it as a strong reminder: the urgent text becomes a 【紧急】 card.
    urgent = await card_for(tech, "紧急提醒")
    assert urgent["main_title"]["title"].startswith("【紧急】") and "仍未修好" in urgent["sub_title_text"]
    assert world.fake.dropped == []
