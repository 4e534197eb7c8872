"""When a ticket learns its site after it was dispatched (the customer answered the location question).

The open offer stands: withdrawing it to re-rank would take the job from a technician who may be
about to accept, for a difference in one score term. Instead the technician holding the ticket
(offered or accepted) is told where it is and how far that is from their last known position; every
later offer (after a decline or an expiry, a 转派) ranks with the site, since place_of reads it. A
ticket waiting in 待派单 with nobody to offer is not re-ranked: distance is a score term, not a
filter, so a site cannot make anyone eligible.
"""

from __future__ import annotations

from typing import Any

from core.dispatch.geo import haversine_km
from core.dispatch.live import live_index
from core.intake.details import after_site_located
from core.model import Ticket, TicketStatus
from core.service import Context

HOLDING = frozenset({TicketStatus.DISPATCHED, TicketStatus.ACCEPTED, TicketStatus.CHECKED_IN})


@after_site_located
async def _tell_the_technician(ctx: Context, ticket: Ticket) -> None:
    if ticket.status not in HOLDING or not ticket.assignee_id or ticket.site_lat is None or ticket.site_lng is None:
        return
    raw = ticket.data.get("masterdata")
    facts: dict[str, Any] = raw if isinstance(raw, dict) else {}
    address = str(facts.get("address") or "")
    where = f"{address}（{ticket.site_lat:.5f}, {ticket.site_lng:.5f}）" if address \
        else f"（{ticket.site_lat:.5f}, {ticket.site_lng:.5f}）"
    profile = await live_index(ctx.service).profile(ctx.uow.dispatch_store(), ticket.assignee_id, ctx.now)
    position = (profile.last_position or profile.home_position) if profile is not None else None
    far = ""
    if position is not None:
        far = f"，距您 {haversine_km(position.lat, position.lng, ticket.site_lat, ticket.site_lng):.1f} 公里"
    await ctx.tell(ticket.assignee_id, f"工单 {ticket.number} 的客户发送了现场位置：{where}{far}。", ticket=ticket)
