"""Outbound webhook events (issue 23): what other systems are told about tickets.

Every fact is audited (core/service.py `Context.audit`), so events follow the audit trail: an
observer per audit kind turns the fact into an event (its body as of that moment), and at the end of
the command (`@before_commit`) each event becomes one delivery row per matching subscription IN THE
SAME TRANSACTION as the change (the unit of work's `webhooks()`, storage/webhook_store.py), with the
external refs the command linked (an API client's own id of a ticket it just created). A rolled-back
command tells nobody; a committed one is delivered later, off the request path (bot/jobs/webhooks.py).

The body is fixed when the event happens (redeliveries send the same bytes with the same event
id, so receivers can dedupe) and always carries the three golden fields at its top level:
`customer_key`, `global_id` and `status` (the core status).

Status lock, outbound half: a ticket is never reported closed (resolved) before the customer's
signature is on record. The workflow already requires it (sign_off is the only way into closed);
an event that would say otherwise is withheld here and logged, not sent.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from core.hub.api import global_id, new_global_id
from core.hub.store import hub_of
from core.lifecycle.signoff import is_signed
from core.model import Ticket, TicketStatus
from core.repository import UnitOfWork
from core.service import Context, after_audit, before_commit

log = logging.getLogger(__name__)

TICKET_CREATED = "ticket.created"
STATUS_CHANGED = "ticket.status_changed"
ASSIGNED = "ticket.assigned"
SIGNED = "ticket.signed"
SLA_BREACHED = "sla.breached"
PARTS_REQUESTED = "parts.requested"
EVENT_TYPES: tuple[str, ...] = (TICKET_CREATED, STATUS_CHANGED, ASSIGNED, SIGNED, SLA_BREACHED, PARTS_REQUESTED)


@dataclass(slots=True)
class PendingEvent:
    """An event of the running command, written at its end (`before_commit`)."""

    event_id: str
    event_type: str
    ticket_number: str
    at: datetime
    document: dict[str, Any]  # the body as of the event, without the external refs
    subscribers: list[tuple[int, str]]


class WebhookOutbox(Protocol):
    """The webhook outbox on the unit of work's transaction."""

    pending: list[PendingEvent]  # this command's events, in order

    async def subscribers(self, event_type: str) -> list[tuple[int, str]]:
        """(id, client) of the active subscriptions that want `event_type` (read once per unit of work)."""
        ...

    async def queue(self, *, event_id: str, event_type: str, ticket_number: str | None, at: datetime,
                    bodies: list[tuple[int, str]]) -> None:
        """One pending delivery row per (subscription id, body), in this transaction."""
        ...


# A system's own field names and values (the hub's field mappings): rewrites our body for one client.
# Installed by whoever owns the mappings; None: every system gets our body as is. The golden fields
# are put back at the top level whatever a mapping does.
BodyMapper = Callable[[Context, str, dict[str, Any]], Awaitable[dict[str, Any]]]
_BODY_MAPPER: list[BodyMapper] = []


def install_body_mapper(mapper: BodyMapper | None) -> BodyMapper | None:
    """Install `mapper`; returns the one it replaces (to put back: a test's own mapper)."""
    previous = _BODY_MAPPER[0] if _BODY_MAPPER else None
    _BODY_MAPPER[:] = [mapper] if mapper is not None else []
    return previous


class _WithWebhooks(Protocol):
    def webhooks(self) -> WebhookOutbox: ...


def webhooks_of(uow: UnitOfWork) -> WebhookOutbox:
    """Not on the UnitOfWork port: only the hub uses it (storage's unit of work has `webhooks()`),
    the same way as core/hub/store.py's `hub_of`."""
    return cast(_WithWebhooks, uow).webhooks()


def parse_event_types(text: str) -> list[str]:
    """`E1,E2` → the event types, in the given order, without repeats; unknown ones raise ValueError
    naming them and the known ones."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"no event types given; known: {', '.join(EVENT_TYPES)}")
    unknown = [name for name in names if name not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(names))


def ticket_summary(ticket: Ticket) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "global_id": global_id(ticket),
        "status": ticket.status.value,
        "status_label": ticket.status.label,
        "customer_key": ticket.customer_id,
        "category": ticket.category,
        "priority": ticket.priority,
        "impact": ticket.impact,
        "assignee_id": ticket.assignee_id,
        "store_id": ticket.store_id,
        "asset_id": ticket.asset_id,
        "created_at": ticket.created_at.isoformat(),
        "updated_at": ticket.updated_at.isoformat(),
        "closed_at": ticket.closed_at.isoformat() if ticket.closed_at else None,
    }


GOLDEN_FIELDS = ("customer_key", "global_id", "status")


def event_document(event_id: str, event_type: str, occurred_at: str, ticket: Ticket,
                   data: dict[str, Any]) -> dict[str, Any]:
    """The body as a dict, golden fields first."""
    return {
        "customer_key": ticket.customer_id,
        "global_id": global_id(ticket),
        "status": ticket.status.value,
        "id": event_id,
        "type": event_type,
        "occurred_at": occurred_at,
        "ticket": ticket_summary(ticket),
        "data": data,
    }


def encode(document: dict[str, Any]) -> str:
    """Compact JSON, Chinese unescaped: the exact bytes signed and sent (again on every redelivery)."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


async def emit(ctx: Context, event_type: str, ticket: Ticket, data: dict[str, Any]) -> None:
    """Record an event of the running command: its body as of now; written with the command's
    commit (`write_events`), when what the command links to the ticket (an external ref) is known."""
    outbox = webhooks_of(ctx.uow)
    subscribers = await outbox.subscribers(event_type)
    if not subscribers:
        return
    if ticket.status is TicketStatus.CLOSED and not is_signed(ticket):
        # The status lock: no subscriber hears "closed" before the customer's signature.
        log.warning("webhook %s of %s withheld: closed without the customer's signature", event_type, ticket.number)
        return
    event_id = str(uuid.uuid4())
    # A copy of everything as of now: the command may still change what `data` refers to.
    document = json.loads(encode(event_document(event_id, event_type, ctx.now.isoformat(), ticket, data)))
    outbox.pending.append(PendingEvent(event_id, event_type, ticket.number, ctx.now, document, subscribers))


@before_commit
async def write_events(ctx: Context) -> None:
    """Write the command's events (run by the service before its commit)."""
    outbox = webhooks_of(ctx.uow)
    if not outbox.pending:
        return
    events, outbox.pending = outbox.pending, []
    refs: dict[str, dict[str, str]] = {}
    for event in events:
        if event.ticket_number not in refs:  # every system's id of the ticket, as the command leaves them
            refs[event.ticket_number] = await hub_of(ctx.uow).external_refs(event.ticket_number)
        document = event.document
        document["ticket"]["external_refs"] = refs[event.ticket_number]
        ours = encode(document)
        bodies: list[tuple[int, str]] = []
        for subscription_id, client in event.subscribers:
            if not _BODY_MAPPER:
                bodies.append((subscription_id, ours))
                continue
            mapped = await _BODY_MAPPER[0](ctx, client, json.loads(ours))  # a copy: the mapper may change it
            golden = {k: document[k] for k in GOLDEN_FIELDS}
            bodies.append((subscription_id, encode({**golden, **mapped, **golden})))
        await outbox.queue(event_id=event.event_id, event_type=event.event_type, ticket_number=event.ticket_number,
                           at=event.at, bodies=bodies)


@after_audit("ticket_created")
async def _created(ctx: Context, kind: str, payload: dict[str, Any], ticket: Ticket | None) -> None:
    if ticket is None:
        return
    # The global id is given by an after-create hook (core/hub/api.py), which runs after this event:
    # given here first (the hook keeps it), so the event and the ticket carry the same id.
    if "global_id" not in ticket.data:
        ticket.data["global_id"] = new_global_id()
    await emit(ctx, TICKET_CREATED, ticket, {"description": ticket.description})


@after_audit("status_changed")
async def _moved(ctx: Context, kind: str, payload: dict[str, Any], ticket: Ticket | None) -> None:
    if ticket is None:
        return
    await emit(ctx, STATUS_CHANGED, ticket, {"transition": payload.get("transition"), "from": payload.get("from"),
                                             "to": payload.get("to")})
    if payload.get("transition") == "wait_parts":
        await emit(ctx, PARTS_REQUESTED, ticket, {"note": payload.get("parts")})


@after_audit("offer_sent", "offer_reassigned")
async def _assigned(ctx: Context, kind: str, payload: dict[str, Any], ticket: Ticket | None) -> None:
    # An offer puts a technician on the ticket (已派单); a reassignment to someone who is no
    # technician sends no offer and is no assignment.
    if ticket is None or payload.get("candidate") is None:
        return
    await emit(ctx, ASSIGNED, ticket, {"assignee_id": payload.get("person_id"), "round": payload.get("round"),
                                       "trigger": payload.get("trigger"), "manual": kind == "offer_reassigned",
                                       "expires_at": payload.get("expires_at")})


@after_audit("signed_off")
async def _signed(ctx: Context, kind: str, payload: dict[str, Any], ticket: Ticket | None) -> None:
    if ticket is None:
        return
    await emit(ctx, SIGNED, ticket, {"signed_at": payload.get("at"), "rating": payload.get("rating"),
                                     "in_person": bool(payload.get("in_person"))})


@after_audit("sla_breached")
async def _breached(ctx: Context, kind: str, payload: dict[str, Any], ticket: Ticket | None) -> None:
    if ticket is None:
        return
    await emit(ctx, SLA_BREACHED, ticket, {"track": payload.get("track"), "due": payload.get("due"),
                                           "escalated_to": payload.get("escalated_to")})
