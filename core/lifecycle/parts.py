"""Waiting for parts (seed 1): a to-do for the warehouse, the ticket frozen meanwhile, and
紧急缺件 after 48 h (template option `parts_escalation_h`) without an update.

Purchasing: the directory has no purchasing role, so 紧急缺件 goes to every admin (who owns
purchasing in a small team) and to the assignee's supervisor, as an urgent TASK card.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from core.cards import ActionStyle, Card, CardAction, CardKind
from core.errors import InvalidInput, NotAllowed, NotFound
from core.lifecycle.common import (
    assigned_ticket,
    ensure_not_frozen,
    iso,
    opt,
    people_with_role,
    person_name,
    section,
    supervisors_for,
    sync_workflow,
)
from core.lifecycle.tasks import task_action
from core.model import Role, Ticket, TicketStatus
from core.repository import StoredCard
from core.service import Context, after_move, handles
from core.timers import timer_handler

S = TicketStatus
ESCALATION_TIMER = "parts_escalation"
MAX_NOTE = 300


@dataclass(frozen=True, slots=True)
class RequestParts:
    note: str
    number: str | None = None


@dataclass(frozen=True, slots=True)
class PartsProgress:
    note: str
    number: str | None = None


@dataclass(frozen=True, slots=True)
class PartsReady:
    number: str | None = None


def _clean_note(note: str, example: str) -> str:
    text = note.strip()
    if not text:
        raise InvalidInput(f"请写明配件，例如：{example}")
    if len(text) > MAX_NOTE:
        raise InvalidInput(f"说明太长了（{len(text)} 字），请精简到 {MAX_NOTE} 字以内。")
    return text


async def _schedule_escalation(ctx: Context, ticket: Ticket) -> None:
    parts = section(ticket, "parts")
    due = ctx.now + timedelta(hours=float(opt(ctx, "parts_escalation_h")))
    parts["escalate_at"] = iso(due)
    await ctx.uow.schedule_timer(kind=ESCALATION_TIMER, ticket_number=ticket.number, due_at=due,
                                 payload={"round": parts.get("round")})


@handles(RequestParts)
async def request_parts(ctx: Context, cmd: RequestParts) -> Ticket:
    await sync_workflow(ctx)
    note = _clean_note(cmd.note, "等待备件 压缩机继电器 B325 ×1")
    ticket = await assigned_ticket(ctx, cmd.number)
    ensure_not_frozen(ticket, "wait_parts")
    ctx.config.workflow.check(ticket.status, "wait_parts", ctx.actor.role)
    parts = section(ticket, "parts")
    parts.update({"note": note, "by": ctx.actor.id, "requested_at": iso(ctx.now), "updated_at": iso(ctx.now),
                  "escalated": False, "round": int(parts.get("round", 0)) + 1, "updates": []})
    await ctx.move(ticket, "wait_parts", payload={"parts": note})
    await _schedule_escalation(ctx, ticket)
    await ctx.uow.save_ticket(ticket)
    keepers = await people_with_role(ctx, Role.WAREHOUSE) or await supervisors_for(ctx, ticket)
    for keeper in keepers:
        await ctx.send_card(keeper.id, Card(
            id=ctx.new_card_id("parts"), kind=CardKind.TASK, title=f"备件待办：工单 {ticket.number}",
            ticket_number=ticket.number,
            facts=(("配件", note), ("技师", ctx.actor.name), ("分类", ticket.category or "—")),
            body=f"到位后点「备件到位」；有进展请发送「备件进度 {ticket.number} <说明>」。"
                 f"{opt(ctx, 'parts_escalation_h')} 小时无更新将升级为紧急缺件。",
            actions=(CardAction("ready", "备件到位", ActionStyle.PRIMARY),),
        ))
    await ctx.tell(ctx.actor.id, f"工单 {ticket.number} 进入「等待备件」并已冻结，已通知仓库：{note}。"
                   "备件到位后发送「备件到位」继续检修。", ticket=ticket)
    await ctx.tell(ticket.customer_id, f"您的工单 {ticket.number} 正在等待备件（{note}），到货后技师会继续维修。",
                   ticket=ticket)
    return ticket


async def _waiting_ticket(ctx: Context, number: str | None) -> Ticket:
    """Technicians: their own ticket; warehouse/staff: the given one, or the only one waiting."""
    if ctx.actor.role == Role.TECHNICIAN:
        return await assigned_ticket(ctx, number)
    if ctx.actor.role not in {Role.WAREHOUSE, Role.SUPERVISOR, Role.ADMIN}:
        raise NotAllowed("只有仓库、技师或主管可以更新备件状态。")
    if number:
        return await ctx.ticket(number)
    waiting = await ctx.uow.list_tickets(statuses={S.WAITING_PARTS}, limit=6)
    if len(waiting) == 1:
        return await ctx.ticket(waiting[0].number)
    if not waiting:
        raise NotFound("目前没有等待备件的工单。")
    raise InvalidInput(f"有 {len(waiting)} 张工单在等待备件（{'、'.join(t.number for t in waiting[:5])}），"
                       "请加上工单号，例如「备件到位 GD-20260101-0001」。")


async def _mark_ready(ctx: Context, ticket: Ticket) -> str:
    await ctx.move(ticket, "parts_ready")
    section(ticket, "parts")["ready_at"] = iso(ctx.now)
    await ctx.uow.save_ticket(ticket)
    if ticket.assignee_id and ticket.assignee_id != ctx.actor.id:
        await ctx.tell(ticket.assignee_id, f"工单 {ticket.number} 的备件已到位（{ctx.actor.name}），可以继续检修。",
                       ticket=ticket)
    await ctx.tell(ticket.customer_id, f"您的工单 {ticket.number} 备件已到位，技师将继续维修。", ticket=ticket)
    return "备件已到位"


@handles(PartsReady)
async def parts_ready(ctx: Context, cmd: PartsReady) -> Ticket:
    await sync_workflow(ctx)
    ticket = await _waiting_ticket(ctx, cmd.number)
    await _mark_ready(ctx, ticket)
    await ctx.tell(ctx.actor.id, f"工单 {ticket.number}：备件已到位，工单已解冻，恢复为「检修中」。", ticket=ticket)
    return ticket


@task_action("parts")
async def _parts_card(ctx: Context, stored: StoredCard, action: str, values: dict[str, str]) -> str:
    await sync_workflow(ctx)
    return await _mark_ready(ctx, await ctx.ticket(stored.ticket_number or ""))


@handles(PartsProgress)
async def parts_progress(ctx: Context, cmd: PartsProgress) -> Ticket:
    await sync_workflow(ctx)
    note = _clean_note(cmd.note, "备件进度 GD-20260101-0001 已下单，预计周三到货")
    ticket = await _waiting_ticket(ctx, cmd.number)
    if ticket.status != S.WAITING_PARTS:
        raise InvalidInput(f"工单 {ticket.number} 当前状态为「{ticket.status.label}」，不在等待备件。")
    parts = section(ticket, "parts")
    parts["updated_at"] = iso(ctx.now)
    parts.setdefault("updates", []).append({"by": ctx.actor.id, "at": iso(ctx.now), "note": note})
    await _schedule_escalation(ctx, ticket)  # an update restarts the clock
    ticket.updated_at = ctx.now
    await ctx.uow.save_ticket(ticket)
    await ctx.audit("parts_progress", {"note": note}, ticket)
    for person_id in {ticket.assignee_id, ticket.customer_id} - {ctx.actor.id, None}:
        await ctx.tell(person_id, f"工单 {ticket.number} 备件进度：{note}", ticket=ticket)  # type: ignore[arg-type]
    await ctx.tell(ctx.actor.id, f"已记录工单 {ticket.number} 的备件进度。", ticket=ticket)
    return ticket


@after_move()
async def _leaving_parts(ctx: Context, ticket: Ticket, name: str) -> None:
    if name in {"parts_ready", "cancel"}:
        await ctx.uow.cancel_timers(ticket.number, {ESCALATION_TIMER})


@timer_handler(ESCALATION_TIMER)
async def _escalate(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    if ticket is None or ticket.status != S.WAITING_PARTS:
        return
    parts = section(ticket, "parts")
    if parts.get("round") != payload.get("round"):
        return
    parts["escalated"] = True
    parts["escalated_at"] = iso(ctx.now)
    await ctx.uow.save_ticket(ticket)
    recipients = {p.id: p for p in await people_with_role(ctx, Role.ADMIN)}
    recipients.update({p.id: p for p in await supervisors_for(ctx, ticket)})
    for person_id in sorted(recipients):
        await ctx.send_card(person_id, Card(
            id=ctx.new_card_id("shortage"), kind=CardKind.TASK, title=f"紧急缺件：工单 {ticket.number}",
            ticket_number=ticket.number, urgent=True,
            facts=(("配件", str(parts.get("note", "—"))), ("技师", await person_name(ctx, ticket.assignee_id)),
                   ("等待起始", str(parts.get("requested_at", "—"))[:16].replace("T", " "))),
            body=f"该工单等待备件已超过 {opt(ctx, 'parts_escalation_h')} 小时无更新，请采购加急处理。",
        ))
    await ctx.audit("parts_escalated", {"note": parts.get("note"), "to": sorted(recipients)}, ticket)
