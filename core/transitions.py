"""Generic workflow moves by name, the guards every template needs, and cancelling a ticket."""

from __future__ import annotations

from core.commands import CancelTicket, Transition
from core.errors import InvalidInput, NotAllowed
from core.model import Role, Ticket, TicketStatus
from core.service import Context, guard, handles

S = TicketStatus
STAFF = frozenset({Role.SUPERVISOR, Role.ADMIN})
# A customer may cancel until a technician accepted the job; staff at any open state.
CUSTOMER_CANCELLABLE = frozenset({S.TRIAGE, S.PENDING_DISPATCH, S.DISPATCHED})
MAX_CANCEL_REASON = 200


@guard("assignee")
async def _actor_is_assignee(ctx: Context, ticket: Ticket) -> None:
    if ticket.assignee_id != ctx.actor.id:
        raise NotAllowed(f"工单 {ticket.number} 不是派给您的。", number=ticket.number, actor=ctx.actor.id)


@guard("customer")
async def _actor_is_customer(ctx: Context, ticket: Ticket) -> None:
    if ticket.customer_id != ctx.actor.id:
        raise NotAllowed(f"只有工单 {ticket.number} 的报修客户本人可以这样做。", number=ticket.number,
                         actor=ctx.actor.id)


@guard("cancellable")
async def check_cancel(ctx: Context, ticket: Ticket) -> None:
    """Who may cancel: the ticket's own customer before a technician accepted, staff at any open state."""
    if ctx.is_system or ctx.actor.role in STAFF:
        return
    if ctx.actor.role is not Role.CUSTOMER:
        raise NotAllowed("只有报修客户（技师接单前）或主管、管理员可以取消工单。如需取消，请联系主管。",
                         number=ticket.number, role=ctx.actor.role.value)
    if ticket.customer_id != ctx.actor.id:
        raise NotAllowed(f"没有找到工单 {ticket.number}。", number=ticket.number, actor=ctx.actor.id)
    if ticket.status.is_open and ticket.status not in CUSTOMER_CANCELLABLE:
        raise NotAllowed(f"工单 {ticket.number} 技师已接单（{ticket.status.label}），不能自行取消。"
                         "如需取消，请联系门店或主管。", number=ticket.number, status=ticket.status.value)


@handles(Transition)
async def transition(ctx: Context, cmd: Transition) -> Ticket:
    ticket = await ctx.ticket(cmd.number)
    return await ctx.move(ticket, cmd.name, payload={"note": cmd.note} if cmd.note else None)


@handles(CancelTicket)
async def cancel_ticket(ctx: Context, cmd: CancelTicket) -> Ticket:
    """The workflow's cancel step. Its hooks stop the SLA clock and withdraw an open offer."""
    ticket = await ctx.ticket(cmd.number)
    await check_cancel(ctx, ticket)  # before the reason: a stranger learns nothing about the format
    reason = " ".join(cmd.reason.split())[:MAX_CANCEL_REASON]
    if not reason:
        raise InvalidInput(f"请写明取消原因，例如「取消工单 {ticket.number} 已自行修好」。", number=ticket.number)
    before, assignee = ticket.status, ticket.assignee_id
    await ctx.move(ticket, "cancel", payload={"reason": reason})
    await ctx.tell(ctx.actor.id, f"工单 {ticket.number} 已取消（原因：{reason}）。", ticket=ticket)
    if ticket.customer_id != ctx.actor.id:
        await ctx.tell(ticket.customer_id, f"您的工单 {ticket.number} 已由{ctx.actor.name}取消，原因：{reason}。"
                                           "如有疑问请联系门店。", ticket=ticket)
    # An open offer's technician is told by dispatch (the offer is withdrawn); one on the job by us.
    if assignee and assignee != ctx.actor.id and before is not S.DISPATCHED:
        await ctx.tell(assignee, f"工单 {ticket.number} 已取消（原因：{reason}），无需继续处理。", ticket=ticket)
    return ticket
