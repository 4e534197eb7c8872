"""The in-process timer engine (embedded default, no REDIS_URL): fires due timer rows."""

from __future__ import annotations

import asyncio
import logging

from core.errors import TicketbotError
from core.service import SYSTEM_ACTOR, TicketService
from core.timers import FireTimer
from core.wakeups import wait_for_event
from storage.timer_store import SqlTimerStore

log = logging.getLogger(__name__)


class InProcessTimerEngine:
    def __init__(self, store: SqlTimerStore, service: TicketService, *, max_sleep_s: float = 1.0) -> None:
        self.store = store
        self.service = service
        self.max_sleep_s = max_sleep_s
        self.wake = asyncio.Event()

    async def fire_due(self) -> int:
        fired = 0
        for timer_id, generation in await self.store.due(self.service.clock.now()):
            try:
                if await self.service.handle(FireTimer(timer_id, generation), SYSTEM_ACTOR):
                    fired += 1
            except TicketbotError as error:
                log.warning("timer %s: %s", timer_id, error.user_message)
        return fired

    async def run_forever(self) -> None:
        while True:
            try:
                await self.fire_due()
                next_due = await self.store.next_due_at()
            except Exception:  # keep the alarm clock ticking through hiccups (logged with traceback)
                log.exception("timer loop error")
                next_due = None
            sleep = self.max_sleep_s
            if next_due is not None:
                sleep = max(0.0, min(sleep, (next_due - self.service.clock.now()).total_seconds()))
            await wait_for_event(self.wake, sleep)
            self.wake.clear()
