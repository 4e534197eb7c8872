"""Bad input through the playground API: clear answers, nothing lost, nothing half-done."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bot.web.app import build_app
from tests.conftest import make_settings
from tests.playground_client import PlaygroundUser


async def ticket_count(client: TestClient) -> int:
    return len(await (await client.get("/api/tickets")).json())


async def test_empty_message_gets_a_helpful_reply(app_client: TestClient) -> None:
    user = PlaygroundUser(app_client, "cust-empty")
    await user.say("   ")
    assert "没有收到内容" in await user.last_text()
    assert await ticket_count(app_client) == 0


async def test_very_long_message_is_refused_politely(app_client: TestClient) -> None:
    user = PlaygroundUser(app_client, "cust-long")
    await user.say("异响" * 5000)
    assert "太长" in await user.last_text()
    assert await ticket_count(app_client) == 0


async def test_emoji_only_message(app_client: TestClient) -> None:
    user = PlaygroundUser(app_client, "cust-emoji")
    await user.say("😀😀🚗🔧")
    reply = await user.last_text()
    assert reply and "Traceback" not in reply


async def test_html_is_stored_as_text(app_client: TestClient) -> None:
    user = PlaygroundUser(app_client, "cust-html")
    await user.say("<script>alert(1)</script> 发动机异响")
    tickets = await (await app_client.get("/api/tickets")).json()
    assert tickets[0]["description"] == "<script>alert(1)</script> 发动机异响"
    page = await (await app_client.get("/playground")).text()
    assert "textContent" in page and "innerHTML" not in page


async def test_malformed_json_is_a_400(app_client: TestClient) -> None:
    for body in ["{not json", "[1,2]", '"text"', ""]:
        resp = await app_client.post("/playground/api/messages", data=body,
                                     headers={"Content-Type": "application/json"})
        assert resp.status == 400, body
        assert "error" in await resp.json()
    assert await ticket_count(app_client) == 0


async def test_bad_user_and_bad_fields(app_client: TestClient) -> None:
    cases = [
        {"text": "异响"},
        {"user": "", "text": "异响"},
        {"user": "a b", "text": "异响"},
        {"user": "x" * 65, "text": "异响"},
        {"user": "ok", "text": 5},
        {"user": "ok"},
        {"user": "ok", "image": "!!notbase64!!"},
        {"user": "ok", "location": {"lat": 200, "lng": 0}},
        {"user": "ok", "location": "here"},
    ]
    for body in cases:
        resp = await app_client.post("/playground/api/messages", json=body)
        assert resp.status == 400, body
    resp = await app_client.post("/playground/api/actions", json={"user": "ok", "card_id": 3})
    assert resp.status == 400
    assert await ticket_count(app_client) == 0


async def test_unknown_identity_has_no_messages(app_client: TestClient) -> None:
    resp = await app_client.get("/playground/api/messages", params={"user": "nobody-here"})
    assert resp.status == 200 and await resp.json() == []
    resp = await app_client.get("/playground/api/messages")
    assert resp.status == 400


async def test_unknown_card_action_is_answered(app_client: TestClient) -> None:
    user = PlaygroundUser(app_client, "cust-card")
    await user.press("offer-doesnotexist", "accept")
    assert "不存在" in await user.last_text()


async def test_oversized_body_is_413(app_client: TestClient) -> None:
    resp = await app_client.post("/playground/api/messages", data=b"x" * 2_000_000,
                                 headers={"Content-Type": "application/json"})
    assert resp.status == 413


async def test_api_token_is_required_when_set(sqlite_url: str, tmp_path: Path) -> None:
    app = build_app(make_settings(sqlite_url, tmp_path, api_token="s3cret"))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/api/tickets")).status == 401
        assert (await client.get("/api/tickets", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get("/api/tickets", headers={"Authorization": "Bearer s3cret"})).status == 200
        assert (await client.get("/healthz")).status == 200


async def test_playground_is_off_on_a_public_bind_by_default(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path, playground=None)
    app = build_app(settings, host="0.0.0.0")
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/playground/api/people")).status == 404
    app = build_app(settings, host="127.0.0.1")
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/playground/api/people")).status == 200
