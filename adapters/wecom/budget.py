"""Per-recipient message budget.

WeCom delivers at most 30 messages a minute and 1000 an hour from one app to one member and
silently drops the rest (message/send still answers ok). So the sender books every
message/send against the recipient's budget first; when it is spent the delivery is put back
with `RecipientBusy` (a DeliveryRetryLater whose retry_after is the time until enough of the
window has expired), and the outbox sends it later instead of WeCom dropping it now.

Sliding windows of booked send times. In-process by default; in Redis (one sorted set per
recipient and window, updated by one Lua script) when REDIS_URL is set, so several
processes share one budget per person.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import DeliveryRetryLater


@dataclass(frozen=True, slots=True)
class BudgetWindow:
    limit: int
    window_s: float


# Below WeCom's 30/min and 1000/h: our send time and WeCom's receive time differ by the
# network round trip, and an update of a card may count too (undocumented).
DEFAULT_WINDOWS: tuple[BudgetWindow, ...] = (BudgetWindow(28, 60.0), BudgetWindow(960, 3600.0))


class RecipientBusy(DeliveryRetryLater):
    """The recipient's budget is spent: retry after `retry_after_s` (nothing was sent)."""

    def __init__(self, recipient: str, retry_after_s: float) -> None:
        super().__init__(f"wecom: {recipient} reached the per-user message budget", retry_after_s=retry_after_s)
        self.recipient = recipient


class RecipientBudget(Protocol):
    async def take(self, recipient: str, count: int = 1) -> float:
        """Book `count` messages to `recipient` now: 0.0 when granted, else the seconds to wait
        until they fit (nothing booked)."""
        ...


class MemoryRecipientBudget:
    """One process's view: enough for a single-process deployment."""

    def __init__(
        self,
        windows: Sequence[BudgetWindow] = DEFAULT_WINDOWS,
        clock: Callable[[], float] = time.monotonic,
        max_recipients: int = 10_000,
    ) -> None:
        self._windows = tuple(windows)
        self._clock = clock
        self._max_recipients = max_recipients
        self._booked: dict[str, deque[float]] = {}
        self._longest = max(w.window_s for w in self._windows)

    async def take(self, recipient: str, count: int = 1) -> float:
        # No await inside: concurrent callers cannot book the same slot twice.
        now = self._clock()
        if len(self._booked) > self._max_recipients:
            self._booked = {k: q for k, q in self._booked.items() if q and q[-1] > now - self._longest}
        booked = self._booked.setdefault(recipient, deque())
        while booked and booked[0] <= now - self._longest:
            booked.popleft()
        count = min([count, *(w.limit for w in self._windows)])
        wait = 0.0
        for window in self._windows:
            recent = [t for t in booked if t > now - window.window_s]
            over = len(recent) + count - window.limit
            if over > 0:
                # The over-th oldest booking in this window must expire first.
                wait = max(wait, recent[over - 1] + window.window_s - now)
        if wait > 0:
            return wait
        booked.extend([now] * count)
        return 0.0


# KEYS: one sorted set per window. ARGV: now, count, member prefix, then limit, window_s per key.
_TAKE_SCRIPT = """
local now = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local over = redis.call('ZCARD', key) + count - limit
  if over > 0 then
    local oldest = redis.call('ZRANGE', key, over - 1, over - 1, 'WITHSCORES')
    local w = tonumber(oldest[2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[3 + 2 * i])
  for j = 1, count do
    redis.call('ZADD', key, now, ARGV[3] .. ':' .. j)
  end
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
end
return '0'
"""


class RedisRecipientBudget:
    """Shared by every process of the deployment (atomic: one Lua script per booking)."""

    def __init__(
        self,
        redis: Any,
        windows: Sequence[BudgetWindow] = DEFAULT_WINDOWS,
        clock: Callable[[], float] = time.time,  # wall clock: comparable across processes
        prefix: str = "ticketbot:wecom:budget:",
    ) -> None:
        self._redis = redis
        self._windows = tuple(windows)
        self._clock = clock
        self._prefix = prefix
        self._script = redis.register_script(_TAKE_SCRIPT)

    async def take(self, recipient: str, count: int = 1) -> float:
        count = min([count, *(w.limit for w in self._windows)])
        keys = [f"{self._prefix}{recipient}:{int(w.window_s)}" for w in self._windows]
        args: list[Any] = [repr(self._clock()), count, secrets.token_hex(8)]
        for window in self._windows:
            args += [window.limit, repr(window.window_s)]
        answer = await self._script(keys=keys, args=args)
        return float(answer.decode() if isinstance(answer, bytes) else answer)
