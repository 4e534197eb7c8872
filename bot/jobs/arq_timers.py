"""arq/Redis as the alarm clock for durable timers (REDIS_URL set).

The timer row stays the truth. After a transaction that (re)scheduled timers commits, one
deferred arq job per timer is enqueued with the deterministic id `timer:{id}:{generation}`:
enqueueing the same alarm twice is a no-op, and a rescheduled timer (new generation) gets a new
job while the old one finds a stale generation and does nothing. A lost job (Redis flushed,
enqueue failed, crash between commit and enqueue) is recovered by the worker's periodic sweep.

The superseded generation's job is withdrawn once the new one is queued: a per-person digest window
is rescheduled by every reminder that joins it, and its old jobs used to pile up and fall due
together (hundreds of no-op jobs at one moment, delaying the timers due then). Withdrawing is only
tidying: a job that is already running, or one put back by a late alarm, finds a stale generation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from core.repository import TimerRow

log = logging.getLogger(__name__)

QUEUE_NAME = "ticketbot:timers"
FIRE_FUNCTION = "fire_timer"
# arq scores are whole milliseconds; defer by one more so a job never starts before due_at.
_ROUNDING = timedelta(milliseconds=1)


def timer_job_id(timer_id: int, generation: int) -> str:
    return f"timer:{timer_id}:{generation}"


def latest_generations(timers: Iterable[TimerRow]) -> list[TimerRow]:
    """One entry per timer id, the newest generation (a command may reschedule a timer twice)."""
    newest: dict[int, TimerRow] = {}
    for timer in timers:
        if timer.id not in newest or timer.generation > newest[timer.id].generation:
            newest[timer.id] = timer
    return list(newest.values())


class ArqTimerAlarm:
    """Enqueues deferred FireTimer jobs; never raises (the sweep is the safety net)."""

    def __init__(self, redis: ArqRedis, queue_name: str = QUEUE_NAME) -> None:
        self.redis = redis
        self.queue_name = queue_name

    async def enqueue(self, timers: list[TimerRow]) -> None:
        oldest: dict[int, int] = {}
        for timer in timers:
            oldest[timer.id] = min(oldest.get(timer.id, timer.generation), timer.generation)
        superseded: list[str] = []
        for timer in latest_generations(timers):
            if timer.state != "pending":
                continue
            await self.enqueue_one(timer.id, timer.generation, timer.due_at)
            # The generation the row had before this transaction, and any it went through in it.
            superseded += [timer_job_id(timer.id, g) for g in range(max(1, oldest[timer.id] - 1), timer.generation)]
        await self.withdraw(superseded)

    async def withdraw(self, job_ids: list[str]) -> None:
        """Remove these queued alarms (superseded generations); never raises."""
        if not job_ids:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self.queue_name, *job_ids)
                pipe.delete(*(job_key_prefix + job_id for job_id in job_ids))
                await pipe.execute()
        except Exception:  # a stale alarm left in Redis only costs a no-op job
            log.warning("could not withdraw %s superseded timer alarm(s)", len(job_ids), exc_info=True)

    async def existing(self, timers: list[tuple[int, int]]) -> set[tuple[int, int]]:
        """Which of these (id, generation) alarms Redis holds (queued or running)."""
        if not timers:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for timer_id, generation in timers:
                pipe.exists(job_key_prefix + timer_job_id(timer_id, generation))
            found = await pipe.execute()
        return {timer for timer, exists in zip(timers, found, strict=True) if exists}

    async def enqueue_one(self, timer_id: int, generation: int, due_at: datetime) -> bool:
        """True when a job was enqueued, False when it already exists (or Redis failed)."""
        # arq expires a job one day after it is due: an alarm for a timer overdue by more than that
        # would be born expired (Redis: "invalid expire time"). Overdue means due now.
        defer_until = max(due_at, datetime.now(UTC)) + _ROUNDING
        try:
            job = await self.redis.enqueue_job(
                FIRE_FUNCTION, timer_id, generation, _job_id=timer_job_id(timer_id, generation),
                _queue_name=self.queue_name, _defer_until=defer_until,
            )
        except Exception:  # Redis down must not fail a committed command; the sweep recovers
            log.warning("could not enqueue timer %s:%s; the sweep will fire it", timer_id, generation, exc_info=True)
            return False
        return job is not None
