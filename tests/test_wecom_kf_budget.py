"""The 微信客服 budget is law: at most 5 messages within 48 h after the customer's message, counted
durably per customer; notices folded; never a 6th; when spent, SMS (if configured and the person
has a phone) or held until the customer's next message. All of it on the ticket's trail."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from adapters.wecom.kf_sender import HELD_INTRO
from core.cards import Notification
from core.ports import OutboundDelivery
from storage.tables_kf import KfHeldRow
from tests.fakes.sms_provider import FakeSmsProvider
from tests.fakes.wecom_kf_server import FakeWeComKf, WeChatCustomer
from tests.wecom_kf_support import ACCOUNT, KfWorld, eventually, kf_fake, kf_world, start_kf_world  # noqa: F401 (fixtures)

NUMBER = re.compile(r"GD-\d{8}-\d{4}")


async def _reported(world: KfWorld, customer: WeChatCustomer) -> tuple[str, str]:
    """The customer reports a fault: (person id, ticket number); the reply is message 1 of 5."""
    await customer.say("底盘有异响")
    (reply,) = await eventually(lambda: [t for t in customer.texts() if "已为您创建工单" in t], what="the reply",
                                timeout=60)
    person = await world.person_of(customer)
    assert person is not None
    match = NUMBER.search(reply)
    assert match is not None
    return person.id, match.group()


def _notice(customer: WeChatCustomer, person_id: str, number: str, text: str) -> OutboundDelivery:
    return OutboundDelivery(outbox_id=0, platform="wecom_kf", recipient_external_id=f"{ACCOUNT}:{customer.user}",
                            notification=Notification(recipient_id=person_id, text=text, ticket_number=number))


async def test_never_a_sixth_message_the_rest_is_held_and_sent_with_the_next_message(kf_world: KfWorld) -> None:  # noqa: F811
    qian = kf_world.customer("wmQIAN")
    person_id, number = await _reported(kf_world, qian)
    sender = kf_world.adapter.kf_sender
    await kf_world.settled()  # whatever else the report sent the customer (the reply, a dispatch notice)
    before = len(qian.received())
    assert 1 <= before < 5
    for n in range(6):  # one at a time: nothing to fold
        await sender.send(_notice(qian, person_id, number, f"进度通知 {n}"))
    assert len(qian.received()) == 5
    assert kf_world.fake.refused == []  # we never even asked WeCom for a 6th
    # Ours that did not fit, and anything the ticket's own progress queued meanwhile (a re-offer...).
    held_count = await kf_world.count(KfHeldRow)
    assert held_count >= 6 - (5 - before)
    trail = await kf_world.trail(number)
    sent = [details for kind, details in trail if kind == "wecom_kf_sent"]
    assert [d["remaining"] for d in sent][-2:] == [1, 0]
    spent = [details for kind, details in trail if kind == "wecom_kf_budget_spent"]
    assert spent == [{"outcome": "held_until_next_message"}] * held_count

    await qian.say("请问师傅什么时候到？")  # a new message: a new budget; the held notices go out folded
    held = await eventually(lambda: [t for t in qian.texts() if HELD_INTRO in t], what="the held notices", timeout=60)
    assert "进度通知 4" in held[0] and "进度通知 5" in held[0]
    assert await kf_world.count(KfHeldRow) == 0

    async def released() -> bool:
        return ("wecom_kf_held_released", {"notices": held_count}) in await kf_world.trail(number)

    await eventually(released, what="the release on the trail", timeout=60)


async def test_notices_queued_for_one_customer_are_folded_into_fewer_messages(kf_world: KfWorld) -> None:  # noqa: F811
    sun = kf_world.customer("wmSUNLI")
    person_id, number = await _reported(kf_world, sun)
    sender = kf_world.adapter.kf_sender
    before = len(sun.received())
    await asyncio.gather(*(sender.send(_notice(sun, person_id, number, f"通知{n}")) for n in range(4)))
    new = sun.received()[before:]
    assert len(new) < 4
    text = "\n".join(b["text"]["content"] for b in new)
    assert all(f"通知{n}" in text for n in range(4))
    folded = [d["folded"] for kind, d in await kf_world.trail(number) if kind == "wecom_kf_sent"]
    assert max(folded) > 1


async def test_wecoms_own_count_is_trusted_its_95001_is_never_retried(kf_world: KfWorld) -> None:  # noqa: F811
    zhou = kf_world.customer("wmZHOU")
    person_id, number = await _reported(kf_world, zhou)
    kf_world.fake.windows[(ACCOUNT, "wmZHOU")][1] = 5  # WeCom counted sends we do not know of
    await kf_world.settled()
    await kf_world.adapter.kf_sender.send(_notice(zhou, person_id, number, "进度通知"))
    await kf_world.adapter.kf_sender.send(_notice(zhou, person_id, number, "又一条通知"))
    assert [code for code, _ in kf_world.fake.refused] == [95001]  # asked once; then counted as spent
    assert await kf_world.count(KfHeldRow) >= 2  # (and whatever the ticket queued meanwhile)


async def test_after_48_hours_nothing_is_sent_until_the_customer_writes(kf_world: KfWorld) -> None:  # noqa: F811
    wu = kf_world.customer("wmWU")
    person_id, number = await _reported(kf_world, wu)
    await kf_world.settled()
    kf_world.clock.advance(48 * 3600 + 60)
    before = len(kf_world.fake.requests)
    await kf_world.adapter.kf_sender.send(_notice(wu, person_id, number, "您的工单已派给王师傅"))
    assert not [r for r in kf_world.fake.requests[before:] if r.path.endswith("kf/send_msg")]
    assert await kf_world.count(KfHeldRow) == 1


async def test_a_spent_budget_falls_back_to_sms_when_the_person_has_a_phone(
        database_url: str, tmp_path: Path, kf_fake: FakeWeComKf, sms_fake: FakeSmsProvider) -> None:  # noqa: F811
    world = await start_kf_world(
        database_url, tmp_path, kf_fake, sms_provider="aliyun", sms_sign_name=sms_fake.sign_name,
        sms_endpoint=sms_fake.base_url, aliyun_access_key_id="LTAI-test-id",
        aliyun_access_key_secret="aliyun-test-secret", sms_template_code_verify="SMS_100001",
        sms_template_code_notice="SMS_100002")
    try:
        zheng = world.customer("wmZHENG")
        person_id, number = await _reported(world, zheng)
        async with world.runtime.uow() as uow:
            person = await uow.get_person(person_id)
            assert person is not None
            person.phone = "13800138000"
            await uow.save_person(person)
            await uow.commit()
        for n in range(2, 7):
            await world.adapter.kf_sender.send(_notice(zheng, person_id, number, f"进度通知 {n}"))
        assert len(zheng.received()) == 5 and world.fake.refused == []
        assert await world.count(KfHeldRow) == 0
        assert ("wecom_kf_budget_spent", {"outcome": "sms"}) in await world.trail(number)
        await eventually(lambda: [s for s in sms_fake.sent if s.phone.endswith("13800138000")], what="the SMS")
    finally:
        await world.client.close()
