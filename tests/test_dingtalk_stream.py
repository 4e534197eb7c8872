"""DingTalk Stream inbound: the SDK's own frame handling against a fake gateway on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from adapters.dingtalk import DingTalkAdapter, DingTalkConfig, create_dingtalk_adapter
from adapters.dingtalk.commands import command_text
from core.inbound import InboundKind, InboundMessage
from tests.fakes.dingtalk_gateway import (
    TOPIC_CARD,
    TOPIC_ROBOT,
    FakeDingTalkGateway,
    callback_frame,
    card_callback,
    event_frame,
    robot_message,
    system_frame,
)


@dataclass
class MemoryInbox:
    """InboxPort: unique per (platform, event_key), like the real table."""

    messages: dict[tuple[str, str], InboundMessage] = field(default_factory=dict)
    delay_s: float = 0.0
    failures: int = 0
    calls: int = 0

    async def accept(self, message: InboundMessage) -> bool:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("database is locked")
        key = (message.platform, message.event_key)
        if key in self.messages:
            return False
        self.messages[key] = message
        return True

    def only(self) -> InboundMessage:
        assert len(self.messages) == 1, self.messages
        return next(iter(self.messages.values()))


class MemoryTokens:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        self.values[key] = value

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)


@pytest.fixture
async def gateway(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDingTalkGateway]:
    fake = FakeDingTalkGateway()
    monkeypatch.setenv("DINGTALK_OPENAPI_ENDPOINT", await fake.start())
    yield fake
    await fake.close()


@pytest.fixture
def inbox() -> MemoryInbox:
    return MemoryInbox()


@pytest.fixture
async def adapter(gateway: FakeDingTalkGateway, inbox: MemoryInbox) -> AsyncIterator[DingTalkAdapter]:
    config = DingTalkConfig(
        client_id="ding-app", client_secret="s3cret", reconnect_min_s=0.05, reconnect_max_s=0.2, accept_timeout_s=2
    )
    instance = create_dingtalk_adapter(config, inbox, MemoryTokens())
    await instance.start()
    await gateway.wait_connections(1)
    yield instance
    await instance.stop()
    assert not instance.stream.running


async def test_connection_subscribes_to_robot_card_and_events(adapter: DingTalkAdapter, gateway: FakeDingTalkGateway):
    opened = gateway.opens[0]
    assert opened["clientId"] == "ding-app" and opened["clientSecret"] == "s3cret"
    topics = {(s["type"], s["topic"]) for s in opened["subscriptions"]}
    assert {("CALLBACK", TOPIC_ROBOT), ("CALLBACK", TOPIC_CARD), ("EVENT", "*")} <= topics


async def test_text_message_reaches_inbox_and_ack_follows_commit(
    adapter: DingTalkAdapter, gateway: FakeDingTalkGateway, inbox: MemoryInbox
):
    inbox.delay_s = 0.3
    frame = callback_frame(TOPIC_ROBOT, robot_message(msg_id="m-1", text="  3号线包装机卡料了  "), "m-1")
    await gateway.push(frame)
    await asyncio.sleep(0.15)
    assert gateway.acks_for("m-1") == []  # commit still running: no ack yet
    ack = await gateway.wait_ack("m-1")
    assert ack["code"] == 200
    message = inbox.only()
    assert message.platform == "dingtalk"
    assert message.event_key == "msg:m-1"
    assert message.kind is InboundKind.TEXT
    assert message.text == "3号线包装机卡料了"
    assert message.sender == "user-1"
    assert message.chat_id is None
    assert message.sender_name == "张三"
    assert message.reply_context["conversation_type"] == "1"


async def test_group_message_mention_is_stripped(
    adapter: DingTalkAdapter, gateway: FakeDingTalkGateway, inbox: MemoryInbox
):
    data = robot_message(msg_id="g-1", text="@工单助手 空压机 漏气", conversation_type="2", conversation_id="cid-group")
    await gateway.push(callback_frame(TOPIC_ROBOT, data, "g-1"))
    await gateway.wait_ack("g-1")
    message = inbox.only()
    assert message.text == "空压机 漏气"
    assert message.chat_id == "cid-group"
    assert message.reply_context["conversation_id"] == "cid-group"


async def test_picture_becomes_image_with_download_code(
    adapter: DingTalkAdapter, gateway: FakeDingTalkGateway, inbox: MemoryInbox
):
    await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id="p-1", download_code="dl-123"), "p-1"))
    await gateway.wait_ack("p-1")
    message = inbox.only()
    assert message.kind is InboundKind.IMAGE
    assert message.media_ref == "dl-123"


async def test_card_platform_callback_becomes_card_action(
    adapter: DingTalkAdapter, gateway: FakeDingTalkGateway, inbox: MemoryInbox
):
    data = card_callback(
        out_track_id="card-77",
        user_id="user-9",
        params={"action": "submit", "confirm_cause": "true", "rating": 5},
        action_ids=["submit"],
    )
    await gateway.push(callback_frame(TOPIC_CARD, data, "c-1"))
    assert (await gateway.wait_ack("c-1"))["code"] == 200
    message = inbox.only()
    assert message.kind is InboundKind.CARD_ACTION
    assert (message.card_id, message.action, message.sender) == ("card-77", "submit", "user-9")
    assert message.values == {"confirm_cause": "true", "rating": "5"}
    assert message.event_key.startswith("card:card-77:user-9:submit:")


async def test_action_card_button_text_becomes_card_action(
    adapter: DingTalkAdapter, gateway: FakeDingTalkGateway, inbox: MemoryInbox
):
    text = command_text("5 · 确认签收", "card-1", "sign", {"confirm_cause": "true", "rating": "5"})
    await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id="b-1", text=text), "b-1"))
    await gateway.wait_ack("b-1")
    message = inbox.only()
    assert message.kind is InboundKind.CARD_ACTION
    assert (message.card_id, message.action) == ("card-1", "sign")
    assert message.values == {"confirm_cause": "true", "rating": "5"}


async def test_duplicate_deliveries_are_deduped(
    adapter: DingTalkAdapter, gateway: FakeDingTalkGateway, inbox: MemoryInbox
):
    data = robot_message(msg_id="dup-1", text="你好")
    await gateway.push(callback_frame(TOPIC_ROBOT, data, "frame-a"))
    await gateway.push(callback_frame(TOPIC_ROBOT, data, "frame-b"))  # same msgId, new frame
    callback = card_callback(out_track_id="k", user_id="u", params={"action": "accept"}, action_ids=["accept"])
    await gateway.push(callback_frame(TOPIC_CARD, callback, "frame-c"))
    await gateway.push(callback_frame(TOPIC_CARD, callback, "frame-d"))
    for frame_id in ("frame-a", "frame-b", "frame-c", "frame-d"):
        assert (await gateway.wait_ack(frame_id))["code"] == 200
    assert inbox.calls == 4
    keys = sorted(key for _, key in inbox.messages)
    assert len(keys) == 2
    assert keys[0].startswith("card:k:u:accept:") and keys[1] == "msg:dup-1"


async def test_event_dedupe_key_and_redelivery_on_inbox_failure(
    adapter: DingTalkAdapter, gateway: FakeDingTalkGateway, inbox: MemoryInbox
):
    # Robot message while the inbox is failing: error status, so the platform may redeliver.
    inbox.failures = 1
    await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id="f-1", text="hi"), "f-1"))
    assert (await gateway.wait_ack("f-1"))["code"] == 500
    assert inbox.messages == {}
    await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id="f-1", text="hi"), "f-2"))
    assert (await gateway.wait_ack("f-2"))["code"] == 200
    assert inbox.only().event_key == "msg:f-1"
    # Organisation events are acked (and ignored: none maps to a conversation message).
    await gateway.push(event_frame("user_add_org", {"userId": ["u1"]}, event_id="ev-1", message_id="e-1"))
    assert (await gateway.wait_ack("e-1"))["code"] == 200


async def test_a_burst_of_frames_is_stored_in_order_each_with_its_own_ack(
    adapter: DingTalkAdapter, gateway: FakeDingTalkGateway, inbox: MemoryInbox
):
    """Frames that arrive together cross to the service's loop together (InboxBridge): each is still
    stored in the order it arrived and acked with its own outcome — one failed insert in the burst
    answers "retry" for that frame only."""
    inbox.failures = 1  # the first insert of the burst fails
    burst = [f"burst-{i}" for i in range(20)]
    for frame_id in burst:
        await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id=frame_id, text="底盘有异响"), frame_id))
    codes = [(await gateway.wait_ack(frame_id))["code"] for frame_id in burst]
    assert codes == [500] + [200] * 19
    assert [key for _, key in inbox.messages] == [f"msg:{frame_id}" for frame_id in burst[1:]]


async def test_malformed_frames_and_unknown_topics_are_acked_and_ignored(
    adapter: DingTalkAdapter, gateway: FakeDingTalkGateway, inbox: MemoryInbox
):
    await gateway.push("this is not json")
    await gateway.push(callback_frame(TOPIC_ROBOT, "{not json", "bad-data"))
    await gateway.push(callback_frame(TOPIC_ROBOT, {"msgtype": "text", "msgId": "x"}, "no-text"))
    await gateway.push(callback_frame(TOPIC_CARD, {"outTrackId": "c", "content": "{}", "extension": "{}"}, "bad-card"))
    await gateway.push(callback_frame("/v1.0/unknown/topic", {"a": 1}, "unknown-topic"))
    await gateway.push({"specVersion": "1.0", "type": "MYSTERY", "headers": {"messageId": "mystery"}, "data": "{}"})
    await gateway.push(system_frame("ping", "ping-1"))
    for frame_id in ("bad-data", "no-text", "bad-card", "unknown-topic", "mystery", "ping-1"):
        assert (await gateway.wait_ack(frame_id))["code"] == 200, frame_id
    # The connection survived all of it.
    await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id="ok-1", text="还在吗"), "ok-1"))
    await gateway.wait_ack("ok-1")
    assert inbox.only().text == "还在吗"
    assert gateway.connections == 1


async def test_disconnect_mid_flow_reconnects_and_loses_nothing(
    adapter: DingTalkAdapter, gateway: FakeDingTalkGateway, inbox: MemoryInbox
):
    gateway.redeliver_unacked = True
    inbox.delay_s = 0.3
    await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id="r-1", text="第一条"), "r-1"))
    await asyncio.sleep(0.1)
    await gateway.drop_connection()  # before the ack could be sent
    await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id="r-2", text="第二条"), "r-2"))
    await gateway.wait_connections(2)
    await gateway.wait_ack("r-1")
    await gateway.wait_ack("r-2")
    assert sorted(m.text or "" for m in inbox.messages.values()) == ["第一条", "第二条"]
    assert len(gateway.opens) >= 2


async def test_server_disconnect_topic_makes_client_reconnect(adapter: DingTalkAdapter, gateway: FakeDingTalkGateway):
    await gateway.push(system_frame("disconnect", "bye"))
    await gateway.wait_ack("bye")
    await gateway.wait_connections(2)


async def test_open_connection_failure_is_retried_with_backoff(gateway: FakeDingTalkGateway, inbox: MemoryInbox):
    config = DingTalkConfig(client_id="ding-app", client_secret="", reconnect_min_s=0.05, reconnect_max_s=0.1)
    instance = create_dingtalk_adapter(config, inbox, MemoryTokens())
    await instance.start()
    await gateway.wait_for(lambda: len(gateway.opens) >= 3)
    assert gateway.connections == 0
    await instance.stop()
    assert not instance.stream.running


async def test_test_loop_stays_responsive_while_stream_works(
    adapter: DingTalkAdapter, gateway: FakeDingTalkGateway, inbox: MemoryInbox
):
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - start - 0.01)

    task = asyncio.create_task(ticker())
    try:
        for i in range(30):
            await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id=f"l-{i}", text=f"消息{i}"), f"l-{i}"))
        await gateway.drop_connection()
        await gateway.wait_connections(2)
        await gateway.wait_for(lambda: len(inbox.messages) == 30)
    finally:
        task.cancel()
    assert lags and max(lags) < 0.2, max(lags)


async def test_importing_the_adapter_does_not_import_the_sdk():
    import subprocess
    import sys

    code = "import sys, adapters.dingtalk; print(json.dumps('dingtalk_stream' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False


async def test_slow_commit_answers_retry_but_the_message_is_not_abandoned(gateway: FakeDingTalkGateway):
    inbox = MemoryInbox(delay_s=0.6)
    config = DingTalkConfig(client_id="ding-app", client_secret="s3cret", accept_timeout_s=0.2)
    instance = create_dingtalk_adapter(config, inbox, MemoryTokens())
    await instance.start()
    try:
        await gateway.wait_connections(1)
        await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id="slow-1", text="慢提交"), "slow-1"))
        assert (await gateway.wait_ack("slow-1"))["code"] == 500  # not confirmed in time: "retry"
        await asyncio.sleep(0.6)
        assert inbox.only().event_key == "msg:slow-1"  # ... yet stored: DingTalk may not redeliver it
    finally:
        await instance.stop()
