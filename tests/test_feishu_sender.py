"""Outbound delivery against a fake Feishu Open API on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from adapters.feishu import FeishuAdapter, FeishuConfig, create_feishu_adapter
from adapters.feishu.ratelimit import PerKeyRateLimiter
from core.cards import ActionStyle, Card, CardAction, CardKind, Notification
from core.errors import DeliveryRejected, DeliveryRetryLater
from core.inbound import InboundMessage
from core.ports import OutboundDelivery
from tests.fakes.feishu_server import APP_ID, APP_SECRET, BOT_OPEN_ID, IMAGE_BYTES, FakeFeishu

USER = "ou_technician_1"


class MemoryInbox:
    async def accept(self, message: InboundMessage) -> bool:
        return True


class MemoryTokens:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.ttls: dict[str, float] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        self.values[key], self.ttls[key] = value, ttl_s

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)


@pytest.fixture
async def fake() -> AsyncIterator[FakeFeishu]:
    server = FakeFeishu()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def tokens() -> MemoryTokens:
    return MemoryTokens()


@pytest.fixture
async def adapter(fake: FakeFeishu, tokens: MemoryTokens) -> AsyncIterator[FeishuAdapter]:
    config = FeishuConfig(APP_ID, APP_SECRET, encrypt_key="k", domain=fake.url)
    feishu = create_feishu_adapter(config, MemoryInbox(), tokens)
    yield feishu
    await feishu.stop()


OFFER = Card(
    id="card-offer-1",
    kind=CardKind.OFFER,
    title="新工单派单",
    ticket_number="WO-1",
    facts=(("设备", "3号注塑机"),),
    actions=(CardAction("accept", "接单", ActionStyle.PRIMARY), CardAction("reject", "拒单")),
)


def delivery(note: Notification, outbox_id: int = 1, attempt: int = 1, **kwargs: object) -> OutboundDelivery:
    return OutboundDelivery(outbox_id, "feishu", kwargs.pop("to", USER), note, attempt, **kwargs)  # type: ignore[arg-type]


async def test_text_message(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    receipt = await adapter.sender.send(delivery(Notification(recipient_id="p1", text="您的工单已受理")))
    [call] = fake.calls("POST", "/im/v1/messages")
    assert call.query == {"receive_id_type": "open_id"}
    assert call.json == {
        "receive_id": USER,
        "msg_type": "text",
        "content": '{"text":"您的工单已受理"}',
        "uuid": "ticketbot-1-t",
    }
    assert call.headers["Authorization"].startswith("Bearer t-")
    assert receipt.external_message_id in fake.messages
    assert receipt.card_ref is None


async def test_group_chat_target_uses_chat_id(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    await adapter.sender.send(delivery(Notification(recipient_id="g", text="群通知"), to="oc_group_1"))
    assert fake.calls("POST", "/im/v1/messages")[0].query == {"receive_id_type": "chat_id"}


async def test_the_answer_to_a_group_message_is_a_reply_in_that_group(adapter: FeishuAdapter,
                                                                      fake: FakeFeishu) -> None:
    group = {"message_id": "om_in_asked", "chat_id": "oc_workshop", "chat_type": "group"}
    receipt = await adapter.sender.send(delivery(Notification(recipient_id="p1", text="已为您创建工单", card=OFFER),
                                                 outbox_id=7, reply_context=group))
    text, card = fake.calls("POST", "/im/v1/messages/om_in_asked/reply")
    assert (text.json["msg_type"], text.json["uuid"]) == ("text", "ticketbot-7-t")
    assert (card.json["msg_type"], card.json["uuid"]) == ("interactive", "ticketbot-7-c")
    assert not [c for c in fake.calls("POST") if c.path.endswith("/im/v1/messages")]  # nothing sent 1:1
    assert receipt.card_ref is not None  # the card can still be patched in place after a press
    # A 1:1 chat's reply context changes nothing: sent to the person.
    await adapter.sender.send(delivery(Notification(recipient_id="p1", text="进度"), outbox_id=8,
                                       reply_context={"message_id": "om_in_p2p", "chat_type": "p2p"}))
    assert fake.calls("POST", "/im/v1/messages")[-1].json["receive_id"] == USER


async def test_card_message_is_interactive_json_2(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    receipt = await adapter.sender.send(delivery(Notification(recipient_id="p1", card=OFFER), outbox_id=5))
    [call] = fake.calls("POST", "/im/v1/messages")
    assert call.json["msg_type"] == "interactive" and call.json["uuid"] == "ticketbot-5-c"
    card = json.loads(call.json["content"])
    assert card["schema"] == "2.0" and card["config"]["update_multi"] is True
    assert receipt.card_ref == {"message_id": receipt.external_message_id}


async def test_text_and_card_send_two_messages(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    receipt = await adapter.sender.send(delivery(Notification(recipient_id="p1", text="新派单", card=OFFER)))
    assert [c.json["msg_type"] for c in fake.calls("POST", "/im/v1/messages")] == ["text", "interactive"]
    assert json.loads(fake.messages[receipt.external_message_id or ""]["content"])["schema"] == "2.0"


async def test_card_update_patches_the_remembered_message(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    first = await adapter.sender.send(delivery(Notification(recipient_id="p1", card=OFFER), outbox_id=1))
    closed = Card.from_dict(OFFER.to_dict() | {"closed_note": "已接单"})
    update = Notification(recipient_id="p1", card=closed, replaces_card_id=OFFER.id)
    second = await adapter.sender.send(delivery(update, outbox_id=2, card_ref=first.card_ref))
    [patch] = fake.calls("PATCH", f"/im/v1/messages/{first.external_message_id}")
    assert json.loads(patch.json["content"])["header"]["template"] == "grey"
    assert second.external_message_id == first.external_message_id
    assert len(fake.calls("POST", "/im/v1/messages")) == 1
    assert "已接单" in fake.messages[first.external_message_id or ""]["content"]


async def test_card_update_after_a_button_press_uses_the_callback_message(
    adapter: FeishuAdapter, fake: FakeFeishu
) -> None:
    first = await adapter.sender.send(delivery(Notification(recipient_id="p1", card=OFFER)))
    update = Notification(recipient_id="p1", card=OFFER, replaces_card_id=OFFER.id)
    context = {"card_id": OFFER.id, "open_message_id": first.external_message_id, "callback_token": "c-1"}
    await adapter.sender.send(delivery(update, outbox_id=2, reply_context=context))
    assert len(fake.calls("PATCH", "/im/v1/messages/")) == 1


async def test_urgent_notification_is_sent_with_urgent_app(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    reminder = Card(id="r1", kind=CardKind.REMINDER, title="距离超时还有 10 分钟", urgent=True)
    receipt = await adapter.sender.send(delivery(Notification(recipient_id="p1", card=reminder, urgent=True)))
    [call] = fake.calls("PATCH", "/urgent_app")
    assert call.path == f"/open-apis/im/v1/messages/{receipt.external_message_id}/urgent_app"
    assert call.query == {"user_id_type": "open_id"}
    assert call.json == {"user_id_list": [USER]}
    assert fake.urgent == [(receipt.external_message_id, [USER])]


async def test_retry_reuses_the_uuid_and_does_not_duplicate(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    note = Notification(recipient_id="p1", text="提醒")
    first = await adapter.sender.send(delivery(note, outbox_id=9, attempt=1))
    second = await adapter.sender.send(delivery(note, outbox_id=9, attempt=2))
    assert first.external_message_id == second.external_message_id
    assert len(fake.messages) == 1


async def test_tenant_token_is_cached_with_a_refresh_margin(
    adapter: FeishuAdapter, fake: FakeFeishu, tokens: MemoryTokens
) -> None:
    for i in range(3):
        await adapter.sender.send(delivery(Notification(recipient_id="p1", text=f"第{i}条"), outbox_id=i))
    assert fake.token_fetches == 1
    assert tokens.ttls[adapter.api.token_key] == 7200 - 300


async def test_invalid_token_is_dropped_and_fetched_again(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    await adapter.sender.send(delivery(Notification(recipient_id="p1", text="一"), outbox_id=1))
    fake.invalidate_tokens()
    await adapter.sender.send(delivery(Notification(recipient_id="p1", text="二"), outbox_id=2))
    assert fake.token_fetches == 2
    assert len(fake.messages) == 2


async def test_token_failure_is_retry_later(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    fake.token_failures = 1
    with pytest.raises(DeliveryRetryLater):
        await adapter.sender.send(delivery(Notification(recipient_id="p1", text="一")))
    await adapter.sender.send(delivery(Notification(recipient_id="p1", text="一")))
    assert len(fake.messages) == 1


async def test_429_is_retry_later_with_the_reset_header(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    fake.rate_limit_next(reset_s=7)
    with pytest.raises(DeliveryRetryLater) as caught:
        await adapter.sender.send(delivery(Notification(recipient_id="p1", text="限流")))
    assert caught.value.retry_after_s == 7
    assert fake.messages == {}


async def test_5xx_is_retry_later_and_nothing_is_lost(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    fake.server_error_next()
    note = Notification(recipient_id="p1", text="服务端错误")
    with pytest.raises(DeliveryRetryLater):
        await adapter.sender.send(delivery(note, outbox_id=3))
    receipt = await adapter.sender.send(delivery(note, outbox_id=3, attempt=2))
    assert receipt.external_message_id in fake.messages


async def test_invalid_request_is_rejected(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    fake.fail_next(400, 230002, "Bot/User can NOT be out of the chat.")
    with pytest.raises(DeliveryRejected) as caught:
        await adapter.sender.send(delivery(Notification(recipient_id="p1", text="x")))
    assert "230002" in caught.value.reason


async def test_network_failure_is_retry_later(tokens: MemoryTokens) -> None:
    config = FeishuConfig(APP_ID, APP_SECRET, domain="http://127.0.0.1:9", http_timeout_s=2)
    feishu = create_feishu_adapter(config, MemoryInbox(), tokens)
    try:
        with pytest.raises(DeliveryRetryLater):
            await feishu.sender.send(delivery(Notification(recipient_id="p1", text="x")))
    finally:
        await feishu.stop()


async def test_oversized_card_is_rejected(adapter: FeishuAdapter) -> None:
    huge = Card(id="h", kind=CardKind.INFO, title="过大", facts=tuple((f"项{i}", "值" * 60) for i in range(400)))
    with pytest.raises(DeliveryRejected):
        await adapter.sender.send(delivery(Notification(recipient_id="p1", card=huge)))


async def test_fetch_media_downloads_the_image(adapter: FeishuAdapter, fake: FakeFeishu) -> None:
    assert await adapter.sender.fetch_media("om_in_1:img_v3_abc") == IMAGE_BYTES
    [call] = fake.calls("GET", "/resources/")
    assert call.path == "/open-apis/im/v1/messages/om_in_1/resources/img_v3_abc"
    assert call.query == {"type": "image"}


async def test_learns_the_bot_open_id(adapter: FeishuAdapter) -> None:
    await adapter.learn_bot_open_id()
    assert adapter.bot_open_id == BOT_OPEN_ID


def test_rate_limiter_allows_five_per_second_per_target() -> None:
    now = [100.0]
    limiter = PerKeyRateLimiter(limit=5, window_s=1.0, clock=lambda: now[0])
    assert [limiter.reserve("ou_a") for _ in range(7)] == [0, 0, 0, 0, 0, 1.0, 1.0]
    assert limiter.reserve("ou_b") == 0  # another person has their own budget
    now[0] += 2.5
    assert limiter.reserve("ou_a") == 0
