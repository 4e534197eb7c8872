"""A fake external system receiving ticketbot's webhooks: a real aiohttp server on loopback.

It checks every signature with the contract's formula written out here independently (HMAC-SHA256
of "<t>.<raw body>" under the subscription's secret, hex, in `t=<unix>,v1=<hex>`), rejects replays
older than five minutes, dedupes by `X-Ticketbot-Event-Id` like a careful receiver would, and can be
told per endpoint to fail its first N requests, to answer slowly, or to hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

REPLAY_WINDOW_S = 300


def verify_signature(secret: str, header: str, raw_body: bytes, now: float | None = None) -> bool:
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    expected = hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + raw_body,
                        hashlib.sha256).hexdigest()
    fresh = abs((now if now is not None else time.time()) - timestamp) <= REPLAY_WINDOW_S
    return fresh and hmac.compare_digest(expected, given)


@dataclass
class Endpoint:
    secret: str = ""
    fail_first: int = 0  # answer 500 to this many requests first
    fail_always: bool = False
    delay_s: float = 0.0  # answer after this long (a hang: a long delay)
    requests: int = 0
    bad_signatures: int = 0
    duplicates: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # accepted, deduped, in arrival order
    headers: list[dict[str, str]] = field(default_factory=list)  # of every request
    arrived_at: list[float] = field(default_factory=list)  # monotonic, of every request
    seen: set[str] = field(default_factory=set)


class WebhookReceiver:
    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def endpoint(self, name: str, **options: Any) -> Endpoint:
        self.endpoints[name] = Endpoint(**options)
        return self.endpoints[name]

    def url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{name}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        endpoint = self.endpoints[request.match_info["name"]]
        endpoint.requests += 1
        endpoint.arrived_at.append(time.monotonic())
        endpoint.headers.append(dict(request.headers))
        raw = await request.read()
        if endpoint.delay_s:
            await asyncio.sleep(endpoint.delay_s)
        if not verify_signature(endpoint.secret, request.headers.get("X-Ticketbot-Signature", ""), raw):
            endpoint.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        if endpoint.fail_always or endpoint.fail_first > 0:
            endpoint.fail_first -= 1
            return web.json_response({"error": "on purpose"}, status=500)
        event_id = request.headers["X-Ticketbot-Event-Id"]
        if event_id in endpoint.seen:
            endpoint.duplicates += 1
            return web.json_response({"duplicate": True})
        endpoint.seen.add(event_id)
        body = json.loads(raw)
        body["_header_event"] = request.headers.get("X-Ticketbot-Event")
        endpoint.events.append(body)
        return web.json_response({"ok": True})
