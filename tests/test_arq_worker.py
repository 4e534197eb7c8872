"""The arq timer engine on real Redis: enqueue after commit with deterministic job ids, burst
workers, recovery after FLUSHALL, a Redis outage, and two workers racing for the same timers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy import func, select

from bot.jobs.arq_timers import FIRE_FUNCTION, QUEUE_NAME, timer_job_id
from bot.runtime import Runtime
from bot.web.app import build_app
from bot.worker import build_worker
from core.service import SYSTEM_ACTOR
from storage.tables import AuditEventRow, TimerRowTable
from tests.conftest import make_settings
from tests.sla_support import ScheduleProbe, probe_hits, report, runtime


@asynccontextmanager
async def redis_app(database_url: str, tmp_path: Path, redis_url: str) -> AsyncIterator[TestClient]:
    settings = make_settings(database_url, tmp_path, redis_url=redis_url)
    async with TestClient(TestServer(build_app(settings, runtime=Runtime(settings)))) as client:
        yield client


async def run_burst(settings: Any, queue_name: str = QUEUE_NAME) -> None:
    """A burst worker; alarms due more than 10 s from now are dropped first (a burst worker waits for
    every queued job, and other features' timers, e.g. dispatch offers, are hours away)."""
    redis = Redis.from_url(settings.redis_url)
    await redis.zremrangebyscore(queue_name, (time.time() + 10) * 1000, "+inf")
    await redis.aclose()
    worker = build_worker(settings, burst=True, queue_name=queue_name, handle_signals=False, poll_delay_s=0.05)
    try:
        await worker.async_run()
    finally:
        await worker.close()


async def timer_row(rt: Runtime, timer_id: int) -> TimerRowTable:
    async with rt.sessions() as session:
        row = await session.get(TimerRowTable, timer_id)
    assert row is not None
    return row


async def test_timers_are_enqueued_after_commit_and_fired_by_a_worker(database_url: str, tmp_path: Path,
                                                                      redis_url: str) -> None:
    async with redis_app(database_url, tmp_path, redis_url) as client:
        rt = runtime(client)
        redis = Redis.from_url(redis_url)
        # An SLA ticket: four deferred jobs with deterministic ids, scored at due_at.
        number = await report(client, "cust-arq-1", "中控黑屏")
        async with rt.sessions() as session:
            rows = (await session.execute(select(TimerRowTable).where(TimerRowTable.ticket_key == number))).scalars()
            sla_rows = [r for r in rows if r.kind.startswith("sla.")]
        assert len(sla_rows) == 4
        for row in sla_rows:
            assert row.id is not None
            score = await redis.zscore(QUEUE_NAME, timer_job_id(row.id, row.generation))
            assert score is not None and abs(score - row.due_at.timestamp() * 1000) <= 2
        # A probe due now is fired by a burst worker, once, on time.
        due = rt.clock.now() + timedelta(milliseconds=300)
        timer_id = await rt.service.handle(ScheduleProbe("P-1", due), SYSTEM_ACTOR)
        assert await redis.zscore(QUEUE_NAME, timer_job_id(timer_id, 1)) is not None
        await run_burst(rt.settings)
        assert await probe_hits(rt) == ["P-1"]
        row = await timer_row(rt, timer_id)
        assert row.state == "fired" and row.fired_at is not None
        assert timedelta(0) <= row.fired_at - row.due_at < timedelta(seconds=1)
        # Rescheduling bumps the generation: the old alarm is stale, the new one fires.
        again = await rt.service.handle(ScheduleProbe("P-1", rt.clock.now()), SYSTEM_ACTOR)
        assert again == timer_id and await redis.zscore(QUEUE_NAME, timer_job_id(timer_id, 2)) is not None
        await run_burst(rt.settings)
        assert await probe_hits(rt) == ["P-1", "P-1"]
        await redis.aclose()


async def test_nothing_is_lost_after_flushall(database_url: str, tmp_path: Path, redis_url: str) -> None:
    async with redis_app(database_url, tmp_path, redis_url) as client:
        rt = runtime(client)
        redis = Redis.from_url(redis_url)
        now = rt.clock.now()
        overdue = await rt.service.handle(ScheduleProbe("late", now - timedelta(minutes=5)), SYSTEM_ACTOR)
        soon = await rt.service.handle(ScheduleProbe("soon", now + timedelta(seconds=2)), SYSTEM_ACTOR)
        later = await rt.service.handle(ScheduleProbe("later", now + timedelta(hours=1)), SYSTEM_ACTOR)
        assert await redis.zcard(QUEUE_NAME) == 3
        await redis.flushall()
        await run_burst(rt.settings)  # the start-up sweep re-arms what Redis lost
        assert sorted(await probe_hits(rt)) == ["late", "soon"]
        soon_row = await timer_row(rt, soon)
        assert soon_row.fired_at is not None and soon_row.fired_at - soon_row.due_at < timedelta(seconds=1)
        assert (await timer_row(rt, overdue)).state == "fired"
        assert (await timer_row(rt, later)).state == "pending"
        await redis.aclose()


async def test_a_redis_outage_does_not_fail_the_command(database_url: str, tmp_path: Path, redis_url: str) -> None:
    async with redis_app(database_url, tmp_path, "redis://127.0.0.1:1/0") as client:
        rt = runtime(client)
        number = await report(client, "cust-arq-2", "中控黑屏")  # committed although the alarm could not be set
        async with rt.sessions() as session:
            pending = (await session.execute(select(func.count()).select_from(TimerRowTable).where(
                TimerRowTable.ticket_key == number, TimerRowTable.state == "pending"))).scalar_one()
        assert pending >= 4
        # The worker (on the real Redis) recovers the overdue rows by its sweep.
        timer_id = await rt.service.handle(ScheduleProbe("outage", rt.clock.now()), SYSTEM_ACTOR)
        await run_burst(make_settings(rt.settings.resolved_database_url(), tmp_path, redis_url=redis_url))
        assert await probe_hits(rt) == ["outage"]
        assert (await timer_row(rt, timer_id)).state == "fired"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_workers_racing_fire_each_timer_once(database_url: str, tmp_path: Path, redis_url: str) -> None:
    async with redis_app(database_url, tmp_path, redis_url) as client:
        rt = runtime(client)
        redis = ArqRedis.from_url(redis_url)
        now = rt.clock.now()
        ids = [await rt.service.handle(ScheduleProbe(f"R-{n}", now - timedelta(seconds=1)), SYSTEM_ACTOR)
               for n in range(60)]
        # The service enqueued one alarm per timer after each commit (worker A's queue). Worker B gets a
        # second alarm for EVERY timer on its own queue (arq job ids are global, hence the suffix): both
        # try to fire each timer at the same moment and only the database claim (row lock + generation
        # + state) decides, as when a sweep races a deferred job.
        for timer_id in ids:
            assert await redis.zscore(QUEUE_NAME, timer_job_id(timer_id, 1)) is not None
            assert await redis.enqueue_job(FIRE_FUNCTION, timer_id, 1, _job_id=f"{timer_job_id(timer_id, 1)}:dup",
                                           _queue_name="race:b")
        settings = rt.settings
        await asyncio.gather(run_burst(settings, QUEUE_NAME), run_burst(settings, "race:b"))
        hits = await probe_hits(rt)
        assert len(hits) == 60 and len(set(hits)) == 60
        async with rt.sessions() as session:
            fired = (await session.execute(select(func.count()).select_from(AuditEventRow).where(
                AuditEventRow.kind == "timer_fired"))).scalar_one()
        assert fired == 60
        await redis.aclose()
