"""TokenCache implementations: in-process, or Redis so that every process shares one token."""

from __future__ import annotations

import time
from typing import Any


class MemoryTokenCache:
    def __init__(self) -> None:
        self._values: dict[str, tuple[str, float]] = {}

    async def get(self, key: str) -> str | None:
        item = self._values.get(key)
        if item is None or item[1] <= time.monotonic():
            self._values.pop(key, None)
            return None
        return item[0]

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        self._values[key] = (value, time.monotonic() + ttl_s)

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)


class RedisTokenCache:
    def __init__(self, redis: Any, prefix: str = "ticketbot:token:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def get(self, key: str) -> str | None:
        value = await self._redis.get(self._prefix + key)
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        await self._redis.set(self._prefix + key, value, px=max(1, int(ttl_s * 1000)))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)
