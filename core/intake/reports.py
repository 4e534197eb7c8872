"""What intake does with a report before it makes a ticket: fold a repeat, hold back a flood.

* **Follow-up.** A report that repeats one of the customer's open tickets reported within the
  follow-up window — the same asset (device number, plate), or, when either names none, the same
  category, or the very same text — is recorded on that ticket (`report_follow_up` on its trail,
  `data["follow_ups"]`) instead of opening another one with its own SLA timers and offers. Two
  different assets are two jobs even in one category. The customer is told which ticket, and that
  `新问题` makes it a ticket of its own; the ticket's technician (or, in triage, the supervisors) is
  told, at most once per limit window so a burst of repeats is no burst of messages.
* **Per-sender limit.** A customer opens at most `per_sender` tickets per `window`, counted from the
  tickets table (so every process and platform sees the same count) while the customer's row is
  locked (so concurrent reports of one customer are counted one after another). A report over the
  limit makes no ticket: the customer is told why and when to send it again, the text is audited
  (`report_limited`) and stays in the inbox, and the supervisors hear once per window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.intake.limits import IntakeLimits
from core.intake.urgency import DEPARTMENT, PLANT, URGENT, detect_urgency
from core.masterdata.org import supervisor_chain
from core.model import Person, Ticket, TicketStatus
from core.service import Context

S = TicketStatus
OPEN_STATES = frozenset(s for s in TicketStatus if s.is_open)
MAX_FOLLOW_UP_TEXT = 500
SPLIT_WINDOW = timedelta(minutes=30)  # `新问题` splits a follow-up recorded this recently
# The strongest match wins: an asset names the job, the same words are a resend, a category is a guess.
MATCH_ORDER = ("asset", "same_text", "category")
FOLLOW_UPS = "follow_ups"
IMPACT_RANK = {"单用户": 0, DEPARTMENT: 1, PLANT: 2}


@dataclass(frozen=True, slots=True)
class Repeat:
    ticket: Ticket  # as read, unlocked
    match: str  # one of MATCH_ORDER


def _iso(at: datetime) -> str:
    return at.isoformat()


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _same_words(a: str, b: str) -> bool:
    return "".join(a.split()).casefold() == "".join(b.split()).casefold()


def match_of(ticket: Ticket, text: str, category: str | None, asset: str, asset_id: str | None = None) -> str | None:
    """How a new report matches an open ticket, None when it does not. `asset_id`: the master-data
    asset the report names (two spellings of one SN are one asset)."""
    if asset_id and ticket.asset_id:
        return "asset" if asset_id == ticket.asset_id else None
    subject = ticket.subject.strip()
    if asset and subject:
        return "asset" if asset.casefold() == subject.casefold() else None
    if _same_words(ticket.description, text):
        return "same_text"
    if category and ticket.category == category:
        return "category"
    return None


def find_repeat(recent: list[Ticket], text: str, category: str | None, asset: str, limits: IntakeLimits,
                now: datetime, *, asset_id: str | None = None) -> Repeat | None:
    """The open ticket among the customer's `recent` ones (newest first) that this report repeats."""
    if limits.follow_up_window <= timedelta(0):
        return None
    since = now - limits.follow_up_window
    found = [Repeat(t, m) for t in recent if t.status in OPEN_STATES and t.created_at >= since
             and (m := match_of(t, text, category, asset, asset_id)) is not None]
    # The strongest match, then the newest ticket (min keeps the first of equals).
    return min(found, key=lambda r: MATCH_ORDER.index(r.match)) if found else None


def lookback(limits: IntakeLimits) -> timedelta | None:
    """How far back intake reads a customer's tickets; None: neither rule is on."""
    longest = max(limits.follow_up_window, limits.window if limits.per_sender > 0 else timedelta(0))
    return longest if longest > timedelta(0) else None


def _follow_ups(ticket: Ticket) -> dict[str, Any]:
    value = ticket.data.get(FOLLOW_UPS)
    if not isinstance(value, dict):
        value = {"count": 0}
        ticket.data[FOLLOW_UPS] = value
    return value


def _quiet_since(state: dict[str, Any], key: str, now: datetime, window: timedelta) -> bool:
    """Whether nobody was told (`key`) within the window; marks them told now if so."""
    told = _parse(state.get(key))
    if told is not None and now - told < window:
        return False
    state[key] = _iso(now)
    return True


async def record_follow_up(ctx: Context, repeat: Repeat, text: str, limits: IntakeLimits, *,
                           new_problem_hint: str, registered_by: Person | None = None) -> Ticket:
    """Record `text` on the repeated ticket, tell who should know. Locks the ticket (the customer's
    row is already locked: customer before ticket before the audit head)."""
    ticket = await ctx.ticket(repeat.ticket.number)
    state = _follow_ups(ticket)
    state["count"] = int(state.get("count", 0)) + 1
    state["last"] = {"at": _iso(ctx.now), "text": text[:MAX_FOLLOW_UP_TEXT], "by": ctx.actor.id, "split": None}
    # Only a told technician (or supervisor, in triage) starts the quiet window.
    audience = bool(ticket.assignee_id) or ticket.status is S.TRIAGE
    tell_staff = audience and _quiet_since(state, "told_at", ctx.now, limits.window)
    said = detect_urgency(text)
    wider = IMPACT_RANK.get(said.impact or "", 0) > IMPACT_RANK.get(ticket.impact, 0)
    escalate = ((said.urgent and ticket.priority != URGENT) or wider) and _quiet_since(
        state, "urgency_told_at", ctx.now, limits.window)
    await ctx.uow.save_ticket(ticket)
    await ctx.audit("report_follow_up", {
        "text": text[:MAX_FOLLOW_UP_TEXT], "match": repeat.match, "count": state["count"],
        **({"registered_by": registered_by.id} if registered_by else {})}, ticket)

    told = ""
    if tell_staff:
        told = await _tell_staff(ctx, ticket, text)
    if escalate:
        for boss in await supervisor_chain(ctx, ticket):
            await ctx.tell(boss.id, f"工单 {ticket.number} 的客户补充说明提到紧急或影响范围扩大：{text[:120]}\n"
                           f"当前为 {ticket.priority}×{ticket.impact}，如需调整请发送「优先级 {ticket.number} 紧急」"
                           f"或「影响 {ticket.number} 部门/全厂」。", ticket=ticket)
    what = "、".join(x for x in (ticket.status.label, ticket.category or "", ticket.subject) if x)
    if registered_by is not None:
        answer = (f"该客户已有未结案的工单 {ticket.number}（{what}），这次登记已作为补充说明记入该工单{told}。\n"
                  f"{new_problem_hint}")
    else:
        answer = (f"您的工单 {ticket.number}（{what}）还在处理中，这条消息已作为补充说明记入该工单{told}。\n"
                  f"{new_problem_hint}")
        if ticket.status is S.PENDING_SIGNOFF:
            answer += "\n如果维修后问题仍在，请在签字卡片上点「仍未修好」或发送「仍未修好」。"
    await ctx.tell(ctx.actor.id, answer, ticket=ticket)
    return ticket


async def _tell_staff(ctx: Context, ticket: Ticket, text: str) -> str:
    """The technician (or, before anyone is assigned, the supervisors in triage) hears of a follow-up."""
    if ticket.assignee_id:
        await ctx.tell(ticket.assignee_id, f"客户对工单 {ticket.number} 补充说明：{text[:200]}", ticket=ticket)
        return "并转告技师"
    if ticket.status is S.TRIAGE:
        for boss in await supervisor_chain(ctx, ticket):
            await ctx.tell(boss.id, f"待分诊工单 {ticket.number} 客户补充说明：{text[:200]}", ticket=ticket)
        return "并转告主管"
    return ""


async def limit_reached(ctx: Context, customer: Person, text: str, limits: IntakeLimits,
                        tickets: list[Ticket]) -> bool:
    """True (and the customer answered, the attempt audited) when `customer` has opened `per_sender`
    tickets within the window. `tickets`: theirs, newest first, read with the customer's row locked
    (committed tickets, counted one report after another)."""
    if limits.per_sender <= 0:
        return False
    since = ctx.now - limits.window
    recent = [t for t in tickets if t.created_at >= since]
    if len(recent) < limits.per_sender:
        return False
    free_at = min(t.created_at for t in recent) + limits.window
    numbers = [t.number for t in recent]
    minutes = limits.window_minutes
    # The supervisors hear once per window; the mark lives on the newest ticket (locked before the audit head).
    newest = await ctx.ticket(recent[0].number)
    notice = newest.data.get("report_limit") if isinstance(newest.data.get("report_limit"), dict) else {}
    noticed = _parse(notice.get("noticed_at")) if notice else None
    if noticed is None or noticed < since:
        newest.data["report_limit"] = {"noticed_at": _iso(ctx.now)}
        await ctx.uow.save_ticket(newest)
        for boss in await supervisor_chain(ctx, newest):
            await ctx.tell(boss.id, f"客户 {customer.name}（{customer.id}）报修过于频繁：{minutes} 分钟内已建 "
                           f"{len(recent)} 张工单（{'、'.join(numbers)}），之后的报修暂未建单并已记录，"
                           "如有需要请联系客户。", ticket=newest)
    await ctx.audit("report_limited", {"text": text[:MAX_FOLLOW_UP_TEXT], "customer_id": customer.id,
                                       "limit": limits.per_sender, "window_minutes": minutes, "tickets": numbers})
    local = free_at.astimezone(ctx.config.timezone)
    await ctx.tell(ctx.actor.id, (
        f"您在 {minutes} 分钟内已提交 {len(recent)} 张工单（{'、'.join(numbers)}），为避免重复派单，"
        f"这条消息暂未建单，内容已记录。\n如是新的故障，请在 {local:%H:%M} 后再发送；情况紧急请直接联系门店。"
        "发送「进度」可查看已有工单。"))
    return True


def last_follow_up(tickets: list[Ticket], by: str, now: datetime) -> tuple[Ticket, str] | None:
    """The customer's most recent follow-up not yet split off (within SPLIT_WINDOW): (ticket, its text)."""
    best: tuple[datetime, Ticket, str] | None = None
    for ticket in tickets:
        last = (ticket.data.get(FOLLOW_UPS) or {}).get("last")
        if not isinstance(last, dict) or last.get("by") != by or last.get("split"):
            continue
        at = _parse(last.get("at"))
        if at is not None and now - at <= SPLIT_WINDOW and (best is None or at > best[0]):
            best = (at, ticket, str(last.get("text") or ""))
    return (best[1], best[2]) if best else None


def mark_split(ticket: Ticket, new_number: str) -> None:
    last = _follow_ups(ticket).get("last")
    if isinstance(last, dict):
        last["split"] = new_number
