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

Round trips: arq's `enqueue_job` takes three per job (WATCH, EXISTS, MULTI/PSETEX/ZADD/EXEC), and
an SLA ticket schedules four timers. `enqueue_jobs` writes the same job records (arq's own
serializer, key, score and expiry) for any number of jobs with one Lua script, atomic per job like
arq's WATCH: a job whose key or result already exists is left alone. A commit's alarms and the
withdrawal of the generations they supersede go to Redis as one pipeline: one round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms, to_unix_ms

from core.repository import TimerRow

log = logging.getLogger(__name__)

QUEUE_NAME = "ticketbot:timers"
FIRE_FUNCTION = "fire_timer"
# arq scores are whole milliseconds; defer by one more so a job never starts before due_at.
_ROUNDING = timedelta(milliseconds=1)


# KEYS: the queue, then per job its key and its result key; ARGV: per job id, score, expiry (ms), record.
# Returns 1 per job enqueued, 0 per job that already existed (arq's enqueue_job returns None then).
_ENQUEUE_SCRIPT = """
local added = {}
for i = 0, (#KEYS - 1) / 2 - 1 do
  local job_key, a = KEYS[2 + 2 * i], 4 * i
  if redis.call('EXISTS', job_key, KEYS[3 + 2 * i]) == 0 then
    redis.call('PSETEX', job_key, ARGV[a + 3], ARGV[a + 4])
    redis.call('ZADD', KEYS[1], ARGV[a + 2], ARGV[a + 1])
    added[i + 1] = 1
  else
    added[i + 1] = 0
  end
end
return added
"""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One arq job: `function(*args)` with a deterministic id, not before `defer_until` (None: now)."""

    function: str
    args: tuple[Any, ...]
    job_id: str
    defer_until: datetime | None = None


def queue_jobs(pipe: Any, redis: ArqRedis, queue_name: str, jobs: Sequence[JobSpec]) -> None:
    """Add the script call that enqueues `jobs` exactly as arq's enqueue_job would to `pipe` (a
    pipeline, or the client itself); its result is a list of 1 (enqueued) / 0 (already there)."""
    now_ms = timestamp_ms()
    keys: list[str] = [queue_name]
    argv: list[Any] = []
    for job in jobs:
        score = to_unix_ms(job.defer_until) if job.defer_until is not None else now_ms
        record = serialize_job(job.function, job.args, {}, None, now_ms, serializer=redis.job_serializer)
        keys += [job_key_prefix + job.job_id, result_key_prefix + job.job_id]
        argv += [job.job_id, score, score - now_ms + redis.expires_extra_ms, record]
    pipe.eval(_ENQUEUE_SCRIPT, len(keys), *keys, *argv)


async def enqueue_jobs(redis: ArqRedis, queue_name: str, jobs: Sequence[JobSpec]) -> list[bool]:
    """Enqueue `jobs` in one round trip; per job True when enqueued, False when it already existed."""
    if not jobs:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        queue_jobs(pipe, redis, queue_name, jobs)
        (added,) = await pipe.execute()
    return [bool(flag) for flag in added]


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
        """A commit's alarms, and the withdrawal of the generations they supersede: one round trip."""
        oldest: dict[int, int] = {}
        for timer in timers:
            oldest[timer.id] = min(oldest.get(timer.id, timer.generation), timer.generation)
        jobs: list[JobSpec] = []
        superseded: list[str] = []
        for timer in latest_generations(timers):
            if timer.state != "pending":
                continue
            jobs.append(self._job(timer.id, timer.generation, timer.due_at))
            # The generation the row had before this transaction, and any it went through in it.
            superseded += [timer_job_id(timer.id, g) for g in range(max(1, oldest[timer.id] - 1), timer.generation)]
        if not jobs:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                queue_jobs(pipe, self.redis, self.queue_name, jobs)
                # After the new alarms, in the same round trip: withdrawing is only tidying.
                self._queue_withdraw(pipe, superseded)
                await pipe.execute()
        except Exception:  # Redis down must not fail a committed command; the sweep recovers
            log.warning("could not enqueue %s timer alarm(s); the sweep will fire them", len(jobs), exc_info=True)

    def _job(self, timer_id: int, generation: int, due_at: datetime) -> JobSpec:
        # arq expires a job one day after it is due: an alarm for a timer overdue by more than that
        # would be born expired (Redis: "invalid expire time"). Overdue means due now.
        defer_until = max(due_at, datetime.now(UTC)) + _ROUNDING
        return JobSpec(FIRE_FUNCTION, (timer_id, generation), timer_job_id(timer_id, generation), defer_until)

    def _queue_withdraw(self, pipe: Any, job_ids: list[str]) -> None:
        if job_ids:
            pipe.zrem(self.queue_name, *job_ids)
            pipe.delete(*(job_key_prefix + job_id for job_id in job_ids))

    async def withdraw(self, job_ids: list[str]) -> None:
        """Remove these queued alarms (superseded generations); never raises."""
        if not job_ids:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                self._queue_withdraw(pipe, job_ids)
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
        return await self.enqueue_many([(timer_id, generation, due_at)]) == 1

    async def enqueue_many(self, timers: Sequence[tuple[int, int, datetime]]) -> int:
        """Alarms for these (id, generation, due_at) in one round trip; how many were new (0 if Redis failed)."""
        if not timers:
            return 0
        try:
            added = await enqueue_jobs(self.redis, self.queue_name, [self._job(*timer) for timer in timers])
        except Exception:  # Redis down must not fail a committed command; the sweep recovers
            log.warning("could not enqueue %s timer alarm(s); the sweep will fire them", len(timers), exc_info=True)
            return 0
        return sum(added)
