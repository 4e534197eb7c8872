"""Supervisor reports (`报表`): pure computation over tickets and their status history.

Definitions:
  * first response = `ticket.first_response_at - ticket.created_at`: from the report to the moment
    the first dispatch offer reached a technician's chat (its outbox delivery was accepted by the
    platform; in the playground, when it became readable there). Tickets without it are skipped
    (and counted). Median, p90 (nearest rank) and the share ≤ 90 s (seed 1's promise).
  * acceptance = `ticket.accepted_at - ticket.created_at`: from the report to the first 接单, the
    human response; median and p90 likewise.
  * SLA compliance per priority, per track (response / resolution), over tickets reported in the
    period: met / (met + breached). A track is breached when the breach fired, it was met late, or
    its deadline has passed while it is still open; tracks still running are left out, and so are
    cancelled tickets altogether (a cancelled job is neither met nor missed).
  * open breaches: open tickets (reported any time) with a track past its deadline and not met.
  * blocked duration: each stay of a ticket in a non-final state (from the status_changed trail)
    of at least MIN_WAIT, longest first; a stay still going counts until now. Shorter stays are
    the service's own steps (dispatch in the same second) or an instant answer, not waits.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from core.model import Ticket, TicketStatus
from core.sla.matrix import Priority, format_duration

FIRST_RESPONSE_TARGET = timedelta(seconds=90)
MIN_WAIT = timedelta(minutes=1)  # a shorter stay in a state is no wait (see blocked duration)
TRACKS = ("response", "resolution")
TRACK_LABELS = {"response": "响应", "resolution": "解决"}


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime  # inclusive, aware
    end: datetime  # exclusive, aware
    label: str


@dataclass(frozen=True, slots=True)
class FirstResponseStats:
    count: int
    skipped: int  # tickets without first_response_at
    median: timedelta | None
    p90: timedelta | None
    share_within_target: float | None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def first_response_stats(tickets: Iterable[Ticket]) -> FirstResponseStats:
    """From the report to the first offer reaching a technician's chat."""
    return wait_stats(tickets, lambda t: t.first_response_at)


def acceptance_stats(tickets: Iterable[Ticket]) -> FirstResponseStats:
    """From the report to the first 接单 (`share_within_target`: within the same 90 s)."""
    return wait_stats(tickets, lambda t: t.accepted_at)


def wait_stats(tickets: Iterable[Ticket], moment: Callable[[Ticket], datetime | None]) -> FirstResponseStats:
    """How long after its report each ticket reached `moment`; tickets without it are skipped."""
    seconds: list[float] = []
    skipped = 0
    for t in tickets:
        at = moment(t)
        if at is None:
            skipped += 1
            continue
        seconds.append(int(max(0.0, (at - t.created_at).total_seconds())))  # whole seconds, as shown
    if not seconds:
        return FirstResponseStats(0, skipped, None, None, None)
    within = sum(1 for s in seconds if s <= FIRST_RESPONSE_TARGET.total_seconds())
    return FirstResponseStats(len(seconds), skipped, timedelta(seconds=statistics.median(seconds)),
                              timedelta(seconds=percentile(seconds, 0.9)), within / len(seconds))


def _track(ticket: Ticket, track: str) -> dict | None:  # type: ignore[type-arg]
    sla = ticket.data.get("sla")
    return sla.get(track) if isinstance(sla, dict) else None


def track_outcome(ticket: Ticket, track: str, now: datetime) -> str | None:
    """"met", "breached", "running" or None (no SLA on the ticket, or cancelled: out of the figures)."""
    state = _track(ticket, track)
    if state is None or ticket.status is TicketStatus.CANCELLED:
        return None
    if state.get("met") is True:
        return "met"
    if state.get("breached_at") or state.get("met") is False:
        return "breached"
    due = datetime.fromisoformat(state["due"]) if state.get("due") else None
    paused = track == "resolution" and (ticket.data.get("sla") or {}).get("stopped_since")
    if due is not None and due < now and not paused:
        return "breached"
    return "running"


@dataclass(slots=True)
class Compliance:
    met: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRACKS, 0))
    breached: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRACKS, 0))
    running: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRACKS, 0))

    def rate(self, track: str) -> float | None:
        total = self.met[track] + self.breached[track]
        return self.met[track] / total if total else None


def compliance_by_priority(tickets: Iterable[Ticket], now: datetime) -> dict[str, Compliance]:
    result = {p.value: Compliance() for p in Priority}
    for t in tickets:
        bucket = result.setdefault(t.priority, Compliance())
        for track in TRACKS:
            outcome = track_outcome(t, track, now)
            if outcome == "met":
                bucket.met[track] += 1
            elif outcome == "breached":
                bucket.breached[track] += 1
            elif outcome == "running":
                bucket.running[track] += 1
    return ordered_priorities(result)


def ordered_priorities(result: dict[str, Compliance]) -> dict[str, Compliance]:
    """The matrix's priorities in their order, then any other (imported data) by name."""
    known = [p.value for p in Priority]
    return {**{p: result.get(p, Compliance()) for p in known},
            **{p: result[p] for p in sorted(result) if p not in known}}


@dataclass(frozen=True, slots=True)
class OpenBreach:
    number: str
    track: str
    due: datetime
    overdue: timedelta
    assignee_id: str | None
    acknowledged_by: str | None


def open_breaches(tickets: Iterable[Ticket], now: datetime) -> list[OpenBreach]:
    found = []
    for t in tickets:
        if not t.status.is_open:
            continue
        for track in TRACKS:
            state = _track(t, track)
            if state is None or state.get("met_at") or not state.get("due"):
                continue
            due = datetime.fromisoformat(state["due"])
            paused = track == "resolution" and (t.data.get("sla") or {}).get("stopped_since")
            if state.get("breached_at") or (due < now and not paused):
                found.append(OpenBreach(t.number, track, due, now - due, t.assignee_id, state.get("ack_by")))
    found.sort(key=lambda b: b.overdue, reverse=True)
    return found


def pending_root_causes(tickets: Iterable[Ticket]) -> list[tuple[str, str, str]]:
    """(number, track, owner) of 超时根因分析 tasks not filled in yet."""
    out = []
    for t in tickets:
        for track in TRACKS:
            task = (_track(t, track) or {}).get("root_cause")
            if task and not task.get("reason"):
                out.append((t.number, track, str(task.get("owner"))))
    return out


@dataclass(frozen=True, slots=True)
class Stay:
    number: str
    state: TicketStatus
    entered_at: datetime
    duration: timedelta
    ongoing: bool


def _entered(entry: tuple[datetime, TicketStatus]) -> datetime:
    return entry[0]


def stays(history: Mapping[str, Sequence[tuple[datetime, TicketStatus]]], now: datetime) -> list[Stay]:
    """Every stay in a non-final state; `history[number]` = [(entered_at, state), ...] in order."""
    out = []
    closed, cancelled = TicketStatus.CLOSED, TicketStatus.CANCELLED  # `is`: is_open hashes the enum per call
    for number, entries in history.items():
        ordered = sorted(entries, key=_entered)
        for index, (entered, state) in enumerate(ordered):
            if state is closed or state is cancelled:
                continue
            ongoing = index + 1 == len(ordered)
            left = now if ongoing else ordered[index + 1][0]
            out.append(Stay(number, state, entered, max(left - entered, timedelta(0)), ongoing))
    return out


def waits(history: Mapping[str, Sequence[tuple[datetime, TicketStatus]]], now: datetime) -> list[Stay]:
    """The stays that are real waits: at least MIN_WAIT long."""
    return [s for s in stays(history, now) if s.duration >= MIN_WAIT]


def blocked_top(history: Mapping[str, Sequence[tuple[datetime, TicketStatus]]], now: datetime, *,
                state: TicketStatus | None = None, limit: int = 10, found_waits: Sequence[Stay] | None = None
                ) -> list[Stay]:
    """`found_waits`: `waits(history, now)` when the caller has it already (render_report)."""
    all_waits = waits(history, now) if found_waits is None else found_waits
    found = [s for s in all_waits if state is None or s.state is state]
    found.sort(key=lambda s: (s.duration, s.number), reverse=True)
    return found[:limit]


def blocked_totals(history: Mapping[str, Sequence[tuple[datetime, TicketStatus]]], now: datetime, *,
                   found_waits: Sequence[Stay] | None = None) -> list[tuple[TicketStatus, timedelta, int]]:
    """(state, total time, stays) per non-final state, largest total first."""
    totals: dict[TicketStatus, tuple[timedelta, int]] = {}
    for s in waits(history, now) if found_waits is None else found_waits:
        total, count = totals.get(s.state, (timedelta(0), 0))
        totals[s.state] = (total + s.duration, count + 1)
    return order_totals((k, v[0], v[1]) for k, v in totals.items())


_STATE_ORDER = {s: n for n, s in enumerate(TicketStatus)}


def order_totals(totals: Iterable[tuple[TicketStatus, timedelta, int]]) -> list[tuple[TicketStatus, timedelta, int]]:
    """Largest total first; equal totals in the workflow's order of states."""
    return sorted(totals, key=lambda item: (-item[1], _STATE_ORDER[item[0]]))


# --- rendering ---


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _seconds(value: timedelta | None) -> str:
    if value is None:
        return "—"
    seconds = value.total_seconds()
    return f"{seconds:.0f}秒" if seconds < 600 else format_duration(value)


@dataclass(frozen=True, slots=True)
class ReportFigures:
    """What 报表 shows, computed from the tickets (`figures_from_tickets`) or from the maintained
    aggregates (storage/report_aggregates.py `report_figures`): the same text either way."""

    reported: int
    first_response: FirstResponseStats
    acceptance: FirstResponseStats
    compliance: dict[str, Compliance]
    breaches: list[OpenBreach]  # at least the ten longest overdue
    root_causes: list[tuple[str, str, str]]
    top: list[Stay]
    totals: list[tuple[TicketStatus, timedelta, int]]
    breach_count: int | None = None  # when `breaches` holds only the first ones


def figures_from_tickets(tickets: Sequence[Ticket], open_tickets: Sequence[Ticket],
                         history: Mapping[str, Sequence[tuple[datetime, TicketStatus]]], now: datetime,
                         state_filter: TicketStatus | None = None) -> ReportFigures:
    found_waits = waits(history, now)
    return ReportFigures(
        reported=len(tickets), first_response=first_response_stats(tickets), acceptance=acceptance_stats(tickets),
        compliance=compliance_by_priority(tickets, now), breaches=open_breaches(open_tickets, now),
        root_causes=pending_root_causes(open_tickets),
        top=blocked_top(history, now, state=state_filter, found_waits=found_waits),
        totals=blocked_totals(history, now, found_waits=found_waits) if state_filter is None else [])


def render_report(
    period: Period,
    tickets: Sequence[Ticket],
    open_tickets: Sequence[Ticket],
    history: Mapping[str, Sequence[tuple[datetime, TicketStatus]]],
    now: datetime,
    *,
    zone: tzinfo,
    state_filter: TicketStatus | None = None,
    extra_sections: Sequence[str] = (),
) -> str:
    figures = figures_from_tickets(tickets, open_tickets, history, now, state_filter)
    return render_figures(period, figures, zone=zone, state_filter=state_filter, extra_sections=extra_sections)


def render_figures(period: Period, figures: ReportFigures, *, zone: tzinfo, state_filter: TicketStatus | None = None,
                   extra_sections: Sequence[str] = ()) -> str:
    fr = figures.first_response
    accepted = figures.acceptance
    last_day = (period.end - timedelta(seconds=1)).astimezone(zone)
    span = "" if "至" in period.label else f"（{period.start.astimezone(zone):%m-%d} 至 {last_day:%m-%d}）"
    lines = [f"【工单报表】{period.label}{span}，报修 {figures.reported} 张"]
    lines.append("一、首次响应（报修→派单送达技师）")
    if fr.count:
        lines.append(f"  中位数 {_seconds(fr.median)}｜P90 {_seconds(fr.p90)}｜≤90秒占比 {_pct(fr.share_within_target)}"
                     f"（{fr.count} 张{f'，{fr.skipped} 张尚未送达派单未计入' if fr.skipped else ''}）")
    else:
        lines.append(f"  暂无数据（{fr.skipped} 张尚未送达派单）")
    if accepted.count:
        lines.append(f"  接单 中位数 {_seconds(accepted.median)}｜P90 {_seconds(accepted.p90)}"
                     f"（{accepted.count} 张{f'，{accepted.skipped} 张尚未接单未计入' if accepted.skipped else ''}）")
    else:
        lines.append(f"  接单 暂无数据（{accepted.skipped} 张尚未接单）")
    lines.append("二、SLA 达成率（按优先级；响应｜解决）")
    for priority, c in figures.compliance.items():
        counted = sum(c.met.values()) + sum(c.breached.values()) + sum(c.running.values())
        if not counted:
            lines.append(f"  {priority}：无工单")
            continue
        parts = [f"{TRACK_LABELS[t]} {_pct(c.rate(t))}（达成 {c.met[t]}/超时 {c.breached[t]}"
                 f"{f'/进行中 {c.running[t]}' if c.running[t] else ''}）" for t in TRACKS]
        lines.append(f"  {priority}：" + "｜".join(parts))
    breaches = figures.breaches
    count = len(breaches) if figures.breach_count is None else figures.breach_count
    lines.append(f"三、未关闭的超时 {count} 项")
    for b in breaches[:10]:
        ack = f"，{b.acknowledged_by} 已确认" if b.acknowledged_by else "，未确认"
        lines.append(f"  {b.number} {TRACK_LABELS[b.track]}超时 {format_duration(b.overdue)}"
                     f"（处理人 {b.assignee_id or '未指派'}{ack}）")
    rca = figures.root_causes
    if rca:
        lines.append(f"  待填写超时根因分析 {len(rca)} 项：" + "、".join(f"{n}({o})" for n, _, o in rca[:5]))
    title = f"四、阻塞时长 TOP10{f'（{state_filter.label}）' if state_filter else '（按状态）'}"
    lines.append(title)
    top = figures.top
    if not top:
        lines.append("  无")
    for s in top:
        still = "（仍在此状态）" if s.ongoing else ""
        lines.append(f"  {s.number}｜{s.state.label}｜{format_duration(s.duration)}{still}")
    if state_filter is None:
        totals = figures.totals[:5]
        if totals:
            lines.append("  各状态累计：" + "、".join(f"{st.label} {format_duration(total)}/{n}次"
                                                for st, total, n in totals))
    lines.append("五、一次修复率")
    lines.extend(extra_sections or ["  待接入（由工单生命周期模块提供）"])
    return "\n".join(lines)
