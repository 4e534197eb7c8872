"""Dispatch in the running service: who gets a new ticket, 接单 / 拒单, expiry and reassignment.

  * A new ticket with a category (and a ticket the triage moves to 待派单) is offered, in the same
    transaction, to the best candidate of core.dispatch.engine.rank_candidates (core/dispatch/offers.py).
  * 接单 by the offered technician (card button or 「接单 [工单号]」) → 已接单; the customer is told.
  * 拒单 needs a reason (the card's select, or 「拒单 [工单号] 原因」) → the next candidate at once;
    whoever declined or let an offer expire is never offered the ticket again.
  * No answer within the policy's offer_timeout_s (15 min) → the next candidate, the ticket is
    flagged 待复核 and the technician's supervisor (else every supervisor) is told.
  * Nobody left → the ticket waits in 待派单 and the supervisors get a card to pick someone.
  * A supervisor's reassignment (「转派」, the SLA escalation's 转派, a manual 派单) withdraws the open
    offer and offers the ticket to the chosen technician, whatever the filters say.
Every offer, accept, decline, expiry, withdrawal and reassignment is audited with the full score
breakdown (RankedCandidate.to_dict()).

Races: a card press locks the card row, then the ticket; the expiry runs with the ticket locked and
closes the card with `UPDATE … WHERE state='open'`; ticket saves are optimistic (version). Whatever
the interleaving, one of accept / decline / expiry wins and the others change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from core.cards import CardKind, Notification
from core.dispatch.engine import assess
from core.dispatch.live import live_index
from core.dispatch.offers import (
    DECLINE_LABELS,
    MAX_REASON,
    OFFER_TIMER,
    PICK_PREFIX,
    close_offer,
    current_policy,
    dispatch_state,
    excluded_ids,
    iso,
    offer_next,
    open_offer,
    person_name,
    place_of,
    request_for,
    send_offer,
    supervisors_of,
    tech_label,
)
from core.errors import Conflict, InvalidInput, NotAllowed, NotFound
from core.intake.tickets import EVENT_LABELS, after_create, card_handler
from core.lifecycle.tasks import task_action
from core.model import Person, Role, Ticket, TicketStatus
from core.repository import StoredCard
from core.service import DISPATCH_STAGE, Context, after_move, handles
from core.timers import timer_handler

S = TicketStatus
STAFF = (Role.SUPERVISOR, Role.ADMIN)
# Moves whose follow-up (the next offer) the flows below make themselves.
OWN_MOVES = frozenset({"decline", "expire_offer"})
EXPIRY_RETRY = timedelta(seconds=2)

for _kind, _label in (("offer_reassigned", "人工转派"), ("offer_withdrawn", "撤回派单"),
                      ("dispatch_stalled", "无人可派")):
    EVENT_LABELS.setdefault(_kind, _label)  # shown in the ticket's history like the other offer events


@dataclass(frozen=True, slots=True)
class AcceptOffer:
    number: str | None = None  # None: the technician's only pending offer


@dataclass(frozen=True, slots=True)
class DeclineOffer:
    reason: str
    number: str | None = None


@dataclass(frozen=True, slots=True)
class ReassignTicket:
    number: str
    person_id: str
    reason: str = ""


# --- new tickets and moves by others ---------------------------------------------------------

@after_create(DISPATCH_STAGE)
async def _dispatch_new_ticket(ctx: Context, ticket: Ticket) -> None:
    if ticket.status is S.PENDING_DISPATCH and ticket.category:
        await offer_next(ctx, ticket, trigger="created")


@after_move(DISPATCH_STAGE)
async def _follow_moves(ctx: Context, ticket: Ticket, name: str) -> None:
    offer = open_offer(ticket)
    if name == "accept":
        await _accepted(ctx, ticket, offer)
    elif name in OWN_MOVES:
        return
    elif ticket.status is S.DISPATCHED:
        if offer is not None and offer["person_id"] == ticket.assignee_id:
            return  # our own offer's move
        if offer is not None:
            await _withdraw(ctx, ticket, offer, note=f"工单已转派给 {await person_name(ctx, ticket.assignee_id)}")
        await _manual_offer(ctx, ticket, name)
    else:
        if offer is not None:
            await _withdraw(ctx, ticket, offer, note=f"工单{ticket.status.label}，无需处理")
        if ticket.status is S.PENDING_DISPATCH and ticket.category:
            await offer_next(ctx, ticket, trigger=name)  # e.g. classified by a supervisor (分诊)


async def _accepted(ctx: Context, ticket: Ticket, offer: dict[str, Any] | None) -> None:
    """Any move into 已接单 (the card, 「接单」, or another feature's transition)."""
    await ctx.uow.cancel_timers(ticket.number, {OFFER_TIMER})
    technician = ticket.assignee_id or ctx.actor.id
    if offer is not None and offer["person_id"] != technician:
        await _withdraw(ctx, ticket, offer, note="工单已由其他技师接单")
        offer = None
    by_card = bool(offer and offer.get("answered_by_card"))
    closed = close_offer(ticket, "accepted", ctx.now)
    first = ticket.accepted_at  # read before this acceptance replaces the last one
    state = dispatch_state(ticket)
    state["accepted"] = {"person_id": technician, "at": iso(ctx.now)}
    ticket.data["accepted_at"] = iso(first or ctx.now)  # the first acceptance: the human response
    state.pop("stalled_at", None)
    await ctx.uow.save_ticket(ticket)
    if closed is not None and not by_card:
        await _close_card(ctx, closed["card_id"], "已接单")
    await ctx.audit("offer_accepted", {
        "person_id": technician, "card_id": closed["card_id"] if closed else None,
        "round": closed.get("round") if closed else None, "via": "card" if by_card else "command",
        "candidate": closed.get("candidate") if closed else None,
    }, ticket)
    tech = await ctx.uow.get_person(technician)
    name = tech_label(tech.name if tech else technician)
    phone = f"，电话 {tech.phone}" if tech and tech.phone else ""
    await ctx.tell(ticket.customer_id,
                   f"您的工单 {ticket.number}：{name} 已接单{phone}，将尽快与您联系并上门处理。", ticket=ticket)
    customer = await ctx.uow.get_person(ticket.customer_id)
    directory = ctx.uow.dispatch_store()
    place = await place_of(ctx, ticket, directory)
    contact = customer.name if customer else ticket.customer_id
    if customer and customer.phone:
        contact += f"（{customer.phone}）"
    await ctx.tell(technician, f"已接单 {ticket.number} ✓ 客户：{contact}；地点：{place.text}。"
                               "到达现场后请共享位置并拍一张现场照片完成签到。", ticket=ticket)


async def _manual_offer(ctx: Context, ticket: Ticket, name: str) -> None:
    """A supervisor put someone on the ticket (转派 / 派单): offer it to them, filters overridden."""
    person_id = ticket.assignee_id
    if not person_id:
        return
    directory = ctx.uow.dispatch_store()
    version, policy = await current_policy(ctx)
    place = await place_of(ctx, ticket, directory)
    request = request_for(ticket, place)
    profile = await live_index(ctx.service).profile(directory, person_id, ctx.now)
    if profile is None:
        await ctx.audit("offer_reassigned", {"person_id": person_id, "transition": name, "by": ctx.actor.id,
                                             "candidate": None, "note": "not a technician: no offer card"}, ticket)
        return
    candidate, reasons = assess(request, profile, policy, ctx.now)
    reason = str(dispatch_state(ticket).pop("manual_reason", "") or "")
    manual = {"by": ctx.actor.id, "transition": name, "reason": reason,
              "overridden": [{"code": r.code, "message": r.message} for r in reasons]}
    await send_offer(ctx, ticket, candidate, place=place, policy=policy, version=version, trigger=name,
                     manual=manual)


async def _withdraw(ctx: Context, ticket: Ticket, offer: dict[str, Any], *, note: str) -> None:
    """The open offer no longer stands (reassigned, cancelled ...): close its card, tell the technician.

    Called with the ticket locked by someone else's command, so it waits for nothing an answer or the
    expiry may hold: the expiry alarm is left to find the offer gone (a no-op), and a card a press
    holds right now is left open (that press is refused: the offer is gone)."""
    close_offer(ticket, "withdrawn", ctx.now, note=note)
    await ctx.uow.save_ticket(ticket)
    if await ctx.uow.dispatch_store().card_is_free(offer["card_id"]):
        await _close_card(ctx, offer["card_id"], note)
    with ctx.as_system():  # a consequence of the actor's move, not their act
        await ctx.audit("offer_withdrawn", {"person_id": offer["person_id"], "card_id": offer["card_id"],
                                            "note": note, "candidate": offer.get("candidate")}, ticket)
    if offer["person_id"] != ctx.actor.id:
        await ctx.tell(offer["person_id"], f"工单 {ticket.number} 的派单已撤回：{note}。", ticket=ticket)


async def _close_card(ctx: Context, card_id: str, note: str, action: str = "settled") -> bool:
    stored = await ctx.uow.get_card(card_id, lock=True)
    if stored is None or stored.state != "open":
        return False
    closed = replace(stored.card, closed_note=note)
    if not await ctx.uow.close_card(card_id, card=closed, by=ctx.actor.id, action=action, at=ctx.now):
        return False
    await ctx.notify(Notification(recipient_id=stored.recipient_id, card=closed, replaces_card_id=card_id,
                                  ticket_number=stored.ticket_number))
    return True


# --- answering an offer ----------------------------------------------------------------------

def _check_answerable(ctx: Context, ticket: Ticket, card_id: str | None = None) -> dict[str, Any]:
    """The actor's open offer on `ticket`, or a clear refusal (nothing changes)."""
    if ticket.status is S.CANCELLED:
        raise Conflict(f"工单 {ticket.number} 已取消，无需接单。", number=ticket.number)
    offer = open_offer(ticket)
    mine = offer is not None and offer["person_id"] == ctx.actor.id and ticket.status is S.DISPATCHED
    if mine and card_id is not None and offer is not None and offer["card_id"] != card_id:
        mine = False
    if not mine:
        if ticket.assignee_id == ctx.actor.id and ticket.status is not S.DISPATCHED:
            raise Conflict(f"工单 {ticket.number} 您已经接单了（{ticket.status.label}）。", number=ticket.number)
        if ctx.actor.id in excluded_ids(ticket):
            raise Conflict(f"工单 {ticket.number} 的派单已失效（超时或已拒单），已改派他人。", number=ticket.number)
        raise NotAllowed(f"工单 {ticket.number} 没有派给您，或派单已失效。", number=ticket.number)
    if not ctx.actor.active:
        raise NotAllowed("您的技师账号已停用，不能接单。请联系主管。")
    assert offer is not None
    return offer


def _decline_reason(values: dict[str, str]) -> str:
    code = (values.get("reason") or "").strip()
    text = DECLINE_LABELS.get(code, code)[:MAX_REASON]
    if not text:
        raise InvalidInput("拒单需要原因：请先在「拒单原因」中选择，再点「拒单」；也可以回复「拒单 工单号 原因」。")
    return text


async def _accept(ctx: Context, ticket: Ticket) -> None:
    await ctx.move(ticket, "accept")  # → _accepted


async def _decline(ctx: Context, ticket: Ticket, reason: str, *, by_card: bool) -> str:
    offer = close_offer(ticket, "declined", ctx.now, reason=reason)
    assert offer is not None
    await ctx.move(ticket, "decline", payload={"reason": reason})
    ticket.assignee_id = None
    await ctx.uow.cancel_timers(ticket.number, {OFFER_TIMER})
    if not by_card:
        await _close_card(ctx, offer["card_id"], f"已拒单：{reason}")
    await ctx.audit("offer_declined", {"person_id": ctx.actor.id, "card_id": offer["card_id"],
                                       "round": offer.get("round"), "reason": reason,
                                       "via": "card" if by_card else "command",
                                       "candidate": offer.get("candidate")}, ticket)
    nxt = await offer_next(ctx, ticket, trigger="declined")
    following = f"已改派给 {nxt.name}" if nxt else "暂无其他可派技师，已转主管人工派单"
    return f"已拒单（{reason}），{following}。"


@card_handler(CardKind.OFFER)
async def _press_offer(ctx: Context, stored: StoredCard, action: str, values: dict[str, str]) -> str:
    if not stored.ticket_number:
        raise InvalidInput("这张卡片没有关联工单。", card_id=stored.card.id)
    ticket = await _lock_for_answer(ctx, stored.ticket_number, stored.card.id)
    offer = _check_answerable(ctx, ticket, stored.card.id)
    if action == "accept":
        offer["answered_by_card"] = True
        await _accept(ctx, ticket)
        return f"已由 {ctx.actor.name} 接单"
    if action == "decline":
        return await _decline(ctx, ticket, _decline_reason(values), by_card=True)
    raise InvalidInput(f"派单卡片上没有「{action}」这个操作。", action=action)


async def _offered_ticket(ctx: Context, number: str | None) -> Ticket:
    if ctx.actor.role is not Role.TECHNICIAN:
        raise NotAllowed("只有被派单的技师可以接单或拒单。", role=ctx.actor.role.value)
    if not number:
        pending = await ctx.uow.list_tickets(assignee_id=ctx.actor.id, statuses={S.DISPATCHED}, limit=10)
        if not pending:
            raise NotFound("您当前没有待接的派单。")
        if len(pending) > 1:
            listing = "、".join(t.number for t in pending[:5])
            raise InvalidInput(f"您有 {len(pending)} 张待接的派单（{listing}），"
                               f"请写明工单号，例如「接单 {pending[0].number}」。")
        number = pending[0].number
    return await _lock_for_answer(ctx, number)


async def _lock_for_answer(ctx: Context, number: str, card_id: str | None = None) -> Ticket:
    """Lock the offer's card, then the ticket (its expiry timer after, when cancelled): the one lock
    order of core/timers.py. A card press locks the card first (core); the expiry holds the ticket
    and skips a held card, so an answer and its expiry never wait for each other in a cycle."""
    if card_id is None:
        offer = open_offer(await ctx.ticket(number, lock=False))
        card_id = offer["card_id"] if offer else None
    if card_id is not None:
        await ctx.uow.get_card(card_id, lock=True)
    return await ctx.ticket(number)


@handles(AcceptOffer)
async def accept_offer(ctx: Context, cmd: AcceptOffer) -> Ticket:
    ticket = await _offered_ticket(ctx, cmd.number)
    _check_answerable(ctx, ticket)
    await _accept(ctx, ticket)
    return ticket


@handles(DeclineOffer)
async def decline_offer(ctx: Context, cmd: DeclineOffer) -> Ticket:
    ticket = await _offered_ticket(ctx, cmd.number)
    _check_answerable(ctx, ticket)
    reason = cmd.reason.strip()[:MAX_REASON]
    if not reason:
        raise InvalidInput(f"拒单需要写明原因，例如「拒单 {ticket.number} 距离太远」。", number=ticket.number)
    note = await _decline(ctx, ticket, reason, by_card=False)
    await ctx.tell(ctx.actor.id, f"工单 {ticket.number} {note}", ticket=ticket)
    return ticket


# --- no answer in time -----------------------------------------------------------------------

@timer_handler(OFFER_TIMER)
async def _offer_expired(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    with ctx.as_system(cause=f"timer:{OFFER_TIMER}"):
        await _expire_offer(ctx, ticket, payload)


async def _expire_offer(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    if ticket is None or ticket.status is not S.DISPATCHED:
        return
    offer = open_offer(ticket)
    if offer is None or offer["card_id"] != payload.get("card_id"):
        return  # answered, withdrawn or superseded: a stale alarm
    if not await ctx.uow.dispatch_store().card_is_free(offer["card_id"]):
        # The technician is pressing the card this very moment (their transaction holds it, and waits
        # for the ticket we hold): step aside and look again shortly; their answer, if valid, wins.
        await ctx.uow.schedule_timer(kind=OFFER_TIMER, ticket_number=ticket.number,
                                     due_at=ctx.now + EXPIRY_RETRY, payload=payload)
        return
    version, policy = await current_policy(ctx)
    minutes = f"{policy.offer_timeout_s / 60:g}"
    if not await _close_card(ctx, offer["card_id"], f"{minutes} 分钟未响应，已改派", action="expired"):
        stored = await ctx.uow.get_card(offer["card_id"])
        if stored is not None and stored.state != "open":
            return  # the technician answered at the same moment; their answer stands
    close_offer(ticket, "expired", ctx.now)
    state = dispatch_state(ticket)
    ticket.needs_review = True  # 待复核: the first assignment went unanswered
    state.setdefault("review", {"reason": "offer_expired", "person_id": offer["person_id"], "at": iso(ctx.now)})
    await ctx.move(ticket, "expire_offer", as_system=True, payload={"person_id": offer["person_id"]})
    ticket.assignee_id = None
    await ctx.audit("offer_expired", {"person_id": offer["person_id"], "card_id": offer["card_id"],
                                      "round": offer.get("round"), "offered_at": offer.get("at"),
                                      "timeout_s": policy.offer_timeout_s, "policy_version": version,
                                      "candidate": offer.get("candidate")}, ticket)
    await ctx.tell(offer["person_id"], f"您在 {minutes} 分钟内未响应工单 {ticket.number} 的派单，系统已改派他人。",
                   ticket=ticket)
    nxt = await offer_next(ctx, ticket, trigger="expired")
    following = f"已自动改派给 {nxt.name}" if nxt else "暂无其他可派技师，请人工派单"
    for boss in await supervisors_of(ctx, offer["person_id"], ticket):
        await ctx.tell(boss.id, f"工单 {ticket.number} 派给 {offer.get('name') or offer['person_id']} 后 {minutes} 分钟"
                                f"未响应，已标记「待复核」，{following}。", ticket=ticket)


# --- manual reassignment ---------------------------------------------------------------------

@handles(ReassignTicket)
async def reassign_ticket(ctx: Context, cmd: ReassignTicket) -> Ticket:
    ctx.require_role(*STAFF)
    ticket = await ctx.ticket(cmd.number)
    return await reassign(ctx, ticket, cmd.person_id, cmd.reason)


async def reassign(ctx: Context, ticket: Ticket, person_id: str, reason: str) -> Ticket:
    technician = await _technician(ctx, person_id)
    if ticket.assignee_id == technician.id and ticket.status is not S.PENDING_DISPATCH:
        raise Conflict(f"工单 {ticket.number} 已经由 {technician.name} 处理（{ticket.status.label}）。",
                       number=ticket.number)
    previous, before = ticket.assignee_id, ticket.status
    dispatch_state(ticket)["manual_reason"] = reason.strip()[:MAX_REASON]
    ticket.assignee_id = technician.id
    await ctx.move(ticket, "reassign", payload={"assignee": technician.id, "previous_assignee": previous,
                                                "reason": reason.strip()[:MAX_REASON]})
    if previous and previous != technician.id and before is not S.DISPATCHED:
        await ctx.tell(previous, f"工单 {ticket.number} 已由 {ctx.actor.name} 转派给 {technician.name}。",
                       ticket=ticket)
    await ctx.tell(ctx.actor.id, f"已将工单 {ticket.number} 转派给 {technician.name}，等待其接单。", ticket=ticket)
    return ticket


async def _technician(ctx: Context, person_id: str) -> Person:
    person = await ctx.uow.get_person(person_id.strip())
    if person is None or person.role is not Role.TECHNICIAN:
        raise NotFound(f"没有工号为「{person_id}」的技师。", person_id=person_id)
    if not person.active:
        raise InvalidInput(f"技师 {person.name}（{person.id}）已停用，不能派单。", person_id=person_id)
    return person


@task_action(PICK_PREFIX)
async def _pick_technician(ctx: Context, stored: StoredCard, action: str, values: dict[str, str]) -> str:
    ctx.require_role(*STAFF)
    if action != "assign":
        raise InvalidInput(f"卡片上没有「{action}」这个操作。", action=action)
    person_id = (values.get("technician") or "").strip()
    if not person_id:
        raise InvalidInput("请先在「派给」中选择一位技师，再点「派单」。", card_id=stored.card.id)
    ticket = await ctx.ticket(stored.ticket_number or "")
    if ticket.status is not S.PENDING_DISPATCH:
        raise Conflict(f"工单 {ticket.number} 当前为「{ticket.status.label}」，不需要人工派单了。",
                       number=ticket.number)
    await reassign(ctx, ticket, person_id, "无人可派，主管人工派单")
    return f"已派给 {await person_name(ctx, person_id)}"
