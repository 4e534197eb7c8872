"""A small per-key async rate limiter: Feishu allows 5 QPS per user and per chat.

Sliding window with reservations: at most `limit` sends for one key in any `window_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class PerKeyRateLimiter:
    def __init__(
        self,
        limit: int = 5,
        window_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._slots: dict[str, deque[float]] = {}

    def reserve(self, key: str) -> float:
        """Book the next free slot for `key`; returns how long to wait before using it."""
        now = self._clock()
        if len(self._slots) > self._max_keys:
            self._slots = {k: q for k, q in self._slots.items() if q and q[-1] > now - self._window_s}
        slots = self._slots.setdefault(key, deque())
        while slots and slots[0] <= now - self._window_s:
            slots.popleft()
        at = now if len(slots) < self._limit else max(now, slots[-self._limit] + self._window_s)
        slots.append(at)
        return at - now

    async def wait(self, key: str) -> None:
        # reserve() has no await inside, so concurrent callers get distinct slots.
        delay = self.reserve(key)
        if delay > 0:
            await asyncio.sleep(delay)
