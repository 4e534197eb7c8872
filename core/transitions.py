"""Generic workflow moves by name, and the guards every template needs."""

from __future__ import annotations

from core.commands import Transition
from core.errors import NotAllowed
from core.model import Ticket
from core.service import Context, guard, handles


@guard("assignee")
async def _actor_is_assignee(ctx: Context, ticket: Ticket) -> None:
    if ticket.assignee_id != ctx.actor.id:
        raise NotAllowed(f"工单 {ticket.number} 不是派给您的。", number=ticket.number, actor=ctx.actor.id)


@guard("customer")
async def _actor_is_customer(ctx: Context, ticket: Ticket) -> None:
    if ticket.customer_id != ctx.actor.id:
        raise NotAllowed(f"只有工单 {ticket.number} 的报修客户本人可以这样做。", number=ticket.number,
                         actor=ctx.actor.id)


@handles(Transition)
async def transition(ctx: Context, cmd: Transition) -> Ticket:
    ticket = await ctx.ticket(cmd.number)
    return await ctx.move(ticket, cmd.name, payload={"note": cmd.note} if cmd.note else None)
