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
from collections import OrderedDict, deque
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
    """One process's view: enough for a single-process deployment.

    Per recipient one deque of booking times per window; recipients are kept in the order of their
    last booking, so those idle for the longest window are forgotten from the front, a few per
    booking. (A rebuild of the whole table once it held 10,000 people ran on *every* send while
    more than that many were messaged within the hour: issue 24.)
    """

    def __init__(
        self,
        windows: Sequence[BudgetWindow] = DEFAULT_WINDOWS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._windows = tuple(windows)
        self._clock = clock
        self._booked: OrderedDict[str, tuple[deque[float], ...]] = OrderedDict()  # least recently booked first
        self._longest = max(w.window_s for w in self._windows)

    @property
    def recipients_tracked(self) -> int:
        """Recipients with a booking within the longest window (as of the last booking)."""
        return len(self._booked)

    async def take(self, recipient: str, count: int = 1) -> float:
        # No await inside: concurrent callers cannot book the same slot twice.
        now = self._clock()
        self._forget_idle(now)
        queues = self._booked.get(recipient) or tuple(deque() for _ in self._windows)
        count = min([count, *(w.limit for w in self._windows)])
        wait = 0.0
        for window, booked in zip(self._windows, queues, strict=True):
            horizon = now - window.window_s
            while booked and booked[0] <= horizon:
                booked.popleft()
            over = len(booked) + count - window.limit
            if over > 0:
                # The over-th oldest booking in this window must expire first (near the left end).
                wait = max(wait, booked[over - 1] + window.window_s - now)
        if wait > 0:
            return wait
        for booked in queues:
            booked.extend([now] * count)
        self._booked[recipient] = queues
        self._booked.move_to_end(recipient)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        horizon = now - self._longest
        while self._booked:
            queues = next(iter(self._booked.values()))
            if any(booked and booked[-1] > horizon for booked in queues):
                return
            self._booked.popitem(last=False)


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
