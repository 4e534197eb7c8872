"""The triage queue: faults the rules could not place wait in 待分诊 until a supervisor classifies them.

`ListTriage` shows the queue; `ClassifyTicket` sets the category and moves the ticket on with
the workflow's "classify" step (待分诊 → 待派单), whose after-move hooks run as for any move:
core.dispatch.handlers offers the job to the best technician at once (→ 已派单) when someone fits.
The caller passes the categories the live rules know, so a typo cannot create a category no
technician has as a skill.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InvalidInput
from core.model import Role, Ticket, TicketStatus
from core.service import Context, handles

QUEUE_LIMIT = 30  # shown, oldest first
SCAN_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class ListTriage:
    categories: tuple[str, ...] = ()  # shown as the choices


@dataclass(frozen=True, slots=True)
class ClassifyTicket:
    number: str
    category: str
    categories: tuple[str, ...]  # the categories of the live rules


@handles(ListTriage)
async def list_triage(ctx: Context, cmd: ListTriage) -> list[Ticket]:
    ctx.require_role(Role.SUPERVISOR, Role.ADMIN)
    waiting = await ctx.uow.list_tickets(statuses={TicketStatus.TRIAGE}, limit=SCAN_LIMIT)
    if not waiting:
        await ctx.tell(ctx.actor.id, "分诊队列是空的：没有待分诊的工单。")
        return []
    oldest_first = sorted(waiting, key=lambda t: t.created_at)[:QUEUE_LIMIT]
    lines = [
        f"{t.number}｜{t.created_at.astimezone(ctx.config.timezone):%m-%d %H:%M}｜{t.description[:40]}"
        for t in oldest_first
    ]
    shown = f"，先显示最早的 {len(oldest_first)} 张" if len(waiting) > len(oldest_first) else ""
    example = f"分诊 {oldest_first[0].number} {cmd.categories[0] if cmd.categories else '机械类'}"
    await ctx.tell(ctx.actor.id, f"待分诊工单 {len(waiting)} 张{shown}：\n" + "\n".join(lines)
                   + f"\n分类请发送「分诊 工单号 分类」，例如「{example}」。"
                   + f"\n可选分类：{'、'.join(cmd.categories) or '（无）'}")
    return oldest_first


@handles(ClassifyTicket)
async def classify_ticket(ctx: Context, cmd: ClassifyTicket) -> Ticket:
    ctx.require_role(Role.SUPERVISOR, Role.ADMIN)
    if cmd.category not in cmd.categories:
        raise InvalidInput(f"没有「{cmd.category}」这个分类。可选分类：{'、'.join(cmd.categories) or '（无）'}。",
                           category=cmd.category)
    ticket = await ctx.ticket(cmd.number)
    if ticket.status != TicketStatus.TRIAGE:
        raise InvalidInput(f"工单 {ticket.number} 当前状态为「{ticket.status.label}」，不在分诊队列中。",
                           number=ticket.number, status=ticket.status.value)
    ticket.category = cmd.category
    ticket.data.setdefault("classification", {})["triaged"] = {"by": ctx.actor.id, "category": cmd.category,
                                                                "at": ctx.now.isoformat()}
    # Told before the move: dispatch (an after-move hook) may tell the customer who is coming next.
    await ctx.tell(ticket.customer_id, f"您的工单 {ticket.number} 已确认故障分类：{cmd.category}，"
                   "正在为您安排技师，接单后会第一时间通知您。", ticket=ticket)
    ticket = await ctx.move(ticket, "classify", payload={"category": cmd.category})
    # The move's after-move hooks (dispatch) may already have offered the job to a technician.
    next_step = "已发出派单，等待技师接单" if ticket.status is TicketStatus.DISPATCHED else "转入待派单"
    await ctx.tell(ctx.actor.id, f"已将工单 {ticket.number} 分类为「{cmd.category}」，{next_step}。", ticket=ticket)
    return ticket
