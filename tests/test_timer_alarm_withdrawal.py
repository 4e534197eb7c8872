"""The arq alarm clock keeps one job per timer: a rescheduled timer's superseded alarm is withdrawn
(issue 19, item 29). A per-person digest window is rescheduled by every reminder that joins it, and
each reschedule left its old job behind: hundreds of no-op jobs fell due at the same moment and held up
the timers due then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from bot.jobs.arq_timers import QUEUE_NAME, timer_job_id
from bot.runtime import Runtime
from core.clock import FixedClock
from core.service import SYSTEM_ACTOR
from tests.conftest import make_settings
from tests.sla_support import ScheduleProbe


async def queued(redis: Redis, timer_id: int, generation: int) -> bool:
    job_id = timer_job_id(timer_id, generation)
    in_queue = await redis.zscore(QUEUE_NAME, job_id) is not None
    assert in_queue == bool(await redis.exists(f"arq:job:{job_id}")), job_id  # never half a job
    return in_queue


async def test_a_rescheduled_timer_leaves_one_alarm(database_url: str, tmp_path: Path, redis_url: str) -> None:
    now = datetime.now(UTC)  # arq refuses alarms whose expiry would lie in the past
    clock = FixedClock(now)
    rt = Runtime(make_settings(database_url, tmp_path, redis_url=redis_url), clock=clock)
    redis = Redis.from_url(redis_url)
    try:
        await rt.prepare_database()
        timer_id = await rt.service.handle(ScheduleProbe("W", now + timedelta(minutes=1)), SYSTEM_ACTOR)
        assert await queued(redis, timer_id, 1)
        # Joined again and again at the same due time, as a reminder joins a digest window.
        for _ in range(3):
            await rt.service.handle(ScheduleProbe("W", now + timedelta(minutes=1)), SYSTEM_ACTOR)
        assert [g for g in range(1, 5) if await queued(redis, timer_id, g)] == [4]
        assert await redis.zcard(QUEUE_NAME) == 1
        # Another timer is not touched.
        other = await rt.service.handle(ScheduleProbe("X", now + timedelta(minutes=2)), SYSTEM_ACTOR)
        assert await queued(redis, other, 1) and await queued(redis, timer_id, 4)
    finally:
        await redis.aclose()
        await rt.stop()


async def test_an_overdue_timer_gets_an_alarm_however_late(database_url: str, tmp_path: Path, redis_url: str) -> None:
    """A timer scheduled more than a day in the past (a daily job catching up, a clock jump) still
    gets its alarm: arq gives a job an expiry of due + 1 day, which must not lie in the past
    (Redis refused it: "invalid expire time", and the timer waited for the sweep)."""
    now = datetime.now(UTC)
    rt = Runtime(make_settings(database_url, tmp_path, redis_url=redis_url), clock=FixedClock(now))
    redis = Redis.from_url(redis_url)
    try:
        await rt.prepare_database()
        timer_id = await rt.service.handle(ScheduleProbe("L", now - timedelta(days=3)), SYSTEM_ACTOR)
        assert await queued(redis, timer_id, 1)
    finally:
        await redis.aclose()
        await rt.stop()
