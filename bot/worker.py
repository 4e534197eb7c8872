"""`ticketbot worker`: the arq timer engine (REDIS_URL set), and with PROCESS_INBOX=worker the
inbox processing too (see bot/jobs/arq_inbox.py).

Jobs:
  * `fire_timer(timer_id, generation)`: deferred to the timer's due_at, enqueued after the
    scheduling transaction commits (bot.jobs.arq_timers); runs FireTimer, which claims the row
    (generation + state, row lock) so a timer fires once however many workers race for it.
  * `sweep_timers` (arq cron every TIMER_SWEEP_SECONDS, and at start-up): re-arms the alarm for
    every pending row that is overdue or due before the next sweep. Deterministic job ids make
    this a no-op for alarms Redis still holds; after a FLUSHALL, a redeploy or a failed enqueue it
    puts them back, so nothing is lost and timers due after the next sweep fire on time.

  * `process_inbox(row_id)` (PROCESS_INBOX=worker): enqueued by the web process right after it
    accepted a message; runs the conversation on the row (its claim makes it once). Such a worker
    also delivers the outbox and sweeps inbox rows whose hand-off was lost.

A timer-only worker needs no chat platform: timer handlers write outbox rows; the web processes deliver.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any, cast

from arq.connections import ArqRedis, RedisSettings
from arq.cron import cron
from arq.worker import Worker, func

from bot.audit_key import use_audit_key
from bot.jobs.arq_inbox import INBOX_FUNCTION
from bot.jobs.arq_timers import FIRE_FUNCTION, QUEUE_NAME, ArqTimerAlarm
from bot.jobs.directory_job import DirectorySyncJob, install_directory_job
from bot.rules.rulebook import RuleBook
from bot.service_config import service_config, setting
from bot.settings import Settings
from bot.token_cache import RedisTokenCache
from core.classification import FaultClassifierPort
from core.clock import SystemClock
from core.errors import TicketbotError
from core.ports import Clock
from core.service import SYSTEM_ACTOR, TicketService
from core.timers import FireTimer
from storage.database import create_engine, session_factory
from storage.timer_store import SqlTimerStore
from storage.unit_of_work import SqlUnitOfWork

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

SWEEP_BATCH = 2000


class TimerWorkerStack:
    """What one worker process needs to fire timers: the database, the service, the alarm clock."""

    def __init__(self, settings: Settings, redis: ArqRedis, *, clock: Clock | None = None,
                 queue_name: str = QUEUE_NAME) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.engine = create_engine(settings.resolved_database_url())
        use_audit_key(self.engine, settings)  # the same key as every other process of the deployment
        self.sessions = session_factory(self.engine)
        self.store = SqlTimerStore(self.sessions)
        self.alarm = ArqTimerAlarm(redis, queue_name)
        classifier = cast(FaultClassifierPort, RuleBook())  # unused by timers; the service wants one
        self.service = TicketService(lambda: SqlUnitOfWork(self.sessions, channels=settings.delivery_channels()),
                                     self.clock, classifier,
                                     service_config(settings))
        # Issue 21: what timers tell customers carries the tracking URL (set PUBLIC_BASE_URL with workers).
        from bot.tracking_links import attach_tracking
        from storage.audit_keys import audit_key_for

        base_url = settings.public_base("127.0.0.1", 8080)
        attach_tracking(self.service, audit_key_for(self.engine), base_url=lambda: base_url,
                        uow_factory=lambda: SqlUnitOfWork(self.sessions, savepoint=False), clock=self.clock,
                        days_after_close=settings.tracking_link_days_after_close)
        # Timers scheduled by timer handlers (level 2, digests ...) get their alarm at once too.
        self.service.timers_scheduled = self.alarm.enqueue
        self.sweep_every = timedelta(seconds=float(setting(settings, "timer_sweep_seconds")))

    async def fire(self, timer_id: int, generation: int) -> bool:
        try:
            return bool(await self.service.handle(FireTimer(timer_id, generation), SYSTEM_ACTOR))
        except TicketbotError as error:
            log.warning("timer %s:%s: %s", timer_id, generation, error.user_message)
            return False

    async def sweep(self) -> int:
        """Re-arm alarms for overdue and soon-due rows; returns how many jobs were (re)enqueued."""
        horizon = self.clock.now() + self.sweep_every + timedelta(seconds=1)
        candidates = await self.store.pending_due_before(horizon, limit=SWEEP_BATCH)
        # One round trip tells which alarms Redis still holds; only the missing ones are enqueued.
        present = await self.alarm.existing([(timer_id, generation) for timer_id, generation, _ in candidates])
        # And one more puts back all the missing ones.
        enqueued = await self.alarm.enqueue_many([c for c in candidates if (c[0], c[1]) not in present])
        if enqueued:
            log.info("sweep re-armed %s timer alarm(s)", enqueued)
        return enqueued

    async def close(self) -> None:
        await self.engine.dispose()


async def fire_timer(ctx: dict[str, Any], timer_id: int, generation: int) -> bool:
    stack: TimerWorkerStack = ctx["stack"]
    return await stack.fire(timer_id, generation)


async def sweep_timers(ctx: dict[str, Any]) -> int:
    stack: TimerWorkerStack = ctx["stack"]
    return await stack.sweep()


async def process_inbox(ctx: dict[str, Any], row_id: int) -> None:
    """PROCESS_INBOX=worker: handle one inbox row a web process accepted (its claim makes it once)."""
    runtime: Runtime = ctx["inbox_runtime"]
    await runtime.processor.process(row_id)


def build_worker(
    settings: Settings,
    *,
    burst: bool = False,
    clock: Clock | None = None,
    queue_name: str = QUEUE_NAME,
    max_jobs: int = 20,
    poll_delay_s: float = 0.1,
    handle_signals: bool = True,
) -> Worker:
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set: the arq worker needs Redis (without it, `serve` fires timers itself)")
    sweep_seconds = max(1, int(float(setting(settings, "timer_sweep_seconds"))))

    processes_inbox = settings.process_inbox == "worker"

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["stack"] = stack = TimerWorkerStack(settings, ctx["redis"], clock=clock, queue_name=queue_name)
        # Issue 20: the daily directory sync fires here (a timer); this worker runs it, with the shared token.
        ctx["directory_job"] = await install_directory_job(stack.service, settings, RedisTokenCache(ctx["redis"]))
        if processes_inbox:
            # The whole conversation stack, minus inbound connections: classifier (warmed in the
            # background), commands, platform senders (photo downloads), outbox delivery, and the
            # sweep that picks up rows whose hand-off was lost.
            from bot.runtime import Runtime  # a timer-only worker does not pay for the conversation stack

            runtime = Runtime(settings, clock=clock, processes_inbox=True)
            await runtime.start(inbound=False)
            await runtime.warm_for_intake()  # issue 24: not in the first report this worker handles
            ctx["inbox_runtime"] = runtime

    async def shutdown(ctx: dict[str, Any]) -> None:
        directory_job: DirectorySyncJob | None = ctx.get("directory_job")
        if directory_job is not None:
            await directory_job.stop()
        runtime: Runtime | None = ctx.get("inbox_runtime")
        if runtime is not None:
            await runtime.stop()
        stack: TimerWorkerStack | None = ctx.get("stack")
        if stack is not None:
            await stack.close()

    functions = [func(fire_timer, name=FIRE_FUNCTION, keep_result=0, max_tries=1)]
    if processes_inbox:
        functions.append(func(process_inbox, name=INBOX_FUNCTION, keep_result=0, max_tries=1))
    return Worker(
        functions=functions,
        cron_jobs=[cron(sweep_timers, name="sweep_timers", second=set(range(0, 60, sweep_seconds)),
                        run_at_startup=True, unique=True, keep_result=0, max_tries=1)],
        queue_name=queue_name,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        burst=burst,
        on_startup=startup,
        on_shutdown=shutdown,
        max_jobs=max_jobs,
        poll_delay=poll_delay_s,
        handle_signals=handle_signals,
        keep_result=0,
        timezone=UTC,
        log_results=False,
    )


async def run_worker(settings: Settings, *, burst: bool = False) -> None:
    worker = build_worker(settings, burst=burst)
    try:
        await worker.async_run()
    finally:
        await worker.close()


def main(settings: Settings, *, burst: bool = False) -> int:
    asyncio.run(run_worker(settings, burst=burst))
    return 0
