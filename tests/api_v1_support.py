"""Helpers of the API v1 tests: the real app over real HTTP, clients registered as the CLI does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.cli.api_clients import add_client
from bot.web.app import build_app
from tests.conftest import make_settings, runtime_of

ALL = ["tickets:read", "tickets:write", "masterdata:read", "masterdata:write"]


async def register(client: TestClient, name: str, scopes: list[str] | None = None) -> dict[str, str]:
    """A client's Authorization header (registered through the CLI's own function)."""
    runtime = runtime_of(client)
    async with runtime.uow() as uow:
        token = await add_client(uow, name, scopes or ALL, runtime.clock.now())
        await uow.commit()
    return {"Authorization": f"Bearer {token}"}


def new_ticket(ref: str = "YD-1", phone: str = "13800138000", **extra: Any) -> dict[str, Any]:
    return {"description": "空调不制冷，外机有异响", "customer": {"phone": phone}, "external_ref": ref, **extra}


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    app = build_app(make_settings(database_url, tmp_path, api_token="admin-read-token"))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def sqlite_api(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    app = build_app(make_settings(sqlite_url, tmp_path, api_token="admin-read-token"))
    async with TestClient(TestServer(app)) as client:
        yield client
