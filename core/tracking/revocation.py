"""`链接 作废 号`: revoke a ticket's tracking link (it was forwarded to the wrong person, posted in a group).

Revoking bumps the ticket's link generation: every token made before stops resolving at once, in every
process, with nothing to look up (tokens are stateless, bot/tracking_links.py). The customer gets the new
link right away (the notification hook adds it); the revocation is audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import NotAllowed
from core.model import Role, Ticket
from core.service import Context, handles
from core.tracking import link_generation

# Who may revoke: staff who deal with customers, and the ticket's own customer.
REVOKING_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN, Role.FRONT_DESK, Role.QUALITY})


@dataclass(frozen=True, slots=True)
class RevokeTrackingLink:
    number: str
    reason: str = ""


@handles(RevokeTrackingLink)
async def revoke_tracking_link(ctx: Context, cmd: RevokeTrackingLink) -> Ticket:
    ticket = await ctx.ticket(cmd.number)
    if ctx.actor.id != ticket.customer_id and ctx.actor.role not in REVOKING_ROLES and not ctx.is_system:
        raise NotAllowed("只有主管、管理员、前台或报修客户本人可以作废进度链接。", number=ticket.number,
                         role=ctx.actor.role.value)
    before = link_generation(ticket)
    section = ticket.data.get("tracking")
    if not isinstance(section, dict):
        section = ticket.data["tracking"] = {}
    section["generation"] = before + 1
    await ctx.uow.save_ticket(ticket)
    reason = " ".join(cmd.reason.split())[:200]
    await ctx.audit("tracking_link_revoked", {"generation": before + 1, **({"reason": reason} if reason else {})},
                    ticket)
    if ctx.actor.id != ticket.customer_id:
        await ctx.tell(ctx.actor.id, f"已作废工单 {ticket.number} 的旧进度链接，新链接已发给客户。", ticket=ticket)
    await ctx.tell(ticket.customer_id, f"您的工单 {ticket.number} 的进度查看链接已更新，旧链接已失效。", ticket=ticket)
    return ticket
