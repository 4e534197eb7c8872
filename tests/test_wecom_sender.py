"""WeComSender against the fake WeCom API on loopback: JSON on the wire, tokens, errors, card updates."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.wecom import WeComConfig
from adapters.wecom.sender import WeComSender
from adapters.wecom.task_id import decode_task_id, encode_task_id
from core.cards import ActionStyle, Card, CardAction, CardField, CardKind, FieldKind, FieldOption, Notification
from core.errors import DeliveryRejected, DeliveryRetryLater
from core.ports import OutboundDelivery

try:
    from tests.fakes.wecom_server import FakeWeCom
except ModuleNotFoundError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from fakes.wecom_server import FakeWeCom  # type: ignore[no-redef]


class MemoryTokens:
    """TokenCache fake (in-process dict); counts writes to show caching."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.ttls: list[float] = []

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        self.data[key] = value
        self.ttls.append(ttl_s)

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeCom]:
    server = FakeWeCom()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens() -> MemoryTokens:
    return MemoryTokens()


@pytest.fixture
async def sender(fake: FakeWeCom, tokens: MemoryTokens, clock: Clock) -> AsyncIterator[WeComSender]:
    config = WeComConfig(
        corp_id=fake.corp_id,
        agent_id=str(fake.agent_id),
        secret=fake.secret,
        token="tok",
        encoding_aes_key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        api_base=fake.base_url,
        card_url="https://tickets.example.test/t",
    )
    sender = WeComSender(config, tokens, clock=clock)
    yield sender
    await sender.close()


_ids = iter(range(1, 10_000))


def delivery(note: Notification, user: str = "zhangsan", **kw: Any) -> OutboundDelivery:
    return OutboundDelivery(outbox_id=next(_ids), platform="wecom", recipient_external_id=user, notification=note, **kw)


OFFER = Card(
    id="offer-T0001-1",
    kind=CardKind.OFFER,
    title="新工单：注塑机报警",
    ticket_number="T-20250101-0001",
    facts=(("类别", "电控类"), ("优先级", "紧急"), ("位置", "二号厂房")),
    body="3号线注塑机报警 E21，请尽快处理",
    actions=(CardAction("accept", "接单", ActionStyle.PRIMARY), CardAction("decline", "拒单", ActionStyle.DANGER)),
)
SIGNOFF = Card(
    id="signoff-T0001",
    kind=CardKind.SIGNOFF,
    title="请确认维修结果",
    ticket_number="T-20250101-0001",
    fields=(
        CardField("cause_told", "已告知故障原因", FieldKind.CHECKBOX, required=True),
        CardField("parts_ok", "配件更换已确认", FieldKind.CHECKBOX, required=True),
        CardField("rating", "服务评分", FieldKind.SELECT, tuple(FieldOption(str(i), f"{i}分") for i in range(1, 6))),
    ),
    actions=(CardAction("submit", "确认签收", ActionStyle.PRIMARY),),
)


# --- plain messages ----------------------------------------------------------------------


async def test_text_message_json(sender: WeComSender, fake: FakeWeCom) -> None:
    receipt = await sender.send(delivery(Notification("p1", text="您的工单已受理")))
    (body,) = fake.sent
    assert body["touser"] == "zhangsan"
    assert body["agentid"] == fake.agent_id
    assert body["msgtype"] == "text"
    assert body["text"] == {"content": "您的工单已受理"}
    assert body["enable_duplicate_check"] == 1
    assert receipt.external_message_id == "msg1"


async def test_markdown_is_cut_to_2048_bytes_on_a_character_boundary(sender: WeComSender, fake: FakeWeCom) -> None:
    text = "**工单** " + "设备故障说明" * 400  # far over 2048 bytes, all 3-byte characters
    await sender.send(delivery(Notification("p1", text=text, extra={"format": "markdown"})))
    (body,) = fake.sent
    content = body["markdown"]["content"]
    assert body["msgtype"] == "markdown"
    assert len(content.encode()) <= 2048
    assert content.endswith("…")
    assert content.startswith("**工单** 设备故障说明")


async def test_unknown_user_is_rejected(sender: WeComSender) -> None:
    with pytest.raises(DeliveryRejected):
        await sender.send(delivery(Notification("p9", text="hi"), user="nobody"))


# --- cards -------------------------------------------------------------------------------


async def test_offer_card_is_button_interaction(sender: WeComSender, fake: FakeWeCom) -> None:
    d = delivery(Notification("p1", card=OFFER))
    receipt = await sender.send(d)
    (body,) = fake.sent
    card = body["template_card"]
    assert body["msgtype"] == "template_card"
    assert body["enable_duplicate_check"] == 1
    assert card["card_type"] == "button_interaction"
    assert decode_task_id(card["task_id"]) == OFFER.id
    assert card["main_title"] == {"title": "新工单：注塑机报警", "desc": "工单 T-20250101-0001"}
    assert card["horizontal_content_list"][0] == {"keyname": "类别", "value": "电控类"}
    assert [(b["text"], b["key"], b["type"]) for b in card["button_list"]] == [
        ("接单", "accept", 0),
        ("拒单", "decline", 0),
    ]
    assert receipt.card_ref is not None
    assert receipt.card_ref["task_id"] == card["task_id"]
    assert receipt.card_ref["response_code"] in fake.response_codes


async def test_escalation_card_with_too_many_buttons_keeps_six(sender: WeComSender, fake: FakeWeCom) -> None:
    extra = tuple(CardAction(f"x{i}", f"选项{i}") for i in range(6))
    actions = (CardAction("ack", "确认"), CardAction("reassign", "转派"), *extra)
    card = Card(id="esc-1", kind=CardKind.ESCALATION, title="工单超时未响应，请处理" * 5, actions=actions)
    await sender.send(delivery(Notification("p1", card=card)))
    template = fake.sent[0]["template_card"]
    assert len(template["button_list"]) == 6
    assert [b["text"] for b in template["button_list"][:2]] == ["确认", "转派"]
    assert len(template["main_title"]["title"]) <= 36


async def test_signoff_card_is_multiple_interaction_with_unset_first(sender: WeComSender, fake: FakeWeCom) -> None:
    await sender.send(delivery(Notification("p1", card=SIGNOFF)))
    card = fake.sent[0]["template_card"]
    assert card["card_type"] == "multiple_interaction"
    assert card["submit_button"] == {"text": "确认签收", "key": "submit"}
    selects = card["select_list"]
    assert [s["question_key"] for s in selects] == ["cause_told", "parts_ok", "rating"]
    for select in selects:
        assert select["option_list"][0] == {"id": "ticketbot-unset", "text": "请选择"}
        assert select["selected_id"] == "ticketbot-unset"
    assert selects[0]["option_list"][1] == {"id": "true", "text": "是"}
    assert [o["id"] for o in selects[2]["option_list"][1:]] == ["1", "2", "3", "4", "5"]


async def test_status_card_is_text_notice_with_link(sender: WeComSender, fake: FakeWeCom) -> None:
    card = Card(id="st-1", kind=CardKind.STATUS, title="工单状态：维修中", facts=(("处理人", "张三"),))
    receipt = await sender.send(delivery(Notification("p1", card=card)))
    template = fake.sent[0]["template_card"]
    assert template["card_type"] == "text_notice"
    assert template["card_action"] == {"type": 1, "url": "https://tickets.example.test/t"}
    assert "task_id" not in template
    assert receipt.card_ref is not None and "response_code" not in receipt.card_ref


async def test_urgent_reminder_is_the_loudest_card(sender: WeComSender, fake: FakeWeCom) -> None:
    card = Card(id="rem-1", kind=CardKind.REMINDER, title="响应即将超时", body="T-0001 还有 10 分钟超时", urgent=True)
    await sender.send(delivery(Notification("p1", card=card, urgent=True), user="lisi"))
    body = fake.sent[0]
    template = body["template_card"]
    assert template["card_type"] == "text_notice"
    assert template["main_title"]["title"] == "【紧急】响应即将超时"
    assert template["emphasis_content"] == {"title": "紧急", "desc": "请立即处理"}
    assert template["source"]["desc_color"] == 2
    assert template["sub_title_text"].startswith("$userName=lisi$")
    assert body["enable_id_trans"] == 1


async def test_urgent_text_becomes_an_urgent_card(sender: WeComSender, fake: FakeWeCom) -> None:
    await sender.send(delivery(Notification("p1", text="全厂停电，请立即到场", urgent=True)))
    (body,) = fake.sent
    assert body["msgtype"] == "template_card"
    assert "全厂停电" in body["template_card"]["sub_title_text"]


# --- tokens --------------------------------------------------------------------------------


async def test_one_gettoken_for_many_sends(sender: WeComSender, fake: FakeWeCom, tokens: MemoryTokens) -> None:
    for i in range(10):
        await sender.send(delivery(Notification("p1", text=f"消息 {i}")))
    assert fake.gettoken_calls == 1
    assert len(fake.sent) == 10
    assert tokens.ttls == [7200 - 300]  # cached, refreshed early


async def test_expired_token_is_refreshed_and_the_call_retried_once(sender: WeComSender, fake: FakeWeCom) -> None:
    await sender.send(delivery(Notification("p1", text="一")))
    fake.expire_tokens_next = True
    await sender.send(delivery(Notification("p1", text="二")))
    assert fake.gettoken_calls == 2
    assert [b["text"]["content"] for b in fake.sent] == ["一", "二", "二"]  # first try refused with 42001


async def test_gettoken_failure_is_retry_later(sender: WeComSender, fake: FakeWeCom) -> None:
    fake.gettoken_errcode = 60020  # caller IP not in the trusted list
    with pytest.raises(DeliveryRetryLater) as info:
        await sender.send(delivery(Notification("p1", text="x")))
    assert info.value.retry_after_s
    assert fake.sent == []


# --- transient errors ---------------------------------------------------------------------


async def test_rate_limit_45009_is_retry_later(sender: WeComSender, fake: FakeWeCom) -> None:
    fake.rate_limit_next = 1
    with pytest.raises(DeliveryRetryLater) as info:
        await sender.send(delivery(Notification("p1", text="x")))
    assert info.value.retry_after_s == 60
    await sender.send(delivery(Notification("p1", text="x")))  # the outbox's retry goes through


async def test_http_500_is_retry_later(sender: WeComSender, fake: FakeWeCom) -> None:
    await sender.send(delivery(Notification("p1", text="warm up")))
    fake.http_500_next = 1
    with pytest.raises(DeliveryRetryLater):
        await sender.send(delivery(Notification("p1", text="x")))


async def test_network_failure_is_retry_later(tokens: MemoryTokens) -> None:
    config = WeComConfig(
        "c", "1", "s", "t", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", api_base="http://127.0.0.1:9/"
    )
    sender = WeComSender(config, tokens)
    with pytest.raises(DeliveryRetryLater):
        await sender.send(delivery(Notification("p1", text="x")))
    await sender.close()


async def test_retried_card_delivery_that_already_arrived_is_not_an_error(sender: WeComSender, fake: FakeWeCom) -> None:
    first = delivery(Notification("p1", card=OFFER))
    await sender.send(first)
    again = OutboundDelivery(first.outbox_id, "wecom", "zhangsan", first.notification, attempt=2)
    receipt = await sender.send(again)  # same task_id -> 42014 "taskid has existed"
    assert receipt.card_ref is not None
    assert len(fake.sent) == 2


# --- card updates -------------------------------------------------------------------------


def press(card: Card, task_id: str, code: str, at: float) -> dict[str, Any]:
    return {"task_id": task_id, "card_type": "button_interaction", "response_code": code, "response_code_at": int(at)}


async def test_card_update_uses_the_callback_response_code_once(
    sender: WeComSender, fake: FakeWeCom, clock: Clock
) -> None:
    sent = await sender.send(delivery(Notification("p1", card=OFFER)))
    assert sent.card_ref is not None
    task_id = sent.card_ref["task_id"]
    code = fake.issue_response_code()  # carried by the template_card_event of the press
    closed = Card(**{**_fields(OFFER), "closed_note": "已由 张三 接单"})
    update = delivery(
        Notification("p1", card=closed, replaces_card_id=OFFER.id),
        card_ref=sent.card_ref,
        reply_context=press(OFFER, task_id, code, clock.now),
    )
    receipt = await sender.send(update)
    (body,) = fake.updates
    assert body["response_code"] == code
    assert body["userids"] == ["zhangsan"]
    assert body["agentid"] == fake.agent_id
    assert body["button"] == {"replace_name": "已由 张三 接单"}
    assert fake.response_codes[code] is True
    assert len(fake.sent) == 1  # updated in place, nothing new sent
    assert receipt.card_ref is not None and receipt.card_ref["task_id"] == task_id

    # The same press delivered again (outbox retry): the code is spent -> a fresh card instead.
    retry = OutboundDelivery(
        update.outbox_id,
        "wecom",
        "zhangsan",
        update.notification,
        attempt=2,
        card_ref=update.card_ref,
        reply_context=update.reply_context,
    )
    await sender.send(retry)
    assert len(fake.updates) == 2
    assert len(fake.sent) == 2
    assert fake.sent[1]["template_card"]["card_type"] == "text_notice"
    assert fake.sent[1]["template_card"]["emphasis_content"]["title"] == "已由 张三 接单"


async def test_card_update_with_the_send_response_code_clears_it(sender: WeComSender, fake: FakeWeCom) -> None:
    sent = await sender.send(delivery(Notification("p1", card=OFFER)))
    assert sent.card_ref is not None
    closed = Card(**{**_fields(OFFER), "closed_note": "已撤回"})
    receipt = await sender.send(
        delivery(Notification("p1", card=closed, replaces_card_id=OFFER.id), card_ref=sent.card_ref)
    )
    assert fake.updates[0]["response_code"] == sent.card_ref["response_code"]
    assert receipt.card_ref is not None and receipt.card_ref["response_code"] is None  # single use: forgotten


async def test_expired_response_code_sends_a_fresh_card(sender: WeComSender, fake: FakeWeCom, clock: Clock) -> None:
    sent = await sender.send(delivery(Notification("p1", card=OFFER)))
    clock.now += 73 * 3600  # past the 72 h validity
    refreshed = Card(**{**_fields(OFFER), "facts": (("类别", "机械类"),)})
    receipt = await sender.send(
        delivery(Notification("p1", card=refreshed, replaces_card_id=OFFER.id), card_ref=sent.card_ref)
    )
    assert fake.updates == []
    assert len(fake.sent) == 2
    new_task = fake.sent[1]["template_card"]["task_id"]
    assert new_task != fake.sent[0]["template_card"]["task_id"]
    assert decode_task_id(new_task) == OFFER.id
    assert receipt.card_ref is not None and receipt.card_ref["response_code"]


async def test_response_code_of_another_card_is_not_used(sender: WeComSender, fake: FakeWeCom, clock: Clock) -> None:
    code = fake.issue_response_code()
    closed = Card(**{**_fields(OFFER), "closed_note": "已处理"})
    other_task = encode_task_id("some-other-card", 3)
    await sender.send(
        delivery(
            Notification("p1", card=closed, replaces_card_id=OFFER.id),
            reply_context=press(OFFER, other_task, code, clock.now),
        )
    )
    assert fake.updates == []
    assert fake.response_codes[code] is False


# --- media ---------------------------------------------------------------------------------


async def test_media_download(sender: WeComSender, fake: FakeWeCom) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40
    fake.media["MEDIA_1"] = (jpeg, "image/jpeg")
    assert await sender.fetch_media("MEDIA_1") == jpeg
    request = fake.requests[-1]
    assert request.path == "/cgi-bin/media/get" and request.query["media_id"] == "MEDIA_1"


async def test_unknown_media_is_rejected(sender: WeComSender) -> None:
    with pytest.raises(DeliveryRejected):
        await sender.fetch_media("nope")


def _fields(card: Card) -> dict[str, Any]:
    return {name: getattr(card, name) for name in Card.__slots__}
