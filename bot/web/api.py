"""The JSON API (/api/) and /healthz. Paths are a contract (see CONTRACTS.md)."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from aiohttp import web
from sqlalchemy import text

from bot.runtime import Runtime
from core.masterdata.identifiers import mask_phone
from core.model import Ticket
from storage.database import compact_json
from storage.unit_of_work import SqlUnitOfWork

RUNTIME = web.AppKey("runtime", Runtime)
# Answers are dumped with compact_json, as the playground's: Chinese as itself, so that
# `curl /api/tickets` is readable (any JSON reader takes either form).
# /api/tickets reads and encodes this many tickets at a time, letting the loop run in between: 500 in one
# go held it 48–82 ms at 100 k tickets (issue 24); a slice is ~5 ms.
LIST_SLICE = 100


def json_error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, dumps=compact_json)


@web.middleware
async def api_token_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    token = request.app[RUNTIME].settings.api_token
    supplied = request.headers.get("Authorization", "")
    # /api/v1/ authenticates its own clients (bot/api_v1/auth.py; API_TOKEN is one of them there).
    if token and request.path.startswith("/api/") and not request.path.startswith("/api/v1/") \
            and not bearer_matches(supplied, token):
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
    runtime = request.app[RUNTIME]
    items: list[str] = []  # each ticket's JSON: the array joined from them is what one dump of the list gives
    before: int | None = None
    while len(items) < limit:
        if before is not None:
            await asyncio.sleep(0)  # the loop runs between slices
        # Newest first; a slice continues below the last id (the API v1 list's keyset page).
        async with runtime.uow() as uow:
            page = await uow.hub().ticket_page(before_id=before, limit=min(LIST_SLICE, limit - len(items)))
        items += [compact_json(t.to_public_dict()) for t in page]
        if len(page) < LIST_SLICE:
            break
        before = page[-1].id
    return web.Response(text="[" + ",".join(items) + "]", content_type="application/json")


async def get_ticket(request: web.Request) -> web.Response:
    number = request.match_info["number"].strip().upper()
    runtime = request.app[RUNTIME]
    async with runtime.uow() as uow:
        ticket = await uow.get_ticket(number)
        if ticket is None:
            return json_error(404, f"ticket {number} not found")
        events = await uow.audit_for_ticket(number)
        today = runtime.clock.now().astimezone(runtime.service.config.timezone).date()
        master = await master_data_of(uow, ticket, today)
    body = ticket.to_public_dict()
    body.update(master)
    body["audit"] = [
        {"seq": e.id, "at": e.at.isoformat(), "actor_id": e.actor_id, "kind": e.kind, "payload": e.payload,
         "hash": e.hash}
        for e in events
    ]
    return web.json_response(body, dumps=compact_json)


async def master_data_of(uow: SqlUnitOfWork, ticket: Ticket, today: date) -> dict[str, Any]:
    """`store`, `customer`, `asset`, `contract`, `location` of a ticket (CONTRACTS.md), each None when
    unknown: the records as they are now (warranty and validity as of today), else the snapshot intake
    took (core/masterdata/prefill.py). Phones only masked."""
    md = uow.masterdata()
    raw = ticket.data.get("masterdata")
    facts: dict[str, Any] = raw if isinstance(raw, dict) else {}
    store = await md.get_store(ticket.store_id) if ticket.store_id else None
    person = await uow.get_person(ticket.customer_id)
    record = await md.get_customer(ticket.customer_id)
    taken = facts.get("customer")
    snapshot: dict[str, Any] = taken if isinstance(taken, dict) else {}
    customer: dict[str, Any] | None = None
    if person is not None or record is not None or snapshot:
        phone = (record.phones[0] if record is not None and record.phones else None) or \
            (person.phone if person is not None else None)
        customer = {"id": ticket.customer_id,
                    "name": record.name if record is not None else person.name if person is not None
                    else snapshot.get("name"),
                    "phone": mask_phone(phone) if phone else snapshot.get("phone")}
    asset = await md.get_asset(ticket.asset_id) if ticket.asset_id else None
    contract = facts.get("contract") if isinstance(facts.get("contract"), dict) else None
    current = await md.get_contract(str(contract["number"])) if contract and contract.get("number") else None
    lat, lng = ticket.site_lat, ticket.site_lng
    address = facts.get("address")
    return {
        "store": {"code": store.code, "name": store.name, "address": store.address} if store is not None else None,
        "customer": customer,
        "asset": None if asset is None else {
            "id": asset.id, "sn": asset.sn, "plate": asset.plate, "vin": asset.vin, "brand": asset.brand,
            "model": asset.model, "warranty_end": asset.warranty_end.isoformat() if asset.warranty_end else None,
            "in_warranty": asset.in_warranty(today)},
        "contract": current.to_dict(today) if current is not None else contract,
        "location": None if lat is None and not address else {
            "lat": lat, "lng": lng, "address": address, "source": facts.get("location_source")},
    }


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/tickets", list_tickets)
    app.router.add_get("/api/tickets/{number}", get_ticket)
