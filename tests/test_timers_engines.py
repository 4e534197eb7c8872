"""Both engines fire the same durable rows exactly once: stale generations, racing in-process
engines, the post-commit alarm hook, the per-person digest key and the arq job ids."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.jobs.arq_timers import latest_generations, timer_job_id
from bot.jobs.timer_loop import InProcessTimerEngine
from bot.rules.rulebook import RuleBook
from core.clock import FixedClock
from core.repository import TimerRow
from core.service import SYSTEM_ACTOR, ServiceConfig, TicketService
from core.sla.reminder_digest import digest_key
from core.timers import FireTimer
from storage.database import create_engine, session_factory
from storage.migrate import upgrade
from storage.timer_store import SqlTimerStore
from storage.unit_of_work import SqlUnitOfWork
from tests.sla_support import ScheduleProbe, probe_hits

NOW = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)


class Stack:
    """A service and an in-process engine on their own engine (connection pool): one 'process'."""

    def __init__(self, url: str, clock: FixedClock) -> None:
        self.engine = create_engine(url)
        self.sessions = session_factory(self.engine)
        self.service = TicketService(lambda: SqlUnitOfWork(self.sessions), clock, RuleBook(), ServiceConfig())
        self.timers = InProcessTimerEngine(SqlTimerStore(self.sessions), self.service)


async def test_a_stale_generation_and_an_early_alarm_do_nothing(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    clock = FixedClock(NOW)
    stack = Stack(database_url, clock)
    seen: list[list[TimerRow]] = []

    async def alarm(timers: list[TimerRow]) -> None:
        seen.append(timers)

    stack.service.timers_scheduled = alarm
    try:
        timer_id = await stack.service.handle(ScheduleProbe("S", NOW + timedelta(minutes=5)), SYSTEM_ACTOR)
        assert [(t.id, t.generation) for t in seen[-1]] == [(timer_id, 1)]  # told after the commit
        assert await stack.service.handle(FireTimer(timer_id, 1), SYSTEM_ACTOR) is False  # not due yet
        await stack.service.handle(ScheduleProbe("S", NOW + timedelta(minutes=10)), SYSTEM_ACTOR)
        assert [(t.id, t.generation) for t in seen[-1]] == [(timer_id, 2)]
        clock.advance(timedelta(minutes=10))
        assert await stack.service.handle(FireTimer(timer_id, 1), SYSTEM_ACTOR) is False  # stale generation
        assert await stack.service.handle(FireTimer(timer_id, 2), SYSTEM_ACTOR) is True
        assert await stack.service.handle(FireTimer(timer_id, 2), SYSTEM_ACTOR) is False  # already fired
        hits = await probe_hits(stack)
        assert hits == ["S"]
    finally:
        await stack.engine.dispose()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_in_process_engines_racing_fire_each_timer_once(database_url: str) -> None:
    clock = FixedClock(NOW)
    first, second = Stack(database_url, clock), Stack(database_url, clock)
    try:
        for n in range(80):
            await first.service.handle(ScheduleProbe(f"K-{n}", NOW - timedelta(seconds=n % 5)), SYSTEM_ACTOR)
        fired = await asyncio.gather(first.timers.fire_due(), second.timers.fire_due(), first.timers.fire_due())
        assert sum(fired) == 80
        hits = await probe_hits(first)
        assert len(hits) == 80 and len(set(hits)) == 80
    finally:
        await first.engine.dispose()
        await second.engine.dispose()


def test_job_ids_are_deterministic_per_generation() -> None:
    assert timer_job_id(42, 3) == "timer:42:3"
    rows = [TimerRow(1, "k", None, NOW, g, "pending", {}) for g in (1, 3, 2)]
    assert [(t.id, t.generation) for t in latest_generations(rows)] == [(1, 3)]


def test_digest_key_fits_the_timer_column() -> None:
    assert digest_key("tech-wang") == "@tech-wang"
    long_id = "x" * 64
    assert len(digest_key(long_id)) <= 64 and digest_key(long_id) != digest_key("y" * 64)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_first_audit_events_of_two_workers_do_not_collide(database_url: str) -> None:
    # Found by the racing workers: on an empty database both first appenders used to insert seq 1.
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with SqlUnitOfWork(sessions) as first:
            await first.append_audit(kind="a", actor_id="system", at=NOW, payload={}, ticket_number=None)
            async with SqlUnitOfWork(sessions) as second:
                waiting = asyncio.create_task(
                    second.append_audit(kind="b", actor_id="system", at=NOW, payload={}, ticket_number=None))
                await asyncio.sleep(0.3)
                assert not waiting.done()  # blocked on the head row the first transaction created
                await first.commit()
                await waiting
                await second.commit()
        from storage.audit_verify import verify_audit

        count, problems = await verify_audit(sessions)
        assert (count, problems) == (2, [])
    finally:
        await engine.dispose()
