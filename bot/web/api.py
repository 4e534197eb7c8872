"""The JSON API (/api/) and /healthz. Paths are a contract (see CONTRACTS.md)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy import text

from bot.runtime import Runtime
from storage.database import compact_json

RUNTIME = web.AppKey("runtime", Runtime)
# Answers are dumped with compact_json, as the playground's: Chinese as itself, so that
# `curl /api/tickets` is readable (any JSON reader takes either form).


def json_error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, dumps=compact_json)


@web.middleware
async def api_token_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    token = request.app[RUNTIME].settings.api_token
    supplied = request.headers.get("Authorization", "")
    if token and request.path.startswith("/api/") and not bearer_matches(supplied, token):
        return json_error(401, "unauthorized: send Authorization: Bearer <API_TOKEN>")
    return await handler(request)


def bearer_matches(header: str, token: str) -> bool:
    """`Authorization: Bearer <token>`: the scheme is case-insensitive (RFC 9110 §11.1), the token
    is compared exactly and in constant time."""
    scheme, _, credentials = header.strip().partition(" ")
    supplied = credentials.strip()
    return scheme.lower() == "bearer" and hmac.compare_digest(
        supplied.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    )


async def healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any database failure means unhealthy
        return web.json_response({"status": "error", "database": str(error)[:200]}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


async def list_tickets(request: web.Request) -> web.Response:
    try:
        limit = min(500, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        return json_error(400, "limit must be an integer")
    async with request.app[RUNTIME].uow() as uow:
        tickets = await uow.list_tickets(limit=limit)
    return web.json_response([t.to_public_dict() for t in tickets], dumps=compact_json)


async def get_ticket(request: web.Request) -> web.Response:
    number = request.match_info["number"].strip().upper()
    async with request.app[RUNTIME].uow() as uow:
        ticket = await uow.get_ticket(number)
        if ticket is None:
            return json_error(404, f"ticket {number} not found")
        events = await uow.audit_for_ticket(number)
    body = ticket.to_public_dict()
    body["audit"] = [
        {"seq": e.id, "at": e.at.isoformat(), "actor_id": e.actor_id, "kind": e.kind, "payload": e.payload,
         "hash": e.hash}
        for e in events
    ]
    return web.json_response(body, dumps=compact_json)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/tickets", list_tickets)
    app.router.add_get("/api/tickets/{number}", get_ticket)
