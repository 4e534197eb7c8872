"""API v1 commands: an external system creates a ticket with its own reference, moves it by name
under the status lock, comments on it. Each runs in one unit of work like any chat command; the
actor is the client's person (role admin, id `api:<name>`), so the audit trail names the system.

Idempotency: a command may carry an `Idempotency` claim. Its key row is inserted first in the
command's transaction and the answer stored last, so the key, the effect and the answer commit
together or not at all; a concurrent retry of the same key waits on the row (PostgreSQL) or on the
writer lock (SQLite), finds it taken (`KeyTaken`, nothing done) and is answered from the row.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from core.commands import CancelTicket, ChangePriority, ReportFault
from core.errors import Conflict, IllegalTransition, InvalidInput, NotAllowed
from core.hub.store import HubStore, hub_of
from core.intake.front_desk import customer_for
from core.intake.tickets import after_create, receive_report
from core.lifecycle.signoff import is_signed
from core.masterdata.org import supervisor_chain
from core.masterdata.prefill import identifier_of
from core.model import Person, Role, Ticket, TicketStatus
from core.service import Context, handles
from core.sla.replan import change_priority
from core.transitions import cancel_ticket

S = TicketStatus
# Steps only the customer's signature may take: from an API client they are checked, never forced.
LOCKED_STEPS = frozenset({"resolve", "close"})
MAX_COMMENT = 2000
API_PERSON_PREFIX = "api:"
GLOBAL_ID_NAMESPACE = uuid.UUID("6f1d8a52-1c1e-4b53-9d0e-3a4e8c5b7a10")


def api_person_id(client: str) -> str:
    return f"{API_PERSON_PREFIX}{client}"


def global_id(ticket: Ticket) -> str:
    """The ticket's global id: a UUID stored at creation; a ticket from before API v1 has a stable
    one derived from its number (it never changes and is the same in every process)."""
    value = ticket.data.get("global_id")
    return value if isinstance(value, str) else str(uuid.uuid5(GLOBAL_ID_NAMESPACE, ticket.number))


def new_global_id() -> str:
    """A random (version 4) UUID as text, as str(uuid.uuid4()) gives it, at half the cost (one per ticket)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@after_create()
async def _assign_global_id(ctx: Context, ticket: Ticket) -> None:
    # Every ticket, whichever channel made it: written with the ticket's one INSERT at commit.
    if "global_id" not in ticket.data:  # not setdefault: that would make an id to throw away
        ticket.data["global_id"] = new_global_id()


class KeyTaken(Conflict):
    """The Idempotency-Key is already in use: this transaction did nothing; answer from the key's row."""


@dataclass(frozen=True, slots=True)
class Idempotency:
    client: str
    key: str
    request_hash: str
    expires_at: datetime
    # The HTTP answer (status, body) of an outcome, stored with the key inside the transaction.
    render: Callable[[HubOutcome], tuple[int, str]]


@dataclass(slots=True)
class HubOutcome:
    status: int  # 201 created, 200 found/changed, 409 refused by the status lock
    ticket: Ticket
    external_refs: dict[str, str] = field(default_factory=dict)
    problem: dict[str, Any] | None = None  # the refusal, for a 409
    comment: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ApiCreateTicket:
    system: str  # the client's name: the system its external_ref belongs to
    description: str
    external_ref: str
    customer_id: str | None = None
    customer_phone: str | None = None
    customer_key: str | None = None  # the system's own customer id, remembered as an identity
    customer_name: str | None = None
    store: str | None = None
    asset: str | None = None  # SN, VIN or plate as the system has it
    priority: str | None = None
    impact: str | None = None
    category: str | None = None
    idempotency: Idempotency | None = None


@dataclass(frozen=True, slots=True)
class ApiTransition:
    system: str
    number: str
    name: str
    reason: str = ""
    idempotency: Idempotency | None = None
    # A status name of the system's own, mapped to our state (core/hub/mappings.py): the step taken is
    # the one that leads there from the current state; `name` is their word, for the messages.
    state: TicketStatus | None = None


@dataclass(frozen=True, slots=True)
class ApiComment:
    system: str
    number: str
    text: str
    idempotency: Idempotency | None = None


async def _claim(ctx: Context, hub: HubStore, idem: Idempotency | None) -> None:
    if idem is not None and not await hub.claim_idempotency(idem.client, idem.key, idem.request_hash, now=ctx.now,
                                                            expires_at=idem.expires_at):
        raise KeyTaken("该 Idempotency-Key 已被使用。", key=idem.key)


async def _finish(hub: HubStore, idem: Idempotency | None, outcome: HubOutcome) -> HubOutcome:
    if idem is not None:
        status, body = idem.render(outcome)
        await hub.finish_idempotency(idem.client, idem.key, status, body)
    return outcome


def _identity_platform(system: str) -> str:
    return f"{API_PERSON_PREFIX}{system}"[:32]


async def _customer(ctx: Context, cmd: ApiCreateTicket) -> tuple[Person, bool]:
    """By id, by the system's own key (an identity `api:<system>`), else by phone: a phone nobody
    has makes a new customer person, as at the front desk (core/intake/front_desk.py)."""
    if cmd.customer_id:
        person = await ctx.uow.get_person(cmd.customer_id)
        if person is None or person.role is not Role.CUSTOMER:
            raise InvalidInput(f"没有找到客户「{cmd.customer_id}」。", field="customer.id")
        if not person.active:
            raise InvalidInput(f"客户「{cmd.customer_id}」已停用。", field="customer.id")
        return person, False
    platform = _identity_platform(cmd.system)
    if cmd.customer_key:
        person = await ctx.uow.person_by_identity(platform, cmd.customer_key)
        if person is not None:
            return person, False
        if not cmd.customer_phone:
            raise InvalidInput(f"没有找到外部客户编号「{cmd.customer_key}」：首次使用时请同时提供手机号。",
                               field="customer.external_key")
    if not cmd.customer_phone:
        raise InvalidInput("请提供客户：id、phone 或 external_key 之一。", field="customer")
    try:
        customer, created = await customer_for(ctx, cmd.customer_phone)
    except InvalidInput as error:
        raise InvalidInput(error.user_message, field="customer.phone") from error
    if created and cmd.customer_name:
        customer.name = cmd.customer_name[:64]
        await ctx.uow.save_person(customer)
    if cmd.customer_key:
        await ctx.uow.link_identity(customer.id, platform, cmd.customer_key)
    return customer, created


@handles(ApiCreateTicket)
async def api_create_ticket(ctx: Context, cmd: ApiCreateTicket) -> HubOutcome:
    hub = hub_of(ctx.uow)
    await _claim(ctx, hub, cmd.idempotency)
    known = await hub.ticket_for_ref(cmd.system, cmd.external_ref)
    if known is not None:
        # The same reference again (a retry without a key, or a duplicate): the ticket it made.
        ticket = await ctx.ticket(known, lock=False)
        return await _finish(hub, cmd.idempotency, HubOutcome(200, ticket, await hub.external_refs(known)))
    md = ctx.uow.masterdata()
    if cmd.store and await md.get_store(cmd.store) is None:
        raise InvalidInput(f"没有找到门店「{cmd.store}」。", field="store")
    subject = ""
    if cmd.asset:
        # As the chat's 设备编号: a known asset links the ticket; an unknown one is kept as the subject.
        key = identifier_of(cmd.asset)
        asset = await md.find_asset(key[0], key[1]) if key is not None else None  # type: ignore[arg-type]
        if asset is None:
            asset = await md.get_asset(cmd.asset.strip())
        subject = (asset.display_id or asset.sn or asset.vin or asset.plate or asset.id) if asset is not None \
            else cmd.asset.strip()
    customer, created = await _customer(ctx, cmd)
    registrar = replace(ctx.actor, store_id=cmd.store) if cmd.store else ctx.actor
    made = await receive_report(ctx, customer, ReportFault(cmd.description, subject=subject, priority=cmd.priority,
                                                           impact=cmd.impact, new_problem=True),
                                registered_by=registrar, customer_created=created, new_problem_hint="")
    if made is None:  # registered_by is set: the per-sender limit does not apply
        raise Conflict("工单未创建。")
    ticket = made
    # The system states priority and impact as staff do: intake's guard holds back an unproven 紧急 of
    # a customer's words (core/sla/tracking.py); a registered system's is a staff decision (优先级).
    wanted_priority = cmd.priority if cmd.priority and cmd.priority != ticket.priority else None
    wanted_impact = cmd.impact if cmd.impact and cmd.impact != ticket.impact else None
    if wanted_priority or wanted_impact:
        ticket = await change_priority(ctx, ChangePriority(ticket.number, wanted_priority, wanted_impact))
    if cmd.category and ticket.category != cmd.category:
        # The system's own category is kept for the supervisor; the classifier's drives dispatch.
        ticket.data["api_category"] = cmd.category
        await ctx.uow.save_ticket(ticket)
    if not await hub.add_external_ref(cmd.system, cmd.external_ref, ticket.number, at=ctx.now):
        raise Conflict(f"外部编号「{cmd.external_ref}」已对应另一张工单。", field="external_ref")
    await ctx.audit("external_ref_linked", {"system": cmd.system, "ref": cmd.external_ref}, ticket)
    return await _finish(hub, cmd.idempotency, HubOutcome(201, ticket, {cmd.system: cmd.external_ref}))


def allowed_steps(ctx: Context, ticket: Ticket) -> list[str]:
    """The names the caller may send now: the workflow's for their role, and resolve/close."""
    names = [t.name for t in ctx.config.workflow.available(ticket.status, ctx.actor.role)]
    return names + sorted(LOCKED_STEPS) if ticket.status.is_open else names


@handles(ApiTransition)
async def api_transition(ctx: Context, cmd: ApiTransition) -> HubOutcome:
    hub = hub_of(ctx.uow)
    await _claim(ctx, hub, cmd.idempotency)
    ticket = await ctx.ticket(cmd.number)
    if cmd.state is not None:
        if cmd.state is ticket.status:  # already there (the systems agree): nothing to do
            return await _finish(hub, cmd.idempotency, HubOutcome(200, ticket, await hub.external_refs(ticket.number)))
        cmd = replace(cmd, name=_step_to(ctx, ticket, cmd.state, cmd.name))
    if cmd.name in LOCKED_STEPS:
        outcome = await _status_lock(ctx, cmd, ticket)
    else:
        try:
            if cmd.name == "cancel":
                reason = cmd.reason.strip() or f"外部系统 {cmd.system} 取消"
                ticket = await cancel_ticket(ctx, CancelTicket(ticket.number, reason))
            else:
                ticket = await ctx.move(ticket, cmd.name, payload={"note": cmd.reason} if cmd.reason else None)
        except (IllegalTransition, NotAllowed) as refused:
            refused.data["allowed"] = allowed_steps(ctx, ticket)
            refused.data["status"] = ticket.status.value
            raise
        outcome = HubOutcome(200, ticket)
    outcome.external_refs = await hub.external_refs(ticket.number)
    return await _finish(hub, cmd.idempotency, outcome)


def _step_to(ctx: Context, ticket: Ticket, state: TicketStatus, theirs: str) -> str:
    """The step from the ticket's state to `state` the caller may take; closed is `resolve` (the
    status lock decides); none → 409 with the steps allowed."""
    if state is S.CLOSED:
        return "resolve"
    for step in ctx.config.workflow.available(ticket.status, ctx.actor.role):
        if step.target is state:
            return step.name
    raise IllegalTransition(f"工单 {ticket.number} 当前为「{ticket.status.label}」，不能转到「{theirs}」"
                            f"（{state.label}）。", transition=theirs, allowed=allowed_steps(ctx, ticket),
                            status=ticket.status.value)


async def _status_lock(ctx: Context, cmd: ApiTransition, ticket: Ticket) -> HubOutcome:
    """A resolve/close from another system stands only on the customer's signature. The signature
    closes the ticket itself (core/lifecycle/signoff.py), so a signed ticket is already closed and
    the step is acknowledged; otherwise it is refused: nothing changes, the attempt is audited
    (this transaction commits) and the supervisors are told."""
    if is_signed(ticket) and ticket.status is S.CLOSED:
        return HubOutcome(200, ticket)
    detail = (f"工单 {ticket.number} 没有客户签字，不能由外部系统 {cmd.system} 结案"
              f"（当前状态：{ticket.status.label}）。客户在签字卡片上确认后工单自动结案。")
    await ctx.audit("status_lock_refused", {"system": cmd.system, "transition": cmd.name,
                                            "status": ticket.status.value, "reason": "signature_missing"}, ticket)
    for supervisor in await supervisor_chain(ctx, ticket):
        await ctx.tell(supervisor.id, f"外部系统 {cmd.system} 试图结案工单 {ticket.number}，但客户尚未签字，已拒绝。"
                       f"当前状态：{ticket.status.label}。", ticket=ticket)
    problem = {"reason": "signature_missing", "detail": detail, "current_status": ticket.status.value,
               "allowed": [n for n in allowed_steps(ctx, ticket) if n not in LOCKED_STEPS]}
    return HubOutcome(409, ticket, problem=problem)


@handles(ApiComment)
async def api_comment(ctx: Context, cmd: ApiComment) -> HubOutcome:
    hub = hub_of(ctx.uow)
    await _claim(ctx, hub, cmd.idempotency)
    text = cmd.text.strip()[:MAX_COMMENT]
    if not text:
        raise InvalidInput("评论内容不能为空。", field="text")
    ticket = await ctx.ticket(cmd.number, lock=False)
    comment = {"at": ctx.now.isoformat(), "by": ctx.actor.id, "system": cmd.system, "text": text}
    await ctx.audit("comment_added", {"system": cmd.system, "text": text}, ticket)
    if ticket.assignee_id and ticket.status.is_open:
        await ctx.tell(ticket.assignee_id, f"工单 {ticket.number} 有来自 {cmd.system} 的新备注：{text[:200]}",
                       ticket=ticket)
    outcome = HubOutcome(201, ticket, await hub.external_refs(ticket.number), comment=comment)
    return await _finish(hub, cmd.idempotency, outcome)
