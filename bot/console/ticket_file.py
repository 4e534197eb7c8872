"""The ticket file /console/tickets/<number>: everything the audit knows, in order and in words (issue 22).

Shown: the facts and master data (as /api/tickets/{number}), SLA deadlines, pauses, escalations and
root causes, every offer with its score breakdown and who accepted, the check-in with its position on a
map (Leaflet, vendored; coordinates in text without JavaScript), every photo as an image, the SOP steps
shown, parts waits, the plan, the sign-off (signature image when the sign-off page stored one, both
confirmations, the rating), the whole trail in words, and the audit chain's check for this ticket
(bot/console/trail_check.py).

Photos (`/photos/<sha256>`) and the signature image (`/signature`) are served only to signed-in staff
who may see the ticket's store; anything else is a 403, audited (`console_forbidden`).

Staff actions (supervisors and admins, as in the chat): reassign, priority/impact, cancel, triage,
reopen — CSRF-checked forms that run the chat's core commands as the person
(`runtime.service.handle(command, session.person)`), with the same rules and audit. A domain error is
shown on the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlmodel import col

from bot.console.auth import StaffSession, forbidden, local_time, page_context, posted_form, runtime_of, staff
from bot.console.ticket_query import SLA_LABELS, sla_state_of
from bot.console.ticket_words import PURPOSES, TRACKS, describe
from bot.console.trail_check import check_ticket_trail
from bot.photo_store import PhotoStore
from bot.signature_store import SignatureStore
from bot.web.api import master_data_of
from core.commands import CancelTicket, ChangePriority, Transition
from core.dispatch.handlers import ReassignTicket
from core.errors import InvalidInput, NotAllowed, TicketbotError
from core.intake.triage import ClassifyTicket
from core.lifecycle.signoff import CONFIRMATIONS
from core.lifecycle.sop import default_library
from core.lifecycle.sop_handlers import SOP_KIND
from core.model import AuditEvent, Person, Role, Ticket, TicketStatus
from core.sla.matrix import Impact, Priority
from storage.tables import PersonRow, StoreRow, TicketRow

NUMBER = re.compile(r"^[A-Za-z0-9-]{1,32}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
ACTION_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})  # the chat's 转派/优先级/取消工单/分诊 roles
OFFER_KINDS = ("offer_sent", "offer_reassigned")
OFFER_OUTCOMES = {"offer_accepted": "接单", "offer_declined": "拒单", "offer_expired": "超时未接",
                  "offer_withdrawn": "已撤回"}
ACTIONS = {"reassign": "转派", "priority": "调整优先级/影响", "cancel": "取消工单", "triage": "分诊",
           "reopen": "重开"}
MAX_REASON = 200


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    seq: int
    at: datetime
    actor: str
    label: str
    detail: str
    bad: bool


async def _visible_ticket(request: web.Request, session: StaffSession, what: str) -> Ticket:
    """The ticket of the URL if the person may see it: 404 when there is none, 403 (audited) when its
    store is outside their scope."""
    number = request.match_info["number"].strip().upper()
    if not NUMBER.match(number):
        raise _not_found(request, session, number)
    async with runtime_of(request).uow() as uow:
        ticket = await uow.get_ticket(number)
    if ticket is None:
        raise _not_found(request, session, number)
    if not session.can_see_store(ticket.store_id):
        raise await forbidden(request, session, f"工单 {number} 的{what}", ticket_number=number)
    return ticket


def _not_found(request: web.Request, session: StaffSession, number: str) -> web.HTTPNotFound:
    html = aiohttp_jinja2.render_string("console/ticket_missing.html", request,
                                        page_context(request, session, number=number))
    return web.HTTPNotFound(text=html, content_type="text/html")


async def ticket_page(request: web.Request) -> web.StreamResponse:
    session = await staff(request)
    ticket = await _visible_ticket(request, session, "档案")
    return await _render(request, session, ticket)


async def _render(request: web.Request, session: StaffSession, ticket: Ticket, *, error: str = "",
                  status: int = 200) -> web.StreamResponse:
    runtime = runtime_of(request)
    config = runtime.service.config
    now = runtime.clock.now()
    fmt = local_time(request)
    async with runtime.uow() as uow:
        events = await uow.audit_for_ticket(ticket.number)
        photos = await uow.list_photos(ticket.number)
        master = await master_data_of(uow, ticket, now.astimezone(config.timezone).date())
        sop_config = await uow.latest_config(SOP_KIND)
    names = await _names(runtime, _people_in(ticket, events, photos))
    trail = await check_ticket_trail(runtime.sessions, events)
    timeline = [TimelineEntry(int(e.id or 0), e.at, names.get(e.actor_id, e.actor_id),
                              *describe(e.kind, e.payload, names, fmt),
                              bad=e.kind in ("sla_breached", "command_refused", "card_action_refused",
                                             "console_forbidden", "offer_expired", "sla_escalated"))
                for e in events]
    data = ticket.data
    signed = (data.get("signoff") or {}).get("signed") or {}
    checkin = data.get("checkin") or {}
    row = _row_of(ticket)
    library = default_library() if sop_config is None else _library(sop_config[1])
    context = {
        "ticket": ticket, "status_label": ticket.status.label, "master": master, "names": names,
        "timeline": timeline, "trail": trail, "offers": _offers(events, names),
        "photos": [{"sha256": p.sha256, "purpose": PURPOSES.get(p.purpose, p.purpose or "照片"),
                    "uploader": names.get(p.uploader_id, p.uploader_id), "at": p.created_at, "size": p.size}
                   for p in photos],
        "checkin": checkin, "checkin_location": checkin.get("location") if isinstance(checkin, dict) else None,
        "sops": _sops(events, library), "parts": _parts(data, events, names, fmt), "plan": data.get("plan"),
        "signed": signed, "signature_image": _signature_sha(signed), "confirmation_labels": CONFIRMATIONS,
        "signoff": data.get("signoff") or {}, "sla": _sla(data.get("sla") or {}, names), "tracks": TRACKS,
        "sla_state": sla_state_of(row, now=now, reminder_lead=config.sla.reminder_lead,
                                  pause_states=config.sla.pause_states) if ticket.status.is_open else None,
        "sla_labels": SLA_LABELS, "root_causes": _root_causes(data.get("sla") or {}),
        "error": error, "done": ACTIONS.get(request.query.get("done", ""), ""),
        "can_act": session.person.role in ACTION_ROLES, "actions": await _action_options(request, session, ticket),
        "rating": signed.get("rating"), "accepted": (data.get("dispatch") or {}).get("accepted"),
        "plan_at": _parse((data.get("plan") or {}).get("at")), "signed_at": _parse(signed.get("at")),
        "checkin_at": _parse(checkin.get("at")) if isinstance(checkin, dict) else None,
        "store_position": await _store_position(runtime, ticket.store_id),
    }
    response = aiohttp_jinja2.render_template("console/ticket.html", request,
                                              page_context(request, session, **context))
    response.set_status(status)
    return response


async def _store_position(runtime: Any, store_id: str | None) -> tuple[float, float] | None:
    if not store_id:
        return None
    async with runtime.sessions.transaction() as conn:
        row = (await conn.execute(select(col(StoreRow.lat), col(StoreRow.lng)).where(
            col(StoreRow.id) == store_id))).first()
    return (float(row[0]), float(row[1])) if row is not None else None


def _row_of(ticket: Ticket) -> TicketRow:
    return TicketRow(number=ticket.number, customer_id=ticket.customer_id, description=ticket.description,
                     status=ticket.status.value, response_due=ticket.response_due,
                     resolution_due=ticket.resolution_due, created_at=ticket.created_at,
                     updated_at=ticket.updated_at)


def _library(payload: dict[str, Any]) -> Any:
    from core.lifecycle.sop import SopLibrary

    return SopLibrary.from_dict(payload)


def _people_in(ticket: Ticket, events: list[AuditEvent], photos: list[Any]) -> set[str]:
    ids = {ticket.customer_id, ticket.assignee_id or ""} | {e.actor_id for e in events} | \
        {p.uploader_id for p in photos}
    for event in events:
        for key in ("person_id", "assignee", "previous_assignee", "to", "handler", "root_cause_owner", "by",
                    "caused_by"):
            value = event.payload.get(key)
            if isinstance(value, str):
                ids.add(value)
        for key in ("escalated_to", "to"):
            value = event.payload.get(key)
            if isinstance(value, list):
                ids.update(str(v) for v in value)
    return {i for i in ids if i}


async def _names(runtime: Any, ids: set[str]) -> dict[str, str]:
    names = {"system": "系统"}
    if ids:
        async with runtime.sessions.transaction() as conn:
            names.update({str(i): str(n) for i, n in await conn.execute(
                select(col(PersonRow.id), col(PersonRow.name)).where(col(PersonRow.id).in_(sorted(ids))))})
    return names


def _offers(events: list[AuditEvent], names: dict[str, str]) -> list[dict[str, Any]]:
    """Every offer made (in order) with its score breakdown, and what became of it."""
    offers: list[dict[str, Any]] = []
    by_card: dict[str, dict[str, Any]] = {}
    for event in events:
        payload = event.payload
        if event.kind in OFFER_KINDS:
            candidate = payload.get("candidate") or {}
            offer = {"at": event.at, "person": names.get(str(payload.get("person_id")), payload.get("person_id")),
                     "round": payload.get("round"), "trigger": payload.get("trigger", ""),
                     "by": names.get(event.actor_id, event.actor_id), "score": candidate.get("score"),
                     "components": candidate.get("components") or [], "why": candidate.get("why", ""),
                     "distance_km": candidate.get("distance_km"), "outcome": "等待答复", "outcome_at": None,
                     "reason": ""}
            offers.append(offer)
            by_card[str(payload.get("card_id"))] = offer
        elif event.kind in OFFER_OUTCOMES:
            answered = by_card.get(str(payload.get("card_id")))
            if answered is not None:
                answered.update(outcome=OFFER_OUTCOMES[event.kind], outcome_at=event.at,
                             reason=str(payload.get("reason") or payload.get("note") or ""))
    return offers


def _sops(events: list[AuditEvent], library: Any) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = []
    for event in events:
        if event.kind != "sop_shown":
            continue
        key = str(event.payload.get("sop", ""))
        sop = library.get(key)
        shown.append({"key": key, "at": event.at, "title": sop.title if sop else key,
                      "steps": [s.text for s in sop.steps] if sop else []})
    return shown


def _parts(data: dict[str, Any], events: list[AuditEvent], names: dict[str, str], fmt: Any) -> list[dict[str, Any]]:
    """Each wait for parts: requested (what, by whom, when) and ready (when), from the trail."""
    waits: list[dict[str, Any]] = []
    for event in events:
        payload = event.payload
        if event.kind == "status_changed" and payload.get("transition") == "wait_parts":
            waits.append({"note": payload.get("parts", ""), "by": names.get(event.actor_id, event.actor_id),
                          "from": event.at, "until": None, "updates": []})
        elif event.kind == "status_changed" and payload.get("from") == TicketStatus.WAITING_PARTS.value and waits:
            waits[-1]["until"] = event.at
        elif event.kind in ("parts_progress", "parts_escalated") and waits:
            waits[-1]["updates"].append(f"{fmt(event.at)} {describe(event.kind, payload, names, fmt)[0]} "
                                        f"{payload.get('text') or payload.get('note') or ''}")
    return waits


def _sla(sla: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    tracks = {}
    for track in ("response", "resolution"):
        part = sla.get(track) or {}
        tracks[track] = {
            "due": _parse(part.get("due")), "met_at": _parse(part.get("met_at")), "met": part.get("met"),
            "breached_at": _parse(part.get("breached_at")),
            "escalated_to": [names.get(p, p) for p in part.get("escalated_to") or []],
            "ack_by": names.get(part.get("ack_by") or "", part.get("ack_by")), "ack_at": _parse(part.get("ack_at")),
            "level2_at": _parse(part.get("level2_at")), "root_cause": part.get("root_cause"),
        }
    pauses = [{"start": _parse(p.get("start")), "end": _parse(p.get("end")), "state": _state_label(p.get("state"))}
              for p in sla.get("pauses") or [] if isinstance(p, dict)]
    return {"cell": sla.get("cell", ""), "clock": {"business": "工作时间", "wall": "自然时间"}.get(
        str(sla.get("clock")), sla.get("clock", "")), "tracks": tracks, "pauses": pauses}


def _root_causes(sla: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(TRACKS[t], (sla.get(t) or {}).get("root_cause")) for t in TRACKS if (sla.get(t) or {}).get("root_cause")]


def _state_label(value: Any) -> str:
    try:
        return TicketStatus(str(value)).label
    except ValueError:
        return str(value or "")


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _signature_sha(signed: dict[str, Any]) -> str | None:
    value = signed.get("signature_image")
    return value if isinstance(value, str) and SHA256.match(value) else None


async def _action_options(request: web.Request, session: StaffSession, ticket: Ticket) -> dict[str, Any]:
    if session.person.role not in ACTION_ROLES:
        return {}
    runtime = runtime_of(request)
    async with runtime.sessions.transaction() as conn:
        technicians = [(str(i), str(n), s) for i, n, s in await conn.execute(
            select(col(PersonRow.id), col(PersonRow.name), col(PersonRow.store_id)).where(
                col(PersonRow.role) == Role.TECHNICIAN.value, col(PersonRow.active).is_(True))
            .order_by(col(PersonRow.store_id), col(PersonRow.name)))]
    status = ticket.status
    return {
        "technicians": [(i, f"{n}（{s or '无门店'}）") for i, n, s in technicians
                        if session.store_ids is None or s is None or s in session.store_ids],
        "priorities": [p.value for p in Priority], "impacts": [i.value for i in Impact],
        "categories": [c.name for c in runtime.rulebook.rules.categories],
        "can_reassign": status.is_open and status not in (TicketStatus.PENDING_SIGNOFF, TicketStatus.WAITING_PARTS,
                                                          TicketStatus.WAITING_CUSTOMER_PLAN,
                                                          TicketStatus.PENDING_QC),
        "can_cancel": status.is_open, "can_triage": status is TicketStatus.TRIAGE,
        "can_reopen": status is TicketStatus.CLOSED, "can_prioritise": status.is_open,
    }


# --- actions ---
def _command(action: str, ticket: Ticket, form: Any, categories: tuple[str, ...]) -> object:
    reason = " ".join(str(form.get("reason", "")).split())[:MAX_REASON]
    if action == "reassign":
        return ReassignTicket(ticket.number, str(form.get("person_id", "")).strip(), reason)
    if action == "priority":
        priority = str(form.get("priority", "")).strip()
        impact = str(form.get("impact", "")).strip()
        changed_priority = priority if priority and priority != ticket.priority else None
        changed_impact = impact if impact and impact != ticket.impact else None
        if changed_priority is None and changed_impact is None:
            raise InvalidInput("优先级和影响都没有改动。")
        return ChangePriority(ticket.number, priority=changed_priority, impact=changed_impact)
    if action == "cancel":
        return CancelTicket(ticket.number, reason)
    if action == "triage":
        return ClassifyTicket(ticket.number, str(form.get("category", "")).strip(), categories)
    if action == "reopen":
        return Transition(ticket.number, "reopen", reason)
    raise web.HTTPNotFound()


async def ticket_action(request: web.Request) -> web.StreamResponse:
    session = await staff(request)
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise web.HTTPNotFound()
    form = await posted_form(request, session)
    ticket = await _visible_ticket(request, session, f"操作「{ACTIONS[action]}」")
    if session.person.role not in ACTION_ROLES:
        raise await forbidden(request, session, f"工单 {ticket.number} 的操作「{ACTIONS[action]}」",
                              ticket_number=ticket.number)
    runtime = runtime_of(request)
    if action == "reassign" and not await _may_reassign_to(runtime, session, str(form.get("person_id", ""))):
        raise await forbidden(request, session, f"把工单 {ticket.number} 转派给其他门店的技师",
                              ticket_number=ticket.number)
    categories = tuple(c.name for c in runtime.rulebook.rules.categories)
    try:
        await runtime.service.handle(_command(action, ticket, form, categories), session.person)
    except NotAllowed as refusal:
        await forbidden(request, session, f"工单 {ticket.number} 的操作「{ACTIONS[action]}」：{refusal.user_message}",
                        ticket_number=ticket.number)
        return await _render(request, session, ticket, error=refusal.user_message, status=403)
    except TicketbotError as error:
        async with runtime.uow() as uow:
            fresh = await uow.get_ticket(ticket.number) or ticket
        return await _render(request, session, fresh, error=error.user_message, status=400)
    raise web.HTTPFound(f"/console/tickets/{ticket.number}?done={action}")


async def _may_reassign_to(runtime: Any, session: StaffSession, person_id: str) -> bool:
    """A store-scoped supervisor hands work only to technicians of their stores (or without a store)."""
    if session.store_ids is None or not person_id:
        return True
    async with runtime.uow() as uow:
        person: Person | None = await uow.get_person(person_id.strip())
    return person is None or person.store_id is None or person.store_id in session.store_ids


# --- files ---
async def photo(request: web.Request) -> web.StreamResponse:
    session = await staff(request)
    sha = request.match_info["sha256"].lower()
    ticket = await _visible_ticket(request, session, "照片")
    if not SHA256.match(sha):
        raise web.HTTPNotFound(text="没有这张照片。")
    async with runtime_of(request).uow() as uow:
        photos = await uow.list_photos(ticket.number)
    if not any(p.sha256 == sha for p in photos):
        raise web.HTTPNotFound(text="这张工单没有这张照片。")
    return _file(PhotoStore(runtime_of(request).settings.data_dir).path_of(sha))


async def signature(request: web.Request) -> web.StreamResponse:
    session = await staff(request)
    ticket = await _visible_ticket(request, session, "签名")
    sha = _signature_sha((ticket.data.get("signoff") or {}).get("signed") or {})
    if sha is None:
        raise web.HTTPNotFound(text="这张工单没有签名图片。")
    return _file(SignatureStore(runtime_of(request).settings.data_dir).path_of(sha))


def _file(path: Any) -> web.StreamResponse:
    if not path.is_file():
        raise web.HTTPNotFound(text="文件不在存储中。")
    response = web.FileResponse(path)
    # Content-addressed: the bytes under this URL never change. Private: only this browser keeps it.
    response.headers["Cache-Control"] = "private, max-age=86400"
    head = path.open("rb").read(12)
    response.content_type = "image/png" if head.startswith(b"\x89PNG") else "image/jpeg" \
        if head.startswith(b"\xff\xd8") else "image/gif" if head.startswith(b"GIF8") else "image/webp" \
        if head[8:12] == b"WEBP" else "application/octet-stream"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/tickets/{number}", ticket_page)
    app.router.add_get("/console/tickets/{number}/photos/{sha256}", photo)
    app.router.add_get("/console/tickets/{number}/signature", signature)
    app.router.add_post("/console/tickets/{number}/{action}", ticket_action)
