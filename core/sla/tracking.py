"""SLA on tickets: deadlines at creation, durable timers, response met, pauses, stops, the intake guard.

Definitions (also in docs/user-guide.md, SLA section):
  * The SLA clock starts at the report (`ticket.created_at`); the cell is chosen by the time band
    then and stays with the ticket. An accepted upgrade to 紧急 (intake guard) restarts the clock
    at the moment of acceptance with the urgent cell, unless that would relax a deadline.
  * The response SLA is met when a technician accepts the job: the first move into 已接单 or any
    later working state (RESPONDED_STATES). The dispatch offer (`first_response_at`) is the
    "first response" of the reports, not of the SLA.
  * The resolution SLA is met when the work is done: the first move into 待客户签字 or 已结案.
    If the customer says it is still broken (or the ticket is reopened) the clock resumes; the
    time in between counts as a pause.
  * The resolution clock stands still in the pausing states (SlaSettings.pause_states, default
    等待备件 / 等待客户确认方案); on resume the deadline moves by the paused running time
    (business or wall, per the cell) and the timers are rescheduled. The response clock never pauses.
  * Cancelling or closing cancels the clock timers; root-cause tasks stay tracked. A cancelled
    ticket leaves the compliance figures (core/reports/metrics.py).
  * Staff re-prioritise (优先级 / 影响): the open tracks get the new cell's targets from the same
    clock start (core/sla/replan.py).

Timers per ticket and track (response / resolution): "sla.<track>.reminder" (strong reminder,
SlaSettings.reminder_lead before the deadline), "sla.<track>.breach" (escalation at the
deadline), "sla.<track>.level2" and "sla.<track>.rootcause" (armed by core.sla.escalation).
Everything about a ticket's SLA lives in `ticket.data["sla"]` (see `new_sla_state`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.errors import InvalidInput, NotAllowed
from core.intake.tickets import after_create
from core.intake.urgency import detect_urgency
from core.model import Role, Ticket, TicketStatus
from core.service import SLA_STAGE, Context, after_move, handles
from core.sla.calendar import BusinessCalendar
from core.sla.calendar_watch import ensure_daily_check
from core.sla.matrix import ClockMode, Impact, Pause, Priority, SlaDeadlines, SlaMatrix, deadline_for, due_with_pauses
from core.sla.stored_config import CALENDAR_KIND, SLA_KIND, calendar_from, load_calendar, matrix_from

RESPONSE = "response"
RESOLUTION = "resolution"
TRACKS = (RESPONSE, RESOLUTION)
TRACK_LABELS = {RESPONSE: "响应", RESOLUTION: "解决"}
CLOCK_STEPS = ("reminder", "breach", "level2")

S = TicketStatus
RESPONDED_STATES = frozenset(
    {S.ACCEPTED, S.CHECKED_IN, S.IN_PROGRESS, S.WAITING_PARTS, S.WAITING_CUSTOMER_PLAN, S.PENDING_QC,
     S.PENDING_SIGNOFF, S.CLOSED}
)
RESOLVED_STATES = frozenset({S.PENDING_SIGNOFF, S.CLOSED})


def timer_kind(track: str, step: str) -> str:
    return f"sla.{track}.{step}"


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# --- the state kept on the ticket ---


def new_track(due: datetime) -> dict[str, Any]:
    return {"due": iso(due), "met_at": None, "met": None, "breached_at": None, "escalation_cards": [],
            "escalated_to": [], "ack_by": None, "ack_at": None, "level2_at": None, "root_cause": None}


def new_sla_state(d: SlaDeadlines, matrix_version: int) -> dict[str, Any]:
    return {
        "cell": d.cell.label,
        "priority": d.cell.priority.value,
        "impact": d.cell.impact.value,
        "band": d.band.value,
        "clock": d.clock.value,
        "response_minutes": d.cell.response.total_seconds() / 60,
        "resolution_minutes": d.cell.resolution.total_seconds() / 60,
        "matrix_version": matrix_version,
        "origin": iso(d.reported_at),  # where the clock of the current cell starts
        "stopped_since": None,
        "stopped_state": None,
        "pauses": [],
        RESPONSE: new_track(d.response_due),
        RESOLUTION: new_track(d.resolution_due),
    }


def sla_state(ticket: Ticket) -> dict[str, Any] | None:
    state = ticket.data.get("sla")
    return state if isinstance(state, dict) else None


def track_state(ticket: Ticket, track: str) -> dict[str, Any]:
    state = sla_state(ticket)
    if state is None:
        raise InvalidInput(f"工单 {ticket.number} 没有 SLA 记录。", number=ticket.number)
    current: dict[str, Any] = state[track]
    return current


def is_open_track(track: dict[str, Any]) -> bool:
    return not track.get("met_at") and not track.get("breached_at")


def pauses_of(state: dict[str, Any]) -> list[Pause]:
    pauses = [Pause(datetime.fromisoformat(p["start"]), datetime.fromisoformat(p["end"]), p.get("state", ""))
              for p in state.get("pauses", [])]
    if state.get("stopped_since"):
        pauses.append(Pause(datetime.fromisoformat(state["stopped_since"]), None, state.get("stopped_state") or ""))
    return pauses


@dataclass(frozen=True, slots=True)
class SlaEnv:
    calendar: BusinessCalendar
    matrix: SlaMatrix
    matrix_version: int


async def sla_env(ctx: Context) -> SlaEnv:
    stored = await ctx.uow.latest_configs((SLA_KIND, CALENDAR_KIND))
    version, matrix = matrix_from(stored[SLA_KIND])
    calendar = calendar_from(stored[CALENDAR_KIND], ctx.config.timezone, ctx.config.sla)
    return SlaEnv(calendar, matrix, version)


def response_due(state: dict[str, Any], calendar: BusinessCalendar) -> datetime:
    due = due_with_pauses(datetime.fromisoformat(state["origin"]), timedelta(minutes=state["response_minutes"]),
                          ClockMode(state["clock"]), calendar, ())
    assert due is not None  # no pauses, so the clock never stands still
    return due


def resolution_due(state: dict[str, Any], calendar: BusinessCalendar) -> datetime | None:
    """None while the clock stands still (an open pause before the deadline)."""
    return due_with_pauses(datetime.fromisoformat(state["origin"]), timedelta(minutes=state["resolution_minutes"]),
                           ClockMode(state["clock"]), calendar, pauses_of(state))


# --- timers ---


TimerPlan = tuple[str, datetime, dict[str, Any]]  # (kind, due_at, payload), for uow.schedule_timers


async def track_timers(ctx: Context, ticket: Ticket, track: str, due: datetime) -> list[TimerPlan]:
    """The reminder and the breach of an open track for `due`, for the caller to schedule (with the
    other track's, in one statement). A reminder that would come too late is cancelled here."""
    lead = ctx.config.sla.reminder_lead
    payload = {"due": iso(due)}
    plans: list[TimerPlan] = []
    # No reminder when the deadline is closer than the lead: it would just echo the report.
    if lead and due - lead > ctx.now:
        plans.append((timer_kind(track, "reminder"), due - lead, payload))
    else:
        await ctx.uow.cancel_timers(ticket.number, {timer_kind(track, "reminder")})
    plans.append((timer_kind(track, "breach"), due, payload))
    return plans


async def disarm_track(ctx: Context, ticket: Ticket, track: str, steps: tuple[str, ...] = CLOCK_STEPS) -> None:
    await ctx.uow.cancel_timers(ticket.number, {timer_kind(track, step) for step in steps})


async def plan_deadlines(ctx: Context, ticket: Ticket, calendar: BusinessCalendar,
                         fresh: SlaDeadlines | None = None) -> None:
    """Set the deadlines of the open tracks from the ticket's SLA state and arm their timers.
    `fresh`: the deadlines the state was just made from (no pauses yet), not computed again."""
    state = sla_state(ticket)
    assert state is not None
    plans: list[TimerPlan] = []
    response = state[RESPONSE]
    if is_open_track(response):
        due = fresh.response_due if fresh is not None else response_due(state, calendar)
        response["due"] = iso(due)
        ticket.response_due = due
        plans += await track_timers(ctx, ticket, RESPONSE, due)
    resolution = state[RESOLUTION]
    if is_open_track(resolution):
        maybe_due = fresh.resolution_due if fresh is not None else resolution_due(state, calendar)
        if maybe_due is None:
            await disarm_track(ctx, ticket, RESOLUTION, ("reminder", "breach"))
        else:
            resolution["due"] = iso(maybe_due)
            ticket.resolution_due = maybe_due
            plans += await track_timers(ctx, ticket, RESOLUTION, maybe_due)
    if plans:
        await ctx.uow.schedule_timers(ticket_number=ticket.number, timers=plans)


# --- creation ---


@after_create(SLA_STAGE)
async def start_sla(ctx: Context, ticket: Ticket) -> None:
    with ctx.as_system():  # the clock starts itself; the report caused it
        await _start_sla(ctx, ticket)


async def _start_sla(ctx: Context, ticket: Ticket) -> None:
    await _intake_guard(ctx, ticket)
    env = await sla_env(ctx)
    d = deadline_for(ticket.priority, ticket.impact, ticket.created_at, env.calendar, env.matrix)
    ticket.priority, ticket.impact = d.cell.priority.value, d.cell.impact.value
    ticket.data["sla"] = new_sla_state(d, env.matrix_version)
    await plan_deadlines(ctx, ticket, env.calendar, fresh=d)
    await ctx.uow.save_ticket(ticket)
    await ctx.audit("sla_started", {"cell": d.cell.label, "clock": d.clock.value, "matrix_version": env.matrix_version,
                                    "response_due": iso(ticket.response_due),
                                    "resolution_due": iso(ticket.resolution_due)}, ticket)
    await ensure_daily_check(ctx)


async def _intake_guard(ctx: Context, ticket: Ticket) -> None:
    """Seed 2: 紧急 without production impact needs a photo or the device number first."""
    said = detect_urgency(ticket.description)  # intake set the impact the text states
    if said.device_number and not ticket.subject:
        ticket.subject = said.device_number
    claims_urgent = said.urgent or Priority.parse(ticket.priority) is Priority.URGENT
    if not claims_urgent:
        return
    plant = Impact.parse(ticket.impact) is Impact.PLANT
    if plant or ticket.subject:
        ticket.priority = Priority.URGENT.value
        ticket.data["urgent"] = {"status": "accepted", "basis": "production" if plant else "device",
                                 "at": iso(ctx.now)}
        return
    ticket.priority = Priority.NORMAL.value
    ticket.data["urgent"] = {"status": "pending", "requested_at": iso(ctx.now)}
    await ctx.audit("urgent_pending", {"reason": "no production impact, photo or device number"}, ticket)
    await ctx.tell(
        ctx.actor.id,
        f"您将工单 {ticket.number} 标记为紧急。紧急工单的响应时限更短，请补充一张故障照片，"
        f"或回复「设备编号 xxx」（例如：设备编号 A-1024），收到后立即按紧急处理。\n"
        f"如已影响生产（产线停机/停产），请直接说明。在此之前按常规处理。",
        ticket=ticket,
    )


# --- moves ---


@after_move(SLA_STAGE)
async def follow_sla(ctx: Context, ticket: Ticket, _transition: str) -> None:
    with ctx.as_system():  # met, paused, resumed: the clock's own steps, caused by the move
        await _follow_sla(ctx, ticket)


async def _follow_sla(ctx: Context, ticket: Ticket) -> None:
    state = sla_state(ticket)
    if state is None:
        return
    status = ticket.status
    changed = False
    response, resolution = state[RESPONSE], state[RESOLUTION]
    if not response["met_at"] and status in RESPONDED_STATES:
        due = parse_iso(response["due"])
        response["met_at"] = iso(ctx.now)
        response["met"] = not response["breached_at"] and (due is None or ctx.now <= due)
        await disarm_track(ctx, ticket, RESPONSE)
        await ctx.audit("sla_response_met", {"met": response["met"], "due": response["due"]}, ticket)
        changed = True

    stopped = status in ctx.config.sla.pause_states or status in RESOLVED_STATES or status is S.CANCELLED
    if stopped and not state["stopped_since"]:
        state["stopped_since"], state["stopped_state"] = iso(ctx.now), status.value
        await disarm_track(ctx, ticket, RESOLUTION, ("reminder", "breach"))
        if status in ctx.config.sla.pause_states:
            await ctx.audit("sla_paused", {"state": status.value}, ticket)
        changed = True
    elif stopped:
        state["stopped_state"] = status.value
        changed = True
    elif state["stopped_since"]:
        start = datetime.fromisoformat(state["stopped_since"])
        state["pauses"].append({"start": state["stopped_since"], "end": iso(ctx.now),
                                "state": state["stopped_state"]})
        state["stopped_since"], state["stopped_state"] = None, None
        if resolution["met_at"]:  # still broken / reopened: the resolution clock runs again
            resolution["met_at"], resolution["met"] = None, None
        calendar = await load_calendar(ctx.uow, ctx.config.timezone, ctx.config.sla)
        await plan_deadlines(ctx, ticket, calendar)
        await ctx.audit("sla_resumed", {"paused_minutes": round((ctx.now - start).total_seconds() / 60, 1),
                                        "resolution_due": iso(ticket.resolution_due)}, ticket)
        changed = True

    if status in RESOLVED_STATES and not resolution["met_at"]:
        due = parse_iso(resolution["due"])
        resolution["met_at"] = iso(ctx.now)
        resolution["met"] = not resolution["breached_at"] and (due is None or ctx.now <= due)
        await disarm_track(ctx, ticket, RESOLUTION)
        await ctx.audit("sla_resolution_met", {"met": resolution["met"], "due": resolution["due"]}, ticket)
        changed = True
    if not status.is_open:
        for track in TRACKS:
            await disarm_track(ctx, ticket, track)
    if changed:
        await ctx.uow.save_ticket(ticket)


# --- the intake guard's second half: evidence for an urgent report ---


@dataclass(frozen=True, slots=True)
class SupplyUrgentEvidence:
    """A customer sends a photo or the device number for a report marked urgent."""

    evidence: str  # "photo" or "device"
    value: str = ""  # the device number, or the photo's reference
    quiet: bool = False  # True: no pending request is not an error (photos have other uses)


EVIDENCE_LABELS = {"photo": "故障照片", "device": "设备编号"}


@handles(SupplyUrgentEvidence)
async def supply_urgent_evidence(ctx: Context, cmd: SupplyUrgentEvidence) -> Ticket | None:
    if cmd.evidence not in EVIDENCE_LABELS:
        raise InvalidInput(f"未知的补充材料：{cmd.evidence}")
    if ctx.actor.role is not Role.CUSTOMER:
        if cmd.quiet:
            return None
        raise NotAllowed("只有报修客户可以补充紧急工单的材料。")
    value = cmd.value.strip()
    if cmd.evidence == "device" and not value:
        raise InvalidInput("请在「设备编号」后写上编号，例如：设备编号 A-1024")
    pending = [t for t in await ctx.uow.list_tickets(customer_id=ctx.actor.id, limit=20)
               if t.status.is_open and (t.data.get("urgent") or {}).get("status") == "pending"]
    if not pending:
        if cmd.quiet:
            return None
        raise InvalidInput("您目前没有等待确认紧急程度的工单。如需报修，请直接描述故障。")
    ticket = await ctx.ticket(pending[0].number)
    return await upgrade_to_urgent(ctx, ticket, basis=cmd.evidence, value=value)


async def on_customer_evidence(ctx: Context, ticket: Ticket, basis: str, value: str = "") -> bool:
    """A customer added a photo ("photo") or a device number ("device") to `ticket`: accept a
    pending urgent request. For other features' handlers (e.g. a customer's AddPhoto)."""
    if (ticket.data.get("urgent") or {}).get("status") != "pending" or not ticket.status.is_open:
        return False
    await upgrade_to_urgent(ctx, ticket, basis=basis, value=value)
    return True


async def upgrade_to_urgent(ctx: Context, ticket: Ticket, *, basis: str, value: str = "") -> Ticket:
    """Accept the urgent priority: the urgent cell's clock starts now (never relaxing a deadline)."""
    before = ticket.priority
    ticket.priority = Priority.URGENT.value
    if basis == "device" and value and not ticket.subject:
        ticket.subject = value[:64]
    ticket.data["urgent"] = {**(ticket.data.get("urgent") or {}), "status": "accepted", "basis": basis,
                             "value": value[:200], "at": iso(ctx.now)}
    state = sla_state(ticket)
    env = await sla_env(ctx)
    if state is not None:
        d = deadline_for(Priority.URGENT, ticket.impact, ctx.now, env.calendar, env.matrix)
        current = parse_iso(state[RESPONSE]["due"])
        if current is None or d.response_due < current:
            fresh = new_sla_state(d, env.matrix_version)
            for key in ("cell", "priority", "impact", "band", "clock", "response_minutes", "resolution_minutes",
                        "matrix_version", "origin"):
                state[key] = fresh[key]
        await plan_deadlines(ctx, ticket, env.calendar)
    ticket.updated_at = ctx.now
    await ctx.uow.save_ticket(ticket)
    await ctx.audit("priority_changed", {"from": before, "to": ticket.priority, "basis": basis,
                                         "response_due": iso(ticket.response_due),
                                         "resolution_due": iso(ticket.resolution_due)}, ticket)
    due_text = ticket.response_due.astimezone(ctx.config.timezone).strftime("%m-%d %H:%M") \
        if ticket.response_due else "—"
    await ctx.tell(ctx.actor.id, f"已收到{EVIDENCE_LABELS[basis]}，工单 {ticket.number} 已按紧急处理，"
                                 f"响应截止 {due_text}。", ticket=ticket)
    if ticket.assignee_id:
        await ctx.tell(ticket.assignee_id, f"工单 {ticket.number} 已升级为紧急，响应截止 {due_text}，请优先处理。",
                       ticket=ticket, urgent=True)
    return ticket
