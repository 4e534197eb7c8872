"""The work order after acceptance: check-in, start (with the SOP), photos, plan, QC, 完工.

The technician's flow stays short — 签到 (location + photo, any order) → 开始 → photos → 完工 —
and every step is checked by the workflow template (states, roles, guards) and leaves
evidence in the audit trail. Waiting for parts lives in core/lifecycle/parts.py, the customer's
signature in core/lifecycle/signoff.py, reopening in core/lifecycle/rework.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from core.cards import ActionStyle, Card, CardAction, CardField, CardKind, FieldKind
from core.commands import AddPhoto, ReportPosition
from core.errors import Conflict, IllegalTransition, InvalidInput, NotAllowed, NotFound
from core.lifecycle import sop_handlers as lifecycle_sop
from core.lifecycle.common import (
    ACTIVE_STATES,
    assigned_ticket,
    close_answered_card,
    ensure_not_frozen,
    iso,
    lock_card,
    opt,
    parse_iso,
    people_with_role,
    person_name,
    section,
    supervisors_for,
    sync_workflow,
    technician_label,
    technician_name,
)
from core.lifecycle.photos import CHECKIN, CUSTOMER, WORK, PhotoRecord, distinct_photos
from core.lifecycle.tasks import task_action
from core.model import Role, Ticket, TicketStatus
from core.repository import StoredCard
from core.service import Context, after_move, guard, handles

S = TicketStatus
PHOTO_SHOTS = ("故障部位", "检测仪表读数", "更换配件铭牌")
MAX_PLAN = 500


@dataclass(frozen=True, slots=True)
class CheckIn:
    number: str | None = None


@dataclass(frozen=True, slots=True)
class StartWork:
    number: str | None = None


@dataclass(frozen=True, slots=True)
class Complete:
    number: str | None = None


@dataclass(frozen=True, slots=True)
class SelectTicket:
    number: str


@dataclass(frozen=True, slots=True)
class ProposePlan:
    text: str
    number: str | None = None


@dataclass(frozen=True, slots=True)
class PlanDecision:
    approve: bool
    number: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class QcDecision:
    number: str
    passed: bool
    reason: str = ""


# --- guards named in the template -------------------------------------------------------------

def _fresh(ctx: Context, item: dict[str, Any] | None) -> bool:
    at = parse_iso(item.get("at")) if item else None
    return at is not None and ctx.now - at <= timedelta(seconds=float(opt(ctx, "checkin_window_s")))


@guard("location")
async def _has_location(ctx: Context, ticket: Ticket) -> None:
    if opt(ctx, "checkin_requires_location") and not _fresh(ctx, section(ticket, "checkin").get("location")):
        raise InvalidInput("签到需要现场位置：请先共享您的位置（无法共享时可发送「位置 纬度,经度」）。",
                           number=ticket.number, missing="location")


@guard("checkin_photo")
async def _has_checkin_photo(ctx: Context, ticket: Ticket) -> None:
    if opt(ctx, "checkin_requires_photo") and not _fresh(ctx, section(ticket, "checkin").get("photo")):
        raise InvalidInput("签到需要一张现场照片：请先拍照发送。", number=ticket.number, missing="photo")


async def work_photo_count(ctx: Context, ticket: Ticket) -> int:
    since = parse_iso(section(ticket, "work").get("started_at"))
    return distinct_photos(await ctx.uow.list_photos(ticket.number), purpose=WORK, since=since)


@guard("photos")
async def _enough_photos(ctx: Context, ticket: Ticket) -> None:
    needed = int(opt(ctx, "completion_photos"))
    have = await work_photo_count(ctx, ticket)
    if have < needed:
        shots = "、".join(PHOTO_SHOTS)
        raise InvalidInput(f"完工前需要至少 {needed} 张检修照片（{shots}），目前只有 {have} 张，请继续拍照发送。",
                           number=ticket.number, needed=needed, have=have)


# --- check-in ---------------------------------------------------------------------------------

def _checkin_missing(ctx: Context, ticket: Ticket) -> list[str]:
    data = section(ticket, "checkin")
    missing = []
    if opt(ctx, "checkin_requires_location") and not _fresh(ctx, data.get("location")):
        missing.append("现场位置")
    if opt(ctx, "checkin_requires_photo") and not _fresh(ctx, data.get("photo")):
        missing.append("一张现场照片")
    return missing


async def _try_check_in(ctx: Context, ticket: Ticket) -> bool:
    """Check in once location and photo are both there (any order, within the window)."""
    if _checkin_missing(ctx, ticket):
        return False
    location = section(ticket, "checkin").get("location") or {}
    section(ticket, "checkin")["at"] = iso(ctx.now)
    await ctx.move(ticket, "check_in", payload={"lat": location.get("lat"), "lng": location.get("lng")})
    await ctx.tell(ctx.actor.id, f"工单 {ticket.number} 已签到 ✓\n发送「开始」开始检修，"
                   "我会推送该故障的标准作业流程（SOP）。", ticket=ticket)
    await ctx.tell(ticket.customer_id, f"您的工单 {ticket.number}：{technician_label(ctx.actor.name)} 已到达现场签到。",
                   ticket=ticket)
    return True


def _checkin_hint(ctx: Context, ticket: Ticket) -> str:
    missing = _checkin_missing(ctx, ticket)
    minutes = int(float(opt(ctx, "checkin_window_s")) // 60)
    return f"工单 {ticket.number} 签到还需要：{'、'.join(missing)}（顺序不限，{minutes} 分钟内发齐即自动签到）。"


@handles(CheckIn)
async def check_in(ctx: Context, cmd: CheckIn) -> Ticket:
    await sync_workflow(ctx)
    ticket = await assigned_ticket(ctx, cmd.number, use_focus=True)
    ensure_not_frozen(ticket, "check_in")
    ctx.config.workflow.check(ticket.status, "check_in", ctx.actor.role)
    if not await _try_check_in(ctx, ticket):
        await ctx.tell(ctx.actor.id, _checkin_hint(ctx, ticket), ticket=ticket)
    return ticket


@handles(ReportPosition)
async def report_position(ctx: Context, cmd: ReportPosition) -> Ticket | None:
    await sync_workflow(ctx)
    point = {"lat": cmd.lat, "lng": cmd.lng, "at": iso(ctx.now)}
    if ctx.actor.role == Role.TECHNICIAN:
        await ctx.uow.update_technician_position(ctx.actor.id, cmd.lat, cmd.lng, ctx.now)
        try:
            ticket = await assigned_ticket(ctx, None, states=frozenset({S.ACCEPTED}), use_focus=True)
        except NotFound:
            await ctx.tell(ctx.actor.id, "已更新您的位置。")
            return None
        except InvalidInput as unclear:  # several tickets to check in to: keep the position, ask which
            await ctx.tell(ctx.actor.id, "已更新您的位置。" + unclear.user_message)
            return None
        section(ticket, "checkin")["location"] = point
        await ctx.uow.save_ticket(ticket)
        await ctx.audit("location_shared", {"lat": cmd.lat, "lng": cmd.lng, "purpose": "checkin"}, ticket)
        if not await _try_check_in(ctx, ticket):
            await ctx.tell(ctx.actor.id, "已收到位置。" + _checkin_hint(ctx, ticket), ticket=ticket)
        return ticket
    if ctx.actor.role == Role.CUSTOMER:
        site = await _customer_open_ticket(ctx)
        if site is None:
            await ctx.tell(ctx.actor.id, "已收到位置。报修时一并发送位置，可帮助技师更快到达现场。")
            return None
        site.site_lat, site.site_lng = cmd.lat, cmd.lng
        site.updated_at = ctx.now
        await ctx.uow.save_ticket(site)
        await ctx.audit("site_located", {"lat": cmd.lat, "lng": cmd.lng}, site)
        await ctx.tell(ctx.actor.id, f"已记录工单 {site.number} 的现场位置，技师会据此前往。", ticket=site)
        return site
    await ctx.tell(ctx.actor.id, "已收到位置。")
    return None


async def _customer_open_ticket(ctx: Context) -> Ticket | None:
    open_states = {s for s in S if s.is_open}
    tickets = await ctx.uow.list_tickets(customer_id=ctx.actor.id, statuses=open_states, limit=1)
    return await ctx.ticket(tickets[0].number) if tickets else None


# --- photos -----------------------------------------------------------------------------------

@handles(AddPhoto)
async def add_photo(ctx: Context, cmd: AddPhoto) -> PhotoRecord:
    await sync_workflow(ctx)
    if ctx.actor.role == Role.TECHNICIAN:
        ticket = await assigned_ticket(ctx, cmd.number, use_focus=True)
        ensure_not_frozen(ticket, "photo")
        if ticket.status == S.ACCEPTED:
            purpose = CHECKIN
        elif ticket.status == S.IN_PROGRESS:
            purpose = WORK
        elif ticket.status == S.CHECKED_IN:
            raise InvalidInput(f"工单 {ticket.number} 已签到：请先发送「开始」开始检修，再上传检修照片。",
                               number=ticket.number)
        else:
            raise IllegalTransition(f"工单 {ticket.number} 当前状态为「{ticket.status.label}」，现在不能上传照片。",
                                    number=ticket.number, status=ticket.status.value)
    elif ctx.actor.role == Role.CUSTOMER:
        found = await _customer_open_ticket(ctx)
        if found is None:
            raise NotFound("您目前没有进行中的工单，照片无处附加。请先描述故障报修。")
        ticket, purpose = found, CUSTOMER
    else:
        raise NotAllowed("只有负责该工单的技师或报修客户可以上传照片。", actor=ctx.actor.id)
    repeated = purpose == WORK and await _already_counted(ctx, ticket, cmd.sha256)
    record = PhotoRecord(ticket_number=ticket.number, uploader_id=ctx.actor.id, sha256=cmd.sha256, path=cmd.path,
                         size=cmd.size, purpose=purpose, created_at=ctx.now)
    await ctx.uow.add_photo(record)
    await ctx.audit("photo_added", {"sha256": cmd.sha256, "size": cmd.size, "purpose": purpose, "path": cmd.path,
                                    "width": cmd.width, "height": cmd.height, "repeated": repeated}, ticket)
    if purpose == CHECKIN:
        section(ticket, "checkin")["photo"] = {"sha256": cmd.sha256, "at": iso(ctx.now)}
        await ctx.uow.save_ticket(ticket)
        if not await _try_check_in(ctx, ticket):
            await ctx.tell(ctx.actor.id, "已收到现场照片。" + _checkin_hint(ctx, ticket), ticket=ticket)
    elif purpose == WORK:
        have, needed = await work_photo_count(ctx, ticket), int(opt(ctx, "completion_photos"))
        if have >= needed:
            hint = "照片已齐，检修完成后发送「完工」。"
        else:
            hint = f"还需要 {needed - have} 张（{'、'.join(PHOTO_SHOTS[min(have, len(PHOTO_SHOTS) - 1):])}）。"
        if repeated:  # the same image again: kept on record, but it is not another photo of the work
            text = f"工单 {ticket.number}：这张照片与已上传的重复，没有计入，检修照片仍为 {have}/{needed}。{hint}"
        else:
            text = f"工单 {ticket.number} 已收到检修照片 {have}/{needed}。{hint}"
        await ctx.tell(ctx.actor.id, text, ticket=ticket)
    else:
        await ctx.tell(ctx.actor.id, f"照片已附在工单 {ticket.number}。", ticket=ticket)
        if ticket.assignee_id:
            await ctx.tell(ticket.assignee_id, f"客户为工单 {ticket.number} 补充了一张照片。", ticket=ticket)
    return record


async def _already_counted(ctx: Context, ticket: Ticket, sha256: str) -> bool:
    """This image is already one of the work photos of the current round."""
    since = parse_iso(section(ticket, "work").get("started_at"))
    return any(p.sha256 == sha256 and p.purpose == WORK and (since is None or p.created_at >= since)
               for p in await ctx.uow.list_photos(ticket.number))


@handles(SelectTicket)
async def select_ticket(ctx: Context, cmd: SelectTicket) -> Ticket:
    ticket = await assigned_ticket(ctx, cmd.number)
    if ticket.status not in ACTIVE_STATES:
        raise IllegalTransition(f"工单 {ticket.number} 当前状态为「{ticket.status.label}」，不是进行中的工单。",
                                number=ticket.number)
    ticket.data["focus_at"] = iso(ctx.now)
    await ctx.uow.save_ticket(ticket)
    await ctx.tell(ctx.actor.id, f"已选择工单 {ticket.number}：之后发送的照片和位置都记到这张工单。", ticket=ticket)
    return ticket


# --- start and finish -------------------------------------------------------------------------

@handles(StartWork)
async def start_work(ctx: Context, cmd: StartWork) -> Ticket:
    await sync_workflow(ctx)
    ticket = await assigned_ticket(ctx, cmd.number)
    ensure_not_frozen(ticket, "start_work")
    if ticket.status == S.ACCEPTED:
        raise IllegalTransition(_checkin_hint(ctx, ticket).replace("签到还需要", "需要先签到，还差"),
                                number=ticket.number, status=ticket.status.value)
    await ctx.move(ticket, "start_work")
    await ctx.tell(ctx.actor.id, f"工单 {ticket.number} 开始检修。请按 SOP 作业，并拍照上传：{'、'.join(PHOTO_SHOTS)}。"
                   "完成后发送「完工」。", ticket=ticket)
    await lifecycle_sop.send_sop_card(ctx, ticket, ctx.actor.id)
    await ctx.tell(ticket.customer_id, f"您的工单 {ticket.number}：{technician_label(ctx.actor.name)} 已开始检修。",
                   ticket=ticket)
    return ticket


@handles(Complete)
async def complete(ctx: Context, cmd: Complete) -> Ticket:
    await sync_workflow(ctx)
    ticket = await assigned_ticket(ctx, cmd.number)
    ensure_not_frozen(ticket, "complete")
    section(ticket, "work")["completed_at"] = iso(ctx.now)
    await ctx.move(ticket, "complete", payload={"photos": await work_photo_count(ctx, ticket)})
    after = "已转质检，质检通过后客户签字结案。" if ticket.status == S.PENDING_QC else "已请客户签字确认。"
    await ctx.tell(ctx.actor.id, f"工单 {ticket.number} 已完工，{after}", ticket=ticket)
    return ticket


@after_move()
async def _work_round_starts(ctx: Context, ticket: Ticket, name: str) -> None:
    # Completion photos count from the start of the current round of work (a rework needs new evidence).
    if ticket.status == S.IN_PROGRESS and name in {"start_work", "still_broken", "qc_fail"}:
        work = section(ticket, "work")
        work["started_at"] = iso(ctx.now)
        work["round"] = int(work.get("round", 0)) + 1
        await ctx.uow.save_ticket(ticket)


# --- the repair plan the customer confirms -----------------------------------------------------

@handles(ProposePlan)
async def propose_plan(ctx: Context, cmd: ProposePlan) -> Ticket:
    await sync_workflow(ctx)
    text = cmd.text.strip()
    if not text:
        raise InvalidInput("请写明维修方案，例如：方案 更换压缩机继电器，费用约 300 元。")
    if len(text) > MAX_PLAN:
        raise InvalidInput(f"方案太长了（{len(text)} 字），请精简到 {MAX_PLAN} 字以内。")
    ticket = await assigned_ticket(ctx, cmd.number)
    ensure_not_frozen(ticket, "propose_plan")
    ctx.config.workflow.check(ticket.status, "propose_plan", ctx.actor.role)
    card = Card(
        id=ctx.new_card_id("plan"), kind=CardKind.TASK, title="请确认维修方案", ticket_number=ticket.number,
        facts=(("工单", ticket.number), ("技师", technician_name(ctx.actor.name))), body=text,
        actions=(CardAction("approve", "同意方案", ActionStyle.PRIMARY),
                 CardAction("reject", "不同意", ActionStyle.DANGER)),
    )
    section(ticket, "plan").update({"text": text, "by": ctx.actor.id, "at": iso(ctx.now), "card_id": card.id,
                                    "decision": None})
    await ctx.move(ticket, "propose_plan", payload={"plan": text})
    await ctx.send_card(ticket.customer_id, card, text=f"技师为工单 {ticket.number} 提交了维修方案，请确认。")
    await ctx.tell(ctx.actor.id, f"方案已发给客户确认（工单 {ticket.number}）。", ticket=ticket)
    return ticket


async def _decide_plan(ctx: Context, ticket: Ticket, approve: bool, reason: str) -> str:
    name = "approve_plan" if approve else "reject_plan"
    section(ticket, "plan").update({"decision": "approved" if approve else "rejected", "decided_at": iso(ctx.now),
                                    "reason": reason})
    await ctx.move(ticket, name, payload={"reason": reason} if reason else None)
    verdict = "同意" if approve else "不同意"
    if ticket.assignee_id:
        extra = f"，原因：{reason}" if reason else ""
        await ctx.tell(ticket.assignee_id, f"客户{verdict}工单 {ticket.number} 的维修方案{extra}。", ticket=ticket)
    return f"您已{verdict}该方案。"


@task_action("plan")
async def _plan_card(ctx: Context, stored: StoredCard, action: str, values: dict[str, str]) -> str:
    await sync_workflow(ctx)
    ticket = await ctx.ticket(stored.ticket_number or "")
    if section(ticket, "plan").get("card_id") != stored.card.id or ticket.status != S.WAITING_CUSTOMER_PLAN:
        raise Conflict("这份方案已经失效，请以最新的方案卡片为准。", number=ticket.number)
    return await _decide_plan(ctx, ticket, action == "approve", values.get("reason", "").strip())


@handles(PlanDecision)
async def plan_decision(ctx: Context, cmd: PlanDecision) -> str:
    await sync_workflow(ctx)
    if cmd.number:
        number = cmd.number
    else:
        waiting = await ctx.uow.list_tickets(customer_id=ctx.actor.id, statuses={S.WAITING_CUSTOMER_PLAN}, limit=2)
        if not waiting:
            raise NotFound("您目前没有待确认的维修方案。")
        number = waiting[0].number
    # The plan card answers the same question: it is closed as its button would close it.
    card_id = section(await ctx.ticket(number, lock=False), "plan").get("card_id")
    await lock_card(ctx, card_id)
    ticket = await ctx.ticket(number)
    note = await _decide_plan(ctx, ticket, cmd.approve, cmd.reason)
    await close_answered_card(ctx, ticket, card_id, note, "approve" if cmd.approve else "reject")
    await ctx.tell(ctx.actor.id, f"工单 {ticket.number}：{note}", ticket=ticket)
    return note


# --- quality check (when the template routes 完工 through 待质检) --------------------------------

@after_move()
async def _ask_for_qc(ctx: Context, ticket: Ticket, name: str) -> None:
    if ticket.status != S.PENDING_QC:
        return
    checkers = await people_with_role(ctx, Role.QUALITY) or await supervisors_for(ctx, ticket)
    tech = await person_name(ctx, ticket.assignee_id)
    for person in checkers:
        await ctx.send_card(person.id, Card(
            id=ctx.new_card_id("qc"), kind=CardKind.TASK, title=f"待质检：工单 {ticket.number}",
            ticket_number=ticket.number,
            facts=(("分类", ticket.category or "—"), ("技师", tech), ("描述", ticket.description[:60])),
            fields=(CardField("reason", "不通过原因", FieldKind.TEXT, placeholder="不通过时请填写"),),
            actions=(CardAction("pass", "质检通过", ActionStyle.PRIMARY),
                     CardAction("fail", "质检不通过", ActionStyle.DANGER)),
        ))


async def _decide_qc(ctx: Context, ticket: Ticket, passed: bool, reason: str) -> str:
    if not passed and not reason:
        raise InvalidInput("质检不通过时请写明原因，例如：质检不通过 GD-20260101-0001 管路仍有渗漏。")
    await ctx.move(ticket, "qc_pass" if passed else "qc_fail", payload={"reason": reason} if reason else None)
    if ticket.assignee_id:
        text = "质检通过，已请客户签字。" if passed else f"质检不通过：{reason}。请继续检修并重新拍照后再完工。"
        await ctx.tell(ticket.assignee_id, f"工单 {ticket.number} {text}", ticket=ticket)
    return "质检通过" if passed else f"质检不通过：{reason}"


@task_action("qc")
async def _qc_card(ctx: Context, stored: StoredCard, action: str, values: dict[str, str]) -> str:
    await sync_workflow(ctx)
    ticket = await ctx.ticket(stored.ticket_number or "")
    return await _decide_qc(ctx, ticket, action == "pass", values.get("reason", "").strip())


@handles(QcDecision)
async def qc_decision(ctx: Context, cmd: QcDecision) -> str:
    await sync_workflow(ctx)
    ticket = await ctx.ticket(cmd.number)
    note = await _decide_qc(ctx, ticket, cmd.passed, cmd.reason.strip())
    await ctx.tell(ctx.actor.id, f"工单 {ticket.number}：{note}", ticket=ticket)
    return note
