"""The dual track (seed 2): strong reminder before a deadline, escalation the moment it passes.

  * reminder (SlaSettings.reminder_lead before): an urgent reminder to the handler — the assignee,
    or the supervisors while nobody is assigned — through the per-person digest;
  * breach (at the deadline): an ESCALATION card (确认 / 转派) to the first level of the supervisor
    chain (core/masterdata/org.py: the handler's direct supervisor, else the ticket's store's
    supervisors, every supervisor only as a last resort), an urgent note to the handler, a CC to the
    quality group (Role.QUALITY) and a TASK card "超时根因分析" for the (first) supervisor with a
    required reason, nagged every `root_cause_remind_after` until it is filled in;
  * level 2 (`second_level_after` after the breach, if nobody pressed 确认 or 转派): an ESCALATION
    card one level up the chain (the first level's own supervisors), else to the admins (the director).
Timer handlers re-read the ticket and compare the deadline in their payload, so a stale alarm
(the deadline moved, the track was met) does nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from core.cards import ActionStyle, Card, CardAction, CardField, CardKind, FieldKind, FieldOption, Notification
from core.dispatch.live import live_index
from core.errors import Conflict, InvalidInput, NotFound
from core.intake.tickets import card_handler
from core.lifecycle.tasks import task_action
from core.masterdata.org import supervisor_chain, supervisors_above
from core.model import Person, Role, Ticket
from core.repository import StoredCard
from core.service import Context
from core.sla.matrix import format_duration
from core.sla.reminder_digest import ReminderItem, remind
from core.sla.tracking import (
    RESOLUTION,
    TRACK_LABELS,
    TRACKS,
    is_open_track,
    iso,
    parse_iso,
    sla_state,
    timer_kind,
)
from core.timers import timer_handler

ROOT_CAUSE_PREFIX = "rca"
MIN_REASON_CHARS = 2


def _local(ctx: Context, value: datetime | None) -> str:
    return value.astimezone(ctx.config.timezone).strftime("%m-%d %H:%M") if value else "—"


def _live_track(ticket: Ticket | None, track: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The track if this alarm still matters: open ticket, open track, same deadline, clock running."""
    if ticket is None or not ticket.status.is_open:
        return None
    state = sla_state(ticket)
    if state is None:
        return None
    current: dict[str, Any] = state[track]
    if not is_open_track(current) or current["due"] != payload.get("due"):
        return None
    if track == RESOLUTION and state.get("stopped_since"):
        return None
    return current


async def handler_of(ctx: Context, ticket: Ticket) -> Person | None:
    return await ctx.uow.get_person(ticket.assignee_id) if ticket.assignee_id else None


async def escalation_targets(ctx: Context, ticket: Ticket, handler: Person | None) -> list[Person]:
    """The first level of the ticket's supervisor chain (core/masterdata/org.py)."""
    return await supervisor_chain(ctx, ticket, handler)


# --- reminder ---


async def _remind(ctx: Context, ticket: Ticket | None, payload: dict[str, Any], track: str) -> None:
    current = _live_track(ticket, track, payload)
    if ticket is None or current is None:
        return
    due = parse_iso(current["due"])
    assert due is not None
    handler = await handler_of(ctx, ticket)
    recipients = [handler] if handler is not None else await supervisor_chain(ctx, ticket, None)
    left = format_duration(max(due - ctx.now, timedelta(0)))
    item = ReminderItem(
        title=f"SLA 强提醒：{ticket.number} {TRACK_LABELS[track]}即将超时",
        text=f"{TRACK_LABELS[track]}截止 {_local(ctx, due)}（还剩 {left}），超时将自动升级给主管。"
             f"{'' if handler else '工单尚未指派，请尽快派单。'}{ticket.description[:40]}",
        ticket_number=ticket.number,
    )
    for person in recipients:
        await remind(ctx, person.id, item)
    await ctx.audit("sla_reminder_sent", {"track": track, "due": current["due"],
                                          "recipients": [p.id for p in recipients]}, ticket)


@timer_handler(timer_kind("response", "reminder"))
async def _response_reminder(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    await _remind(ctx, ticket, payload, "response")


@timer_handler(timer_kind("resolution", "reminder"))
async def _resolution_reminder(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    await _remind(ctx, ticket, payload, "resolution")


# --- breach ---


async def _technician_options(ctx: Context, ticket: Ticket) -> tuple[FieldOption, ...]:
    """Who the supervisor can hand the ticket to, best first: on duty and skilled for the category,
    then by open load; off-duty people last and marked (WeCom shows only the first few options)."""
    profiles = await live_index(ctx.service).everyone(ctx.uow.dispatch_store(), ctx.now)
    people = [p for p in await ctx.uow.list_people(Role.TECHNICIAN) if p.id != ticket.assignee_id]  # active ones

    def rank(person: Person) -> tuple[bool, bool, int, str]:
        profile = profiles.get(person.id)
        if profile is None:
            return (True, True, 0, person.id)
        return (not profile.on_duty, ticket.category not in profile.skills, profile.open_load, person.id)

    def label(person: Person) -> str:
        profile = profiles.get(person.id)
        if profile is None:
            return person.name
        return f"{person.name}（{'在岗' if profile.on_duty else '离岗'}·{profile.open_load}单）"

    return tuple(FieldOption(p.id, label(p)) for p in sorted(people, key=rank))


async def escalation_card(ctx: Context, ticket: Ticket, track: str, handler: Person | None, level: int) -> Card:
    state = sla_state(ticket)
    assert state is not None
    options = await _technician_options(ctx, ticket)
    actions = [CardAction("ack", "确认", ActionStyle.PRIMARY)]
    fields: tuple[CardField, ...] = ()
    if options:
        actions.append(CardAction("reassign", "转派"))
        fields = (CardField("technician", "转派给", FieldKind.SELECT, options=options,
                            placeholder="选择技师后点「转派」"),)
    return Card(
        id=ctx.new_card_id("esc"),
        kind=CardKind.ESCALATION,
        title=f"{'SLA 二级升级' if level == 2 else 'SLA 超时升级'}：{ticket.number} {TRACK_LABELS[track]}超时",
        ticket_number=ticket.number,
        facts=(
            ("超时项", f"{TRACK_LABELS[track]}（截止 {_local(ctx, parse_iso(state[track]['due']))}）"),
            ("SLA", f"{state['cell']}"),
            ("处理人", handler.name if handler else "未指派"),
            ("状态", ticket.status.label),
            ("描述", ticket.description[:60]),
        ),
        body="请点「确认」表示已知悉并跟进，或选择技师后点「转派」。" + ("（一级升级未获确认）" if level == 2 else ""),
        actions=tuple(actions),
        fields=fields,
        urgent=True,
    )


def root_cause_card(ctx: Context, ticket: Ticket, track: str, due: datetime | None) -> Card:
    return Card(
        id=ctx.new_card_id(ROOT_CAUSE_PREFIX),
        kind=CardKind.TASK,
        title=f"超时根因分析：{ticket.number}",
        ticket_number=ticket.number,
        facts=(("超时项", f"{TRACK_LABELS[track]}（截止 {_local(ctx, due)}）"), ("描述", ticket.description[:60])),
        body=("请分析本次超时的根本原因并提交，例如：夜班无指定接单人、备件库未同步ERP库存。"
              f"也可以发送「根因 {ticket.number} 原因」提交。"),
        fields=(CardField("reason", "超时根因", FieldKind.TEXT, required=True, placeholder="必填：超时的根本原因"),),
        actions=(CardAction("submit", "提交", ActionStyle.PRIMARY),),
    )


async def _breach(ctx: Context, ticket: Ticket | None, payload: dict[str, Any], track: str) -> None:
    current = _live_track(ticket, track, payload)
    if ticket is None or current is None:
        return
    settings = ctx.config.sla
    current["breached_at"], current["met"] = iso(ctx.now), False
    handler = await handler_of(ctx, ticket)
    targets = await escalation_targets(ctx, ticket, handler)
    for person in targets:
        card = await escalation_card(ctx, ticket, track, handler, level=1)
        await ctx.send_card(person.id, card)
        current["escalation_cards"].append(card.id)
    current["escalated_to"] = [p.id for p in targets]
    due = parse_iso(current["due"])
    label = TRACK_LABELS[track]
    if handler is not None:
        await remind(ctx, handler.id, ReminderItem(
            title=f"SLA 已超时：{ticket.number}",
            text=f"{label}已超过截止时间 {_local(ctx, due)}，已升级给主管，请立即处理。",
            ticket_number=ticket.number))
    for quality in await ctx.uow.list_people(Role.QUALITY):
        await remind(ctx, quality.id, ReminderItem(
            title=f"超时抄送：{ticket.number}",
            text=f"{label}超时（截止 {_local(ctx, due)}，{ticket.priority}｜{ticket.impact}），"
                 f"已升级给 {'、'.join(p.name for p in targets) or '（无主管）'}，并生成超时根因分析任务。",
            ticket_number=ticket.number, urgent=False))
    if targets:
        owner = targets[0]
        card = root_cause_card(ctx, ticket, track, due)
        await ctx.send_card(owner.id, card)
        current["root_cause"] = {"card_id": card.id, "owner": owner.id, "reason": None, "by": None, "at": None,
                                 "reminders": 0}
        await ctx.uow.schedule_timer(kind=timer_kind(track, "rootcause"), ticket_number=ticket.number,
                                     due_at=ctx.now + settings.root_cause_remind_after, payload={"card_id": card.id})
    await ctx.uow.schedule_timer(kind=timer_kind(track, "level2"), ticket_number=ticket.number,
                                 due_at=ctx.now + settings.second_level_after, payload={"due": current["due"]})
    await ctx.uow.save_ticket(ticket)
    await ctx.audit("sla_breached", {"track": track, "due": current["due"], "handler": handler.id if handler else None,
                                     "escalated_to": current["escalated_to"],
                                     "root_cause_owner": targets[0].id if targets else None}, ticket)


@timer_handler(timer_kind("response", "breach"))
async def _response_breach(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    await _breach(ctx, ticket, payload, "response")


@timer_handler(timer_kind("resolution", "breach"))
async def _resolution_breach(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    await _breach(ctx, ticket, payload, "resolution")


# --- second level ---


async def _level2(ctx: Context, ticket: Ticket | None, payload: dict[str, Any], track: str) -> None:
    if ticket is None or not ticket.status.is_open:
        return
    state = sla_state(ticket)
    if state is None:
        return
    current = state[track]
    if current["ack_by"] or current["level2_at"] or current["met_at"] or current["due"] != payload.get("due"):
        return
    handler = await handler_of(ctx, ticket)
    # One level up the chain from whoever got the first card; the director when nobody is above.
    directors = await supervisors_above(ctx, current.get("escalated_to") or []) or await ctx.uow.list_people(
        Role.ADMIN)
    for person in directors:
        card = await escalation_card(ctx, ticket, track, handler, level=2)
        await ctx.send_card(person.id, card)
        current["escalation_cards"].append(card.id)
    current["level2_at"] = iso(ctx.now)
    await ctx.uow.save_ticket(ticket)
    await ctx.audit("sla_escalated", {"track": track, "level": 2, "to": [p.id for p in directors]}, ticket)


@timer_handler(timer_kind("response", "level2"))
async def _response_level2(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    await _level2(ctx, ticket, payload, "response")


@timer_handler(timer_kind("resolution", "level2"))
async def _resolution_level2(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    await _level2(ctx, ticket, payload, "resolution")


# --- the root-cause task ---


async def _root_cause_nag(ctx: Context, ticket: Ticket | None, payload: dict[str, Any], track: str) -> None:
    state = sla_state(ticket) if ticket is not None else None
    task = state[track].get("root_cause") if state else None
    if ticket is None or not task or task.get("reason") or task.get("card_id") != payload.get("card_id"):
        return
    task["reminders"] = int(task.get("reminders", 0)) + 1
    await remind(ctx, task["owner"], ReminderItem(
        title=f"待填写：{ticket.number} 超时根因分析",
        text=f"{TRACK_LABELS[track]}超时的根因分析尚未提交（第 {task['reminders']} 次提醒），请在任务卡片中填写。",
        ticket_number=ticket.number))
    await ctx.uow.schedule_timer(kind=timer_kind(track, "rootcause"), ticket_number=ticket.number,
                                 due_at=ctx.now + ctx.config.sla.root_cause_remind_after, payload=payload)
    await ctx.uow.save_ticket(ticket)


@timer_handler(timer_kind("response", "rootcause"))
async def _response_root_cause(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    await _root_cause_nag(ctx, ticket, payload, "response")


@timer_handler(timer_kind("resolution", "rootcause"))
async def _resolution_root_cause(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    await _root_cause_nag(ctx, ticket, payload, "resolution")


# --- card presses ---


async def _ticket_of(ctx: Context, stored: StoredCard) -> Ticket:
    if not stored.ticket_number:
        raise InvalidInput("这张卡片没有关联工单。", card_id=stored.card.id)
    return await ctx.ticket(stored.ticket_number)


def _track_with_card(ticket: Ticket, card_id: str) -> str:
    state = sla_state(ticket) or {}
    for track in TRACKS:
        if card_id in state.get(track, {}).get("escalation_cards", []):
            return track
    raise NotFound("没有找到这张升级卡片对应的超时记录。", card_id=card_id)


async def _acknowledge(ctx: Context, ticket: Ticket, track: str, how: str) -> bool:
    """Record the first acknowledgement (确认 or 转派); False when someone was first."""
    current = (sla_state(ticket) or {})[track]
    if current["ack_by"]:
        return False
    current["ack_by"], current["ack_at"], current["ack_how"] = ctx.actor.id, iso(ctx.now), how
    await ctx.uow.cancel_timers(ticket.number, {timer_kind(track, "level2")})
    await ctx.audit("sla_escalation_acknowledged", {"track": track, "how": how}, ticket)
    return True


async def _close_sibling_cards(ctx: Context, ticket: Ticket, track: str, except_id: str, note: str) -> None:
    """Other supervisors' copies of the escalation are settled too (updated in place)."""
    for card_id in (sla_state(ticket) or {})[track]["escalation_cards"]:
        if card_id == except_id:
            continue
        stored = await ctx.uow.get_card(card_id, lock=True)
        if stored is None or stored.state != "open":
            continue
        closed = replace(stored.card, closed_note=note)
        if await ctx.uow.close_card(card_id, card=closed, by=ctx.actor.id, action="settled", at=ctx.now):
            await ctx.notify(Notification(recipient_id=stored.recipient_id, card=closed, replaces_card_id=card_id,
                                          ticket_number=ticket.number))


@card_handler(CardKind.ESCALATION)
async def press_escalation(ctx: Context, stored: StoredCard, action: str, values: dict[str, str]) -> str:
    ticket = await _ticket_of(ctx, stored)
    track = _track_with_card(ticket, stored.card.id)
    current = (sla_state(ticket) or {})[track]
    if action == "ack":
        if not await _acknowledge(ctx, ticket, track, "ack"):
            who = await ctx.uow.get_person(current["ack_by"])
            return f"已由 {who.name if who else current['ack_by']} 确认，无需重复操作。"
        note = f"{ctx.actor.name} 已确认，正在跟进。"
        await _close_sibling_cards(ctx, ticket, track, stored.card.id, note)
        await ctx.uow.save_ticket(ticket)
        return note
    if action == "reassign":
        technician_id = (values.get("technician") or "").strip()
        if not technician_id:
            raise InvalidInput("请先在「转派给」中选择一位技师，再点「转派」。", card_id=stored.card.id)
        technician = await ctx.uow.get_person(technician_id)
        if technician is None or technician.role is not Role.TECHNICIAN or not technician.active:
            raise InvalidInput(f"「{technician_id}」不是在岗技师，请重新选择。", technician=technician_id)
        if technician.id == ticket.assignee_id:
            raise Conflict(f"工单 {ticket.number} 已由 {technician.name} 处理，请选择其他技师。")
        previous = ticket.assignee_id
        ticket.assignee_id = technician.id
        await _acknowledge(ctx, ticket, track, "reassign")
        await ctx.move(ticket, "reassign", payload={"assignee": technician.id, "previous_assignee": previous,
                                                    "reason": f"sla_{track}_escalation"})
        note = f"{ctx.actor.name} 已转派给 {technician.name}。"
        await _close_sibling_cards(ctx, ticket, track, stored.card.id, note)
        await ctx.uow.save_ticket(ticket)
        await ctx.tell(technician.id, f"{ctx.actor.name} 将超时工单 {ticket.number} 转派给您，请立即处理："
                                      f"{ticket.description[:60]}", ticket=ticket, urgent=True)
        if previous and previous != technician.id:
            await ctx.tell(previous, f"工单 {ticket.number} 已由 {ctx.actor.name} 转派给 {technician.name}。",
                           ticket=ticket)
        return note
    raise InvalidInput(f"升级卡片上没有「{action}」这个操作。", action=action)


@task_action(ROOT_CAUSE_PREFIX)
async def press_root_cause(ctx: Context, stored: StoredCard, action: str, values: dict[str, str]) -> str:
    if action != "submit":
        raise InvalidInput(f"任务卡片上没有「{action}」这个操作。", action=action)
    reason = (values.get("reason") or "").strip()
    if len(reason) < MIN_REASON_CHARS:
        raise InvalidInput("请填写超时根因（必填，至少 2 个字）后再提交。", card_id=stored.card.id)
    ticket = await _ticket_of(ctx, stored)
    state = sla_state(ticket) or {}
    for track in TRACKS:
        task = state.get(track, {}).get("root_cause")
        if task and task.get("card_id") == stored.card.id:
            break
    else:
        raise NotFound("没有找到这张任务对应的超时记录。", card_id=stored.card.id)
    task.update({"reason": reason[:500], "by": ctx.actor.id, "at": iso(ctx.now)})
    await ctx.uow.cancel_timers(ticket.number, {timer_kind(track, "rootcause")})
    await ctx.uow.save_ticket(ticket)
    await ctx.audit("sla_root_cause_filled", {"track": track, "reason": reason[:500]}, ticket)
    for quality in await ctx.uow.list_people(Role.QUALITY):
        await remind(ctx, quality.id, ReminderItem(
            title=f"根因已归档：{ticket.number}", text=f"{TRACK_LABELS[track]}超时根因：{reason[:80]}",
            ticket_number=ticket.number, urgent=False))
    return f"根因已提交：{reason[:40]}"
