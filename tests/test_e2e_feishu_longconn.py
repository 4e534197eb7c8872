"""Long-connection mode end to end: FEISHU_LONG_CONNECTION=true makes the real app start
lark.ws.Client in its own thread. The fake Feishu speaks lark's own protocol: the SDK asks
POST /callback/ws/endpoint for a websocket URL, connects, and gets events as protobuf frames;
what it stores goes through the same inbox, and replies go out over the Open API as usual.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.runtime import Runtime
from bot.web.app import build_app
from storage.tables import InboxRow
from tests.fakes.feishu_server import APP_ID, APP_SECRET, FakeFeishu, card_action_event, eventually, message_event
from tests.test_e2e_feishu import CUSTOMER, FeishuEnv, OffsetClock, feishu_settings

pytest.importorskip("lark_oapi")

CONNECT_TIMEOUT_S = 60.0  # importing lark_oapi alone takes seconds on a busy machine


def socket_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "feishu-long-connection"]


@pytest.fixture
async def over_socket(database_url: str, tmp_path: Path) -> AsyncIterator[FeishuEnv]:
    fake = FakeFeishu()
    await fake.start()
    settings = feishu_settings(database_url, tmp_path, fake, playground="off", feishu_long_connection=True)
    clock = OffsetClock()
    runtime = Runtime(settings, clock=clock)
    try:
        async with TestClient(TestServer(build_app(settings, runtime=runtime))) as client:
            await asyncio.wait_for(fake.ws_connected.wait(), CONNECT_TIMEOUT_S)
            yield FeishuEnv(client, fake, runtime, clock)
        # The app's cleanup stopped the socket thread and the socket closed.
        assert socket_threads() == []
        await eventually(lambda: fake.ws_disconnects >= 1, what="the long connection to close")
    finally:
        await fake.close()


async def test_long_connection_feeds_the_same_inbox_and_replies_over_the_api(over_socket: FeishuEnv) -> None:
    fake = over_socket.fake
    assert fake.ws_endpoint_requests == [{"AppID": APP_ID, "AppSecret": APP_SECRET}]
    assert [t.daemon for t in socket_threads()] == [True]

    payload = message_event("", content={"text": "中控黑屏"}, sender_open_id=CUSTOMER, event_id="ws-ev-1")
    code, _ = await fake.ws_push(payload)
    assert code == 200
    [ticket] = await eventually(over_socket.tickets, what="the ticket")
    assert ticket.description == "中控黑屏"
    reply = await over_socket.message_to(CUSTOMER, lambda m: "已为您创建工单" in m.text)
    assert ticket.number in reply.text

    code, _ = await fake.ws_push(payload)  # redelivered to this (or another) connection
    assert code == 200
    await over_socket.settled()
    assert len(await over_socket.tickets()) == 1 and await over_socket.count(InboxRow) == 1


async def test_card_callback_over_the_socket_is_answered_with_a_toast(over_socket: FeishuEnv) -> None:
    payload = card_action_event("", value={"card_id": "offer-x", "action": "accept"}, operator_open_id=CUSTOMER,
                                event_id="ws-card-1")
    code, answer = await over_socket.fake.ws_push(payload)
    assert (code, answer) == (200, {"toast": {"type": "info", "content": "已收到，处理中"}})
    await over_socket.settled()
    refusal = await over_socket.message_to(CUSTOMER, lambda m: True)  # no such card: a polite answer
    assert refusal.text == "这张卡片不存在或已失效。"
    assert len(over_socket.fake.sent(CUSTOMER)) == 1
    assert await over_socket.tickets() == []


async def test_no_long_connection_without_the_setting(database_url: str, tmp_path: Path) -> None:
    fake = FakeFeishu()
    await fake.start()
    settings = feishu_settings(database_url, tmp_path, fake, playground="off")
    try:
        async with TestClient(TestServer(build_app(settings))) as client:
            resp = await client.get("/healthz")
            assert resp.status == 200
            await asyncio.sleep(0.3)
            assert socket_threads() == [] and fake.ws_endpoint_requests == []
    finally:
        await fake.close()
