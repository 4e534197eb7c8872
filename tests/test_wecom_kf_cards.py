"""WeChat users get no template cards: choices become msgmenu (whose clicks come back through
kf/sync_msg as text messages with menu_id → a CARD_ACTION for the same card), forms a link to the
customer page (the sign-off: <tracking_url>/sign)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import col

from adapters.wecom.kf_menu import MenuIdTooLong, decode_menu_id, encode_menu_id
from adapters.wecom.kf_sender import render_text
from core.cards import Card, CardAction, CardField, CardKind, FieldKind, Notification
from core.ports import OutboundDelivery
from storage.tables import InboxRow
from tests.wecom_kf_support import ACCOUNT, KfWorld, eventually, kf_fake, kf_world  # noqa: F401 (fixtures)

PLAN = Card(id="plan-0123456789abcdef0123", kind=CardKind.TASK, title="维修方案确认", ticket_number="GD-20261206-0001",
            facts=(("方案", "更换刹车片"), ("费用", "¥680")),
            actions=(CardAction("approve", "同意方案"), CardAction("reject", "不同意")))
SIGNOFF = Card(id="signoff-0123456789abcdef0123", kind=CardKind.SIGNOFF, title="完工确认",
               ticket_number="GD-20261206-0001",
               fields=(CardField("told", "已告知故障原因", FieldKind.CHECKBOX, required=True),),
               actions=(CardAction("sign", "确认"),))


def _delivery(user: str, note: Notification) -> OutboundDelivery:
    return OutboundDelivery(outbox_id=1, platform="wecom_kf", recipient_external_id=f"{ACCOUNT}:{user}",
                            notification=note)


async def test_a_card_with_choices_becomes_a_msgmenu_and_its_click_a_card_action(kf_world: KfWorld) -> None:  # noqa: F811
    liu = kf_world.customer("wmLIU")
    await liu.say("你好")  # opens the budget window
    await eventually(liu.texts, what="the greeting")
    note = Notification(recipient_id="c-x", text="技师提交了维修方案，请确认。", card=PLAN)
    receipt = await kf_world.adapter.kf_sender.send(_delivery("wmLIU", note))
    assert receipt.card_ref == {"menu": True}
    (menu,) = liu.menus()
    assert "维修方案确认" in menu["head_content"] and "更换刹车片" in menu["head_content"]
    assert "技师提交了维修方案" in menu["head_content"]  # the text rides in the same message
    items = [item["click"] for item in menu["list"]]
    assert [i["content"] for i in items] == ["同意方案", "不同意"]

    msgid = await liu.say("同意方案", menu_id=items[0]["id"])  # WeChat sends the click as a text with menu_id
    await kf_world.synced()
    async with kf_world.runtime.sessions() as session:
        payload = (await session.execute(select(col(InboxRow.payload))
                                          .where(col(InboxRow.event_key) == f"msg:{msgid}"))).scalar_one()
    assert payload["kind"] == "card_action"
    assert (payload["card_id"], payload["action"]) == (PLAN.id, "approve")


async def test_a_form_card_becomes_a_text_with_the_sign_off_link(kf_world: KfWorld) -> None:  # noqa: F811
    ma = kf_world.customer("wmMA")
    await ma.say("你好")
    await eventually(ma.texts, what="the greeting")
    note = Notification(recipient_id="c-x", text="您的工单已完工，请确认并签字。", card=SIGNOFF,
                        extra={"tracking_url": "https://tb.example.com/t/TOKEN123"})
    await kf_world.adapter.kf_sender.send(_delivery("wmMA", note))
    text = await eventually(lambda: [t for t in ma.texts() if "完工确认" in t], what="the sign-off text")
    assert "https://tb.example.com/t/TOKEN123/sign" in text[0]
    assert ma.menus() == []  # no buttons a WeChat user could not use


def test_a_form_without_a_tracking_link_still_says_what_to_do() -> None:
    text = render_text(Notification(recipient_id="c", card=SIGNOFF))
    assert "完工确认" in text and "联系门店" in text


def test_menu_ids_round_trip_and_refuse_what_wechat_would_cut() -> None:
    assert decode_menu_id(encode_menu_id("offer-abc", "accept")) == ("offer-abc", "accept")
    assert decode_menu_id("no-separator") is None
    with pytest.raises(MenuIdTooLong):
        encode_menu_id("x" * 60, "accept")
