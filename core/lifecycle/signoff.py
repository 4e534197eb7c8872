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

**In person** (a walk-in customer registered at the front desk, who has no chat, or anyone who
would rather sign on the spot): the ticket's technician sends `现场签字 [号]` and gets a sign-off
card of their own for the current round, to hand the device to the customer. Submitted, it is the
customer's signature — the move is the customer's step, so the workflow's role and the "customer"
guard hold — marked `in_person: true` with `held_by` (who held the device) in `signed_off` and in the
closing move; the press itself stays the technician's (`card_action`). Whichever card is signed
first closes the ticket; the other one lapses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from core.cards import ActionStyle, Card, CardAction, CardField, CardKind, FieldKind, FieldOption
from core.errors import Conflict, InvalidInput, NotAllowed, NotFound
from core.intake.front_desk import reachable_in_chat
from core.intake.tickets import card_handler
from core.lifecycle.common import (
    assigned_ticket,
    iso,
    opt,
    parse_iso,
    person_name,
    section,
    supervisors_for,
    sync_workflow,
    technician_name,
)
from core.model import Person, Role, Ticket, TicketStatus
from core.repository import StoredCard
from core.service import Context, after_move, guard, handles
from core.timers import timer_handler

S = TicketStatus
CALLBACK_TIMER = "signoff_callback"
CONFIRMATIONS = {"cause_told": "已告知故障原因", "parts_confirmed": "配件更换已确认"}
TRUE_VALUES = {"true", "1", "on", "yes", "checked"}
RATINGS = ("1", "2", "3", "4", "5")
# Issue 21: the sign-off page submits the same card with two more values: the SHA-256 of the handwritten
# signature image it stored (bot/signature_store.py) and an optional comment. Both go into `signed_off`.
SIGNATURE_IMAGE = "signature_sha256"
COMMENT = "comment"
MAX_COMMENT = 500
_SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class OpenInPersonSignoff:
    """`现场签字 [号]`: the ticket's technician takes the customer's signature on their own device."""

    number: str | None = None


def signoff_card(card_id: str, ticket: Ticket, technician: str, *, customer: str | None = None) -> Card:
    """The sign-off card; with `customer`, the one a technician hands over for an in-person signature."""
    title = f"请确认完工并签字：工单 {ticket.number}"
    facts: tuple[tuple[str, str], ...] = (("工单", ticket.number), ("技师", technician),
                                          ("故障", ticket.description[:60]))
    body = "请确认以下两项并为本次服务评分，提交即视为电子签字。如果问题仍未解决，请点「仍未修好」。"
    if customer is not None:
        title = f"现场签字：工单 {ticket.number}"
        facts = (*facts[:2], ("客户", customer), facts[2])
        body = (f"请将手机交给客户{customer}本人：由客户确认以下两项并评分，提交即视为客户当面签字（记录为现场签字）。"
                "如果客户认为问题仍未解决，请点「仍未修好」。")
    return Card(
        id=card_id, kind=CardKind.SIGNOFF, title=title, ticket_number=ticket.number, facts=facts, body=body,
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


def page_extras(values: dict[str, str]) -> dict[str, Any]:
    """The signature image's hash and the comment a sign-off page submitted (nothing for a chat card)."""
    extras: dict[str, Any] = {}
    digest = str(values.get(SIGNATURE_IMAGE, "")).strip().lower()
    if digest:
        if len(digest) != 64 or not set(digest) <= _SHA256_HEX:
            raise InvalidInput("签名图片无效，请重新签名。", field=SIGNATURE_IMAGE)
        extras["signature_image"] = digest
    comment = " ".join(str(values.get(COMMENT, "")).split())[:MAX_COMMENT]
    if comment:
        extras["comment"] = comment
    return extras


def is_signed(ticket: Ticket) -> bool:
    """A valid signature recorded for the ticket's current sign-off round."""
    data = ticket.data.get("signoff")
    if not isinstance(data, dict):
        return False
    signed = data.get("signed")
    return (isinstance(signed, dict) and signed.get("round") == data.get("round")
            and signed.get("by") == ticket.customer_id and all(signed.get("confirmations", {}).get(k) for k in
                                                                CONFIRMATIONS)
            and signed.get("rating") in {1, 2, 3, 4, 5}
            # in person: the device's holder is on record
            and (not signed.get("in_person") or isinstance(signed.get("held_by"), str)))


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
    if ticket.assignee_id and not await reachable_in_chat(ctx, ticket.customer_id):
        customer = await person_name(ctx, ticket.customer_id)
        await ctx.tell(ticket.assignee_id, f"客户 {customer} 没有绑定聊天账号，收不到签字卡片：请当面请客户签字，"
                       f"发送「现场签字 {ticket.number}」后把手机交给客户。", ticket=ticket)
    due = ctx.now + timedelta(seconds=float(opt(ctx, "signoff_callback_s")))
    await ctx.uow.schedule_timer(kind=CALLBACK_TIMER, ticket_number=ticket.number, due_at=due,
                                 payload={"round": data["round"], "card_id": card.id})


@handles(OpenInPersonSignoff)
async def open_in_person_signoff(ctx: Context, cmd: OpenInPersonSignoff) -> Ticket:
    await sync_workflow(ctx)
    if ctx.actor.role is not Role.TECHNICIAN:
        raise NotAllowed("抱歉，现场签字由工单的技师发起。", role=ctx.actor.role.value)
    if cmd.number:
        ticket = await assigned_ticket(ctx, cmd.number)  # theirs, else refused (audited)
    else:
        try:
            ticket = await assigned_ticket(ctx, None, states=frozenset({S.PENDING_SIGNOFF}))
        except NotFound:
            raise InvalidInput("您没有待客户签字的工单：完工后才能请客户现场签字。") from None
    if ticket.status != S.PENDING_SIGNOFF:
        raise InvalidInput(f"工单 {ticket.number} 现在是「{ticket.status.label}」："
                           "完工后（待客户签字）才能请客户现场签字。", number=ticket.number)
    data = section(ticket, "signoff")
    customer = await person_name(ctx, ticket.customer_id)
    card = signoff_card(ctx.new_card_id("signoff"), ticket, technician_name(ctx.actor.name), customer=customer)
    data["in_person"] = {"card_id": card.id, "round": data.get("round"), "held_by": ctx.actor.id,
                         "opened_at": iso(ctx.now)}
    await ctx.uow.save_ticket(ticket)
    await ctx.send_card(ctx.actor.id, card, text=f"请把手机交给客户 {customer}，由客户本人确认并评分。")
    await ctx.audit("signoff_in_person_opened", {"card_id": card.id, "round": data.get("round"),
                                                 "held_by": ctx.actor.id}, ticket)
    return ticket


@contextmanager
def _customer_signing(ctx: Context, customer: Person) -> Iterator[None]:
    """The customer's own step taken on the technician's device: the workflow checks the customer's role
    and identity, the audit names the customer. Replies to the technician's chat (its reply context) are
    not the customer's, so they are not used meanwhile."""
    holder, context = ctx.actor, ctx.reply_context
    ctx.actor, ctx.reply_context = customer, {}
    try:
        yield
    finally:
        ctx.actor, ctx.reply_context = holder, context


@card_handler(CardKind.SIGNOFF)
async def _signoff_card(ctx: Context, stored: StoredCard, action: str, values: dict[str, str]) -> str:
    await sync_workflow(ctx)
    ticket = await ctx.ticket(stored.ticket_number or "")
    data = section(ticket, "signoff")
    if stored.recipient_id != ticket.customer_id:
        return await _in_person(ctx, stored, ticket, action, values)
    if ticket.customer_id != ctx.actor.id:
        raise NotAllowed(f"只有工单 {ticket.number} 的报修客户本人可以签字。", number=ticket.number)
    if data.get("card_id") != stored.card.id or ticket.status != S.PENDING_SIGNOFF:
        raise Conflict("这张签字卡片已经失效（工单状态已变化），请以最新的卡片为准。", number=ticket.number)
    if action == "not_fixed":
        from core.lifecycle.rework import still_broken_at_signoff

        return await still_broken_at_signoff(ctx, ticket, values.get("reason", "").strip())
    return await _sign(ctx, stored, ticket, values, {})


async def _in_person(ctx: Context, stored: StoredCard, ticket: Ticket, action: str, values: dict[str, str]) -> str:
    """A card a technician opened with 现场签字 (only its recipient gets here: press_card_action)."""
    data = section(ticket, "signoff")
    raw = data.get("in_person")
    opened: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if ticket.assignee_id != ctx.actor.id:
        raise NotAllowed(f"只有工单 {ticket.number} 的技师可以请客户现场签字。", number=ticket.number)
    if (opened.get("card_id") != stored.card.id or opened.get("round") != data.get("round")
            or ticket.status != S.PENDING_SIGNOFF):
        raise Conflict("这张签字卡片已经失效（工单状态已变化），请以最新的卡片为准。", number=ticket.number)
    customer = await ctx.uow.get_person(ticket.customer_id)
    if customer is None:
        raise NotFound(f"没有找到工单 {ticket.number} 的客户。", number=ticket.number)
    marks = {"in_person": True, "held_by": ctx.actor.id}
    with _customer_signing(ctx, customer):
        if action == "not_fixed":
            from core.lifecycle.rework import still_broken_at_signoff

            await ctx.audit("signoff_in_person_not_fixed", marks, ticket)
            return await still_broken_at_signoff(ctx, ticket, values.get("reason", "").strip())
        return await _sign(ctx, stored, ticket, values, marks)


async def _sign(ctx: Context, stored: StoredCard, ticket: Ticket, values: dict[str, str],
                marks: dict[str, Any]) -> str:
    """The customer's valid signature (ctx.actor is the customer) closes the ticket."""
    data = section(ticket, "signoff")
    confirmations, rating = validate_signature(values)
    extras = page_extras(values)
    delivered = parse_iso(data.get("delivered_at")) or stored.created_at
    seconds = round((ctx.now - delivered).total_seconds(), 1)
    signature: dict[str, Any] = {"round": data["round"], "by": ctx.actor.id, "at": iso(ctx.now), "rating": rating,
                                 "confirmations": confirmations, "card_id": stored.card.id,
                                 "seconds_to_sign": seconds, **extras, **marks}
    data["signed"] = signature
    await ctx.audit("signed_off", signature, ticket)
    await ctx.move(ticket, "sign_off", payload={"rating": rating, "seconds_to_sign": seconds, **marks})
    await ctx.uow.cancel_timers(ticket.number, {CALLBACK_TIMER})
    if ticket.assignee_id:
        await ctx.uow.add_technician_rating(ticket.assignee_id, rating)
        how = "已现场签字确认" if marks else "已签字确认"
        await ctx.tell(ticket.assignee_id, f"客户{how}工单 {ticket.number}，评分 {rating} 分，工单已结案。",
                       ticket=ticket)
    days = opt(ctx, "rework_window_days")
    if not marks:
        await ctx.tell(ctx.actor.id, f"感谢您的确认！工单 {ticket.number} 已结案。如 {days} 天内"
                       "问题复发，发送「仍未修好」即可重开。", ticket=ticket)
    elif await reachable_in_chat(ctx, ctx.actor.id):
        # Told on their own channel too: a signature they did not give would not go unnoticed.
        await ctx.tell(ctx.actor.id, f"工单 {ticket.number} 已由您在现场签字确认（技师的设备），评分 {rating} 分，"
                       f"工单已结案。如非本人签字，或 {days} 天内问题复发，请发送「仍未修好」。", ticket=ticket)
    # What the customer sees on the closed card; the time to sign is an internal measure (audit, reports).
    return f"已签字 · 评分 {rating} 分" + ("（现场签字）" if marks else "")


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
