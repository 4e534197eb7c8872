"""/api/ with API_TOKEN: the Authorization scheme is case-insensitive (RFC 9110 §11.1), the token is not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.web.app import build_app
from tests.conftest import make_settings

TOKEN = "s3cret-Token"


@pytest.fixture
async def client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    app = build_app(make_settings(sqlite_url, tmp_path, api_token=TOKEN))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"bEaReR {TOKEN}", f"Bearer   {TOKEN}"],
)
async def test_any_case_of_the_bearer_scheme_is_accepted(client: TestClient, header: str) -> None:
    resp = await client.get("/api/tickets", headers={"Authorization": header})
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN.lower()}",  # the token itself is compared exactly
        f"Bearer {TOKEN}x",
        f"Bearer{TOKEN}",
        f"Token {TOKEN}",
        f"Bearer {TOKEN} extra",
        "Bearer \u00e9\u00e9",  # not ASCII: refused, not a crash
    ],
)
async def test_anything_else_is_refused(client: TestClient, header: str) -> None:
    resp = await client.get("/api/tickets", headers={"Authorization": header})
    assert resp.status == 401
    assert (await client.get("/healthz")).status == 200
