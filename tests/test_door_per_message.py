"""Per-message work the chat doors no longer do (issue 24): the platform API clients (WeCom,
Feishu; DingTalk's sender uses the same helpers) keep no cookie jar and send the bytes aiohttp's
`json=` would, encoded once, against a real HTTP server on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.feishu.api import FeishuApi
from adapters.feishu.config import FeishuConfig
from adapters.wecom import WeComConfig
from adapters.wecom.api import WeComApi
from adapters.wire import json_body

PAYLOAD = {"touser": "u1", "msgtype": "text", "text": {"content": "您好，已收到报修"}}


class Tokens:
    async def get(self, key: str) -> str | None:
        return "TOKEN"

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        raise AssertionError("no token fetch expected")

    async def delete(self, key: str) -> None:
        raise AssertionError("no token refusal expected")


class Platform:
    """Answers every POST with success and a cookie; records what arrived."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        cookie = request.headers.get("Cookie", "")
        self.seen.append((request.path_qs, request.content_type, await request.read(), cookie))
        response = web.json_response({"errcode": 0, "code": 0, "data": {"message_id": "om_1"}})
        response.set_cookie("session", "s1")
        return response


@pytest.fixture
async def platform() -> AsyncIterator[tuple[Platform, TestServer]]:
    recorder = Platform()
    app = web.Application()
    app.router.add_post("/{tail:.*}", recorder.handle)
    async with TestServer(app) as server:
        yield recorder, server


def _check(recorder: Platform, path_qs: str, session: aiohttp.ClientSession | None) -> None:
    assert session is not None and isinstance(session.cookie_jar, aiohttp.DummyCookieJar)
    assert [(p, t, json.loads(b), c) for p, t, b, c in recorder.seen] == [
        (path_qs, "application/json", PAYLOAD, ""), (path_qs, "application/json", PAYLOAD, "")]
    assert all(b == json.dumps(PAYLOAD).encode() for _, _, b, _ in recorder.seen)  # what json= sent


async def test_wecom_api_posts_json_bytes_without_a_cookie_jar(platform: tuple[Platform, TestServer]) -> None:
    recorder, server = platform
    config = WeComConfig(corp_id="c", agent_id="1000002", secret="s", token="t", encoding_aes_key="a" * 43,
                         api_base=str(server.make_url("/cgi-bin/")))
    api = WeComApi(config, Tokens())
    try:
        for _ in range(2):
            assert (await api.post("message/send", PAYLOAD))["errcode"] == 0
        _check(recorder, "/cgi-bin/message/send?access_token=TOKEN", api._session)
    finally:
        await api.close()


async def test_feishu_api_posts_json_bytes_without_a_cookie_jar(platform: tuple[Platform, TestServer]) -> None:
    recorder, server = platform
    api = FeishuApi(FeishuConfig(app_id="cli_1", app_secret="s", domain=str(server.make_url("")).rstrip("/")),
                    Tokens())
    try:
        for _ in range(2):
            answer: dict[str, Any] = await api.call("POST", "/im/v1/messages", params={"receive_id_type": "open_id"},
                                                    json=PAYLOAD)
            assert answer["code"] == 0
        _check(recorder, "/open-apis/im/v1/messages?receive_id_type=open_id", api._session)
    finally:
        await api.close()


def test_json_body_is_what_aiohttp_json_sends() -> None:
    assert json_body(PAYLOAD) == json.dumps(PAYLOAD).encode("utf-8")
