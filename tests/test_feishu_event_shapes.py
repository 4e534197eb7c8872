"""Authenticated Feishu events of the wrong shape: 400 and one log line, never a 500 or a stored row.

Every case is a real push: encrypted and signed with the Feishu scheme (tests/fakes/feishu_server.py),
POSTed to /feishu/events over HTTP on loopback. The shape is checked at the edge by the pydantic
models of adapters/feishu/schema.py (issue 19, item 6).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.feishu import FeishuConfig, create_feishu_adapter
from core.inbound import InboundMessage
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
Mutation = Callable[[dict[str, Any]], None]


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


@pytest.fixture
async def env() -> AsyncIterator[tuple[TestClient, MemoryInbox]]:
    inbox = MemoryInbox()
    config = FeishuConfig(APP_ID, APP_SECRET, encrypt_key=KEY, verification_token=TOKEN, bot_open_id=BOT_OPEN_ID,
                          domain="http://127.0.0.1:9")
    app = web.Application()
    create_feishu_adapter(config, inbox, MemoryTokens()).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client, inbox


def _event(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["event"]


def _message(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["event"]["message"]


def _set(path: str, value: Any) -> Mutation:
    """Set a dotted path (from the payload's root) to `value`."""

    def mutate(payload: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = payload
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


def _content(message_type: str, content: Any) -> Mutation:
    def mutate(payload: dict[str, Any]) -> None:
        _message(payload)["message_type"] = message_type
        _message(payload)["content"] = content if isinstance(content, str) else json.dumps(content)

    return mutate


GROUP = {"chat_type": "group"}
MESSAGE_CASES: dict[str, Mutation] = {
    "sender_id as a string": _set("event.sender.sender_id", "ou_customer_1"),
    "sender_id as a list": _set("event.sender.sender_id", ["ou_customer_1"]),
    "sender as a string": _set("event.sender", "ou_customer_1"),
    "open_id as a number": _set("event.sender.sender_id.open_id", 12345),
    "open_id of 10,000 characters": _set("event.sender.sender_id.open_id", "o" * 10_000),
    "sender_type as a list": _set("event.sender.sender_type", ["user"]),
    "mentions as a dict": _set("event.message.mentions", {"key": "@_user_1", "id": {"open_id": BOT_OPEN_ID}}),
    "mentions as a list of strings": _set("event.message.mentions", ["@_user_1"]),
    "mention id as a string": _set("event.message.mentions", [{"key": "@_user_1", "id": BOT_OPEN_ID, "name": "x"}]),
    "mention key as a number": _set("event.message.mentions", [{"key": 1, "id": {"open_id": BOT_OPEN_ID}}]),
    "post content as a string": _content("post", {"title": "报修", "content": "空压机异响"}),
    "post paragraph as a string": _content("post", {"title": "报修", "content": ["空压机异响"]}),
    "post node as a string": _content("post", {"title": "报修", "content": [["空压机异响"]]}),
    "post node text as a number": _content("post", {"content": [[{"tag": "text", "text": 42}]]}),
    "post title as an object": _content("post", {"title": {"a": 1}, "content": []}),
    "text as a number": _content("text", {"text": 123}),
    "text content as a JSON list": _content("text", [1, 2]),
    "content not JSON": _content("text", "{"),
    "content as an object": _set("event.message.content", {"text": "你好"}),
    "chat_id as an integer over 2**64": _set("event.message.chat_id", 2**64 + 1),
    "chat_id as a small integer": _set("event.message.chat_id", 5),
    "message_id as a number": _set("event.message.message_id", 7),
    "message_type as a list": _set("event.message.message_type", ["text"]),
    "chat_type as an object": _set("event.message.chat_type", GROUP),
    "image without image_key": _content("image", {}),
    "image_key as a number": _content("image", {"image_key": 99}),
    "latitude nan": _content("location", {"latitude": "nan", "longitude": "121.47"}),
    "longitude inf": _content("location", {"latitude": "31.23", "longitude": "1" * 400}),
    "latitude as a bool": _content("location", {"latitude": True, "longitude": "121.47"}),
    "latitude missing": _content("location", {"longitude": "121.47"}),
    "event_id as a number": _set("header.event_id", 123456),
    "event_type as a number": _set("header.event_type", 5),
    "event_type as a list": _set("header.event_type", ["im.message.receive_v1"]),
    "event as a string": _set("event", "hello"),
    "message as a list": _set("event.message", [1]),
}
CARD_CASES: dict[str, Mutation] = {
    "form_value as a list": _set("event.action.form_value", ["5", "true"]),
    "form_value value as an object": _set("event.action.form_value", {"rating": {"value": "5"}}),
    "form_value list of numbers": _set("event.action.form_value", {"tags": [1, 2]}),
    "form_value value as a number": _set("event.action.form_value", {"rating": 5}),
    "operator as a string": _set("event.operator", "ou_customer_1"),
    "operator open_id as a number": _set("event.operator.open_id", 1),
    "action as a list": _set("event.action", ["accept"]),
    "context as a string": _set("event.context", "om_card_1"),
    "open_message_id as a number": _set("event.context.open_message_id", 10),
    "card_id as a number": _set("event.action.value", {"card_id": 5, "action": "accept"}),
    "action id as a list": _set("event.action.value", {"card_id": "offer-1", "action": ["accept"]}),
    "option as a number": _set("event.action.option", 3),
    "callback token as an object": _set("event.token", {"t": 1}),
}
P2P_CASES: dict[str, Mutation] = {
    "operator_id as a string": _set("event.operator_id", "ou_new"),
    "operator_id open_id as a list": _set("event.operator_id.open_id", ["ou_new"]),
    "p2p chat_id as a number": _set("event.chat_id", 2**70),
}


def _valid(kind: str) -> dict[str, Any]:
    if kind == "message":
        return message_event(TOKEN, content={"text": "3号注塑机漏油"})
    if kind == "card":
        return card_action_event(TOKEN, value={"card_id": "offer-1", "action": "accept"}, form_value={"rating": "5"})
    event = {"chat_id": "oc_p2p", "operator_id": {"open_id": "ou_new"}}
    return event_envelope("im.chat.access_event.bot_p2p_chat_entered_v1", event, TOKEN)


CASES = [("message", name, m) for name, m in MESSAGE_CASES.items()] + [
    ("card", name, m) for name, m in CARD_CASES.items()] + [("p2p", name, m) for name, m in P2P_CASES.items()]


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize(("kind", "name", "mutate"), CASES, ids=[f"{k}: {n}" for k, n, _ in CASES])
async def test_malformed_event_is_a_400_with_one_log_line(
    env: tuple[TestClient, MemoryInbox], caplog: pytest.LogCaptureFixture, kind: str, name: str, mutate: Mutation
) -> None:
    client, inbox = env
    payload = _valid(kind)
    mutate(payload)
    body, headers = signed_event(payload, KEY)
    with caplog.at_level(logging.INFO, logger="adapters.feishu"):
        resp = await client.post("/feishu/events", data=body, headers=headers)
        answer = await resp.json()
    assert resp.status == 400, (name, answer)
    assert inbox.messages == []
    records = [r for r in caplog.records if r.name.startswith("adapters.feishu")]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].levelno == logging.WARNING and "\n" not in records[0].getMessage()


@pytest.mark.parametrize("kind", ["message", "card", "p2p"])
async def test_the_valid_events_behind_the_cases_are_taken(env: tuple[TestClient, MemoryInbox], kind: str) -> None:
    client, inbox = env
    body, headers = signed_event(_valid(kind), KEY)
    assert (await client.post("/feishu/events", data=body, headers=headers)).status == 200
    assert len(inbox.messages) == 1


async def test_fields_feishu_may_add_are_ignored(env: tuple[TestClient, MemoryInbox]) -> None:
    client, inbox = env
    payload = _valid("message")
    payload["event"]["message"]["new_field"] = {"nested": [1, 2, {"x": None}]}
    payload["event"]["sender"]["sender_id"]["new_id"] = 42
    payload["header"]["create_time"] = 1_700_000_000_000
    body, headers = signed_event(payload, KEY)
    assert (await client.post("/feishu/events", data=body, headers=headers)).status == 200
    assert [m.text for m in inbox.messages] == ["3号注塑机漏油"]
