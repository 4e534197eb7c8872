"""POST /feishu/events over real HTTP, with events encrypted and signed exactly as Feishu does."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.feishu import FeishuConfig, create_feishu_adapter
from adapters.feishu.crypto import encrypt, signature
from core.inbound import InboundKind, InboundMessage
from tests.fakes.feishu_server import (
    APP_ID,
    APP_SECRET,
    BOT_OPEN_ID,
    card_action_event,
    event_envelope,
    message_event,
    signed_event,
)

KEY = "feishu-encrypt-key"
TOKEN = "feishu-verification-token"


class MemoryInbox:
    """InboxPort: unique per (platform, event_key), like the real inbox."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], InboundMessage] = {}
        self.fail = False

    async def accept(self, message: InboundMessage) -> bool:
        if self.fail:
            raise RuntimeError("database down")
        key = (message.platform, message.event_key)
        if key in self.rows:
            return False
        self.rows[key] = message
        return True

    @property
    def messages(self) -> list[InboundMessage]:
        return list(self.rows.values())


class MemoryTokens:
    async def get(self, key: str) -> str | None:
        return None

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        pass

    async def delete(self, key: str) -> None:
        pass


Env = tuple[TestClient, MemoryInbox]


async def _client(**overrides: Any) -> AsyncIterator[Env]:
    settings: dict[str, Any] = {
        "encrypt_key": KEY,
        "verification_token": TOKEN,
        "bot_open_id": BOT_OPEN_ID,
        "max_body_bytes": 16 * 1024,
        "domain": "http://127.0.0.1:9",  # never called here
    }
    settings.update(overrides)
    inbox = MemoryInbox()
    adapter = create_feishu_adapter(FeishuConfig(APP_ID, APP_SECRET, **settings), inbox, MemoryTokens())
    app = web.Application()
    adapter.add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client, inbox


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async for pair in _client():
        yield pair


async def post(client: TestClient, payload: dict[str, Any], **kwargs: Any) -> tuple[int, Any]:
    body, headers = signed_event(payload, KEY, **kwargs)
    resp = await client.post("/feishu/events", data=body, headers=headers)
    return resp.status, await resp.json()


# --- url_verification ---


async def test_url_verification_plain(env: Env) -> None:
    client, inbox = env
    resp = await client.post("/feishu/events", json={"challenge": "ch-1", "token": TOKEN, "type": "url_verification"})
    assert resp.status == 200
    assert await resp.json() == {"challenge": "ch-1"}
    assert inbox.messages == []


async def test_url_verification_encrypted_unsigned(env: Env) -> None:
    client, _ = env
    payload = {"challenge": "ch-2", "token": TOKEN, "type": "url_verification"}
    body = {"encrypt": encrypt(json.dumps(payload), KEY)}
    resp = await client.post("/feishu/events", json=body)
    assert (resp.status, await resp.json()) == (200, {"challenge": "ch-2"})


async def test_url_verification_with_wrong_token_is_refused(env: Env) -> None:
    client, _ = env
    resp = await client.post("/feishu/events", json={"challenge": "x", "token": "wrong", "type": "url_verification"})
    assert resp.status == 401


# --- inbound kinds ---


async def test_text_message_p2p(env: Env) -> None:
    client, inbox = env
    status, answer = await post(client, message_event(TOKEN, content={"text": "3号注塑机漏油"}, event_id="ev-text"))
    assert (status, answer) == (200, {"msg": "success"})
    [msg] = inbox.messages
    assert msg.platform == "feishu" and msg.event_key == "ev-text"
    assert msg.kind is InboundKind.TEXT and msg.text == "3号注塑机漏油"
    assert msg.sender == "ou_customer_1"
    assert msg.chat_id is None
    assert msg.reply_context == {"message_id": "om_in_1", "chat_id": "oc_chat_1", "chat_type": "p2p"}


async def test_image_message_gives_a_media_ref(env: Env) -> None:
    client, inbox = env
    payload = message_event(TOKEN, message_type="image", content={"image_key": "img_v3_abc"}, message_id="om_img")
    assert (await post(client, payload))[0] == 200
    [msg] = inbox.messages
    assert msg.kind is InboundKind.IMAGE and msg.media_ref == "om_img:img_v3_abc"


async def test_location_message(env: Env) -> None:
    client, inbox = env
    content = {"name": "二号车间", "longitude": "121.4737", "latitude": "31.2304"}
    assert (await post(client, message_event(TOKEN, message_type="location", content=content)))[0] == 200
    [msg] = inbox.messages
    assert msg.kind is InboundKind.LOCATION
    assert (msg.lat, msg.lng, msg.text) == (31.2304, 121.4737, "二号车间")


async def test_post_message_becomes_text(env: Env) -> None:
    client, inbox = env
    content = {"title": "报修", "content": [[{"tag": "text", "text": "空压机"}, {"tag": "text", "text": "异响"}]]}
    assert (await post(client, message_event(TOKEN, message_type="post", content=content)))[0] == 200
    assert inbox.messages[0].text == "报修\n空压机异响"


async def test_group_message_mentioning_the_bot(env: Env) -> None:
    client, inbox = env
    mentions = [
        {"key": "@_user_1", "id": {"open_id": BOT_OPEN_ID}, "name": "工单助手", "tenant_key": "t"},
        {"key": "@_user_2", "id": {"open_id": "ou_zhang", "user_id": "zhang"}, "name": "张三", "tenant_key": "t"},
    ]
    payload = message_event(
        TOKEN,
        chat_type="group",
        chat_id="oc_group",
        mentions=mentions,
        content={"text": "@_user_1 冷却塔停机了 请 @_user_2 看看"},
    )
    assert (await post(client, payload))[0] == 200
    [msg] = inbox.messages
    assert msg.text == "冷却塔停机了 请 @张三 看看"
    assert msg.chat_id == "oc_group"


@pytest.mark.parametrize(
    "mentions",
    [[], [{"key": "@_user_1", "id": {"open_id": "ou_zhang", "user_id": "zhang"}, "name": "张三"}]],
)
async def test_group_message_without_bot_mention_is_ignored(env: Env, mentions: list[dict[str, Any]]) -> None:
    client, inbox = env
    payload = message_event(TOKEN, chat_type="group", mentions=mentions, content={"text": "@_user_1 吃饭了吗"})
    assert await post(client, payload) == (200, {"msg": "success"})
    assert inbox.messages == []


async def test_messages_from_bots_are_ignored(env: Env) -> None:
    client, inbox = env
    payload = message_event(TOKEN)
    payload["event"]["sender"]["sender_type"] = "app"
    assert (await post(client, payload))[0] == 200
    assert inbox.messages == []


async def test_p2p_chat_entered_is_an_enter(env: Env) -> None:
    client, inbox = env
    event = {"chat_id": "oc_p2p", "operator_id": {"open_id": "ou_new"}, "last_message_id": ""}
    payload = event_envelope("im.chat.access_event.bot_p2p_chat_entered_v1", event, TOKEN, "ev-enter")
    assert (await post(client, payload))[0] == 200
    [msg] = inbox.messages
    assert (msg.kind, msg.sender, msg.event_key) == (InboundKind.ENTER, "ou_new", "ev-enter")


async def test_card_action_with_form_value(env: Env) -> None:
    client, inbox = env
    payload = card_action_event(
        TOKEN,
        value={"card_id": "card-signoff-7", "action": "confirm"},
        form_value={"cause_told": True, "parts_ok": False, "rating": "5", "remark": "很快", "tags": ["a", "b"]},
        operator_open_id="ou_customer_9",
        open_message_id="om_card_7",
        callback_token="c-tok-7",
        event_id="ev-card-7",
    )
    status, answer = await post(client, payload)
    assert status == 200
    assert answer == {"toast": {"type": "info", "content": "已收到，处理中"}}
    [msg] = inbox.messages
    assert msg.kind is InboundKind.CARD_ACTION
    assert (msg.card_id, msg.action, msg.sender) == ("card-signoff-7", "confirm", "ou_customer_9")
    assert msg.event_key == "ev-card-7"
    assert msg.values == {"cause_told": "true", "parts_ok": "false", "rating": "5", "remark": "很快", "tags": "a,b"}
    assert msg.reply_context["open_message_id"] == "om_card_7"
    assert msg.reply_context["callback_token"] == "c-tok-7"
    assert msg.reply_context["card_id"] == "card-signoff-7"


async def test_card_button_without_event_id_dedupes_on_callback_token(env: Env) -> None:
    client, inbox = env
    payload = card_action_event(TOKEN, value={"card_id": "offer-1", "action": "accept"}, callback_token="c-abc")
    del payload["header"]["event_id"]
    assert (await post(client, payload))[0] == 200
    assert (await post(client, payload))[0] == 200
    [msg] = inbox.messages
    assert (msg.event_key, msg.action, msg.values) == ("card:c-abc", "accept", {})


async def test_card_action_of_a_foreign_card_is_acknowledged_and_ignored(env: Env) -> None:
    client, inbox = env
    assert await post(client, card_action_event(TOKEN, value={"something": "else"})) == (200, {})
    assert inbox.messages == []


# --- bad input ---


async def test_wrong_signature_is_refused(env: Env) -> None:
    client, inbox = env
    body, headers = signed_event(message_event(TOKEN), KEY)
    headers["X-Lark-Signature"] = signature(headers["X-Lark-Request-Timestamp"], "other", KEY, body)
    resp = await client.post("/feishu/events", data=body, headers=headers)
    assert resp.status == 401
    assert inbox.messages == []


async def test_unsigned_event_is_refused_when_an_encrypt_key_is_set(env: Env) -> None:
    client, inbox = env
    body = {"encrypt": encrypt(json.dumps(message_event(TOKEN)), KEY)}
    resp = await client.post("/feishu/events", json=body)
    assert resp.status == 401
    assert inbox.messages == []


async def test_wrong_verification_token_is_refused(env: Env) -> None:
    client, inbox = env
    status, _ = await post(client, message_event("not-the-token"))
    assert status == 401
    assert inbox.messages == []


async def test_stale_timestamp_is_refused(env: Env) -> None:
    client, inbox = env
    status, answer = await post(client, message_event(TOKEN), timestamp=str(int(time.time()) - 3600))
    assert status == 401 and answer["msg"] == "请求已过期"
    assert inbox.messages == []


async def test_undecryptable_body_is_a_400(env: Env) -> None:
    client, inbox = env
    for encrypted in ("%%%not-base64%%%", encrypt(json.dumps(message_event(TOKEN)), "other key", iv=bytes(16))):
        body = json.dumps({"encrypt": encrypted}).encode()
        ts, nonce = str(int(time.time())), "n"
        headers = {
            "X-Lark-Request-Timestamp": ts,
            "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": signature(ts, nonce, KEY, body),
        }
        resp = await client.post("/feishu/events", data=body, headers=headers)
        assert resp.status == 400
    assert inbox.messages == []


async def test_bad_json_is_a_400(env: Env) -> None:
    client, inbox = env
    body = b"{not json"
    ts, nonce = str(int(time.time())), "n"
    headers = {
        "X-Lark-Request-Timestamp": ts,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": signature(ts, nonce, KEY, body),
    }
    assert (await client.post("/feishu/events", data=body, headers=headers)).status == 400
    assert inbox.messages == []


async def test_unknown_event_type_is_acknowledged_ignored_and_logged(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    client, inbox = env
    payload = event_envelope("contact.user.created_v3", {"object": {}}, TOKEN)
    with caplog.at_level(logging.INFO, logger="adapters.feishu.webhook"):
        assert await post(client, payload) == (200, {"msg": "success"})
    assert inbox.messages == []
    assert "contact.user.created_v3" in caplog.text


async def test_duplicate_event_id_is_stored_once(env: Env) -> None:
    client, inbox = env
    payload = message_event(TOKEN, event_id="ev-dup")
    assert (await post(client, payload))[0] == 200
    assert (await post(client, payload))[0] == 200  # Feishu's re-push: same event_id, new signature
    assert len(inbox.messages) == 1


async def test_oversized_body_is_a_413(env: Env) -> None:
    client, inbox = env
    big = message_event(TOKEN, content={"text": "漏" * 20_000})
    status, _ = await post(client, big)
    assert status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(40):
            yield b"x" * 1024

    resp = await client.post("/feishu/events", data=chunks())
    assert resp.status == 413
    assert inbox.messages == []


async def test_lower_case_header_names_work(env: Env) -> None:
    client, inbox = env
    body, headers = signed_event(message_event(TOKEN), KEY)
    resp = await client.post("/feishu/events", data=body, headers={k.lower(): v for k, v in headers.items()})
    assert resp.status == 200
    assert len(inbox.messages) == 1


async def test_inbox_failure_is_a_500_so_feishu_pushes_again(env: Env) -> None:
    client, inbox = env
    inbox.fail = True
    body, headers = signed_event(message_event(TOKEN), KEY)
    assert (await client.post("/feishu/events", data=body, headers=headers)).status == 500


async def test_plaintext_mode_with_only_a_verification_token() -> None:
    async for client, inbox in _client(encrypt_key=""):
        resp = await client.post("/feishu/events", json=message_event(TOKEN, event_id="ev-plain"))
        assert resp.status == 200
        resp = await client.post("/feishu/events", json=message_event("wrong"))
        assert resp.status == 401
        assert [m.event_key for m in inbox.messages] == ["ev-plain"]


async def test_no_key_and_no_token_refuses_events() -> None:
    async for client, inbox in _client(encrypt_key="", verification_token=""):
        resp = await client.post("/feishu/events", json=message_event(""))
        assert resp.status == 401
        assert inbox.messages == []
