"""Waiting for a wake-up event with a timeout, for the background loops (timers, outbox, webhooks)."""

from __future__ import annotations

import asyncio


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds passed; True when it was set.

    Not `asyncio.wait_for(event.wait(), timeout)`: on Python 3.11 that returns normally when the
    waiting task is cancelled just as the event is set, losing the cancellation, so a loop told to
    stop runs on (and whoever awaits it waits forever). `asyncio.timeout` keeps it.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
