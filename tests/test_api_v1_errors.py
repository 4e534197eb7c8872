"""Bad input on /api/v1/: problem+json (RFC 9457) naming what failed — unknown fields 422, a body
over the limit 413, bad JSON 400, unknown paths 404."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bot.web.app import build_app
from tests.api_v1_support import new_ticket, register, sqlite_api  # noqa: F401
from tests.conftest import make_settings, runtime_of

PROBLEM = "application/problem+json"


async def _no_tickets(client: TestClient) -> bool:
    async with runtime_of(client).uow() as uow:
        return await uow.list_tickets(limit=1) == []


async def test_unknown_fields_are_422_naming_them(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "yida")
    body = {**new_ticket(), "colour": "red", "customer": {"phone": "13800138000", "vip": True}}
    resp = await sqlite_api.post("/api/v1/tickets", json=body, headers=auth)
    assert resp.status == 422 and resp.content_type == PROBLEM
    problem = await resp.json()
    assert {e["field"] for e in problem["errors"]} == {"colour", "customer.vip"}
    assert problem["type"].startswith("urn:ticketbot:problem:") and problem["status"] == 422
    assert problem["instance"] == "/api/v1/tickets" and "colour" in problem["detail"]
    missing = await sqlite_api.post("/api/v1/tickets", json={"customer": {"phone": "13800138000"}}, headers=auth)
    assert {e["field"] for e in (await missing.json())["errors"]} == {"description", "external_ref"}
    assert await _no_tickets(sqlite_api)


async def test_bad_json_is_400(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "yida")
    for raw in ("{", "[1, 2]", "null", "\xff", ""):
        resp = await sqlite_api.post("/api/v1/tickets", data=raw.encode("latin-1"), headers=auth)
        assert resp.status == 400 and resp.content_type == PROBLEM, raw
    assert await _no_tickets(sqlite_api)


async def test_body_over_the_limit_is_413(sqlite_url: str, tmp_path: Path) -> None:
    app = build_app(make_settings(sqlite_url, tmp_path, api_max_body_bytes=2048))
    async with TestClient(TestServer(app)) as client:
        auth = await register(client, "yida")
        big = new_ticket(description="故障" * 1500)
        resp = await client.post("/api/v1/tickets", json=big, headers=auth)
        assert resp.status == 413 and resp.content_type == PROBLEM
        assert (await resp.json())["limit"] == 2048

        async def chunks():  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b" " * 1000

        chunked = await client.post("/api/v1/tickets", data=chunks(), headers=auth)
        assert chunked.status == 413
        assert await _no_tickets(client)


async def test_a_body_arriving_in_pieces_is_read_whole(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "yida")
    raw = json.dumps(new_ticket("PIECES-1", description="故障" * 900), ensure_ascii=False).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 700):
            yield raw[start:start + 700]
            await asyncio.sleep(0.01)

    resp = await sqlite_api.post("/api/v1/tickets", data=pieces(), headers=auth)
    assert resp.status == 201, await resp.text()


async def test_unknown_path_and_method_are_problems(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "yida")
    resp = await sqlite_api.get("/api/v1/nothing", headers=auth)
    assert resp.status == 404 and resp.content_type == PROBLEM
    resp = await sqlite_api.delete("/api/v1/tickets", headers=auth)
    assert resp.status == 405 and resp.content_type == PROBLEM
    missing = await sqlite_api.get("/api/v1/tickets/GD-20990101-0001", headers=auth)
    assert missing.status == 404 and missing.content_type == PROBLEM
