"""GET /metrics: the Prometheus text format. Guarded by METRICS_TOKEN (Bearer) when set, else only
loopback clients are answered (a scrape through a proxy needs the token)."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from aiohttp import web

from bot import metrics
from bot.runtime import Runtime
from storage.webhook_store import SqlWebhookStore

SLA_BREACH_KIND = "sla_breached"
LAST_FIRED = web.AppKey("metrics_last_fired", list)


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _allowed(request: web.Request, token: str | None) -> bool:
    if token:
        scheme, _, supplied = request.headers.get("Authorization", "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            supplied.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))
    return _loopback(request.remote)


def handler(runtime: Runtime) -> Callable[[web.Request], Awaitable[web.Response]]:
    state: list[datetime] = []  # the newest fired time observed: lateness is observed once per timer

    async def scrape(request: web.Request) -> web.Response:
        if not _allowed(request, runtime.settings.metrics_token):
            return web.Response(status=403 if not runtime.settings.metrics_token else 401,
                                text="metrics: send the METRICS_TOKEN as a Bearer token, or scrape from loopback\n")
        now = runtime.clock.now()
        since = state[0] if state else now - timedelta(minutes=5)
        async with runtime.uow() as uow:
            hub = uow.hub()
            snapshot = metrics.Snapshot(await hub.tickets_by_state(), await hub.audit_count(SLA_BREACH_KIND))
            late, newest = await hub.timer_lateness(since)
        snapshot.webhooks_pending = await SqlWebhookStore(runtime.sessions, runtime.clock).pending_by_client()
        if newest is not None:
            state[:] = [newest]
        elif not state:
            state.append(since)
        body = metrics.render(snapshot, late)
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    return scrape
