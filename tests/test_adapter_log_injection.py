"""User-controlled strings cannot forge log lines (issue 19, item 12).

Event types, ids, sender ids and texts with a newline (or other control characters) reach the logs of
all three adapters through real requests and frames; every record they produce is one line whose
message shows the control characters escaped. Every adapter module logs through the one logger
factory that guarantees it (adapters.base.adapter_logger).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.base import adapter_logger
from adapters.dingtalk import DingTalkConfig, create_dingtalk_adapter
from adapters.feishu import FeishuConfig, create_feishu_adapter
from adapters.wecom import WeComConfig, create_wecom_adapter
from core.inbound import InboundMessage
from tests.fakes.dingtalk_gateway import TOPIC_ROBOT, FakeDingTalkGateway, callback_frame, event_frame, robot_message
from tests.fakes.feishu_server import (
    APP_ID,
    APP_SECRET,
    BOT_OPEN_ID,
    card_action_event,
    event_envelope,
    signed_event,
)
from tests.fakes.wecom_server import SAMPLE_AES_KEY, SAMPLE_CORP_ID, SAMPLE_TOKEN, CallbackSigner, _xml, text_xml

KEY = "feishu-encrypt-key"
TOKEN = "feishu-verification-token"
FORGED = "\n2026-12-06 10:00:00 CRITICAL bot.runtime: admin password reset\r\x1b[2K"
FORGED_XML = FORGED.replace("\x1b", "")  # XML 1.0 has no ESC
ROOT = Path(__file__).resolve().parent.parent


class MemoryInbox:
    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []

    async def accept(self, message: InboundMessage) -> bool:
        self.messages.append(message)
        return True


class MemoryTokens:
    async def get(self, key: str) -> str | None:
        return None

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        pass

    async def delete(self, key: str) -> None:
        pass


def _assert_one_line_each(caplog: pytest.LogCaptureFixture, logger: str, *, expect: int = 1) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.name.startswith(logger)]
    forged = [m for m in messages if "CRITICAL bot.runtime" in m]
    assert len(forged) >= expect, messages
    for message in messages:
        assert not re.search(r"[\x00-\x1f\x7f\u2028\u2029]", message), message
    assert all("\\n2026-12-06" in m for m in forged), forged  # shown, escaped
    return forged


def test_every_adapter_module_logs_through_the_one_line_logger() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "adapters").rglob("*.py"))
        if path.name != "base.py" and "logging.getLogger(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_the_logger_escapes_control_characters_whatever_the_format(caplog: pytest.LogCaptureFixture) -> None:
    log = adapter_logger("adapters.test_i19")
    with caplog.at_level(logging.INFO, logger="adapters.test_i19"):
        log.info("event %s from %s", "x" + FORGED, "u\u2028v")
        log.warning("plain" + FORGED)
    assert [r.getMessage() for r in caplog.records] == [
        "event x\\n2026-12-06 10:00:00 CRITICAL bot.runtime: admin password reset\\r\\x1b[2K from u\\u2028v",
        "plain\\n2026-12-06 10:00:00 CRITICAL bot.runtime: admin password reset\\r\\x1b[2K",
    ]


# --- Feishu ---


@pytest.fixture
async def feishu() -> AsyncIterator[TestClient]:
    config = FeishuConfig(APP_ID, APP_SECRET, encrypt_key=KEY, verification_token=TOKEN, bot_open_id=BOT_OPEN_ID,
                          domain="http://127.0.0.1:9")
    app = web.Application()
    create_feishu_adapter(config, MemoryInbox(), MemoryTokens()).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_feishu_event_type_with_a_newline(feishu: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    body, headers = signed_event(event_envelope("contact.user.created_v3" + FORGED, {"object": {}}, TOKEN), KEY)
    with caplog.at_level(logging.INFO, logger="adapters.feishu"):
        assert (await feishu.post("/feishu/events", data=body, headers=headers)).status == 200
    [line] = _assert_one_line_each(caplog, "adapters.feishu")
    assert "contact.user.created_v3" in line


async def test_feishu_refusal_naming_a_field_with_a_newline(
    feishu: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    payload = card_action_event(TOKEN, value={"card_id": "c-1", "action": "ok"}, form_value={"a" + FORGED: {"x": 1}})
    body, headers = signed_event(payload, KEY)
    with caplog.at_level(logging.INFO, logger="adapters.feishu"):
        assert (await feishu.post("/feishu/events", data=body, headers=headers)).status == 400
    _assert_one_line_each(caplog, "adapters.feishu")


# --- WeCom ---

WECOM = WeComConfig(corp_id=SAMPLE_CORP_ID, agent_id="1000002", secret="s", token=SAMPLE_TOKEN,
                    encoding_aes_key=SAMPLE_AES_KEY, api_base="http://127.0.0.1:9/cgi-bin/")
SIGNER = CallbackSigner(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_CORP_ID)


@pytest.fixture
async def wecom() -> AsyncIterator[TestClient]:
    adapter = create_wecom_adapter(WECOM, MemoryInbox(), MemoryTokens())
    app = web.Application()
    adapter.add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client
    await adapter.stop()


async def test_wecom_sender_and_message_type_with_newlines(wecom: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    now = int(time.time())
    inner = _xml({"ToUserName": "corp", "FromUserName": "zhangsan" + FORGED_XML, "CreateTime": now,
                  "MsgType": "voice" + FORGED_XML, "MsgId": 1, "AgentID": 1000002})
    query, body = SIGNER.post(inner, timestamp=now)
    with caplog.at_level(logging.INFO, logger="adapters.wecom"):
        assert (await wecom.post("/wecom/callback", params=query, data=body)).status == 200
    [line] = _assert_one_line_each(caplog, "adapters.wecom")
    assert "voice" in line and "zhangsan" in line


async def test_wecom_refusal_quoting_the_agent_id(wecom: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    now = int(time.time())
    inner = text_xml("zhangsan", "你好", msg_id=2, created=now).replace(
        "<AgentID>1000002</AgentID>", f"<AgentID>999{FORGED_XML}</AgentID>")
    query, body = SIGNER.post(inner, timestamp=now)
    with caplog.at_level(logging.INFO, logger="adapters.wecom"):
        assert (await wecom.post("/wecom/callback", params=query, data=body)).status == 403
    _assert_one_line_each(caplog, "adapters.wecom")


# --- DingTalk ---


async def test_dingtalk_event_type_and_message_id_with_newlines(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = FakeDingTalkGateway()
    monkeypatch.setenv("DINGTALK_OPENAPI_ENDPOINT", await gateway.start())
    config = DingTalkConfig(client_id="ding-app", client_secret="s3cret", reconnect_min_s=0.05, reconnect_max_s=0.2)
    adapter = create_dingtalk_adapter(config, MemoryInbox(), MemoryTokens())
    try:
        with caplog.at_level(logging.INFO, logger="adapters.dingtalk"):
            await adapter.start()
            await gateway.wait_connections(1)
            await gateway.push(event_frame("user_add_org" + FORGED, {"userId": ["u1"]}, event_id="ev" + FORGED,
                                           message_id="e-1"))
            await gateway.push(callback_frame(TOPIC_ROBOT, robot_message(msg_id="m" + FORGED, text="你好"), "m-1"))
            await gateway.wait_ack("e-1")
            await gateway.wait_ack("m-1")
            await asyncio.sleep(0.05)
        _assert_one_line_each(caplog, "adapters.dingtalk", expect=2)
    finally:
        await adapter.stop()
        await gateway.close()
