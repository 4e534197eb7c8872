"""What every lifecycle step shares: which ticket a short command means, the freeze while
waiting for parts, the live workflow template, and who to tell."""

from __future__ import annotations

import weakref
from dataclasses import replace
from datetime import datetime
from typing import Any

from core.cards import Notification
from core.errors import InvalidInput, NotAllowed, NotFound
from core.masterdata.org import supervisor_chain
from core.model import Person, Role, Ticket, TicketStatus
from core.service import Context, TicketService
from core.workflow import Workflow, option

S = TicketStatus
WORKFLOW_KIND = "workflow"
# A technician's tickets that short commands (完工, 开始 ...) and photos may refer to.
ACTIVE_STATES = frozenset({S.ACCEPTED, S.CHECKED_IN, S.IN_PROGRESS, S.WAITING_PARTS, S.WAITING_CUSTOMER_PLAN,
                           S.PENDING_QC, S.PENDING_SIGNOFF})
# The only steps allowed while a ticket waits for parts (the freeze of seed 1).
FROZEN_ALLOWED = frozenset({"parts_ready", "parts_progress", "cancel"})

_installed: weakref.WeakKeyDictionary[TicketService, int] = weakref.WeakKeyDictionary()


async def sync_workflow(ctx: Context) -> Workflow:
    """Install the newest stored template (config kind "workflow") in this process, then return it.

    Lifecycle handlers call this first, so a template saved by another process applies here
    from the next lifecycle command on.
    """
    latest = await ctx.uow.latest_config(WORKFLOW_KIND)
    if latest is not None and _installed.get(ctx.service) != latest[0]:
        install_workflow(ctx.service, latest[0], Workflow.from_dict(latest[1]))
    return ctx.config.workflow


def installed_version(service: TicketService) -> int | None:
    return _installed.get(service)


def install_workflow(service: TicketService, version: int, workflow: Workflow) -> None:
    service.config.workflow = workflow
    _installed[service] = version


def opt(ctx: Context, name: str) -> Any:
    return option(ctx.config.workflow, name)


def section(ticket: Ticket, key: str) -> dict[str, Any]:
    """A mutable dict inside ticket.data (saved with the ticket)."""
    value = ticket.data.get(key)
    if not isinstance(value, dict):
        value = {}
        ticket.data[key] = value
    return value


def iso(at: datetime) -> str:
    return at.isoformat()


def parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def ensure_not_frozen(ticket: Ticket, action: str) -> None:
    if ticket.status == S.WAITING_PARTS and action not in FROZEN_ALLOWED:
        raise NotAllowed(
            f"工单 {ticket.number} 正在等待备件，已冻结：现在只能执行「备件到位」「备件进度」或「取消」。",
            number=ticket.number, action=action, frozen=True)


async def assigned_ticket(ctx: Context, number: str | None, *, states: frozenset[TicketStatus] = ACTIVE_STATES,
                          use_focus: bool = False) -> Ticket:
    """The technician's ticket a command is about: the given number (must be theirs), else the only
    active one; with `use_focus` (photos, location: they cannot carry a number) the one chosen last."""
    if number:
        ticket = await ctx.ticket(number)
        if ticket.assignee_id != ctx.actor.id:
            raise NotAllowed(f"工单 {ticket.number} 不是派给您的。", number=ticket.number, actor=ctx.actor.id)
        return ticket
    mine = await ctx.uow.list_tickets(assignee_id=ctx.actor.id, statuses=set(states), limit=50)
    if not mine:
        raise NotFound("您当前没有进行中的工单。", actor=ctx.actor.id)
    if len(mine) == 1:
        return await ctx.ticket(mine[0].number)
    if use_focus:
        focused = [t for t in mine if t.data.get("focus_at")]
        if focused:
            best = max(focused, key=lambda t: str(t.data["focus_at"]))
            return await ctx.ticket(best.number)
    listing = "、".join(t.number for t in mine[:5])
    raise InvalidInput(
        f"您有 {len(mine)} 张进行中的工单（{listing}），请在命令后加上工单号，例如「完工 {mine[0].number}」；"
        f"发照片或位置前可先发送「选择 {mine[0].number}」。", count=len(mine))


async def people_with_role(ctx: Context, role: Role) -> list[Person]:
    return await ctx.uow.list_people(role)


async def supervisors_for(ctx: Context, ticket: Ticket) -> list[Person]:
    """The ticket's supervisor chain, first level (core/masterdata/org.py): the assignee's direct
    supervisor, else the ticket's store's supervisors, every supervisor only as a last resort."""
    return await supervisor_chain(ctx, ticket)


TECHNICIAN_TITLE = "技师"


def technician_label(name: str) -> str:
    """How customers see a technician in a sentence: 技师 王强 — the directory's names may carry the
    title already (the demo's 技师 黄师傅), and it is never said twice."""
    return name if name.startswith(TECHNICIAN_TITLE) else f"{TECHNICIAN_TITLE} {name}"


def technician_name(name: str) -> str:
    """The name under a card fact already labelled 技师: without the title."""
    return name.removeprefix(TECHNICIAN_TITLE).strip() or name


async def lock_card(ctx: Context, card_id: str | None) -> None:
    """Lock a ticket's card before the ticket, in the order a card press takes them (no deadlock)."""
    if card_id:
        await ctx.uow.get_card(card_id, lock=True)


async def close_answered_card(ctx: Context, ticket: Ticket, card_id: str | None, note: str, action: str) -> None:
    """A card whose question was answered by a typed command closes as if its button had been pressed:
    it shows the outcome and takes no more presses. Lock it before the ticket (`lock_card`)."""
    stored = await ctx.uow.get_card(card_id, lock=True) if card_id else None
    if stored is None or stored.state != "open":
        return
    closed = replace(stored.card, closed_note=note)
    if await ctx.uow.close_card(stored.card.id, card=closed, by=ctx.actor.id, action=action, at=ctx.now):
        await ctx.audit("card_closed_by_text", {"card_id": stored.card.id, "kind": stored.card.kind.value,
                                                "action": action}, ticket)
        await ctx.notify(Notification(recipient_id=stored.recipient_id, card=closed, replaces_card_id=stored.card.id,
                                      ticket_number=stored.ticket_number))


async def person_name(ctx: Context, person_id: str | None) -> str:
    if not person_id:
        return "—"
    person = await ctx.uow.get_person(person_id)
    return person.name if person else person_id
