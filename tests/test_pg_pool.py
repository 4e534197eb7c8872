"""PostgreSQL connection pool (issue 24): a busy pool hands out connections without a ping (SQLAlchemy's
pool_pre_ping cost three round trips per checkout on asyncpg), yet a connection the server closed, or
one idle long enough for a silent drop, is still checked and replaced before anyone uses it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_engine, session_factory
from tests.conftest import PG_ADMIN_URL


async def engine_with_log(url: str, **kwargs: Any) -> tuple[AsyncEngine, list[str]]:
    """The service's engine; `seen` collects the simple queries asyncpg sends (BEGIN, the ping's ';' …)."""
    engine = create_engine(url, **kwargs)
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "connect")
    def _log(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda record: seen.append(record.query))

    return engine, seen


@pytest.fixture
async def pg_url(postgres_database: str) -> AsyncIterator[str]:
    yield postgres_database


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT pg_backend_pid()")))


async def test_checkouts_of_a_busy_pool_send_no_ping(pg_url: str) -> None:
    engine, seen = await engine_with_log(pg_url)
    sessions = session_factory(engine)
    try:
        for _ in range(20):
            async with sessions() as session:
                assert await session.scalar(text("SELECT 1")) == 1
        pings = seen.count(";")
        assert pings == 0, f"{pings} pings for 20 checkouts in a row: {seen[:9]}"
    finally:
        await engine.dispose()


async def test_a_connection_the_server_closed_is_replaced_before_use(pg_url: str) -> None:
    engine, _seen = await engine_with_log(pg_url)
    try:
        first = await backend_pid(engine)
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        await asyncio.sleep(0.3)  # the pooled connection's socket ends
        second = await backend_pid(engine)  # no error: the pool replaced it
        assert second != first
    finally:
        await engine.dispose()


async def test_a_connection_idle_for_long_is_pinged(pg_url: str) -> None:
    engine, seen = await engine_with_log(pg_url, ping_after_idle_s=0.2)
    try:
        first = await backend_pid(engine)
        await backend_pid(engine)
        assert seen.count(";") == 0
        await asyncio.sleep(0.4)
        assert await backend_pid(engine) == first  # alive: pinged once and reused
        assert seen.count(";") == 1
    finally:
        await engine.dispose()
