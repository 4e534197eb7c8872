"""What the tracking page reads for one ticket, in one connection: its audit trail, the names of the people
in it, the store, and — while the technician is on the way — their last known position (issue 21).

Every statement is a lookup by an indexed key (the ticket's number, people's and the store's ids), so the
page costs the same with a million tickets as with ten (bench/tracking_bench.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from bot.runtime import Runtime
from core.dispatch.geo import haversine_km
from core.model import AuditEvent, Role, Ticket, TicketStatus
from core.tracking.timeline import (
    TIMELINE_KINDS,
    TRAVEL_KMH,
    Entry,
    PersonName,
    Step,
    customer_timeline,
    status_note,
    status_steps,
    technician_label,
)
from storage.tables import AuditEventRow, PersonRow, StoreRow, TechnicianRow, TicketRow
from storage.unit_of_work import ticket_from_row

S = TicketStatus
# A position older than this says nothing about where the technician is now.
POSITION_FRESH = timedelta(hours=2)
ON_THE_WAY = frozenset({S.TRIAGE, S.PENDING_DISPATCH, S.DISPATCHED, S.ACCEPTED, S.REOPENED})


@dataclass(frozen=True, slots=True)
class Marker:
    kind: str  # store, site, technician
    label: str
    lat: float
    lng: float


@dataclass(frozen=True, slots=True)
class TimelineItem:
    when: str
    who: str
    text: str
    photos: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TrackingView:
    ticket: Ticket
    steps: list[Step]
    note: str
    technician: str | None
    arrival: str
    timeline: list[TimelineItem]
    markers: list[Marker]
    distances: list[str]
    fingerprint: str
    awaiting_signoff: bool

    @property
    def points(self) -> list[dict[str, Any]]:
        return [{"kind": m.kind, "label": m.label, "lat": m.lat, "lng": m.lng} for m in self.markers]


# Built once: SQLAlchemy caches their compiled form, so a page costs only the statements' execution.
_TICKET = select(TicketRow).where(col(TicketRow.number) == bindparam("number"))
_LAST_EVENT = select(func.max(col(AuditEventRow.seq))).where(col(AuditEventRow.ticket_number) == bindparam("number"))
_MOVED = select(col(TechnicianRow.last_position_at)).where(col(TechnicianRow.person_id) == bindparam("person"))
# Only the kinds the page tells (core/tracking/timeline.py): the offers' large payloads are never read.
_EVENTS = (select(col(AuditEventRow.seq), col(AuditEventRow.kind), col(AuditEventRow.actor_id),
                  col(AuditEventRow.at), col(AuditEventRow.payload))
           .where(col(AuditEventRow.ticket_number) == bindparam("number"), col(AuditEventRow.kind).in_(TIMELINE_KINDS))
           .order_by(col(AuditEventRow.seq)))
_PEOPLE = select(col(PersonRow.id), col(PersonRow.name), col(PersonRow.role)).where(
    col(PersonRow.id).in_(bindparam("ids", expanding=True)))
_STORE = select(col(StoreRow.name), col(StoreRow.lat), col(StoreRow.lng)).where(col(StoreRow.id) == bindparam("store"))
_POSITION = select(col(TechnicianRow.last_lat), col(TechnicianRow.last_lng),
                   col(TechnicianRow.last_position_at)).where(col(TechnicianRow.person_id) == bindparam("person"))


async def fingerprint(runtime: Runtime, number: str) -> tuple[Ticket, str] | None:
    """The ticket and what changes when its page would (a save, an event, the technician moving): two lookups."""
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(_TICKET, {"number": number})).one_or_none()
        if row is None:
            return None
        ticket = ticket_from_row(row)
        last = (await conn.execute(_LAST_EVENT, {"number": number})).scalar_one_or_none()
        moved = None
        if ticket.status == S.ACCEPTED and ticket.assignee_id:
            moved = (await conn.execute(_MOVED, {"person": ticket.assignee_id})).scalar_one_or_none()
    return ticket, f"{ticket.version}:{last}:{_aware(moved).isoformat() if moved else ''}"


async def load_page(runtime: Runtime, number: str, current: Callable[[Ticket], bool]) -> TrackingView | None:
    """The page of ticket `number` when `current(ticket)` (its link is valid), read in one connection."""
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(_TICKET, {"number": number})).one_or_none()
        ticket = ticket_from_row(row) if row is not None else None
        if ticket is None or not current(ticket):
            return None
        return await _view(runtime, conn, ticket)


async def load_view(runtime: Runtime, ticket: Ticket) -> TrackingView:
    async with runtime.engine.connect() as conn:
        return await _view(runtime, conn, ticket)


async def _view(runtime: Runtime, conn: AsyncConnection, ticket: Ticket) -> TrackingView:
    zone = runtime.service.config.timezone
    number = ticket.number
    rows = (await conn.execute(_EVENTS, {"number": number})).all()
    events = [AuditEvent(kind=r.kind, actor_id=r.actor_id, at=_aware(r.at), payload=r.payload or {},
                         ticket_number=number, id=r.seq) for r in rows]
    ids = sorted({e.actor_id for e in events} | ({ticket.assignee_id} if ticket.assignee_id else set()))
    people = {r.id: PersonName(r.name, Role(r.role)) for r in (await conn.execute(_PEOPLE, {"ids": ids})).all()}
    store = None
    if ticket.store_id:
        store = (await conn.execute(_STORE, {"store": ticket.store_id})).one_or_none()
    position = None
    if ticket.status == S.ACCEPTED and ticket.assignee_id:
        position = (await conn.execute(_POSITION, {"person": ticket.assignee_id})).one_or_none()
    last_seq = (await conn.execute(_LAST_EVENT, {"number": number})).scalar_one_or_none()
    now = runtime.clock.now()
    technician = people[ticket.assignee_id].name if ticket.assignee_id in people else None
    shown_technician = technician_label(technician) if technician and ticket.status not in {
        S.TRIAGE, S.PENDING_DISPATCH, S.DISPATCHED, S.CANCELLED} else None
    markers: list[Marker] = []
    site = (ticket.site_lat, ticket.site_lng) if ticket.site_lat is not None and ticket.site_lng is not None \
        else None
    if store is not None:
        markers.append(Marker("store", f"门店：{store.name}", store.lat, store.lng))
    if site is not None:
        markers.append(Marker("site", "维修现场", site[0], site[1]))
    checkin = ticket.data.get("checkin") if isinstance(ticket.data.get("checkin"), dict) else None
    # Arrived once the check-in is complete (its `at`; a location alone is half a check-in, still on the way).
    checked_in = checkin is not None and isinstance(checkin.get("at"), str) and ticket.status not in ON_THE_WAY
    arrived = checkin.get("location") if checkin is not None and checked_in else None
    arrival = ""
    distances: list[str] = []
    if shown_technician and isinstance(arrived, dict) and isinstance(arrived.get("lat"), float | int):
        markers.append(Marker("technician", f"{shown_technician} 签到位置", float(arrived["lat"]),
                              float(arrived["lng"])))
        at = _parse(checkin.get("at") if checkin else None) or _parse(arrived.get("at"))
        arrival = f"{shown_technician}已于{at.astimezone(zone):%H:%M}到达现场" if at \
            else f"{shown_technician}已到达现场"
        if site is not None:
            distances.append(f"签到位置距现场约 {_km(haversine_km(arrived['lat'], arrived['lng'], *site))}")
    elif shown_technician and ticket.status == S.ACCEPTED:
        arrival = f"{shown_technician}已接单，正在赶来"
        if position is not None and position.last_lat is not None and position.last_position_at is not None \
                and now - _aware(position.last_position_at) <= POSITION_FRESH:
            markers.append(Marker("technician", f"{shown_technician}（最近位置）", position.last_lat,
                                  position.last_lng))
            if site is not None:
                km = haversine_km(position.last_lat, position.last_lng, *site)
                eta = now + timedelta(hours=km / TRAVEL_KMH)
                arrival += f"，距现场约 {_km(km)}，预计 {eta.astimezone(zone):%H:%M} 左右到达"
    if store is not None and site is not None:
        distances.insert(0, f"门店距现场约 {_km(haversine_km(store.lat, store.lng, *site))}")
    timeline = [TimelineItem(_when(e, now, zone), e.who, e.text, e.photos)
                for e in customer_timeline(ticket, events, people, zone)]
    moved = position.last_position_at if position is not None else None
    return TrackingView(
        ticket=ticket, steps=status_steps(runtime.service.config.workflow, ticket, _started(events)),
        note=status_note(ticket), technician=shown_technician, arrival=arrival, timeline=timeline,
        markers=markers, distances=distances,
        fingerprint=f"{ticket.version}:{last_seq}:{_aware(moved).isoformat() if moved else ''}",
        awaiting_signoff=ticket.status == S.PENDING_SIGNOFF)


def _started(events: list[AuditEvent]) -> TicketStatus:
    for event in events:
        if event.kind == "ticket_created" and event.payload.get("status") == S.TRIAGE.value:
            return S.TRIAGE
    return S.PENDING_DISPATCH


def _when(entry: Entry, now: datetime, zone: Any) -> str:
    local, today = entry.at.astimezone(zone), now.astimezone(zone)
    if local.date() == today.date():
        return f"今天 {local:%H:%M}"
    if local.year == today.year:
        return f"{local.month}月{local.day}日 {local:%H:%M}"
    return f"{local:%Y-%m-%d %H:%M}"


def _km(km: float) -> str:
    return f"{km * 1000:.0f} 米" if km < 1 else f"{km:.1f} 公里"


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None
