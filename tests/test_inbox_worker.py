"""PROCESS_INBOX=worker (PostgreSQL + Redis): web processes only accept and answer; an arq
`ticketbot worker` handles each row once, and sweeps up rows whose hand-off was lost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from sqlalchemy import select, update

from bot.jobs.arq_inbox import inbox_job_id
from bot.jobs.arq_timers import QUEUE_NAME
from bot.runtime import Runtime
from bot.web.app import build_app
from bot.worker import build_worker
from core.inbound import InboundKind, InboundMessage
from storage.tables import InboxRow, TicketRow
from tests.conftest import make_settings, runtime_of


async def tickets_of(rt: Runtime, customer_id: str) -> list[str]:
    async with rt.sessions() as session:
        rows = await session.execute(select(TicketRow.number).where(TicketRow.customer_id == customer_id))
        return list(rows.scalars())


@asynccontextmanager
async def running_worker(settings: object) -> AsyncIterator[None]:
    """A real `ticketbot worker` (arq) in this process; stopped (and shut down) on exit."""
    worker = build_worker(settings, handle_signals=False, poll_delay_s=0.05)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.async_run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # No new jobs start now; let those in flight (a sweep, a timer alarm) finish first: arq's
        # close() cancels them and then re-raises their CancelledError from its gather.
        deadline = time.monotonic() + 10
        while any(not job.done() for job in worker.tasks.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await worker.close()


async def eventually(probe: Callable[[], Awaitable[object]], timeout_s: float = 20.0) -> object:
    deadline = time.monotonic() + timeout_s
    while not (value := await probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s")
        await asyncio.sleep(0.05)
    return value


def test_worker_mode_needs_redis(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path}/x.db", tmp_path, process_inbox="worker")
    with pytest.raises(ValueError, match="REDIS_URL"):
        Runtime(settings)


async def test_web_accepts_and_a_worker_processes(postgres_database: str, tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(postgres_database, tmp_path, redis_url=redis_url, process_inbox="worker")
    redis = Redis.from_url(redis_url)
    async with TestClient(TestServer(build_app(settings))) as client:
        web = runtime_of(client)
        # A platform message (as WeCom/Feishu/DingTalk adapters store it): accepted, answered, handed off.
        message = InboundMessage("local", "split-evt-1", "cust-split-1", InboundKind.TEXT, text="底盘有异响")
        assert await web.inbox.accept(message) is True
        await asyncio.sleep(0.3)
        assert await tickets_of(web, "cust-split-1") == []  # the web process did not handle it
        async with web.sessions() as session:
            found = await session.execute(select(InboxRow.id).where(InboxRow.event_key == "split-evt-1"))
            row_id = found.scalar_one()
        assert await redis.zscore(QUEUE_NAME, inbox_job_id(row_id)) is not None
        assert await web.inbox.accept(message) is False  # a redelivery: no second row, no second job

        async def row_state() -> tuple[str, int] | None:
            async with web.sessions() as session:
                row = await session.get(InboxRow, row_id)
            return (row.status, row.attempts) if row is not None and row.status == "done" else None

        async with running_worker(settings):
            assert await eventually(row_state) == ("done", 1)
        [number] = await tickets_of(web, "cust-split-1")
        assert number.startswith("GD-")

        # A lost hand-off (Redis flushed before a worker ran): the workers' sweep picks the row up.
        lost = InboundMessage("local", "split-evt-2", "cust-split-2", InboundKind.TEXT, text="中控黑屏")
        assert await web.inbox.accept(lost) is True
        await asyncio.sleep(0.3)
        await redis.flushdb()
        async with web.sessions() as session, session.begin():
            await session.execute(update(InboxRow).where(InboxRow.event_key == "split-evt-2")
                                  .values(received_at=web.clock.now() - timedelta(minutes=1)))
        worker_settings = make_settings(postgres_database, tmp_path, redis_url=redis_url, process_inbox="worker")
        worker_runtime = Runtime(worker_settings, processes_inbox=True)
        try:
            assert await worker_runtime.processor.sweep() == 1
            await worker_runtime.processor.drain()
        finally:
            await worker_runtime.stop()
        assert len(await tickets_of(web, "cust-split-2")) == 1
    await redis.aclose()


async def test_an_inbox_worker_is_warm_before_its_first_message(postgres_database: str, tmp_path: Path,
                                                                 redis_url: str) -> None:
    """Issue 24: a worker that handles fault reports builds the dispatch index, the statutory calendar and the
    SLA matrix at start-up, as the web process does — not inside the first report it handles."""
    from arq import create_pool
    from arq.connections import RedisSettings

    from core.dispatch.live import live_index
    from core.sla import calendar as sla_calendar

    settings = make_settings(postgres_database, tmp_path, redis_url=redis_url, process_inbox="worker")
    async with TestClient(TestServer(build_app(settings))):  # the schema and the demo directory
        pass
    sla_calendar._statutory_year.cache_clear()
    worker = build_worker(settings, handle_signals=False)
    ctx = {"redis": await create_pool(RedisSettings.from_dsn(redis_url))}
    assert worker.on_startup is not None and worker.on_shutdown is not None
    try:
        await worker.on_startup(ctx)
        index = live_index(ctx["inbox_runtime"].service)
        assert index.rebuilds == 1 and index.mark is not None and index.entries
        assert sla_calendar._statutory_year.cache_info().currsize >= 2
    finally:
        await worker.on_shutdown(ctx)
        await ctx["redis"].aclose()
