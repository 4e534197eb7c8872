"""A ticket's report facts: what 报表 and the dashboards count about one ticket, computed once from the
ticket and its trail and kept (storage/report_aggregates.py) so that a period's figures are sums of
per-day rows instead of a walk over every ticket and its audit events.

Pure: the caller gives the ticket and its trail (the audit events of the kinds in TRAIL_KINDS, in
order). Everything that depends on the moment of the question (an SLA deadline passing while the
track still runs, a stay still going) is kept as its ingredients (deadline, since when) and decided
by the query, never frozen into the facts.

Resolution: waits are whole seconds (first response, acceptance: floored, as 报表 shows them), stays
are exact (microseconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from core.model import Ticket, TicketStatus

TRAIL_KINDS = ("ticket_created", "status_changed", "photo_added", "location_shared", "signed_off")
MIN_WAIT = timedelta(minutes=1)  # as core/reports/metrics.py: a shorter stay is no wait
TRACEABLE_PHOTOS = 3  # seed 1: 故障部位, 检测仪表读数, 更换配件铭牌
REPEAT_WINDOW = timedelta(days=30)  # first-time fix: core/lifecycle/rework.py REPEAT_WINDOW_DAYS


@dataclass(frozen=True, slots=True)
class TrailEvent:
    kind: str
    at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Track:
    """One SLA track's ingredients (None fields: no such track on the ticket)."""

    due: datetime | None = None
    met: bool | None = None
    met_at: bool = False  # a met_at is recorded (late or in time)
    breached_at: bool = False
    ack_by: str | None = None
    present: bool = False


@dataclass(frozen=True, slots=True)
class Stay:
    state: str
    entered_at: datetime
    micros: int  # duration


@dataclass(slots=True)
class TicketFacts:
    number: str
    created_at: datetime
    created_day: date
    store_id: str
    category: str
    priority: str
    assignee_id: str
    status: str
    version: int
    closed_at: datetime | None = None
    closed_day: date | None = None
    first_response_s: int | None = None
    accept_s: int | None = None
    response: Track = field(default_factory=Track)
    resolution: Track = field(default_factory=Track)
    resolution_paused: bool = False
    photos: int = 0
    checkin: bool = False
    signed: bool = False
    confirmed: bool = False
    rating: int | None = None
    reworked: bool = False
    came_back: bool = False  # maintained by the store: another ticket on the asset within the window
    asset_key: str = ""
    stays: tuple[Stay, ...] = ()  # completed stays of at least MIN_WAIT, in order
    ongoing_state: str | None = None  # the non-final state the ticket is in, since `ongoing_since`
    ongoing_since: datetime | None = None
    root_causes: tuple[tuple[str, str], ...] = ()  # (track, owner) of 超时根因分析 not filled in

    @property
    def cancelled(self) -> bool:
        return self.status == TicketStatus.CANCELLED.value

    @property
    def is_open(self) -> bool:
        return self.status not in (TicketStatus.CLOSED.value, TicketStatus.CANCELLED.value)

    @property
    def traceable(self) -> bool:
        """Seed 1's 100 % traceability: check-in, ≥ 3 work photos, the signature with both confirmations."""
        return self.checkin and self.photos >= TRACEABLE_PHOTOS and self.signed and self.confirmed

    @property
    def ftf_counted(self) -> bool:
        """In the first-time-fix population (closed, not cancelled)."""
        return self.closed_at is not None and not self.cancelled

    @property
    def ftf_failed(self) -> bool:
        return self.reworked or self.came_back

    @property
    def closure_s(self) -> int | None:
        if self.closed_at is None or self.cancelled:
            return None
        return max(0, int((self.closed_at - self.created_at).total_seconds()))

    @property
    def running(self) -> bool:
        """A track whose outcome depends on the moment of the question (neither met nor breached yet)."""
        return any(settled_outcome(self, t) == "running" for t in ("response", "resolution"))


def _seconds(since: datetime, until: datetime | None) -> int | None:
    if until is None:
        return None
    return int(max(0.0, (until - since).total_seconds()))  # floored whole seconds


def _track(ticket: Ticket, name: str) -> Track:
    sla = ticket.data.get("sla")
    state = sla.get(name) if isinstance(sla, dict) else None
    if not isinstance(state, dict) or ticket.status is TicketStatus.CANCELLED:
        return Track()
    due = datetime.fromisoformat(state["due"]) if state.get("due") else None
    met = state.get("met")
    return Track(due=due, met=met if isinstance(met, bool) else None, met_at=bool(state.get("met_at")),
                 breached_at=bool(state.get("breached_at")), ack_by=state.get("ack_by"), present=True)


def settled_outcome(facts: TicketFacts, track: str) -> str | None:
    """"met", "breached", "running" (decided by the deadline at question time) or None (out of the figures)."""
    state: Track = getattr(facts, track)
    if not state.present:
        return None
    if state.met is True:
        return "met"
    if state.breached_at or state.met is False:
        return "breached"
    return "running"


def outcome_at(facts: TicketFacts, track: str, now: datetime) -> str | None:
    """core/reports/metrics.py track_outcome, from the facts."""
    settled = settled_outcome(facts, track)
    if settled != "running":
        return settled
    state: Track = getattr(facts, track)
    paused = track == "resolution" and facts.resolution_paused
    if state.due is not None and state.due < now and not paused:
        return "breached"
    return "running"


def open_breach_due(facts: TicketFacts, track: str, now: datetime) -> datetime | None:
    """The deadline of an open breach on this track (metrics.open_breaches), None when none."""
    state: Track = getattr(facts, track)
    if not facts.is_open or not state.present or state.met_at or state.due is None:
        return None
    paused = track == "resolution" and facts.resolution_paused
    if state.breached_at or (state.due < now and not paused):
        return state.due
    return None


def history_of(ticket: Ticket, trail: Sequence[TrailEvent]) -> list[tuple[datetime, str]]:
    """(entered_at, state) as bot/chat/reports.py reads the trail; one stay in the current state without one."""
    statuses = {s.value for s in TicketStatus}
    out = []
    for e in trail:
        state = e.payload.get("status") if e.kind == "ticket_created" else (
            e.payload.get("to") if e.kind == "status_changed" else None)
        if isinstance(state, str) and state in statuses:
            out.append((e.at, state))
    return out or [(ticket.created_at, ticket.status.value)]


def _stays(history: list[tuple[datetime, str]]) -> tuple[tuple[Stay, ...], str | None, datetime | None]:
    ordered = sorted(history, key=lambda entry: entry[0])  # stable: the trail's order for equal times
    final = (TicketStatus.CLOSED.value, TicketStatus.CANCELLED.value)
    done: list[Stay] = []
    for index, (entered, state) in enumerate(ordered):
        if state in final:
            continue
        if index + 1 == len(ordered):
            return tuple(done), state, entered
        left = ordered[index + 1][0]
        micros = max(0, (left - entered) // timedelta(microseconds=1))
        if micros >= MIN_WAIT // timedelta(microseconds=1):
            done.append(Stay(state, entered, micros))
    return tuple(done), None, None


def _root_causes(ticket: Ticket) -> tuple[tuple[str, str], ...]:
    sla = ticket.data.get("sla")
    out = []
    for track in ("response", "resolution"):
        state = sla.get(track) if isinstance(sla, dict) else None
        task = state.get("root_cause") if isinstance(state, dict) else None
        if task and not task.get("reason"):
            out.append((track, str(task.get("owner"))))
    return tuple(out)


def _reworked(ticket: Ticket) -> bool:
    rework = ticket.data.get("rework") or {}
    return bool(rework.get("count") or rework.get("not_fixed_at_signoff"))


def facts_of(ticket: Ticket, trail: Sequence[TrailEvent], zone: tzinfo, asset_key: str) -> TicketFacts:
    """The facts of one ticket from its row and its trail (events of TRAIL_KINDS in order)."""
    accepted = ticket.accepted_at
    photos = {e.payload.get("sha256") for e in trail
              if e.kind == "photo_added" and e.payload.get("purpose") == "work" and not e.payload.get("repeated")}
    # Checked in on the spot: the move to 已签到 with the position shared for it.
    checkin = any(e.kind == "status_changed" and e.payload.get("to") == TicketStatus.CHECKED_IN.value
                  for e in trail) and any(e.kind == "location_shared" and e.payload.get("purpose") == "checkin"
                                          for e in trail)
    signatures = [e.payload for e in trail if e.kind == "signed_off"]
    signature = signatures[-1] if signatures else None
    confirmations = (signature or {}).get("confirmations") or {}
    rating = (signature or {}).get("rating")
    stays, ongoing_state, ongoing_since = _stays(history_of(ticket, trail))
    sla = ticket.data.get("sla")
    closed_at = ticket.closed_at
    return TicketFacts(
        number=ticket.number, created_at=ticket.created_at, created_day=ticket.created_at.astimezone(zone).date(),
        store_id=ticket.store_id or "", category=ticket.category or "", priority=ticket.priority,
        assignee_id=ticket.assignee_id or "", status=ticket.status.value, version=ticket.version,
        # closed_day: the day it counts as closed (a cancelled ticket never does)
        closed_at=closed_at, closed_day=closed_at.astimezone(zone).date()
        if closed_at and ticket.status is not TicketStatus.CANCELLED else None,
        first_response_s=_seconds(ticket.created_at, ticket.first_response_at),
        accept_s=_seconds(ticket.created_at, accepted),
        response=_track(ticket, "response"), resolution=_track(ticket, "resolution"),
        resolution_paused=bool(isinstance(sla, dict) and sla.get("stopped_since")),
        photos=len(photos), checkin=checkin, signed=signature is not None,
        confirmed=bool(confirmations) and all(bool(v) for v in confirmations.values()),
        rating=int(rating) if isinstance(rating, int | float) else None,
        reworked=_reworked(ticket), asset_key=asset_key, stays=stays, ongoing_state=ongoing_state,
        ongoing_since=ongoing_since, root_causes=_root_causes(ticket))


def came_back(closed: TicketFacts, others: Iterable[TicketFacts]) -> bool:
    """Whether another (not cancelled) ticket on the same asset and category was reported within the
    window after `closed` closed (core/lifecycle/rework.py first_time_fix)."""
    if closed.closed_at is None:
        return False
    end = closed.closed_at + REPEAT_WINDOW
    return any(o.number != closed.number and not o.cancelled and o.asset_key == closed.asset_key
               and o.category == closed.category and closed.closed_at < o.created_at <= end for o in others)
