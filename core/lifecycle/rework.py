"""Rework: a customer who says it is still broken gets the ticket back, and the first-time-fix
figure counts how often that (or a new ticket on the same asset) happens.

* At the sign-off card, 仍未修好 sends the ticket back to 检修中 with the same technician.
* After 已结案, 「仍未修好」 within `rework_window_days` (template option, default 7) reopens the
  ticket (已重开) and offers it to the same technician first; later, it asks for a new report.
* `first_time_fix` is pure: give it tickets, a period and the repeat window (30 days).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import InvalidInput, NotFound
from core.lifecycle.common import (
    close_answered_card,
    iso,
    lock_card,
    opt,
    section,
    supervisors_for,
    sync_workflow,
    technician_label,
)
from core.masterdata.prefill import identifier_of
from core.model import Role, Ticket, TicketStatus
from core.service import Context, handles

S = TicketStatus
REPEAT_WINDOW_DAYS = 30
# What dispatch's OFFER card says when a reopened ticket goes back to the technician who did it.
REWORK_OFFER_NOTE = "返修：客户反馈您上次检修的工单仍未修好，工单已重开并退回给您，请接单后尽快返修。"


@dataclass(frozen=True, slots=True)
class ReportStillBroken:
    number: str | None = None
    reason: str = ""


async def still_broken_at_signoff(ctx: Context, ticket: Ticket, reason: str) -> str:
    rework = section(ticket, "rework")
    rework["not_fixed_at_signoff"] = int(rework.get("not_fixed_at_signoff", 0)) + 1
    rework["last_at"] = iso(ctx.now)
    await ctx.move(ticket, "still_broken", payload={"reason": reason} if reason else None)
    await ctx.uow.cancel_timers(ticket.number, {"signoff_callback"})
    note = f"，客户说明：{reason}" if reason else ""
    if ticket.assignee_id:
        await ctx.tell(ticket.assignee_id, f"客户反馈工单 {ticket.number} 仍未修好{note}。工单已退回「检修中」，"
                       "请继续检修并重新拍照后再完工。", ticket=ticket, urgent=True)
    for boss in await supervisors_for(ctx, ticket):
        await ctx.tell(boss.id, f"工单 {ticket.number} 客户未签字：仍未修好{note}，已退回技师返修。", ticket=ticket)
    await ctx.tell(ctx.actor.id, f"已收到，工单 {ticket.number} 已退回技师继续维修。", ticket=ticket)
    return "已反馈仍未修好，工单退回检修"


async def reopen_closed(ctx: Context, ticket: Ticket, reason: str) -> Ticket:
    days = int(opt(ctx, "rework_window_days"))
    if ticket.closed_at is None or ctx.now - ticket.closed_at > timedelta(days=days):
        raise InvalidInput(f"工单 {ticket.number} 已结案超过 {days} 天，超出返修期。请直接描述故障重新报修。",
                           number=ticket.number, window_days=days)
    rework = section(ticket, "rework")
    rework["count"] = int(rework.get("count", 0)) + 1
    rework["last_at"] = iso(ctx.now)
    rework["preferred_technician"] = ticket.assignee_id
    await ctx.move(ticket, "reopen", payload={"reason": reason, "rework": rework["count"]})
    await ctx.tell(ctx.actor.id, f"工单 {ticket.number} 已重开，优先安排原技师返修，请保持电话畅通。", ticket=ticket)
    await offer_same_technician(ctx, ticket)
    return ticket


async def offer_same_technician(ctx: Context, ticket: Ticket) -> None:
    """Same technician first: 已重开 → 已派单 to the previous technician; dispatch (core/dispatch/handlers.py)
    turns that move into an OFFER card for them, and moves on to the next candidate if they decline
    or let it expire. Without an active previous technician the supervisors pick someone (转派)."""
    tech_id = section(ticket, "rework").get("preferred_technician")
    tech = await ctx.uow.get_person(tech_id) if tech_id else None
    bosses = await supervisors_for(ctx, ticket)
    if tech is None or not tech.active or tech.role != Role.TECHNICIAN:
        for boss in bosses:
            await ctx.tell(boss.id, f"工单 {ticket.number} 结案后客户反馈仍未修好，已重开（返修）；原技师不可用，"
                           f"请转派：转派 {ticket.number} 技师工号", ticket=ticket)
        return
    ticket.assignee_id = tech.id
    # Dispatch words the offer this move makes as a rework (returned_for_rework), not a reassignment.
    section(ticket, "rework")["returned"] = {"person_id": tech.id, "at": iso(ctx.now)}
    await ctx.move(ticket, "dispatch", payload={"assignee": tech.id, "reason": "返修：原技师优先"}, as_system=True)
    await ctx.tell(tech.id, f"返修：客户反馈工单 {ticket.number} 仍未修好，已重开并优先派给您，请接单。", ticket=ticket,
                   urgent=True)
    for boss in bosses:
        await ctx.tell(boss.id, f"工单 {ticket.number} 结案后客户反馈仍未修好，已重开（返修），"
                       f"已优先派给上次检修的{technician_label(tech.name)}。", ticket=ticket)


def returned_for_rework(ticket: Ticket, person_id: str, now: datetime) -> bool:
    """Whether the offer being made now hands a reopened ticket back to the technician who did it
    (the move `offer_same_technician` makes, in the same command)."""
    returned = (ticket.data.get("rework") or {}).get("returned") or {}
    return returned.get("person_id") == person_id and returned.get("at") == iso(now)


@handles(ReportStillBroken)
async def report_still_broken(ctx: Context, cmd: ReportStillBroken) -> Ticket:
    await sync_workflow(ctx)
    if ctx.actor.role != Role.CUSTOMER:
        raise InvalidInput("「仍未修好」由报修客户发送。")
    if cmd.number:
        number = cmd.number
    else:
        mine = await ctx.uow.list_tickets(customer_id=ctx.actor.id, statuses={S.PENDING_SIGNOFF, S.CLOSED}, limit=1)
        if not mine:
            raise NotFound("没有找到待签字或已结案的工单。如有新故障，请直接描述。")
        number = mine[0].number
    seen = await ctx.ticket(number, lock=False)
    if seen.customer_id != ctx.actor.id:
        raise NotFound(f"没有找到工单 {number}。", number=number)
    # Typed at sign-off, it answers the SIGNOFF card: that card closes as its 仍未修好 button would.
    card_id = section(seen, "signoff").get("card_id")
    await lock_card(ctx, card_id)
    ticket = await ctx.ticket(number)
    if ticket.status == S.PENDING_SIGNOFF:
        note = await still_broken_at_signoff(ctx, ticket, cmd.reason)
        await close_answered_card(ctx, ticket, card_id, note, "not_fixed")
        return ticket
    if ticket.status != S.CLOSED:
        raise InvalidInput(f"工单 {ticket.number} 还在处理中（{ticket.status.label}），技师会继续跟进。")
    return await reopen_closed(ctx, ticket, cmd.reason)


# --- first-time fix -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FirstTimeFix:
    start: datetime
    end: datetime
    closed: int  # tickets closed in the period (the population)
    first_time: int  # of them, fixed the first time
    failed: tuple[str, ...]  # numbers that needed rework or came back within the window
    repeats: tuple[str, ...]  # tickets created in the period that repeat an earlier one (same asset + category)

    @property
    def rate(self) -> float | None:
        return self.first_time / self.closed if self.closed else None

    def text(self) -> str:
        if not self.closed:
            return "一次修复率：本期无结案工单"
        return (f"一次修复率：{self.rate:.1%}（结案 {self.closed} 张，一次修复 {self.first_time} 张，"
                f"返修/重复报修 {len(self.failed)} 张）")


def asset_key(ticket: Ticket) -> str:
    """The normalised asset a ticket is about (issue 20): its master-data asset, else the identifier
    intake read (`sn:`/`plate:`/`vin:` key), else its subject normalised the same way (so
    `KFR-35GW/N8HR3` and `kfr35gw-n8hr3` are one unit); without any, the customer."""
    if ticket.asset_id:
        return f"asset:{ticket.asset_id}"
    facts = ticket.data.get("masterdata")
    read = facts.get("asset_key") if isinstance(facts, dict) else None
    if isinstance(read, str) and read:
        return read
    subject = ticket.subject.strip()
    if not subject:
        return f"customer:{ticket.customer_id}"
    found = identifier_of(subject)
    return f"{found[0]}:{found[1]}" if found is not None else subject


def _was_reworked(ticket: Ticket) -> bool:
    rework = ticket.data.get("rework") or {}
    return bool(rework.get("count") or rework.get("not_fixed_at_signoff"))


def first_time_fix(tickets: Iterable[Ticket], start: datetime, end: datetime, *,
                   window_days: int = REPEAT_WINDOW_DAYS) -> FirstTimeFix:
    """First-time-fix for tickets closed in [start, end).

    A closed ticket was *not* fixed the first time when it was sent back (仍未修好 at sign-off,
    or reopened), or when another ticket on the same asset and category was created within
    `window_days` after it closed. Cancelled tickets are not counted.
    """
    window = timedelta(days=window_days)
    pool = [t for t in tickets if t.status != S.CANCELLED]
    by_asset: dict[tuple[str, str | None], list[Ticket]] = defaultdict(list)
    for t in pool:
        by_asset[(asset_key(t), t.category)].append(t)
    failed: list[str] = []
    closed = [t for t in pool if t.closed_at is not None and start <= t.closed_at < end]
    for t in closed:
        assert t.closed_at is not None
        came_back = any(u.number != t.number and t.closed_at < u.created_at <= t.closed_at + window
                        for u in by_asset[(asset_key(t), t.category)])
        if came_back or _was_reworked(t):
            failed.append(t.number)
    repeats = sorted(
        u.number for u in pool if start <= u.created_at < end and any(
            t.number != u.number and t.closed_at is not None and t.closed_at < u.created_at <= t.closed_at + window
            for t in by_asset[(asset_key(u), u.category)]))
    return FirstTimeFix(start=start, end=end, closed=len(closed), first_time=len(closed) - len(failed),
                        failed=tuple(sorted(failed)), repeats=tuple(repeats))
