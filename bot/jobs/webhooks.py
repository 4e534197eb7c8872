"""Outbound webhook delivery (issue 23), off the request path.

Deliveries are rows written with the change that caused them (storage/webhook_store.py). This loop
claims due rows per subscription and POSTs them:

- signed: `X-Ticketbot-Signature: t=<unix>,v1=<hex>` with hex = HMAC-SHA256(secret, f"{t}.{raw body}"),
  `X-Ticketbot-Event-Id` (the same for every delivery and redelivery of one event: receivers dedupe
  on it), `X-Ticketbot-Event` (the type);
- isolated: each subscription has its own few slots (WEBHOOK_CONCURRENCY) and every request its
  timeout (WEBHOOK_TIMEOUT_S), so a receiver that hangs holds only its own slots, never another
  system's deliveries, and never the service (nothing here runs on a request);
- retried with exponential backoff for 3 days, then dead-lettered; every attempt is logged;
- SSRF-safe: a URL whose host is or resolves to a loopback, private, link-local or otherwise
  non-global address is refused at `webhook add` and again at every delivery: the connection's
  resolver checks the addresses it connects to (DNS rebinding), unless WEBHOOK_ALLOW_PRIVATE is on.
  Redirects are not followed (a 3xx is a failed attempt).

Where it runs: in every process that handles the inbox (`ticketbot serve`; with PROCESS_INBOX=worker
only in `ticketbot worker`). On PostgreSQL several processes share the table (SKIP LOCKED).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from bot import metrics
from core.ports import Clock
from core.wakeups import wait_for_event
from storage.webhook_store import Attempt, ClaimedDelivery, SqlWebhookStore, Subscription, on_queued

log = logging.getLogger(__name__)

USER_AGENT = "ticketbot-webhooks/1"
MAX_URL = 2048


class UnsafeUrl(ValueError):
    """A webhook URL that is malformed or points into a private network."""


def sign(secret: str, timestamp: int, body: str) -> str:
    """The X-Ticketbot-Signature header value (the contract)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def refused_address(address: str) -> bool:
    """Whether connecting to `address` would reach a loopback, private, link-local, shared, reserved
    or multicast network (anything not globally routable)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_url_syntax(url: str) -> tuple[str, int]:
    """(host, port) of an acceptable webhook URL; UnsafeUrl saying what is wrong otherwise."""
    if len(url) > MAX_URL:
        raise UnsafeUrl(f"URL longer than {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeUrl(f"URL must start with http:// or https:// (got {url!r})")
    if not parts.hostname:
        raise UnsafeUrl(f"URL has no host: {url!r}")
    if parts.username or parts.password:
        raise UnsafeUrl("URL must not carry a user name or password (the signature authenticates us)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise UnsafeUrl(f"URL has a bad port: {url!r}") from error
    return parts.hostname, port


async def check_url(url: str, *, allow_private: bool) -> None:
    """The check at `webhook add`: syntax, then every address the host resolves to now."""
    host, port = check_url_syntax(url)
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UnsafeUrl(f"host {host!r} does not resolve: {error}") from error
    for info in infos:
        address = str(info[4][0])
        if refused_address(address):
            raise UnsafeUrl(f"host {host!r} resolves to {address}, a loopback/private/link-local address; "
                            "refused (an admin may set WEBHOOK_ALLOW_PRIVATE=on)")


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses non-global addresses: the check
    happens on the very addresses the connection uses, so a name that resolved to a public address
    at `webhook add` and to 127.0.0.1 now (DNS rebinding) is refused now."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if refused_address(result["host"]):
                # errno and text: aiohttp shows an OSError's strerror in its connection error
                raise OSError(errno.EACCES, f"refused: {host} resolves to {result['host']}, a loopback/private/"
                                            "link-local address (WEBHOOK_ALLOW_PRIVATE is off)")
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass(slots=True)
class _Lane:
    """One subscription's deliveries in this process: claimed ahead, sent by at most `concurrency` workers."""

    subscription: Subscription
    queued: collections.deque[ClaimedDelivery] = field(default_factory=collections.deque)
    workers: int = 0


class WebhookDispatcher:
    PREFETCH = 2  # claim up to this many times `concurrency` rows ahead per subscription
    FLUSH_S = 0.02  # attempts that finish within this are recorded in one transaction

    def __init__(self, store: SqlWebhookStore, clock: Clock, *, timeout_s: float = 10.0, concurrency: int = 8,
                 allow_private: bool = False, backoff_base_s: float = 10.0, backoff_cap_s: float = 6 * 3600.0,
                 idle_s: float = 1.0) -> None:
        self.store = store
        self.clock = clock
        self.timeout_s = timeout_s
        self.concurrency = max(1, concurrency)
        self.allow_private = allow_private
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.idle_s = idle_s
        self.wake = asyncio.Event()
        self._lanes: dict[int, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes: list[tuple[ClaimedDelivery, Attempt, timedelta]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._subscriptions: dict[int, Subscription] = {}
        self._subscriptions_read = -1e9  # monotonic time of the last read
        self._last_requeue = -1e9

    def backoff(self, attempts: int) -> timedelta:
        """After the n-th failed attempt: base·2^(n−1), capped, with up to 20 % jitter (receivers that
        failed together do not all come back at the same instant)."""
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2.0 ** max(0, attempts - 1))
        return timedelta(seconds=delay * random.uniform(1.0, 1.2))

    def lease(self) -> timedelta:
        """How long a claim holds: every row claimed ahead is sent (or timed out) well within it."""
        return timedelta(seconds=max(120.0, self.timeout_s * (self.PREFETCH + 1) * 2))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, resolver=None if self.allow_private else GuardedResolver())
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT})
        return self._session

    async def _active_subscriptions(self) -> dict[int, Subscription]:
        # Re-read at most once a second: the loop turns often while deliveries flow.
        now = time.monotonic()
        if now - self._subscriptions_read >= 1.0:
            self._subscriptions = {s.id: s for s in await self.store.subscriptions()}
            self._subscriptions_read = now
            for subscription_id, lane in self._lanes.items():
                if subscription_id not in self._subscriptions:
                    lane.queued.clear()  # removed: its deliveries are dead-lettered, none is sent any more
        return self._subscriptions

    async def run_once(self) -> int:
        """Claim what is due for every subscription with room and start sending it; the number claimed."""
        now = time.monotonic()
        if now - self._last_requeue >= 30.0:
            self._last_requeue = now
            await self.store.requeue_stuck()
        due = await self.store.due_subscriptions()  # one query when nothing is due
        if not due:
            return 0
        subscriptions = await self._active_subscriptions()
        if not due <= subscriptions.keys():  # added since the last read
            self._subscriptions_read = -1e9
            subscriptions = await self._active_subscriptions()
        claimed = 0
        for subscription_id in sorted(due):
            subscription = subscriptions.get(subscription_id)
            if subscription is None:
                continue
            lane = self._lanes.get(subscription_id)
            if lane is None:
                lane = self._lanes[subscription_id] = _Lane(subscription)
            lane.subscription = subscription  # its URL or secret may have changed
            room = self.concurrency * self.PREFETCH - len(lane.queued) - lane.workers
            if room < self.concurrency:
                continue  # enough ahead: claim again when it runs low, in a batch
            rows = await self.store.claim_due(subscription_id, room, self.lease())
            lane.queued.extend(rows)
            claimed += len(rows)
            for _ in range(min(self.concurrency - lane.workers, len(lane.queued))):
                lane.workers += 1
                self._spawn(self._work(lane))
        return claimed

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _work(self, lane: _Lane) -> None:
        try:
            while lane.queued:
                delivery = lane.queued.popleft()
                attempt = await self.send(lane.subscription, delivery)
                self._outcomes.append((delivery, attempt, self.backoff(delivery.attempts)))
                if self._flusher is None or self._flusher.done():
                    self._flusher = self._spawn(self._flush_soon())
                if len(lane.queued) < self.concurrency:
                    self.wake.set()  # running low: claim more
        finally:
            lane.workers -= 1

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.FLUSH_S)
        await self.flush()

    async def flush(self) -> None:
        """Record the finished attempts (a failure leaves their rows claimed: due again after the lease)."""
        while self._outcomes:
            batch, self._outcomes = self._outcomes[:500], self._outcomes[500:]
            try:
                statuses = await self.store.record_many(batch)
            except Exception:
                log.exception("%s webhook attempts could not be recorded", len(batch))
                continue
            for (delivery, attempt, _), status in zip(batch, statuses, strict=True):
                subscription = self._subscriptions.get(delivery.subscription_id)
                metrics.count_webhook(subscription.client if subscription else "(removed)", status)
                if status != "delivered":
                    log.warning("webhook delivery %s (%s, subscription %s) failed, attempt %s, now %s: %s",
                                delivery.id, delivery.event_type, delivery.subscription_id, delivery.attempts,
                                status, attempt.error)

    async def send(self, subscription: Subscription, delivery: ClaimedDelivery) -> Attempt:
        """One POST; never raises for what the receiver or the network does."""
        # Wall time, not the service's clock: the receiver compares it with its own to reject replays.
        timestamp = int(time.time())
        signature = sign(subscription.secret, timestamp, delivery.body)
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Ticketbot-Signature": signature,
                   "X-Ticketbot-Event-Id": delivery.event_id, "X-Ticketbot-Event": delivery.event_type,
                   "X-Ticketbot-Delivery": str(delivery.id)}
        started = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            if not self.allow_private:
                host, _ = check_url_syntax(subscription.url)
                with contextlib.suppress(ValueError):  # a name, not an address: the resolver checks it
                    if refused_address(host):
                        return Attempt(signature, None, 0, f"refused: {host} is a loopback/private/link-local "
                                                           "address (WEBHOOK_ALLOW_PRIVATE is off)")
            async with self._client().post(subscription.url, data=delivery.body.encode(), headers=headers,
                                           allow_redirects=False,
                                           timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as response:
                if 200 <= response.status < 300:
                    return Attempt(signature, response.status, elapsed(), None)
                text = (await response.content.read(300)).decode("utf-8", "replace")
                return Attempt(signature, response.status, elapsed(), f"HTTP {response.status}: {text[:200]}")
        except TimeoutError:
            return Attempt(signature, None, elapsed(), f"timeout after {self.timeout_s:g} s")
        except UnsafeUrl as error:
            return Attempt(signature, None, elapsed(), f"refused: {error}")
        except (aiohttp.ClientError, OSError) as error:
            return Attempt(signature, None, elapsed(), f"{type(error).__name__}: {error}")

    async def run_forever(self) -> None:
        # Woken when this process queues deliveries; the poll (idle_s) finds what others queued.
        unregister = on_queued(self.wake.set)
        try:
            await self._loop()
        finally:
            unregister()

    async def _loop(self) -> None:
        while True:
            self.wake.clear()
            try:
                claimed = await self.run_once()
            except Exception:
                log.exception("webhook loop error")
                claimed = 0
            if not claimed:
                await wait_for_event(self.wake, self.idle_s)

    async def drain(self) -> None:
        """Wait for the deliveries claimed so far and record them (tests, the bench)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.flush()

    async def close(self) -> None:
        """Stop: what was claimed but not sent is released at once, what was sent is recorded."""
        for task in list(self._tasks):
            if task is not self._flusher:
                task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        unsent = [d.id for lane in self._lanes.values() for d in lane.queued]
        for lane in self._lanes.values():
            lane.queued.clear()
        with contextlib.suppress(Exception):
            await self.flush()
            await self.store.release(unsent)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def stats(self) -> dict[str, Any]:
        return {"in_flight": {sid: lane.workers for sid, lane in self._lanes.items()},
                "queued": {sid: len(lane.queued) for sid, lane in self._lanes.items()}}
