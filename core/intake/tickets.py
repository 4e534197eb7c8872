"""Intake: a customer's fault report becomes a ticket; customers ask about their tickets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from core.cards import Card, CardKind, Notification
from core.commands import ListMyTickets, PressCardAction, ReportFault, ShowTicket
from core.errors import Conflict, InvalidInput, NotAllowed, NotFound
from core.intake.urgency import detect_urgency, intake_priority
from core.model import Role, Ticket, TicketStatus
from core.repository import StoredCard
from core.service import DEFAULT_STAGE, Context, add_staged, handles

MAX_DESCRIPTION = 2000
# Hooks run after a ticket is created (the SLA clock, then dispatch), by stage (core/service.py).
AfterCreate = Callable[[Context, Ticket], Awaitable[None]]
_AFTER_CREATE: list[AfterCreate] = []
_AFTER_CREATE_STAGES: list[int] = []
# Card action handlers by card kind. They return the note shown on the card afterwards.
CardHandler = Callable[[Context, StoredCard, str, dict[str, str]], Awaitable[str]]
_CARD_HANDLERS: dict[CardKind, CardHandler] = {}


def after_create(stage: int = DEFAULT_STAGE) -> Callable[[AfterCreate], AfterCreate]:
    def register(fn: AfterCreate) -> AfterCreate:
        return add_staged(_AFTER_CREATE, _AFTER_CREATE_STAGES, stage, fn)

    return register


def card_handler(kind: CardKind) -> Callable[[CardHandler], CardHandler]:
    def register(fn: CardHandler) -> CardHandler:
        _CARD_HANDLERS[kind] = fn
        return fn

    return register


def format_number(prefix: str, day_text: str, seq: int) -> str:
    return f"{prefix}-{day_text}-{seq:04d}"


@handles(ReportFault)
async def report_fault(ctx: Context, cmd: ReportFault) -> Ticket:
    text = cmd.text.strip()
    if not text:
        raise InvalidInput("请描述一下故障情况，例如：底盘有异响、中控黑屏。")
    analysis = ctx.service.classifier.classify(text)
    local_day = ctx.now.astimezone(ctx.config.timezone).date()
    seq = await ctx.uow.next_ticket_sequence(local_day)
    number = format_number(ctx.config.number_prefix, local_day.strftime("%Y%m%d"), seq)
    status = TicketStatus.PENDING_DISPATCH if analysis.category else TicketStatus.TRIAGE
    said = detect_urgency(text)  # priority and impact as the customer states them, unless given
    ticket = Ticket(
        number=number,
        customer_id=ctx.actor.id,
        description=text[:MAX_DESCRIPTION],
        status=status,
        created_at=ctx.now,
        updated_at=ctx.now,
        category=analysis.category,
        subject=cmd.subject,
        priority=cmd.priority or intake_priority(said, symptom=bool(analysis.keywords)),
        impact=cmd.impact or said.impact or "单用户",
        site_lat=cmd.lat,
        site_lng=cmd.lng,
        data={
            "classification": {
                "keywords": list(analysis.keywords),
                "negated": list(analysis.negated),
                "score": analysis.score,
                "intent": analysis.intent,
            }
        },
    )
    ticket = await ctx.uow.add_ticket(ticket)
    await ctx.audit(
        "ticket_created",
        {"status": status.value, "category": analysis.category, "description": ticket.description,
         "keywords": list(analysis.keywords), "priority": ticket.priority, "impact": ticket.impact},
        ticket,
    )
    if analysis.category:
        next_step = "系统正在为您匹配最合适的技师，接单后会第一时间通知您。"
        category_line = f"故障分类：{analysis.category}"
    else:
        next_step = "您的问题已转给主管人工分诊，稍后会有专人联系您。"
        category_line = "故障分类：待人工分诊"
    await ctx.tell(
        ctx.actor.id,
        f"已为您创建工单 {number}\n{category_line}\n{next_step}\n发送「进度」可随时查看工单状态。",
        ticket=ticket,
    )
    if not analysis.category:
        for supervisor in await ctx.uow.list_people(Role.SUPERVISOR):
            await ctx.tell(supervisor.id, f"新工单 {number} 无法自动分类，请分诊：{ticket.description[:80]}",
                           ticket=ticket)
    for hook in _AFTER_CREATE:
        await hook(ctx, ticket)
    return ticket


def status_line(ticket: Ticket) -> str:
    category = ticket.category or "待分诊"
    flag = "（待复核）" if ticket.needs_review else ""
    return f"{ticket.number}｜{ticket.status.label}{flag}｜{category}｜{ticket.description[:30]}"


# 进度 per role: (what to list, its heading, the answer when there is nothing). Staff are never
# asked to describe a fault: they see their own work.
_MY_WORK: dict[Role, tuple[str, str]] = {
    Role.TECHNICIAN: ("派给您的工单", "您目前没有派给您的工单，有新的派单会第一时间通知您。"),
    Role.WAREHOUSE: ("等待备件的工单", "目前没有等待备件的工单。"),
    Role.QUALITY: ("待质检的工单", "目前没有待质检的工单。"),
    Role.SUPERVISOR: ("最近的工单", "目前没有工单。"),
    Role.ADMIN: ("最近的工单", "目前没有工单。"),
}


@handles(ListMyTickets)
async def list_my_tickets(ctx: Context, cmd: ListMyTickets) -> list[Ticket]:
    role = ctx.actor.role
    if role == Role.TECHNICIAN:
        tickets = await ctx.uow.list_tickets(assignee_id=ctx.actor.id, limit=cmd.limit)
    elif role == Role.WAREHOUSE:
        tickets = await ctx.uow.list_tickets(statuses={TicketStatus.WAITING_PARTS}, limit=cmd.limit)
    elif role == Role.QUALITY:
        tickets = await ctx.uow.list_tickets(statuses={TicketStatus.PENDING_QC}, limit=cmd.limit)
    elif role in {Role.SUPERVISOR, Role.ADMIN}:
        tickets = await ctx.uow.list_tickets(limit=cmd.limit)
    else:
        tickets = await ctx.uow.list_tickets(customer_id=ctx.actor.id, limit=cmd.limit)
    heading, nothing = _MY_WORK.get(role, ("您的工单", "您目前没有工单。描述一下遇到的故障（例如「底盘有异响」），"
                                                    "我会为您创建工单。"))
    if not tickets:
        await ctx.tell(ctx.actor.id, nothing)
    else:
        lines = "\n".join(status_line(t) for t in tickets)
        await ctx.tell(ctx.actor.id, f"{heading}（最近 {len(tickets)} 张）：\n{lines}\n发送「工单 编号」查看详情。")
    return tickets


@handles(ShowTicket)
async def show_ticket(ctx: Context, cmd: ShowTicket) -> Ticket:
    ticket = await ctx.ticket(cmd.number, lock=False)
    if ctx.actor.role == Role.CUSTOMER and ticket.customer_id != ctx.actor.id:
        raise NotFound(f"没有找到工单 {cmd.number}。", number=cmd.number)
    # Who did what and when: the user-facing events (those with a label), with the actor's name.
    events = [e for e in await ctx.uow.audit_for_ticket(ticket.number) if e.kind in EVENT_LABELS][-12:]
    names = {"system": "系统"}
    for pid in ({e.actor_id for e in events} | {ticket.assignee_id or "system"}) - set(names):
        person = await ctx.uow.get_person(pid)
        names[pid] = person.name if person else pid
    history = "\n".join(
        f"{e.at.astimezone(ctx.config.timezone):%m-%d %H:%M} {names[e.actor_id]} {describe_event(e.kind, e.payload)}"
        for e in events
    )
    card = Card(
        id=ctx.new_card_id("status"),
        kind=CardKind.STATUS,
        title=f"工单 {ticket.number}",
        ticket_number=ticket.number,
        facts=(
            ("状态", ticket.status.label + ("（待复核）" if ticket.needs_review else "")),
            ("分类", ticket.category or "待分诊"),
            ("技师", names[ticket.assignee_id] if ticket.assignee_id else "待派单"),
            ("描述", ticket.description[:100]),
        ),
        body=history,
    )
    await ctx.send_card(ctx.actor.id, card)
    return ticket


EVENT_LABELS = {
    "ticket_created": "创建工单",
    "status_changed": "状态变更",
    "offer_sent": "派单",
    "offer_accepted": "技师接单",
    "offer_declined": "技师拒单",
    "offer_expired": "接单超时",
    "photo_added": "上传照片",
    "signed_off": "客户签字",
    "card_action": "卡片操作",
    "location_shared": "共享现场位置",
    "site_located": "记录现场位置",
    "sop_shown": "推送 SOP",
    "signoff_requested": "请客户签字",
    "signoff_callback_created": "签字超时，安排回访",
    "parts_progress": "备件进度更新",
    "parts_escalated": "紧急缺件升级",
}


def describe_event(kind: str, payload: dict[str, Any]) -> str:
    label = EVENT_LABELS.get(kind, kind)
    if kind == "status_changed":
        try:
            return f"{label}：{TicketStatus(payload['from']).label} → {TicketStatus(payload['to']).label}"
        except (KeyError, ValueError):
            return label
    return label


@handles(PressCardAction)
async def press_card_action(ctx: Context, cmd: PressCardAction) -> str:
    stored = await ctx.uow.get_card(cmd.card_id, lock=True)
    if stored is None:
        raise NotFound("这张卡片不存在或已失效。", card_id=cmd.card_id)
    if stored.recipient_id != ctx.actor.id:
        # Audited with the card's ticket by the conversation, like every refusal (core/audit/refusals.py).
        raise NotAllowed("这张卡片不是发给您的，无法操作。", card_id=cmd.card_id, number=stored.ticket_number,
                         reason="not_recipient")
    if stored.state != "open":
        raise Conflict("这张卡片已经处理过了。", card_id=cmd.card_id, used_action=stored.used_action)
    if cmd.action not in {a.id for a in stored.card.actions}:
        raise InvalidInput(f"卡片上没有「{cmd.action}」这个操作。", card_id=cmd.card_id, action=cmd.action)
    handler = _CARD_HANDLERS.get(stored.card.kind)
    if handler is None:
        raise InvalidInput("这张卡片不需要操作。", card_id=cmd.card_id)
    try:
        note = await handler(ctx, stored, cmd.action, dict(cmd.values))
    except NotAllowed as refusal:
        refusal.data.setdefault("number", stored.ticket_number)  # the refusal belongs on the card's ticket
        raise
    closed = _closed(stored.card, note)
    if not await ctx.uow.close_card(cmd.card_id, card=closed, by=ctx.actor.id, action=cmd.action, at=ctx.now):
        raise Conflict("这张卡片已经处理过了。", card_id=cmd.card_id)
    await ctx.audit(
        "card_action",
        {"card_id": cmd.card_id, "kind": stored.card.kind.value, "action": cmd.action, "values": dict(cmd.values)},
        await ctx.uow.get_ticket(stored.ticket_number) if stored.ticket_number else None,
    )
    await ctx.notify(Notification(recipient_id=ctx.actor.id, card=closed, replaces_card_id=closed.id,
                                  ticket_number=stored.ticket_number))
    return note


def _closed(card: Card, note: str) -> Card:
    return replace(card, closed_note=note)
