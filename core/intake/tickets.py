"""Intake: a customer's fault report becomes a ticket (or a follow-up on one: core/intake/reports.py),
staff register one for a customer (代客报修: core/intake/front_desk.py); customers ask about their tickets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from core.cards import Card, CardKind, Notification
from core.commands import (
    ListMyTickets,
    PressCardAction,
    RegisterForCustomer,
    ReportFault,
    ShowTicket,
    SplitFollowUp,
)
from core.errors import Conflict, InvalidInput, NotAllowed, NotFound
from core.intake.details import LOCATION_QUESTION, consume_pending, pending_details
from core.intake.front_desk import customer_for, masked, reachable_in_chat
from core.intake.limits import intake_limits
from core.intake.reports import (
    OPEN_STATES,
    find_repeat,
    last_follow_up,
    limit_reached,
    lookback,
    mark_split,
    record_follow_up,
)
from core.intake.urgency import Urgency, detect_urgency, intake_priority
from core.masterdata.org import supervisor_chain
from core.masterdata.prefill import MASTERDATA, Facts, prefill, recognise
from core.model import ROLE_LABELS, Person, Role, Ticket, TicketStatus
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


# A staff account never becomes a ticket's customer: only the customer signs a ticket closed, so
# such a ticket could never close (or its reporter would sign their colleague's work).
STAFF_REPORT = ("您是{role}账号，直接描述的故障没有建单：工单由报修客户本人签字结案，员工账号不能作为报修客户。\n"
                "· 为客户登记：代客报修 手机号或客户编号 故障描述（例：代客报修 13800138000 底盘有异响）\n"
                "· 您自己的设备或车辆：代客报修 您的手机号 故障描述，完工时由您当面签字（现场签字）。")


@handles(ReportFault)
async def report_fault(ctx: Context, cmd: ReportFault) -> Ticket | None:
    """A customer's own report: a new ticket, a follow-up on an open one (that ticket), or None when
    the per-sender limit holds it back (core/intake/reports.py)."""
    if ctx.actor.role is not Role.CUSTOMER:
        raise InvalidInput(STAFF_REPORT.format(role=ROLE_LABELS[ctx.actor.role]), role=ctx.actor.role.value)
    return await receive_report(ctx, ctx.actor, cmd, new_problem_hint=NEW_PROBLEM_HINT)


@handles(RegisterForCustomer)
async def register_for_customer(ctx: Context, cmd: RegisterForCustomer) -> Ticket | None:
    """`代客报修`: staff report for a customer, who stays the ticket's customer and signs it."""
    if ctx.actor.role is Role.CUSTOMER:
        raise NotAllowed("抱歉，「代客报修」供门店员工为客户登记使用。如需报修，请直接描述故障。",
                         role=ctx.actor.role.value)
    if not cmd.text.strip():
        raise InvalidInput(FRONT_DESK_USAGE)
    customer, created = await customer_for(ctx, cmd.customer)
    hint = f"如确为新的问题，请发送「代客报修 {cmd.customer} 新问题 {cmd.text[:20]}」单独建单。"
    return await receive_report(ctx, customer, ReportFault(cmd.text, new_problem=cmd.new_problem),
                                registered_by=ctx.actor, customer_created=created, new_problem_hint=hint)


@handles(SplitFollowUp)
async def split_follow_up(ctx: Context, cmd: SplitFollowUp) -> Ticket | None:
    """`新问题`: the customer's last follow-up becomes a ticket of its own (still within the limit)."""
    if ctx.actor.role is not Role.CUSTOMER:
        raise InvalidInput("「新问题」由报修客户使用；为客户登记新问题请发送"
                           "「代客报修 手机号或客户编号 新问题 描述」。")
    await ctx.uow.lock_person(ctx.actor.id)
    mine = await ctx.uow.list_tickets(customer_id=ctx.actor.id, statuses=set(OPEN_STATES), limit=50)
    found = last_follow_up(mine, ctx.actor.id, ctx.now)
    if found is None:
        raise InvalidInput("没有刚记为补充说明的消息可以单独建单。如有新的故障，请发送「新问题 故障描述」。")
    old = await ctx.ticket(found[0].number)  # locked before the new ticket takes the audit head
    created = await receive_report(ctx, ctx.actor, ReportFault(found[1], new_problem=True),
                                   new_problem_hint=NEW_PROBLEM_HINT)
    if created is not None:
        mark_split(old, created.number)
        await ctx.uow.save_ticket(old)
        await ctx.audit("follow_up_split", {"new_ticket": created.number, "text": found[1]}, old)
    return created


NEW_PROBLEM_HINT = "如果这是另一个新问题，请回复「新问题」，我会为它单独建单。"
FRONT_DESK_USAGE = ("用法：代客报修 手机号或客户编号 故障描述，例如：代客报修 13800138000 底盘有异响。"
                    "该客户已有同类未结工单而这是新问题时：代客报修 手机号 新问题 故障描述。")


async def receive_report(ctx: Context, customer: Person, cmd: ReportFault, *, new_problem_hint: str,
                         registered_by: Person | None = None, customer_created: bool = False) -> Ticket | None:
    """The one intake path of every report, whoever sends it and on whichever platform."""
    text = cmd.text.strip()
    if not text:
        raise InvalidInput("请描述一下故障情况，例如：底盘有异响、中控黑屏。")
    limits = intake_limits(ctx.service)
    analysis = ctx.service.classifier.classify(text)
    said = detect_urgency(text)
    asset = (cmd.subject or said.device_number or "").strip()[:64]
    back = lookback(limits)
    if back is not None:
        await ctx.uow.lock_person(customer.id)  # first: a customer's reports are counted one after another
    # Master data before the repeat check: a repeat names the same normalised asset (core/masterdata/prefill.py).
    pending = await pending_details(ctx, customer.id) if registered_by is None else None
    found = await recognise(ctx.uow.masterdata(), customer, text,
                            asset or str((pending or {}).get("asset") or ""),
                            new_person=ctx.actor_is_new and customer.id == ctx.actor.id)
    asset = found.subject or asset
    if back is not None:
        recent = await ctx.uow.recent_tickets(customer.id, ctx.now - back)
        repeat = None if cmd.new_problem else find_repeat(recent, text, analysis.category, asset, limits, ctx.now,
                                                          asset_id=found.asset.id if found.asset else None)
        if repeat is not None:
            return await record_follow_up(ctx, repeat, text, limits, new_problem_hint=new_problem_hint,
                                          registered_by=registered_by)
        # Staff registering at the front desk are accountable (audited) and serve a queue of walk-ins.
        if registered_by is None and await limit_reached(ctx, customer, text, limits, recent):
            return None
    lat, lng = cmd.lat, cmd.lng
    location = (pending or {}).get("location")
    if (lat is None or lng is None) and isinstance(location, dict):
        lat, lng = location.get("lat"), location.get("lng")
    facts = await prefill(ctx.uow.masterdata(), customer, found, lat=lat, lng=lng,
                          today=ctx.now.astimezone(ctx.config.timezone).date())
    if registered_by is not None:
        facts.store_id = facts.store_id or registered_by.store_id  # registered at the counter of that store
    ticket = await create_ticket(ctx, customer, cmd, text, analysis, said, facts, registered_by=registered_by,
                                 customer_created=customer_created)
    if pending is not None:  # its row after the audit chain's head, the lock order of core/timers.py
        await consume_pending(ctx, customer.id)
    return ticket


async def create_ticket(ctx: Context, customer: Person, cmd: ReportFault, text: str, analysis: Any, said: Urgency,
                        facts: Facts, *, registered_by: Person | None, customer_created: bool) -> Ticket:
    local_day = ctx.now.astimezone(ctx.config.timezone).date()
    seq = await ctx.uow.next_ticket_sequence(local_day)
    number = format_number(ctx.config.number_prefix, local_day.strftime("%Y%m%d"), seq)
    status = TicketStatus.PENDING_DISPATCH if analysis.category else TicketStatus.TRIAGE
    data: dict[str, Any] = {
        "classification": {
            "keywords": list(analysis.keywords),
            "negated": list(analysis.negated),
            "score": analysis.score,
            "intent": analysis.intent,
        }
    }
    if registered_by is not None:
        data["front_desk"] = {"by": registered_by.id, "at": ctx.now.isoformat(), "customer_created": customer_created}
    # Asked once, in the answer below, when nothing says where the job is (core/intake/details.py).
    ask_location = not facts.site_known and registered_by is None
    data[MASTERDATA] = {**facts.data, "location_asked": ask_location}
    ticket = Ticket(
        number=number,
        customer_id=customer.id,
        description=text[:MAX_DESCRIPTION],
        status=status,
        created_at=ctx.now,
        updated_at=ctx.now,
        category=analysis.category,
        subject=facts.subject,
        # priority and impact as the customer states them, unless given
        priority=cmd.priority or intake_priority(said, symptom=bool(analysis.keywords)),
        impact=cmd.impact or said.impact or "单用户",
        site_lat=facts.site_lat,
        site_lng=facts.site_lng,
        store_id=facts.store_id,
        asset_id=facts.asset_id,
        data=data,
    )
    ticket = await ctx.uow.add_ticket(ticket)
    front_desk: dict[str, Any] = {}
    if registered_by is not None:
        front_desk = {"registered_by": registered_by.id, "customer_id": customer.id,
                      "customer_created": customer_created}
        if customer.phone:
            front_desk["phone"] = masked(customer.phone)
    await ctx.audit(
        "ticket_created",
        {"status": status.value, "category": analysis.category, "description": ticket.description,
         "keywords": list(analysis.keywords), "priority": ticket.priority, "impact": ticket.impact, **front_desk},
        ticket,
    )
    if analysis.category:
        next_step = "系统正在为您匹配最合适的技师，接单后会第一时间通知您。"
        category_line = f"故障分类：{analysis.category}"
    else:
        next_step = "您的问题已转给主管人工分诊，稍后会有专人联系您。"
        category_line = "故障分类：待人工分诊"
    if registered_by is None:
        where = f"\n{LOCATION_QUESTION}" if ask_location else ""
        await ctx.tell(customer.id, f"已为您创建工单 {number}\n{category_line}\n{next_step}\n"
                       f"发送「进度」可随时查看工单状态。{where}", ticket=ticket)
    else:
        if await reachable_in_chat(ctx, customer.id):
            await ctx.tell(customer.id, f"门店已为您登记工单 {number}（登记人：{registered_by.name}）\n"
                           f"{category_line}\n{next_step}\n完工后请在这里签字确认；发送「进度」可随时查看工单状态。",
                           ticket=ticket)
        phone = f"，手机 {masked(customer.phone)}" if customer.phone else ""
        new = "（新客户）" if customer_created else ""
        await ctx.tell(registered_by.id, (
            f"已为客户 {customer.name}{new}（{customer.id}{phone}）登记工单 {number}\n{category_line}\n"
            f"完工后客户在自己的聊天中签字；没有聊天账号的客户，由技师发送「现场签字 {number}」当面签字。"),
            ticket=ticket)
    if not analysis.category:
        for supervisor in await supervisor_chain(ctx, ticket):
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
    "report_follow_up": "客户补充说明",
    "follow_up_split": "补充说明另建工单",
    "signoff_in_person_opened": "技师发起现场签字",
}


def describe_event(kind: str, payload: dict[str, Any]) -> str:
    label = EVENT_LABELS.get(kind, kind)
    if kind == "status_changed":
        try:
            return f"{label}：{TicketStatus(payload['from']).label} → {TicketStatus(payload['to']).label}"
        except (KeyError, ValueError):
            return label
    if kind == "report_follow_up":
        return f"{label}：{str(payload.get('text', ''))[:40]}"
    if kind == "follow_up_split":
        return f"{label} {payload.get('new_ticket', '')}"
    if kind == "signed_off" and payload.get("in_person"):
        return "客户现场签字（技师设备）"
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
