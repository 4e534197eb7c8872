"""Shared fixtures: real SQLite and PostgreSQL databases, real Redis, the real app.

Under CI=true a test that needs PostgreSQL or Redis fails when the service is missing;
elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.runtime import Runtime
from bot.settings import Settings
from bot.web.app import build_app
from storage.database import Sessions, create_engine, session_factory
from storage.migrate import upgrade
from tests.fakes.sms_provider import FakeSmsProvider

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
IN_CI = os.environ.get("CI", "").lower() == "true"


def service_missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but is not reachable")
    pytest.skip(f"{what} not reachable")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    from storage.migrate import upgrade

    url = asyncio.run(create_postgres_database("ticketbot_test"))
    upgrade(url)
    yield url
    asyncio.run(drop_postgres_database(url))


async def pg_admin(sql: str) -> None:
    """One statement on the server's admin database (CREATE / DROP DATABASE)."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_postgres_database(prefix: str) -> str:
    """A new, empty database named `prefix`_<random>; its URL. Fails (or skips outside CI) without PostgreSQL."""
    if not _port_open("127.0.0.1", 5432):
        service_missing("PostgreSQL at 127.0.0.1:5432")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_postgres_database(url: str) -> None:
    await pg_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


async def _truncate_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        # A connection an earlier test left in its transaction would block TRUNCATE for ever: fail instead.
        await conn.execute("SET lock_timeout = '60s'")
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'")
        names = ", ".join(f'"{t["tablename"]}"' for t in tables)
        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ticketbot.db'}"
    url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_truncate_postgres(url))
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ticketbot.db'}"


async def _migrated_sessions(url: str) -> AsyncIterator[Sessions]:
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def db_sessions(database_url: str) -> AsyncIterator[Sessions]:
    """The session factory on a migrated database: SQLite, then PostgreSQL."""
    async for sessions in _migrated_sessions(database_url):
        yield sessions


@pytest.fixture
async def sqlite_sessions(sqlite_url: str) -> AsyncIterator[Sessions]:
    async for sessions in _migrated_sessions(sqlite_url):
        yield sessions


@pytest.fixture
def redis_url() -> Iterator[str]:
    if not _port_open("127.0.0.1", 6379):
        service_missing("Redis at 127.0.0.1:6379")
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


def make_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"database_url": database_url, "data_dir": tmp_path / "data", "playground": "on"}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def app_client(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    """The real app (migrations, demo directory, playground) on a real database."""
    settings = make_settings(database_url, tmp_path)
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def sms_fake() -> AsyncIterator[FakeSmsProvider]:
    """The fake SMS endpoint on loopback, both providers' wire protocols (the SMS tests: tests/sms_support.py)."""
    provider = FakeSmsProvider()
    await provider.start()
    yield provider
    await provider.stop()


def runtime_of(client: TestClient) -> Runtime:
    from bot.web.api import RUNTIME

    return client.app[RUNTIME]  # type: ignore[index]


# The browser tests' fixtures (Chromium through Playwright, a real `ticketbot serve`): tests/browser_support.py.
from tests.browser_support import browser, served  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _forget_aiohttp_middleware_chains() -> Iterator[None]:
    """aiohttp caches each (handler, app) middleware chain in a module-level LRU of 1,024 entries
    (`aiohttp.web_app._cached_build_middleware`): one process serves one app, but a test session builds
    ~2,000, and the cache kept up to 1,024 handler chains — each holding its app, and so its runtime,
    classifier and engine — alive (the suite's RSS grew past 15 GB). Emptied after every test."""
    yield
    from aiohttp import web_app

    web_app._cached_build_middleware.cache_clear()


@pytest.fixture
def scratch_postgres() -> Iterator[str]:
    """An empty PostgreSQL database of this test's own (bench/prefill_db.py needs an empty one), dropped after."""
    url = asyncio.run(create_postgres_database("ticketbot_scratch"))
    yield url
    asyncio.run(drop_postgres_database(url))
