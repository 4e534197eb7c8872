"""Customer sign-off: the only way a ticket is closed.

After 完工 (and QC, when the template has it) the customer gets a SIGNOFF card with two
mandatory confirmations and a 1–5 rating. The server validates the submission; only a
valid signature for the current round lets `sign_off` move the ticket to 已结案:

* the card handler validates and records the signature, then moves;
* the "signoff" guard (named on the template's sign_off step) checks that record;
* an after-move hook refuses *any* move into 已结案 without it — so a generic Transition,
  an admin, or a template whose closing step lost its guard still cannot close a ticket.

The time from card delivery (the card row's creation: delivered on commit to the
playground, queued for the platforms) to the signature is recorded; a durable timer
creates a callback task for the supervisor when nobody signs in time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.cards import ActionStyle, Card, CardAction, CardField, CardKind, FieldKind, FieldOption
from core.errors import Conflict, InvalidInput, NotAllowed
from core.intake.tickets import card_handler
from core.lifecycle.common import (
    iso,
    opt,
    parse_iso,
    person_name,
    section,
    supervisors_for,
    sync_workflow,
    technician_name,
)
from core.model import Ticket, TicketStatus
from core.repository import StoredCard
from core.service import Context, after_move, guard
from core.timers import timer_handler

S = TicketStatus
CALLBACK_TIMER = "signoff_callback"
CONFIRMATIONS = {"cause_told": "已告知故障原因", "parts_confirmed": "配件更换已确认"}
TRUE_VALUES = {"true", "1", "on", "yes", "checked"}
RATINGS = ("1", "2", "3", "4", "5")


def signoff_card(card_id: str, ticket: Ticket, technician: str) -> Card:
    return Card(
        id=card_id, kind=CardKind.SIGNOFF, title=f"请确认完工并签字：工单 {ticket.number}", ticket_number=ticket.number,
        facts=(("工单", ticket.number), ("技师", technician), ("故障", ticket.description[:60])),
        body="请确认以下两项并为本次服务评分，提交即视为电子签字。如果问题仍未解决，请点「仍未修好」。",
        fields=(
            CardField("cause_told", CONFIRMATIONS["cause_told"], FieldKind.CHECKBOX, required=True),
            CardField("parts_confirmed", CONFIRMATIONS["parts_confirmed"], FieldKind.CHECKBOX, required=True),
            CardField("rating", "满意度评分", FieldKind.SELECT, required=True, placeholder="请选择",
                      options=tuple(FieldOption(r, f"{r} 分") for r in RATINGS)),
        ),
        actions=(CardAction("sign", "确认签字", ActionStyle.PRIMARY),
                 CardAction("not_fixed", "仍未修好", ActionStyle.DANGER)),
    )


def validate_signature(values: dict[str, str]) -> tuple[dict[str, bool], int]:
    """The two confirmations (both must be ticked) and the rating (1–5); InvalidInput otherwise."""
    unticked = [label for key, label in CONFIRMATIONS.items()
                if str(values.get(key, "")).strip().lower() not in TRUE_VALUES]
    if unticked:
        raise InvalidInput(f"请先勾选「{'」「'.join(unticked)}」再签字。", missing=unticked)
    rating = str(values.get("rating", "")).strip()
    if rating not in RATINGS:
        shown = rating or "未选择"
        raise InvalidInput(f"请选择 1–5 分的满意度评分（收到的是：{shown}）。", rating=rating)
    return {key: True for key in CONFIRMATIONS}, int(rating)


def is_signed(ticket: Ticket) -> bool:
    """A valid signature recorded for the ticket's current sign-off round."""
    data = ticket.data.get("signoff")
    if not isinstance(data, dict):
        return False
    signed = data.get("signed")
    return (isinstance(signed, dict) and signed.get("round") == data.get("round")
            and signed.get("by") == ticket.customer_id and all(signed.get("confirmations", {}).get(k) for k in
                                                                CONFIRMATIONS)
            and signed.get("rating") in {1, 2, 3, 4, 5})


@guard("signoff")
async def _signature_present(ctx: Context, ticket: Ticket) -> None:
    if not is_signed(ticket):
        raise NotAllowed(f"工单 {ticket.number} 没有客户的有效签字，不能结案：请客户在签字卡片上确认并评分。",
                         number=ticket.number)


@after_move()
async def _closing_requires_signature(ctx: Context, ticket: Ticket, name: str) -> None:
    # Raising here rolls the whole unit of work back: the move, its audit event, everything.
    if ticket.status == S.CLOSED and not is_signed(ticket):
        raise NotAllowed(f"工单 {ticket.number} 没有客户的有效签字，任何途径都不能结案。", number=ticket.number,
                         transition=name)


@after_move()
async def _ask_for_signature(ctx: Context, ticket: Ticket, name: str) -> None:
    if ticket.status != S.PENDING_SIGNOFF:
        return
    await sync_workflow(ctx)
    data = section(ticket, "signoff")
    technician = technician_name(await person_name(ctx, ticket.assignee_id))
    card = signoff_card(ctx.new_card_id("signoff"), ticket, technician)
    data.update({"round": int(data.get("round", 0)) + 1, "card_id": card.id, "delivered_at": iso(ctx.now),
                 "signed": None})
    await ctx.uow.save_ticket(ticket)
    await ctx.send_card(ticket.customer_id, card, text=f"您的工单 {ticket.number} 已完工，请确认并签字。")
    await ctx.audit("signoff_requested", {"card_id": card.id, "round": data["round"]}, ticket)
    due = ctx.now + timedelta(seconds=float(opt(ctx, "signoff_callback_s")))
    await ctx.uow.schedule_timer(kind=CALLBACK_TIMER, ticket_number=ticket.number, due_at=due,
                                 payload={"round": data["round"], "card_id": card.id})


@card_handler(CardKind.SIGNOFF)
async def _signoff_card(ctx: Context, stored: StoredCard, action: str, values: dict[str, str]) -> str:
    await sync_workflow(ctx)
    ticket = await ctx.ticket(stored.ticket_number or "")
    if ticket.customer_id != ctx.actor.id:
        raise NotAllowed(f"只有工单 {ticket.number} 的报修客户本人可以签字。", number=ticket.number)
    data = section(ticket, "signoff")
    if data.get("card_id") != stored.card.id or ticket.status != S.PENDING_SIGNOFF:
        raise Conflict("这张签字卡片已经失效（工单状态已变化），请以最新的卡片为准。", number=ticket.number)
    if action == "not_fixed":
        from core.lifecycle.rework import still_broken_at_signoff

        return await still_broken_at_signoff(ctx, ticket, values.get("reason", "").strip())
    confirmations, rating = validate_signature(values)
    delivered = parse_iso(data.get("delivered_at")) or stored.created_at
    seconds = round((ctx.now - delivered).total_seconds(), 1)
    signature: dict[str, Any] = {"round": data["round"], "by": ctx.actor.id, "at": iso(ctx.now), "rating": rating,
                                 "confirmations": confirmations, "card_id": stored.card.id,
                                 "seconds_to_sign": seconds}
    data["signed"] = signature
    await ctx.audit("signed_off", signature, ticket)
    await ctx.move(ticket, "sign_off", payload={"rating": rating, "seconds_to_sign": seconds})
    await ctx.uow.cancel_timers(ticket.number, {CALLBACK_TIMER})
    if ticket.assignee_id:
        await ctx.uow.add_technician_rating(ticket.assignee_id, rating)
        await ctx.tell(ticket.assignee_id, f"客户已签字确认工单 {ticket.number}，评分 {rating} 分，工单已结案。",
                       ticket=ticket)
    await ctx.tell(ctx.actor.id, f"感谢您的确认！工单 {ticket.number} 已结案。如 {opt(ctx, 'rework_window_days')} 天内"
                   "问题复发，发送「仍未修好」即可重开。", ticket=ticket)
    # What the customer sees on the closed card; the time to sign is an internal measure (audit, reports).
    return f"已签字 · 评分 {rating} 分"


@timer_handler(CALLBACK_TIMER)
async def _callback_when_unsigned(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    if ticket is None or ticket.status != S.PENDING_SIGNOFF:
        return
    data = section(ticket, "signoff")
    if data.get("round") != payload.get("round"):
        return  # a newer round has its own timer
    delivered = parse_iso(data.get("delivered_at"))
    waited = round((ctx.now - delivered).total_seconds()) if delivered else None
    data["callback_at"] = iso(ctx.now)
    await ctx.uow.save_ticket(ticket)
    customer = await person_name(ctx, ticket.customer_id)
    for person in await supervisors_for(ctx, ticket):
        await ctx.send_card(person.id, Card(
            id=ctx.new_card_id("callback"), kind=CardKind.TASK, title=f"客户回访：工单 {ticket.number} 未签字",
            ticket_number=ticket.number,
            facts=(("客户", customer), ("技师", await person_name(ctx, ticket.assignee_id)),
                   ("已等待", f"{waited} 秒" if waited is not None else "—")),
            body="客户收到完工签字卡片后迟迟未签字，可能存在隐性不满，请电话回访并记录。",
        ))
    await ctx.audit("signoff_callback_created", {"round": data.get("round"), "waited_s": waited}, ticket)
