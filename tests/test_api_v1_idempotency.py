"""Idempotency-Key on every POST: a retry gets the first answer, another body 422, concurrent
retries (PostgreSQL: separate connections) make one ticket; keys expire after API_IDEMPOTENCY_HOURS."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bot.runtime import Runtime
from bot.web.app import build_app
from core.clock import FixedClock, SystemClock
from tests.api_v1_support import api, new_ticket, register, sqlite_api  # noqa: F401
from tests.conftest import make_settings, runtime_of


async def _count(client: TestClient) -> int:
    async with runtime_of(client).uow() as uow:
        return len(await uow.list_tickets(limit=500))


async def test_a_retry_gets_the_same_status_and_body(sqlite_api: TestClient) -> None:  # noqa: F811
    """CONTRACT: a retry with the same Idempotency-Key → the same body and status code."""
    auth = {**await register(sqlite_api, "yida"), "Idempotency-Key": "k-1"}
    first = await sqlite_api.post("/api/v1/tickets", json=new_ticket("I-1"), headers=auth)
    assert first.status == 201
    body = await first.read()
    again = await sqlite_api.post("/api/v1/tickets", json=new_ticket("I-1"), headers=auth)
    assert (again.status, await again.read()) == (201, body)
    assert again.headers["Idempotent-Replayed"] == "true"
    # JSON with other whitespace or key order is the same request
    reordered = await sqlite_api.post("/api/v1/tickets", data='{"external_ref":"I-1","customer":{"phone":'
                                      '"13800138000"},"description":"空调不制冷，外机有异响"}', headers=auth)
    assert (reordered.status, await reordered.read()) == (201, body)
    assert await _count(sqlite_api) == 1


async def test_the_same_key_with_another_body_is_422(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = {**await register(sqlite_api, "yida"), "Idempotency-Key": "k-2"}
    assert (await sqlite_api.post("/api/v1/tickets", json=new_ticket("I-2"), headers=auth)).status == 201
    other = await sqlite_api.post("/api/v1/tickets", json=new_ticket("I-3"), headers=auth)
    assert other.status == 422 and other.content_type == "application/problem+json"
    assert (await other.json())["errors"][0]["field"] == "Idempotency-Key"
    # the same key on another path is another request too
    number = (await (await sqlite_api.get("/api/v1/tickets", headers=auth)).json())["items"][0]["number"]
    comment = await sqlite_api.post(f"/api/v1/tickets/{number}/comments", json={"text": "x"}, headers=auth)
    assert comment.status == 422
    assert await _count(sqlite_api) == 1


async def test_keys_are_per_client(sqlite_api: TestClient) -> None:  # noqa: F811
    a = {**await register(sqlite_api, "a"), "Idempotency-Key": "same"}
    b = {**await register(sqlite_api, "b"), "Idempotency-Key": "same"}
    first = await (await sqlite_api.post("/api/v1/tickets", json=new_ticket("R-1"), headers=a)).json()
    second = await (await sqlite_api.post("/api/v1/tickets", json=new_ticket("R-1"), headers=b)).json()
    assert first["number"] != second["number"]


async def test_a_refused_resolve_is_replayed_not_audited_twice(api: TestClient) -> None:  # noqa: F811
    auth = await register(api, "yida")
    number = (await (await api.post("/api/v1/tickets", json=new_ticket("I-9"), headers=auth)).json())["number"]
    keyed = {**auth, "Idempotency-Key": "resolve-1"}
    first = await api.post(f"/api/v1/tickets/{number}/transitions", json={"name": "resolve"}, headers=keyed)
    again = await api.post(f"/api/v1/tickets/{number}/transitions", json={"name": "resolve"}, headers=keyed)
    assert first.status == again.status == 409
    assert await first.read() == await again.read()
    async with runtime_of(api).uow() as uow:
        kinds = [e.kind for e in await uow.audit_for_ticket(number)]
    assert kinds.count("status_lock_refused") == 1


async def test_bad_keys_are_refused(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "yida")
    for key in ("", "x" * 256, "tab\there"):
        resp = await sqlite_api.post("/api/v1/tickets", json=new_ticket("B-1"),
                                     headers={**auth, "Idempotency-Key": key})
        assert resp.status == 400, key
    assert await _count(sqlite_api) == 0


async def test_an_expired_key_is_a_new_request(sqlite_url: str, tmp_path: Path) -> None:
    clock = FixedClock(SystemClock().now())
    settings = make_settings(sqlite_url, tmp_path, api_idempotency_hours=1)
    runtime = Runtime(settings, clock=clock)
    async with TestClient(TestServer(build_app(settings, runtime=runtime))) as client:
        auth = {**await register(client, "yida"), "Idempotency-Key": "old"}
        assert (await client.post("/api/v1/tickets", json=new_ticket("E-1"), headers=auth)).status == 201
        clock.advance(timedelta(hours=2))
        # expired: the key is free again, so another body under it is a new request
        resp = await client.post("/api/v1/tickets", json=new_ticket("E-2"), headers=auth)
        assert resp.status == 201, await resp.text()
        assert await _count(client) == 2


async def test_concurrent_retries_make_one_ticket(api: TestClient) -> None:  # noqa: F811
    """SQLite and PostgreSQL: 8 requests at once with one key; the losers wait for the winner's
    key row and replay its answer."""
    auth = {**await register(api, "yida"), "Idempotency-Key": "race-1"}
    answers = await asyncio.gather(*(api.post("/api/v1/tickets", json=new_ticket("RACE-1"), headers=auth)
                                     for _ in range(8)))
    bodies = {(r.status, await r.read()) for r in answers}
    assert len(bodies) == 1, bodies
    assert next(iter(bodies))[0] == 201
    assert await _count(api) == 1


async def test_concurrent_creates_of_one_external_ref_make_one_ticket(api: TestClient) -> None:  # noqa: F811
    """No key at all: the external ref's unique row decides; the others get the ticket with 200."""
    auth = await register(api, "yida")
    answers = await asyncio.gather(*(api.post("/api/v1/tickets", json=new_ticket("RACE-2"), headers=auth)
                                     for _ in range(6)))
    statuses = sorted(r.status for r in answers)
    assert statuses == [200] * 5 + [201], [await r.text() for r in answers]
    assert len({(await r.json())["number"] for r in answers}) == 1
    assert await _count(api) == 1


async def test_expired_keys_are_purged(sqlite_url: str, tmp_path: Path) -> None:
    from sqlalchemy import text

    from bot.api_v1.routes import API_V1

    clock = FixedClock(SystemClock().now())
    settings = make_settings(sqlite_url, tmp_path, api_idempotency_hours=1)
    runtime = Runtime(settings, clock=clock)
    async with TestClient(TestServer(build_app(settings, runtime=runtime))) as client:
        auth = await register(client, "yida")
        for i in range(3):
            await client.post("/api/v1/tickets", json=new_ticket(f"P-{i}"),
                              headers={**auth, "Idempotency-Key": f"p{i}"})
        clock.advance(timedelta(hours=2))
        client.app[API_V1]._purged_at = 0.0  # the last purge was long ago
        await client.post("/api/v1/tickets", json=new_ticket("P-9"), headers={**auth, "Idempotency-Key": "p9"})
        async with runtime.engine.connect() as conn:
            keys = (await conn.execute(text("SELECT key FROM api_idempotency"))).scalars().all()
        assert keys == ["p9"]


async def test_postgres_second_claim_waits_for_the_first_and_finds_the_key_taken(postgres_database: str) -> None:
    """The row lock proof behind the HTTP race above: a second transaction claiming the same key
    blocks until the first commits, then inserts nothing (and the stored answer is there)."""
    from storage.database import create_engine, session_factory
    from storage.unit_of_work import SqlUnitOfWork
    from tests.conftest import _truncate_postgres

    await _truncate_postgres(postgres_database)
    engine = create_engine(postgres_database)
    try:
        sessions = session_factory(engine)
        now = SystemClock().now()
        later = now + timedelta(hours=1)
        first = SqlUnitOfWork(sessions)
        assert await first.hub().claim_idempotency("c", "k", "h", now=now, expires_at=later)
        await first.hub().finish_idempotency("c", "k", 201, '{"number":"X"}')

        async def second() -> bool:
            async with SqlUnitOfWork(sessions) as uow:
                return await uow.hub().claim_idempotency("c", "k", "h", now=now, expires_at=later)

        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # blocked on the first transaction's key row
        await first.commit()
        assert await asyncio.wait_for(waiting, 10) is False
        async with SqlUnitOfWork(sessions) as uow:
            stored = await uow.hub().stored_key("c", "k")
        assert stored is not None and (stored.status, stored.body) == (201, '{"number":"X"}')
    finally:
        await engine.dispose()
