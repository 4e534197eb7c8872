"""API clients: who is calling, with which scopes, how fast.

A client's token is 32 random bytes (urlsafe base64, prefix `tb_`); only its SHA-256 is stored, so
a stolen database yields no usable token and a lookup is one index probe. `API_TOKEN` still works
as an admin read token (tickets:read, masterdata:read). Lookups are cached for a few seconds per
process (a revoked token stops working within `CACHE_S` in other processes, at once in this one).
Rate limits are a token bucket per client and process (API_RATE_LIMIT_PER_MINUTE)."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass

from bot.api_v1.problems import ProblemError
from bot.runtime import Runtime
from core.model import Person

SCOPES = ("tickets:read", "tickets:write", "masterdata:read", "masterdata:write",
          "hub:read", "hub:admin")  # hub: the dashboard and field mappings (read), changes and redelivery (admin)
ADMIN_READ_SCOPES = frozenset({"tickets:read", "masterdata:read", "hub:read"})
ADMIN_CLIENT = "admin"
TOKEN_PREFIX = "tb_"
CACHE_S = 5.0


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scopes: frozenset[str]
    person: Person | None  # the actor of its writes; None: the API_TOKEN admin reader, which writes nothing

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ProblemError(403, "scope", f"this client lacks the scope {scope}", required_scope=scope)


class Authenticator:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def forget(self) -> None:
        self._cache.clear()

    async def principal(self, header: str) -> Principal:
        scheme, _, credentials = header.strip().partition(" ")
        token = credentials.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise ProblemError(401, "unauthorized", "send Authorization: Bearer <token>",
                               headers={"WWW-Authenticate": 'Bearer realm="ticketbot"'})
        admin = self.runtime.settings.api_token
        if admin and hmac.compare_digest(token.encode("utf-8", "surrogateescape"),
                                         admin.encode("utf-8", "surrogateescape")):
            return Principal(ADMIN_CLIENT, ADMIN_READ_SCOPES, None)
        digest = token_hash(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < CACHE_S:
            found = cached[1]
        else:
            found = None
            async with self.runtime.uow() as uow:
                client = await uow.hub().client_by_token_hash(digest)
                person = await uow.get_person(client.person_id) if client is not None and client.active else None
            if client is not None and person is not None:
                found = Principal(client.name, client.scopes, person)
            if len(self._cache) > 10_000:  # guessed tokens must not grow it without bound
                self._cache.clear()
            self._cache[digest] = (now, found)
        if found is None:
            raise ProblemError(401, "unauthorized", "unknown or revoked token",
                               headers={"WWW-Authenticate": 'Bearer realm="ticketbot", error="invalid_token"'})
        return found


class RateLimiter:
    """A token bucket per client: `per_minute` requests a minute, bursts up to that many."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            retry = max(1, math.ceil((1.0 - tokens) / self.rate))
            raise ProblemError(429, "rate_limited", f"rate limit of {int(self.capacity)} requests a minute reached",
                               headers={"Retry-After": str(retry)})
        self._buckets[client] = (tokens - 1.0, now)
