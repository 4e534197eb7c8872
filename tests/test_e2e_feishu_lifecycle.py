"""The work order over Feishu, end to end, on a clock that ticks from a Monday 10:00 (Shanghai).

Customer, supervisors and technicians are Feishu users (identities map their open_ids to directory
people). Everything they see arrives at the fake's im/v1/messages (cards as JSON 2.0, patched in
place after a press, strong reminders followed by urgent_app); everything they do is an encrypted,
signed event: text, images (downloaded with fetch_media), locations and card callbacks with
form_value. Dispatch is the real one: the offer card goes to the best technician, who presses 接单.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from core.model import TicketStatus
from storage.tables import PhotoRow
from tests.fakes.feishu_server import Sent
from tests.test_e2e_feishu import CREATED, CUSTOMER, FeishuEnv, feishu_env
from tests.test_lifecycle_support import photo

S = TicketStatus
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai
SUP_LI, SUP_CHEN = "ou_sup_li", "ou_sup_chen"
TECHNICIANS = ("tech-wang", "tech-zhang", "tech-liu", "tech-huang", "tech-xu")
TOAST = {"toast": {"type": "info", "content": "已收到，处理中"}}


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[FeishuEnv]:
    async for env in feishu_env(database_url, tmp_path, start=START):
        await env.link("sup-li", SUP_LI)
        await env.link("sup-chen", SUP_CHEN)
        for person_id in TECHNICIANS:
            await env.link(person_id, open_id_of(person_id))
        yield env


def open_id_of(person_id: str) -> str:
    return "ou_" + person_id.replace("-", "_")


def png(tag: str) -> bytes:
    return photo(tag)  # a real image: the photo store decodes it


def is_card(title_part: str) -> Callable[[Sent], bool]:
    return lambda m: m.card is not None and title_part in m.card["header"]["title"]["content"]


async def report(env: FeishuEnv, text: str = "中控黑屏") -> str:
    await env.say(CUSTOMER, text)
    reply = await env.message_to(CUSTOMER, lambda m: CREATED in m.text)
    return reply.text.split(CREATED, 1)[1].split()[0]


async def accept_the_offer(env: FeishuEnv, number: str) -> str:
    """The offered technician presses 接单 on the offer card; returns their open_id."""
    ticket = await env.ticket(number)
    assert ticket.status is S.DISPATCHED and ticket.assignee_id in TECHNICIANS
    tech = open_id_of(ticket.assignee_id)
    offer = await env.message_to(tech, is_card(f"新派单：{number}"))
    assert await env.press(tech, offer, "accept") == (200, TOAST)
    await env.message_to(tech, lambda m: f"已接单 {number}" in m.text)
    assert (await env.ticket(number)).status is S.ACCEPTED
    return tech


async def work_until_signoff(env: FeishuEnv, number: str, tech: str) -> Sent:
    """Check-in (image + location), 开始, three photos, 完工: the customer's sign-off card."""
    await env.send_image(tech, png(f"{number}-checkin"))
    await env.send_location(tech, 31.2041, 121.5901)
    await env.message_to(tech, lambda m: "已签到" in m.text)
    await env.say(tech, "开始")
    for shot in ("part", "meter", "nameplate"):
        await env.send_image(tech, png(f"{number}-{shot}"))
    await env.message_to(tech, lambda m: "3/3" in m.text)
    await env.say(tech, "完工")
    return await env.message_to(CUSTOMER, is_card("请确认完工并签字"))


def card_json(message: Sent) -> str:
    return card_json_of(message.content)


def card_json_of(card: dict[str, object]) -> str:
    return json.dumps(card, ensure_ascii=False)


async def test_lifecycle_on_feishu_offer_accept_photos_reminder_signoff_closed(world: FeishuEnv) -> None:
    env, fake = world, world.fake
    number = await report(env)
    ticket = await env.ticket(number)
    assert ticket.status is S.DISPATCHED and ticket.assignee_id in TECHNICIANS

    # The offer card: facts, a decline-reason select and 接单 / 拒单, delivered to the chosen technician.
    tech = open_id_of(ticket.assignee_id or "")
    offer = await env.message_to(tech, is_card(f"新派单：{number}"))
    assert {b["action"]: b["label"] for b in offer.buttons()} == {"accept": "接单", "decline": "拒单"}
    assert offer.form_names() == ["reason"]

    # 拒单 without a reason: refused on the server, the offer stands.
    seen = len(fake.sent(tech))
    assert await env.press(tech, offer, "decline", {}) == (200, TOAST)
    refusal = await env.message_to(tech, lambda m: m.msg_type == "text", after=seen)
    assert refusal.text.startswith("拒单需要原因")
    assert (await env.ticket(number)).status is S.DISPATCHED and fake.patches(offer.message_id) == []

    # 接单: toast now, then the card is patched in place with what was done; the customer is told.
    assert await env.press(tech, offer, "accept") == (200, TOAST)
    await fake.wait_for(lambda: fake.patches(offer.message_id), what="the offer card to be patched")
    [patched] = fake.patches(offer.message_id)
    assert patched["config"]["update_multi"] is True and patched["header"]["template"] == "grey"
    assert "接单" in card_json_of(patched) and '"button"' not in json.dumps(patched)
    await env.message_to(CUSTOMER, lambda m: "已接单" in m.text)
    accepted = await env.ticket(number)
    assert accepted.status is S.ACCEPTED and accepted.assignee_id == ticket.assignee_id

    # A second press on the same card: refused politely, nothing changes.
    trail = await env.trail(number)
    seen = len(fake.sent(tech))
    assert await env.press(tech, offer, "accept") == (200, TOAST)
    again = await env.message_to(tech, lambda m: m.msg_type == "text", after=seen)
    assert again.text == "这张卡片已经处理过了。"
    await env.settled()
    assert await env.trail(number) == trail and len(fake.patches(offer.message_id)) == 1

    # Check-in: an image (downloaded from Feishu) and a location message, in any order.
    seen = len(fake.sent(tech))
    downloads = len(fake.calls("GET", "/resources/"))
    await env.send_image(tech, png("checkin"))
    await env.message_to(tech, lambda m: "现场照片" in m.text, after=seen)
    assert len(fake.calls("GET", "/resources/")) == downloads + 1
    await env.send_location(tech, 31.2041, 121.5901)
    await env.message_to(tech, lambda m: "已签到" in m.text, after=seen)
    assert (await env.ticket(number)).status is S.CHECKED_IN

    # 开始 → the SOP card arrives as an interactive message.
    await env.say(tech, "开始")
    await env.message_to(tech, lambda m: m.card is not None and "SOP" in card_json(m), after=seen)
    assert (await env.ticket(number)).status is S.IN_PROGRESS

    # Work photos, then 完工; too few photos are refused first.
    for tag in ("part", "meter"):
        await env.send_image(tech, png(tag))
    await env.message_to(tech, lambda m: "2/3" in m.text, after=seen)
    seen = len(fake.sent(tech))
    await env.say(tech, "完工")
    await env.message_to(tech, lambda m: "至少 3 张" in m.text, after=seen)
    assert (await env.ticket(number)).status is S.IN_PROGRESS
    await env.send_image(tech, png("nameplate"))
    await env.message_to(tech, lambda m: "3/3" in m.text, after=seen)

    # Strong reminder before the resolution deadline: to the technician, a red card, then Feishu's
    # urgent_app ("加急") on that very message.
    working = await env.ticket(number)
    assert working.resolution_due is not None
    lead = env.runtime.service.config.sla.reminder_lead
    await env.advance_to(working.resolution_due - lead + timedelta(seconds=1))
    reminder = await env.message_to(tech, is_card("强提醒"))
    assert reminder.card is not None and reminder.card["header"]["template"] == "red"
    assert number in card_json(reminder)
    await fake.wait_for(lambda: (reminder.message_id, [tech]) in fake.urgent, what="urgent_app")
    [call] = [c for c in fake.calls("PATCH", "/urgent_app") if reminder.message_id in c.path]
    assert call.query == {"user_id_type": "open_id"}

    await env.say(tech, "完工")
    signoff = await env.message_to(CUSTOMER, is_card("请确认完工并签字"))
    assert (await env.ticket(number)).status is S.PENDING_SIGNOFF
    assert signoff.form_names() == ["cause_told", "parts_confirmed", "rating"]
    assert {b["action"] for b in signoff.buttons()} == {"sign", "not_fixed"}
    async with env.runtime.sessions() as session:
        photos = (await session.execute(select(PhotoRow).where(col(PhotoRow.ticket_number) == number))).scalars()
        hashes = {p.sha256 for p in photos}
    assert hashes == {hashlib.sha256(png(t)).hexdigest() for t in ("checkin", "part", "meter", "nameplate")}

    # The form is validated on the server: a missing tick or rating → toast, then a clear refusal;
    # the ticket and the card stay as they were.
    trail = await env.trail(number)
    seen_customer = len(fake.sent(CUSTOMER))
    answer = await env.press(CUSTOMER, signoff, "sign", {"cause_told": True, "parts_confirmed": False, "rating": "5"})
    assert answer == (200, TOAST)
    refusal = await env.message_to(CUSTOMER, lambda m: m.msg_type == "text", after=seen_customer)
    assert refusal.text == "请先勾选「配件更换已确认」再签字。"
    await env.press(CUSTOMER, signoff, "sign", {"cause_told": True, "parts_confirmed": True})
    refusal = await env.message_to(CUSTOMER, lambda m: "满意度评分" in m.text, after=seen_customer + 1)
    assert refusal.text == "请选择 1–5 分的满意度评分（收到的是：未选择）。"
    await env.settled()
    assert (await env.ticket(number)).status is S.PENDING_SIGNOFF and await env.trail(number) == trail
    assert fake.patches(signoff.message_id) == []

    # A complete form: toast, the card patched in place with what was done, 已结案.
    seen_customer = len(fake.sent(CUSTOMER))
    answer = await env.press(CUSTOMER, signoff, "sign", {"cause_told": True, "parts_confirmed": True, "rating": "5"})
    assert answer == (200, TOAST)
    await env.message_to(CUSTOMER, lambda m: "已结案" in m.text, after=seen_customer)
    await fake.wait_for(lambda: fake.patches(signoff.message_id), what="the sign-off card to be patched")
    [patched] = fake.patches(signoff.message_id)
    assert patched["config"]["update_multi"] is True and patched["header"]["template"] == "grey"
    assert "已签字 · 评分 5 分" in card_json_of(patched)
    assert '"form"' not in json.dumps(patched) and '"button"' not in json.dumps(patched)
    closed = await env.ticket(number)
    assert closed.status is S.CLOSED and closed.closed_at is not None
    await env.message_to(tech, lambda m: "评分 5 分" in m.text)

    # A second press on the sign-off card: refused politely, nothing changes.
    trail = await env.trail(number)
    seen_customer = len(fake.sent(CUSTOMER))
    assert await env.press(CUSTOMER, signoff, "sign",
                           {"cause_told": True, "parts_confirmed": True, "rating": "1"}) == (200, TOAST)
    again = await env.message_to(CUSTOMER, lambda m: m.msg_type == "text", after=seen_customer)
    assert again.text == "这张卡片已经处理过了。"
    await env.settled()
    assert await env.trail(number) == trail and (await env.ticket(number)).status is S.CLOSED
    assert len(fake.patches(signoff.message_id)) == 1
    kinds = await env.trail(number)
    for kind in ("offer_sent", "offer_accepted", "photo_added", "signed_off"):
        assert kind in kinds


async def test_sign_off_card_on_a_ticket_that_moved_on_is_refused(world: FeishuEnv) -> None:
    env, fake = world, world.fake
    number = await report(env, "底盘有异响")
    tech = await accept_the_offer(env, number)
    signoff = await work_until_signoff(env, number, tech)

    # The customer says it is still broken in chat: the ticket goes back to work and the card closes
    # as its 仍未修好 button would; a press on a copy that still shows buttons is refused.
    await env.say(CUSTOMER, "仍未修好")
    await env.settled()
    assert (await env.ticket(number)).status is S.IN_PROGRESS
    trail = await env.trail(number)
    seen = len(fake.sent(CUSTOMER))
    answer = await env.press(CUSTOMER, signoff, "sign", {"cause_told": True, "parts_confirmed": True, "rating": "5"})
    assert answer == (200, TOAST)
    refusal = await env.message_to(CUSTOMER, lambda m: m.msg_type == "text", after=seen)
    assert refusal.text == "这张卡片已经处理过了。"
    await env.settled()
    assert (await env.ticket(number)).status is S.IN_PROGRESS and await env.trail(number) == trail


async def test_escalation_card_ack_patches_both_supervisors_and_a_second_press_is_refused(world: FeishuEnv) -> None:
    env, fake = world, world.fake
    number = await report(env, "门禁系统故障")  # no category: 待分诊, nobody assigned, nothing offered
    ticket = await env.ticket(number)
    assert ticket.status is S.TRIAGE and ticket.assignee_id is None and ticket.response_due is not None
    await env.advance_to(ticket.response_due + timedelta(seconds=1))

    # Nobody is assigned: every supervisor gets the escalation card (确认 / 转派 with a technician
    # select), the first one also the root-cause task (a form with a required text).
    esc_li = await env.message_to(SUP_LI, is_card("SLA 超时升级"))
    esc_chen = await env.message_to(SUP_CHEN, is_card("SLA 超时升级"))
    assert {b["action"] for b in esc_li.buttons()} == {"ack", "reassign"}
    assert esc_li.form_names() == ["technician"] and esc_li.card is not None
    assert esc_li.card["header"]["template"] == "red"
    rca_owner = SUP_CHEN  # the first supervisor by id ("sup-chen")
    rca = await env.message_to(rca_owner, is_card("超时根因分析"))
    assert rca.form_names() == ["reason"]

    # 转派 without choosing a technician: checked on the server, nothing changes.
    seen = len(fake.sent(SUP_LI))
    assert await env.press(SUP_LI, esc_li, "reassign", {}) == (200, TOAST)
    refusal = await env.message_to(SUP_LI, lambda m: m.msg_type == "text", after=seen)
    assert "请先在「转派给」中选择一位技师" in refusal.text

    # 确认 by 李强: his card is patched with what was done, and 陈静's copy is settled too.
    assert await env.press(SUP_LI, esc_li, "ack") == (200, TOAST)
    await fake.wait_for(lambda: fake.patches(esc_li.message_id) and fake.patches(esc_chen.message_id),
                        what="both escalation cards to be patched")
    note = "主管 李强 已确认，正在跟进。"
    for message in (esc_li, esc_chen):
        [patched] = fake.patches(message.message_id)
        assert note in json.dumps(patched, ensure_ascii=False) and '"button"' not in json.dumps(patched)
    trail = await env.trail(number)

    # 陈静 presses her (now settled) copy: refused politely, no state change.
    seen = len(fake.sent(SUP_CHEN))
    assert await env.press(SUP_CHEN, esc_chen, "ack") == (200, TOAST)
    again = await env.message_to(SUP_CHEN, lambda m: m.msg_type == "text", after=seen)
    assert again.text == "这张卡片已经处理过了。"
    await env.settled()
    assert await env.trail(number) == trail

    # The root-cause form: an empty reason is refused on the server; a real one is recorded.
    seen = len(fake.sent(rca_owner))
    await env.press(rca_owner, rca, "submit", {"reason": " "})
    refusal = await env.message_to(rca_owner, lambda m: m.msg_type == "text", after=seen)
    assert refusal.text == "请填写超时根因（必填，至少 2 个字）后再提交。"
    await env.press(rca_owner, rca, "submit", {"reason": "夜班无指定接单人"})
    await fake.wait_for(lambda: fake.patches(rca.message_id), what="the root-cause card to be patched")
    assert "根因已提交：夜班无指定接单人" in json.dumps(fake.patches(rca.message_id)[-1], ensure_ascii=False)
    assert "sla_root_cause_filled" in await env.trail(number)
