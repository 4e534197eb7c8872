"""API v1 clients: the CLI contract, hashed tokens, rotate/revoke, scopes (403), no or bad token
(401), API_TOKEN as an admin read token, per-client rate limits (429 with Retry-After)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bot.api_v1.auth import RateLimiter
from bot.api_v1.problems import ProblemError
from bot.web.app import build_app
from tests.api_v1_support import new_ticket, register, sqlite_api  # noqa: F401
from tests.conftest import make_settings, runtime_of

ROOT = Path(__file__).resolve().parents[1]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "bot.cli", "api-client", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_add_prints_name_scopes_token_once_and_stores_only_a_hash(tmp_path: Path) -> None:
    """CONTRACT: `ticketbot api-client add NAME --scopes S1,S2` prints one JSON object."""
    done = _cli(tmp_path, "add", "yida", "--scopes", "tickets:write,masterdata:read")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"name", "scopes", "token"}
    assert body["name"] == "yida" and body["scopes"] == ["masterdata:read", "tickets:write"]
    token = body["token"]
    assert len(token) >= 40
    raw = (tmp_path / "cli.db").read_bytes()
    assert token.encode() not in raw and hashlib.sha256(token.encode()).hexdigest().encode() in raw
    listed = json.loads(_cli(tmp_path, "list").stdout)
    assert [c["name"] for c in listed] == ["yida"] and "token" not in json.dumps(listed)
    assert _cli(tmp_path, "add", "yida", "--scopes", "tickets:read").returncode == 1  # exists
    assert _cli(tmp_path, "add", "bad name", "--scopes", "tickets:read").returncode == 1
    bad_scope = _cli(tmp_path, "add", "k3", "--scopes", "tickets:everything")
    assert bad_scope.returncode == 1 and "tickets:everything" in bad_scope.stderr
    rotated = json.loads(_cli(tmp_path, "rotate", "yida").stdout)
    assert rotated["token"] != token and rotated["scopes"] == body["scopes"]
    assert json.loads(_cli(tmp_path, "revoke", "yida").stdout) == {"name": "yida", "revoked": True}
    assert _cli(tmp_path, "revoke", "nobody").returncode == 1


async def test_no_or_bad_token_is_401_problem(sqlite_api: TestClient) -> None:  # noqa: F811
    await register(sqlite_api, "yida")
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer"}):
        resp = await sqlite_api.get("/api/v1/tickets", headers=headers)
        assert resp.status == 401 and resp.content_type == "application/problem+json", headers
        assert "Bearer" in resp.headers["WWW-Authenticate"]


async def test_scopes_per_resource_are_403(sqlite_api: TestClient) -> None:  # noqa: F811
    reader = await register(sqlite_api, "reader", ["tickets:read"])
    resp = await sqlite_api.post("/api/v1/tickets", json=new_ticket(), headers=reader)
    assert resp.status == 403 and (await resp.json())["required_scope"] == "tickets:write"
    assert (await sqlite_api.get("/api/v1/customers", headers=reader)).status == 403
    assert (await sqlite_api.get("/api/v1/tickets", headers=reader)).status == 200
    writer = await register(sqlite_api, "writer", ["tickets:write"])
    assert (await sqlite_api.get("/api/v1/tickets", headers=writer)).status == 403


async def test_api_token_reads_but_never_writes(sqlite_api: TestClient) -> None:  # noqa: F811
    admin = {"Authorization": "Bearer admin-read-token"}
    assert (await sqlite_api.get("/api/v1/tickets", headers=admin)).status == 200
    assert (await sqlite_api.get("/api/v1/stores", headers=admin)).status == 200
    assert (await sqlite_api.post("/api/v1/tickets", json=new_ticket(), headers=admin)).status == 403
    # the old paths keep their own check, unchanged
    assert (await sqlite_api.get("/api/tickets", headers=admin)).status == 200
    assert (await sqlite_api.get("/api/tickets")).status == 401
    client_token = await register(sqlite_api, "yida")
    assert (await sqlite_api.get("/api/tickets", headers=client_token)).status == 401


async def test_rotated_and_revoked_tokens_stop_working(sqlite_api: TestClient) -> None:  # noqa: F811
    from bot.api_v1.routes import API_V1
    from bot.cli.api_clients import add, revoke, rotate  # noqa: F401 (the CLI's functions)

    runtime = runtime_of(sqlite_api)
    old = await register(sqlite_api, "yida")
    assert (await sqlite_api.get("/api/v1/tickets", headers=old)).status == 200
    fresh = await rotate(runtime.settings, "yida")
    sqlite_api.app[API_V1].auth.forget()  # another process's change: this one's cache lapses within 5 s
    assert (await sqlite_api.get("/api/v1/tickets", headers=old)).status == 401
    new = {"Authorization": f"Bearer {fresh['token']}"}
    assert (await sqlite_api.get("/api/v1/tickets", headers=new)).status == 200
    await revoke(runtime.settings, "yida")
    sqlite_api.app[API_V1].auth.forget()
    assert (await sqlite_api.get("/api/v1/tickets", headers=new)).status == 401


def test_rate_limiter_bucket() -> None:
    limiter = RateLimiter(60)  # one a second, bursts of 60
    for _ in range(60):
        limiter.take("a", now=100.0)
    try:
        limiter.take("a", now=100.0)
        raise AssertionError("not limited")
    except ProblemError as problem:
        assert problem.status == 429 and problem.headers["Retry-After"] == "1"
    limiter.take("b", now=100.0)  # per client
    limiter.take("a", now=101.5)  # refilled


async def test_429_with_retry_after_per_client(sqlite_url: str, tmp_path: Path) -> None:
    app = build_app(make_settings(sqlite_url, tmp_path, api_rate_limit_per_minute=3))
    async with TestClient(TestServer(app)) as client:
        busy, calm = await register(client, "busy"), await register(client, "calm")
        statuses = [(await client.get("/api/v1/tickets", headers=busy)).status for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = await client.get("/api/v1/tickets", headers=busy)
        assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.content_type == "application/problem+json"
        assert (await client.get("/api/v1/tickets", headers=calm)).status == 200
