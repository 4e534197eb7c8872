"""Staff re-prioritise a ticket (`优先级 号 紧急|常规|咨询`, `影响 号 单用户|部门|全厂`).

The SLA is re-planned as if the ticket had been reported with the corrected priority and impact:
the clock keeps its start (the report, or the moment an urgent upgrade was accepted) and so its
time band, and the open tracks get the new cell's targets from that start — pauses still count,
deadlines and timers move. A track already met or breached stays as it was (history is not
rewritten); a new deadline that has already passed fires its breach at once. Every change is
audited ("priority_changed": field, from, to, cell, deadlines).
"""

from __future__ import annotations

from datetime import datetime

from core.commands import ChangePriority
from core.errors import Conflict, InvalidInput
from core.intake.tickets import EVENT_LABELS
from core.model import Role, Ticket
from core.service import Context, handles
from core.sla.matrix import Impact, Priority, deadline_for
from core.sla.tracking import (
    RESOLUTION,
    RESPONSE,
    TRACK_LABELS,
    is_open_track,
    iso,
    new_sla_state,
    parse_iso,
    plan_deadlines,
    sla_env,
    sla_state,
)

STAFF = (Role.SUPERVISOR, Role.ADMIN)
# The keys of the SLA state that describe its cell (the tracks and pauses keep their history).
CELL_KEYS = ("cell", "priority", "impact", "band", "clock", "response_minutes", "resolution_minutes",
             "matrix_version")
FIELD_LABELS = {"priority": "优先级", "impact": "影响范围"}

EVENT_LABELS.setdefault("priority_changed", "调整优先级/影响范围")


@handles(ChangePriority)
async def change_priority(ctx: Context, cmd: ChangePriority) -> Ticket:
    ctx.require_role(*STAFF)
    if cmd.priority is None and cmd.impact is None:
        raise InvalidInput("请写明新的优先级（紧急/常规/咨询）或影响范围（单用户/部门/全厂）。")
    priority = Priority.parse(cmd.priority) if cmd.priority is not None else None
    impact = Impact.parse(cmd.impact) if cmd.impact is not None else None
    ticket = await ctx.ticket(cmd.number)
    if not ticket.status.is_open:
        raise Conflict(f"工单 {ticket.number} {ticket.status.label}，不能再调整。", number=ticket.number)
    changes = [(field, before, after.value) for field, before, after in
               (("priority", ticket.priority, priority), ("impact", ticket.impact, impact))
               if after is not None and after.value != before]
    if not changes:
        field, value = ("priority", ticket.priority) if priority is not None else ("impact", ticket.impact)
        raise InvalidInput(f"工单 {ticket.number} 的{FIELD_LABELS[field]}已经是「{value}」。", number=ticket.number)
    ticket.priority = (priority or Priority.parse(ticket.priority)).value
    ticket.impact = (impact or Impact.parse(ticket.impact)).value
    if priority is not None:
        _settle_urgent_request(ctx, ticket)
    await replan(ctx, ticket)
    ticket.updated_at = ctx.now
    await ctx.uow.save_ticket(ticket)
    state = sla_state(ticket) or {}
    for field, before, after in changes:
        await ctx.audit("priority_changed", {
            "field": field, "from": before, "to": after, "cell": state.get("cell"),
            "response_due": iso(ticket.response_due), "resolution_due": iso(ticket.resolution_due)}, ticket)
    what = "，".join(f"{FIELD_LABELS[f]}由「{b}」调整为「{a}」" for f, b, a in changes)
    deadlines = _deadlines_text(ctx, ticket)
    await ctx.tell(ctx.actor.id, f"已将工单 {ticket.number} 的{what}。SLA {state.get('cell', '—')}：{deadlines}。",
                   ticket=ticket)
    if ticket.assignee_id and ticket.assignee_id != ctx.actor.id:
        await ctx.tell(ticket.assignee_id, f"工单 {ticket.number} 的{what}（{ctx.actor.name}）。{deadlines}。",
                       ticket=ticket, urgent=ticket.priority == Priority.URGENT.value)
    return ticket


async def replan(ctx: Context, ticket: Ticket) -> None:
    """Give the ticket's SLA the cell of its current priority and impact, from the same clock start."""
    env = await sla_env(ctx)
    state = sla_state(ticket)
    origin = parse_iso(state["origin"]) if state is not None else None
    d = deadline_for(ticket.priority, ticket.impact, origin or ticket.created_at, env.calendar, env.matrix)
    fresh = new_sla_state(d, env.matrix_version)
    if state is None:  # a ticket from before the SLA clock: it starts now, from its report
        ticket.data["sla"] = fresh
        await plan_deadlines(ctx, ticket, env.calendar, fresh=d)
        return
    for key in CELL_KEYS:
        state[key] = fresh[key]
    await plan_deadlines(ctx, ticket, env.calendar)


def _settle_urgent_request(ctx: Context, ticket: Ticket) -> None:
    """Staff decided the priority: a pending urgent request (intake guard) no longer waits for evidence."""
    urgent = ticket.data.get("urgent")
    if ticket.priority == Priority.URGENT.value:
        ticket.data["urgent"] = {**(urgent or {}), "status": "accepted", "basis": "staff", "by": ctx.actor.id,
                                 "at": iso(ctx.now)}
    elif isinstance(urgent, dict) and urgent.get("status") in {"pending", "accepted"}:
        ticket.data["urgent"] = {**urgent, "status": "overridden", "by": ctx.actor.id, "at": iso(ctx.now)}


def _deadlines_text(ctx: Context, ticket: Ticket) -> str:
    state = sla_state(ticket)
    if state is None:
        return "无 SLA"
    parts = []
    for track in (RESPONSE, RESOLUTION):
        current = state[track]
        due = parse_iso(current.get("due"))
        if current.get("met_at"):
            parts.append(f"{TRACK_LABELS[track]}已达成")
        elif current.get("breached_at"):
            parts.append(f"{TRACK_LABELS[track]}已超时")
        elif track == RESOLUTION and state.get("stopped_since"):
            parts.append(f"{TRACK_LABELS[track]}计时暂停中")
        elif is_open_track(current) and due is not None:
            parts.append(f"{TRACK_LABELS[track]}截止 {_local(ctx, due)}")
    return "，".join(parts)


def _local(ctx: Context, value: datetime) -> str:
    return value.astimezone(ctx.config.timezone).strftime("%m-%d %H:%M")
