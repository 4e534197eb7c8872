"""Long-connection mode: events go through lark's own dispatcher (as the websocket client
calls it) into our shared translation and the same inbox, from another thread."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from adapters.feishu import FeishuConfig
from adapters.feishu.events import translate
from adapters.feishu.longconn import FeishuLongConnection
from core.inbound import InboundKind, InboundMessage
from tests.fakes.feishu_server import (
    APP_ID,
    APP_SECRET,
    BOT_OPEN_ID,
    FakeFeishu,
    card_action_event,
    eventually,
    message_event,
)

pytest.importorskip("lark_oapi")


class MemoryInbox:
    def __init__(self) -> None:
        self.rows: dict[str, InboundMessage] = {}
        self.threads: set[str] = set()

    async def accept(self, message: InboundMessage) -> bool:
        import threading

        self.threads.add(threading.current_thread().name)
        if message.event_key in self.rows:
            return False
        self.rows[message.event_key] = message
        return True


CONFIG = FeishuConfig(APP_ID, APP_SECRET, bot_open_id=BOT_OPEN_ID, long_connection=True)


async def dispatch(connection: FeishuLongConnection, payload: dict[str, object]) -> object:
    """What lark.ws.Client does with each data frame, in its own thread."""
    handler = connection.build_event_handler(asyncio.get_running_loop())
    raw = json.dumps(payload, ensure_ascii=False).encode()
    return await asyncio.to_thread(handler._do_without_validation, raw)


async def test_message_event_translates_like_the_http_path() -> None:
    inbox = MemoryInbox()
    connection = FeishuLongConnection(CONFIG, inbox, lambda: BOT_OPEN_ID)
    payload = message_event("", content={"text": "空压机异响"}, event_id="ws-ev-1")
    assert await dispatch(connection, payload) is None
    assert inbox.rows["ws-ev-1"] == translate(payload, BOT_OPEN_ID)
    assert inbox.rows["ws-ev-1"].kind is InboundKind.TEXT
    assert inbox.threads == {"MainThread"}  # stored on the app loop, not in the socket thread


async def test_image_and_group_rules_are_the_same() -> None:
    inbox = MemoryInbox()
    connection = FeishuLongConnection(CONFIG, inbox, lambda: BOT_OPEN_ID)
    await dispatch(
        connection,
        message_event("", message_type="image", content={"image_key": "img_1"}, message_id="om_9", event_id="ws-img"),
    )
    await dispatch(connection, message_event("", chat_type="group", content={"text": "闲聊"}, event_id="ws-grp"))
    assert inbox.rows["ws-img"].media_ref == "om_9:img_1"
    assert "ws-grp" not in inbox.rows


async def test_card_action_answers_with_a_toast() -> None:
    inbox = MemoryInbox()
    connection = FeishuLongConnection(CONFIG, inbox, lambda: BOT_OPEN_ID)
    payload = card_action_event(
        "",
        value={"card_id": "card-s", "action": "confirm"},
        form_value={"cause_told": True, "parts_ok": True, "rating": "4"},
        event_id="ws-card",
    )
    response = await dispatch(connection, payload)
    from lark_oapi.core.json import JSON

    assert json.loads(JSON.marshal(response) or "{}") == {"toast": {"type": "info", "content": "已收到，处理中"}}
    message = inbox.rows["ws-card"]
    assert message == translate(payload, BOT_OPEN_ID)
    assert message.values == {"cause_told": "true", "parts_ok": "true", "rating": "4"}


async def test_start_and_stop_do_not_block_the_app_loop() -> None:
    fake = FakeFeishu()  # the SDK connects to its socket (or is still importing when stop() comes)
    await fake.start()
    try:
        config = FeishuConfig(APP_ID, APP_SECRET, domain=fake.url, long_connection=True)
        connection = FeishuLongConnection(config, MemoryInbox(), lambda: "")
        await connection.start()
        await asyncio.sleep(0.5)  # app loop stays responsive while the thread imports and connects
        await connection.stop()
        assert connection._thread is not None and not connection._thread.is_alive()
        hasty = FeishuLongConnection(config, MemoryInbox(), lambda: "")
        await hasty.start()
        await hasty.stop()  # right away: while the thread may still be importing or connecting
        assert hasty._thread is not None and not hasty._thread.is_alive()
    finally:
        await fake.close()


async def test_refused_credentials_end_the_thread_with_a_logged_error(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeFeishu()
    await fake.start()
    try:
        config = FeishuConfig(APP_ID, "not-the-secret", domain=fake.url, long_connection=True)
        connection = FeishuLongConnection(config, MemoryInbox(), lambda: "")
        with caplog.at_level(logging.ERROR, logger="adapters.feishu.longconn"):
            await connection.start()
            thread = connection._thread
            assert thread is not None
            await eventually(lambda: not thread.is_alive(), 60, "the socket thread to give up")
        assert "飞书长连接异常退出" in caplog.text
        assert fake.ws_endpoint_requests == [{"AppID": APP_ID, "AppSecret": "not-the-secret"}]
        assert fake.ws_connections == 0
        await connection.stop()
    finally:
        await fake.close()
