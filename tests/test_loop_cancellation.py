"""Background loops stop when cancelled, even when their wake-up event is set in the same moment.

On Python 3.11 `asyncio.wait_for` returns normally when the task awaiting it is cancelled just as
the awaited event is set: the cancellation is lost and the loop runs on, so `Runtime.stop()` waited
for it forever. Once commits woke the outbox dispatcher (a commit during shutdown sets the event),
that moment came often."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.jobs.delivery import OutboxDispatcher
from core.clock import FixedClock
from core.wakeups import wait_for_event
from storage.database import create_engine, session_factory
from storage.migrate import upgrade
from storage.outbox import SqlOutbox


async def cancel_while_woken(task: asyncio.Task[object], wake: asyncio.Event) -> None:
    await asyncio.sleep(0.05)  # the task is waiting for its event now
    wake.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), timeout=5)


async def test_waiting_for_an_event_keeps_a_cancellation_that_meets_the_event() -> None:
    wake = asyncio.Event()

    async def waits_forever() -> None:
        while True:
            await wait_for_event(wake, 30)
            wake.clear()

    await cancel_while_woken(asyncio.create_task(waits_forever()), wake)


async def test_wait_for_event_says_whether_the_event_came() -> None:
    wake = asyncio.Event()
    assert await wait_for_event(wake, 0.01) is False
    wake.set()
    assert await wait_for_event(wake, 0.01) is True


async def test_the_outbox_dispatcher_stops_when_cancelled_as_it_is_woken(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ticketbot.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        dispatcher = OutboxDispatcher(SqlOutbox(session_factory(engine), FixedClock(datetime.now(UTC))), {})
        await cancel_while_woken(asyncio.create_task(dispatcher.run_forever(idle_s=30)), dispatcher.wake)
    finally:
        await engine.dispose()
