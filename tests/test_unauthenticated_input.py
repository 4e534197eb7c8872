"""What anyone can send at the platform edges: answered 4xx (or acked and ignored), never a 500 or a crash.

Feishu and WeCom over real HTTP on loopback, signed with the platforms' real schemes; DingTalk frames
through the fake Stream gateway. Timestamps are integers only (issue 19, items 5 and 7).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.dingtalk import DingTalkAdapter, DingTalkConfig, create_dingtalk_adapter
from adapters.feishu import FeishuConfig, create_feishu_adapter
from adapters.feishu.crypto import encrypt, signature
from adapters.wecom import WeComConfig, create_wecom_adapter
from adapters.wire import UnsafePayload, loads_bounded
from core.inbound import InboundMessage
from tests.fakes.dingtalk_gateway import TOPIC_ROBOT, FakeDingTalkGateway, callback_frame, robot_message
from tests.fakes.feishu_server import APP_ID, APP_SECRET, BOT_OPEN_ID, message_event, signed_event
from tests.fakes.wecom_server import SAMPLE_AES_KEY, SAMPLE_CORP_ID, SAMPLE_TOKEN, CallbackSigner, text_xml

KEY = "feishu-encrypt-key"
TOKEN = "feishu-verification-token"
DEEP = b"[" * 100_000
HUGE_NUMBERS = [b'{"a": 1e400}', b'{"a": -1e400}', b'{"a": NaN}', b'{"a": Infinity}', b'{"a": ' + b"9" * 4000 + b"}"]
BAD_TIMESTAMPS = ["nan", "NaN", "inf", "1e9", "+{now}", " {now}", "{now}.0", "{now}_0", "9" * 4000, "-1", "",
                  "\uff11\uff17\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff10"]  # full-width digits


class MemoryInbox:
    def __init__(self) -> None:
        self.messages: dict[tuple[str, str], InboundMessage] = {}

    async def accept(self, message: InboundMessage) -> bool:
        key = (message.platform, message.event_key)
        if key in self.messages:
            return False
        self.messages[key] = message
        return True


class MemoryTokens:
    async def get(self, key: str) -> str | None:
        return None

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        pass

    async def delete(self, key: str) -> None:
        pass


def _timestamp(template: str) -> str:
    return template.replace("{now}", str(int(time.time())))


# --- the bounded parser itself ---


@pytest.mark.parametrize("raw", [DEEP, b"{" * 50_000, b'{"a":' * 33 + b"1" + b"}" * 33, *HUGE_NUMBERS, b"\xff\xfe"])
def test_bounded_json_refuses_depth_huge_numbers_and_nan(raw: bytes) -> None:
    with pytest.raises(UnsafePayload):
        loads_bounded(raw)


def test_bounded_json_reads_ordinary_payloads_and_brackets_inside_strings() -> None:
    text = json.dumps({"a": [[{"b": "[[[[{{{{" * 100}]], "n": 2**63, "f": 31.2304, "ok": True})
    assert loads_bounded(text) == json.loads(text)
    assert loads_bounded(b'{"a":' * 32 + b"1" + b"}" * 32) is not None


# --- Feishu ---


@pytest.fixture
async def feishu() -> AsyncIterator[tuple[TestClient, MemoryInbox]]:
    inbox = MemoryInbox()
    config = FeishuConfig(APP_ID, APP_SECRET, encrypt_key=KEY, verification_token=TOKEN, bot_open_id=BOT_OPEN_ID,
                          domain="http://127.0.0.1:9")
    app = web.Application()
    create_feishu_adapter(config, inbox, MemoryTokens()).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client, inbox


def _signed_headers(body: bytes, timestamp: str | None = None) -> dict[str, str]:
    ts = timestamp if timestamp is not None else str(int(time.time()))
    return {"X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": "n-1",
            "X-Lark-Signature": signature(ts, "n-1", KEY, body)}


@pytest.mark.parametrize("body", [DEEP, b"{" * 100_000, *HUGE_NUMBERS])
async def test_feishu_unsigned_hostile_body_is_4xx(feishu: tuple[TestClient, MemoryInbox], body: bytes) -> None:
    client, inbox = feishu
    resp = await client.post("/feishu/events", data=body, headers={"Content-Type": "application/json"})
    assert 400 <= resp.status < 500
    assert inbox.messages == {}


@pytest.mark.parametrize("body", [DEEP, *HUGE_NUMBERS])
async def test_feishu_signed_hostile_body_is_400(feishu: tuple[TestClient, MemoryInbox], body: bytes) -> None:
    client, inbox = feishu
    resp = await client.post("/feishu/events", data=body, headers=_signed_headers(body))
    assert resp.status == 400
    assert inbox.messages == {}


@pytest.mark.parametrize("inner", ["[" * 100_000, '{"schema": "2.0", "header": {"n": 1e999}}', '{"a": NaN}',
                                   '{"header": ' + "9" * 4000 + "}"])
async def test_feishu_hostile_json_inside_the_encryption_is_400(
    feishu: tuple[TestClient, MemoryInbox], inner: str
) -> None:
    client, inbox = feishu
    body = json.dumps({"encrypt": encrypt(inner, KEY)}).encode()
    resp = await client.post("/feishu/events", data=body, headers=_signed_headers(body))
    assert resp.status == 400
    assert inbox.messages == {}


async def test_feishu_hostile_message_content_is_400(feishu: tuple[TestClient, MemoryInbox]) -> None:
    client, inbox = feishu
    payload = message_event(TOKEN)
    payload["event"]["message"]["content"] = "[" * 100_000
    body, headers = signed_event(payload, KEY)
    assert (await client.post("/feishu/events", data=body, headers=headers)).status == 400
    assert inbox.messages == {}


async def test_feishu_unsigned_body_is_not_parsed_beyond_a_url_verification(
    feishu: tuple[TestClient, MemoryInbox]
) -> None:
    """With an encrypt key set only url_verification may come unsigned, and it is small."""
    client, _inbox = feishu
    body = json.dumps({"type": "url_verification", "token": TOKEN, "challenge": "c" * 10_000}).encode()
    assert (await client.post("/feishu/events", data=body)).status == 401
    small = {"type": "url_verification", "token": TOKEN, "challenge": "ch-1"}
    resp = await client.post("/feishu/events", json=small)
    assert (resp.status, await resp.json()) == (200, {"challenge": "ch-1"})


@pytest.mark.parametrize("template", BAD_TIMESTAMPS)
async def test_feishu_timestamp_must_be_an_integer(feishu: tuple[TestClient, MemoryInbox], template: str) -> None:
    """A correct signature over a timestamp like "nan" is still refused: freshness compares integers."""
    client, inbox = feishu
    body, headers = signed_event(message_event(TOKEN), KEY, timestamp=_timestamp(template) or None)
    if not _timestamp(template):
        headers["X-Lark-Request-Timestamp"] = ""
        headers["X-Lark-Signature"] = signature("", headers["X-Lark-Request-Nonce"], KEY, body)
    resp = await client.post("/feishu/events", data=body, headers=headers)
    assert resp.status == 401
    assert inbox.messages == {}


async def test_feishu_integer_timestamp_still_works(feishu: tuple[TestClient, MemoryInbox]) -> None:
    client, inbox = feishu
    body, headers = signed_event(message_event(TOKEN), KEY)
    assert (await client.post("/feishu/events", data=body, headers=headers)).status == 200
    assert len(inbox.messages) == 1


# --- WeCom ---

WECOM = WeComConfig(corp_id=SAMPLE_CORP_ID, agent_id="1000002", secret="s", token=SAMPLE_TOKEN,
                    encoding_aes_key=SAMPLE_AES_KEY, api_base="http://127.0.0.1:9/cgi-bin/")
SIGNER = CallbackSigner(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_CORP_ID)


@pytest.fixture
async def wecom() -> AsyncIterator[tuple[TestClient, MemoryInbox]]:
    inbox = MemoryInbox()
    adapter = create_wecom_adapter(WECOM, inbox, MemoryTokens())
    app = web.Application()
    adapter.add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client, inbox
    await adapter.stop()


@pytest.mark.parametrize("template", BAD_TIMESTAMPS)
async def test_wecom_timestamp_must_be_an_integer(wecom: tuple[TestClient, MemoryInbox], template: str) -> None:
    client, inbox = wecom
    timestamp = _timestamp(template)
    post = await client.post("/wecom/callback", params={"msg_signature": "a" * 40, "timestamp": timestamp,
                                                        "nonce": "1"}, data=b"<xml><Encrypt>x</Encrypt></xml>")
    verify = await client.get("/wecom/callback", params={"msg_signature": "a" * 40, "timestamp": timestamp,
                                                         "nonce": "1", "echostr": "abc"})
    assert post.status == 400 and verify.status == 400
    assert inbox.messages == {}


async def test_wecom_signed_callback_with_a_padded_timestamp_is_refused(wecom: tuple[TestClient, MemoryInbox]) -> None:
    """The signature covers the timestamp text, so only an integer text signs a callback we take."""
    client, inbox = wecom
    now = int(time.time())
    query, body = SIGNER.post(text_xml("zhangsan", "你好", msg_id=1, created=now), timestamp=now)
    assert (await client.post("/wecom/callback", params=query, data=body)).status == 200
    padded = {**query, "timestamp": f" {now}"}
    assert (await client.post("/wecom/callback", params=padded, data=body)).status == 400
    assert len(inbox.messages) == 1


# --- DingTalk stream ---


@pytest.fixture
async def gateway(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDingTalkGateway]:
    fake = FakeDingTalkGateway()
    monkeypatch.setenv("DINGTALK_OPENAPI_ENDPOINT", await fake.start())
    yield fake
    await fake.close()


@pytest.fixture
async def dingtalk(gateway: FakeDingTalkGateway) -> AsyncIterator[tuple[DingTalkAdapter, MemoryInbox]]:
    inbox = MemoryInbox()
    config = DingTalkConfig(client_id="ding-app", client_secret="s3cret", reconnect_min_s=0.05, reconnect_max_s=0.2,
                            accept_timeout_s=2)
    adapter = create_dingtalk_adapter(config, inbox, MemoryTokens())
    await adapter.start()
    await gateway.wait_connections(1)
    yield adapter, inbox
    await adapter.stop()


def _robot(msg_id: str, **changes: Any) -> dict[str, Any]:
    data = robot_message(msg_id=msg_id, text="你好")
    data.update(changes)
    return data


async def test_dingtalk_hostile_frames_are_dropped_or_acked_and_the_stream_goes_on(
    gateway: FakeDingTalkGateway, dingtalk: tuple[DingTalkAdapter, MemoryInbox], caplog: pytest.LogCaptureFixture
) -> None:
    adapter, inbox = dingtalk
    await gateway.push("[" * 100_000)  # no messageId to ack: dropped
    await gateway.push('{"specVersion": "1.0", "type": "CALLBACK", "headers": {"messageId": "huge"}, "n": 1e999}')
    acked = {
        "deep-data": callback_frame(TOPIC_ROBOT, "[" * 100_000, "deep-data"),
        "inf-data": callback_frame(TOPIC_ROBOT, '{"msgId": "x", "createAt": 1e999}', "inf-data"),
        "nan-expiry": callback_frame(TOPIC_ROBOT, _robot("m-nan", sessionWebhookExpiredTime="nan"), "nan-expiry"),
        "float-expiry": callback_frame(TOPIC_ROBOT, _robot("m-flt", sessionWebhookExpiredTime=1.5e12), "float-expiry"),
        "big-expiry": callback_frame(TOPIC_ROBOT, _robot("m-big", sessionWebhookExpiredTime=10**30), "big-expiry"),
        "bool-expiry": callback_frame(TOPIC_ROBOT, _robot("m-bool", sessionWebhookExpiredTime=True), "bool-expiry"),
        "nan-time": {**callback_frame(TOPIC_ROBOT, _robot("m-t"), "nan-time")},
    }
    acked["nan-time"]["headers"] = {**acked["nan-time"]["headers"], "time": "nan"}
    for frame in acked.values():
        await gateway.push(frame)
    for frame_id in acked:
        assert (await gateway.wait_ack(frame_id))["code"] == 200, frame_id  # taken: not redelivered
    # Nothing crashed: the same connection takes the next message.
    await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id="ok-1", text="还在吗"), "ok-1"))
    assert (await gateway.wait_ack("ok-1"))["code"] == 200
    assert [m.text for m in inbox.messages.values()] == ["还在吗"]
    assert gateway.connections == 1 and adapter.stream.running
    await asyncio.sleep(0)
    assert "Traceback" not in caplog.text and "no ack sent" not in caplog.text
