"""SqlDispatchStore: core.dispatch.store.DispatchStore in the unit of work's transaction.

Profiles come from people + technicians + stores; loads and acceptances are derived from tickets
and the audit trail by core/dispatch/live.py, which also reads the audit chain here as its change feed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from core.dispatch.geo import GeoPoint
from core.dispatch.store import GENESIS_HASH, ChainMark, PositionReport, Store, TechnicianEntry
from core.errors import InvalidInput
from core.model import AuditEvent, Role, Ticket, TicketStatus
from storage.sqlite.prepared import hot
from storage.tables import (
    AuditEventRow,
    AuditHeadRow,
    CardRow,
    IdentityRow,
    PersonRow,
    StoreRow,
    TechnicianRow,
    TicketRow,
)

ACCEPTED_KIND = "offer_accepted"
_IN_CHUNK = 500  # ids per IN (...) list: well below SQLite's and asyncpg's parameter limits


def _point(lat: float | None, lng: float | None) -> GeoPoint | None:
    if lat is None or lng is None:
        return None
    try:
        return GeoPoint(lat, lng)
    except InvalidInput:
        return None  # a corrupt coordinate must not stop dispatch; the technician just has no position


def _chunks(values: Collection[str]) -> list[list[str]]:
    items = sorted(set(values))
    return [items[i:i + _IN_CHUNK] for i in range(0, len(items), _IN_CHUNK)]


# Built once: composing a statement costs more than running it (~60 us vs ~25 us on SQLite), and
# the live dispatch index runs these for every ranking.
_CHAIN_HEAD = hot(select(col(AuditHeadRow.seq), col(AuditHeadRow.hash)).where(col(AuditHeadRow.id) == 1)
                  .with_for_update())
_EVENTS_AFTER = hot(select(col(AuditEventRow.kind), col(AuditEventRow.actor_id), col(AuditEventRow.at),
                           col(AuditEventRow.payload), col(AuditEventRow.ticket_number), col(AuditEventRow.seq),
                           col(AuditEventRow.hash))
                    .where(col(AuditEventRow.seq) > bindparam("seq")).order_by(col(AuditEventRow.seq))
                    .limit(bindparam("limit")))
_ASSIGNMENTS = select(col(TicketRow.number), col(TicketRow.assignee_id), col(TicketRow.status))
_ASSIGNMENTS_OF = hot(_ASSIGNMENTS.where(
    col(TicketRow.number).in_(bindparam("numbers", expanding=True))))
_POSITIONS = hot(select(col(TechnicianRow.person_id), col(TechnicianRow.last_lat), col(TechnicianRow.last_lng),
                        col(TechnicianRow.last_position_at)).where(
    col(TechnicianRow.last_position_at).is_not(None)))
_POSITIONS_SINCE = hot(_POSITIONS.where(
    col(TechnicianRow.last_position_at) >= bindparam("since")))


class SqlDispatchStore:
    def __init__(self, connection: Callable[[], Awaitable[AsyncConnection]],
                 orm_session: Callable[[], Awaitable[AsyncSession]], *,
                 audit_head: Callable[[], tuple[int, str] | None] = lambda: None,
                 pending_audit: Callable[[], list[dict[str, Any]]] = list,
                 write_audit: Callable[[], Awaitable[None]] | None = None,
                 unwritten_tickets: Callable[[], dict[str, Ticket]] = dict,
                 write_tickets: Callable[[], Awaitable[None]] | None = None,
                 directory_changed: Callable[[], None] = lambda: None) -> None:
        """The unit of work's transaction: its connection (Core statements) and an ORM session in it
        (made on first use: the rankings of the live index need none).

        `audit_head`: the head the unit of work holds locked in this transaction, if any. It writes
        the head row only at commit, so this transaction's own appends are known there, not in the row.
        Its events too wait for the commit (`pending_audit`, in chain order; `write_audit` inserts them).
        Likewise tickets (`unwritten_tickets`, `write_tickets`): see SqlUnitOfWork.add_ticket.
        `directory_changed` is told before this store changes people or technicians."""
        self._connection = connection
        self._orm_session = orm_session
        self._held_audit_head = audit_head
        self._pending_audit = pending_audit
        self._write_audit = write_audit
        self._unwritten_tickets = unwritten_tickets
        self._write_tickets = write_tickets
        self._directory_changed = directory_changed

    async def card_is_free(self, card_id: str) -> bool:
        # SKIP LOCKED: a row held by a concurrent press is skipped instead of waited for, so the expiry
        # (ticket locked first by FireTimer) never waits for a press (card locked first): no deadlock.
        # SQLite ignores the clause: its transactions are serialised anyway.
        conn = await self._connection()
        locked = await conn.execute(
            select(col(CardRow.id)).where(col(CardRow.id) == card_id).with_for_update(skip_locked=True))
        if locked.first() is not None:
            return True
        exists = await conn.execute(select(col(CardRow.id)).where(col(CardRow.id) == card_id))
        return exists.first() is None  # a missing card holds nobody up

    # --- the audit chain ---
    async def chain_head(self) -> ChainMark:
        held = self._held_audit_head()
        if held is not None:
            return ChainMark(held[0], held[1])
        head = (await (await self._connection()).execute(_CHAIN_HEAD)).first()
        return ChainMark(0, GENESIS_HASH) if head is None else ChainMark(int(head[0]), str(head[1]))

    async def events_after(self, seq: int, limit: int) -> list[AuditEvent]:
        # The chain in the table ends where this transaction's pending events begin (it holds the
        # head): read only what comes before them, none at all when the caller is that far already.
        pending = self._pending_audit()
        first_pending = pending[0]["seq"] if pending else None
        events: list[AuditEvent] = []
        if first_pending is None or seq < first_pending - 1:
            rows = await (await self._connection()).execute(_EVENTS_AFTER, {"seq": seq, "limit": limit})
            events = [AuditEvent(kind=r.kind, actor_id=r.actor_id, at=r.at, payload=r.payload,
                                 ticket_number=r.ticket_number, id=r.seq, hash=r.hash) for r in rows]
        for row in pending:
            if len(events) >= limit:
                break
            if row["seq"] > seq:
                events.append(AuditEvent(kind=row["kind"], actor_id=row["actor_id"], at=row["at"],
                                         payload=row["payload"], ticket_number=row["ticket_number"], id=row["seq"],
                                         hash=row["hash"]))
        return events

    # --- reads ---
    async def entries(self, person_ids: Collection[str] | None = None, *,
                      identities: bool = False) -> list[TechnicianEntry]:
        stmt = (
            select(PersonRow, TechnicianRow, StoreRow)
            .join(TechnicianRow, col(TechnicianRow.person_id) == PersonRow.id)
            .outerjoin(StoreRow, col(StoreRow.id) == PersonRow.store_id)
            .where(col(PersonRow.role) == Role.TECHNICIAN.value)
        )
        session = await self._orm_session()
        if person_ids is None:
            rows = list((await session.execute(stmt)).all())
        else:
            rows = []
            for chunk in _chunks(person_ids):
                rows += (await session.execute(
                    stmt.where(col(PersonRow.id).in_(chunk)))).all()
        ids: dict[str, dict[str, str]] = {}
        if identities and rows:
            for chunk in _chunks([p.id for p, _, _ in rows]):
                found = await session.execute(
                    select(IdentityRow).where(col(IdentityRow.person_id).in_(chunk)))
                for ident in found.scalars():
                    ids.setdefault(ident.person_id, {})[ident.platform] = ident.external_id
        return [self._entry(person, tech, store, ids.get(person.id, {})) for person, tech, store in rows]

    @staticmethod
    def _entry(person: PersonRow, tech: TechnicianRow, store: StoreRow | None,
               identities: dict[str, str]) -> TechnicianEntry:
        last = _point(tech.last_lat, tech.last_lng) if tech.last_position_at is not None else None
        rating = None
        if tech.rating_count > 0:
            rating = min(5.0, max(0.0, tech.rating_sum / tech.rating_count))
        return TechnicianEntry(
            person_id=person.id,
            name=person.name,
            active=person.active,
            phone=person.phone,
            store_id=person.store_id,
            store_position=_point(store.lat, store.lng) if store is not None else None,
            supervisor_id=person.supervisor_id,
            certifications=frozenset(tech.certifications or ()),
            skills=frozenset(tech.skills or ()),
            excluded_categories=frozenset(tech.excluded_categories or ()),
            last_position=last,
            last_position_at=tech.last_position_at if last is not None else None,
            on_duty=tech.on_duty,
            max_load=max(1, tech.max_load),
            rating=rating,
            rating_count=tech.rating_count,
            identities=identities,
        )

    async def assignments(self, statuses: Collection[TicketStatus],
                          numbers: Collection[str] | None = None) -> dict[str, tuple[str | None, bool]]:
        counted = {s.value for s in statuses}
        if numbers is None:
            if self._write_tickets is not None:
                await self._write_tickets()
            stmt = _ASSIGNMENTS.where(col(TicketRow.status).in_(sorted(counted)),
                                      col(TicketRow.assignee_id).is_not(None))
            rows: list[tuple[str, str | None, str]] = list((await (await self._connection()).execute(stmt)).all())
        else:
            # This transaction's unwritten tickets as they will be written; the others as stored.
            unwritten = self._unwritten_tickets()
            rows = [(n, t.assignee_id, t.status.value) for n in numbers if (t := unwritten.get(n)) is not None]
            conn = await self._connection()
            for chunk in _chunks([n for n in numbers if n not in unwritten]):
                rows += (await conn.execute(_ASSIGNMENTS_OF, {"numbers": chunk})).all()
        return {str(n): (a, s in counted) for n, a, s in rows}

    async def acceptances_since(self, since: datetime) -> list[tuple[str, datetime]]:
        if self._write_audit is not None:
            await self._write_audit()
        rows = await (await self._connection()).execute(
            select(col(AuditEventRow.actor_id), col(AuditEventRow.at))
            .where(col(AuditEventRow.kind) == ACCEPTED_KIND, col(AuditEventRow.at) >= since))
        return [(str(a), at) for a, at in rows.all()]

    async def positions_since(self, since: datetime | None) -> list[PositionReport]:
        conn = await self._connection()
        rows = await (conn.execute(_POSITIONS) if since is None else conn.execute(_POSITIONS_SINCE, {"since": since}))
        out = []
        for pid, lat, lng, at in rows.all():
            point = _point(lat, lng)
            if point is not None:
                # `at` is not None: the statements select rows WHERE last_position_at IS NOT NULL.
                out.append(PositionReport(str(pid), point, at))  # type: ignore[arg-type]
        return out

    # --- stores ---
    async def stores(self) -> dict[str, Store]:
        rows = (await (await self._orm_session()).execute(select(StoreRow).order_by(col(StoreRow.id)))).scalars()
        return {r.id: store for r in rows if (store := self._store(r)) is not None}

    async def store(self, store_id: str) -> Store | None:
        row = await (await self._orm_session()).get(StoreRow, store_id)
        return self._store(row) if row is not None else None

    @staticmethod
    def _store(row: StoreRow) -> Store | None:
        point = _point(row.lat, row.lng)
        return Store(row.id, row.name, point, row.address) if point is not None else None

    # --- writes ---
    async def save_technician(self, entry: TechnicianEntry, *, identities: dict[str, str], at: datetime) -> bool:
        self._directory_changed()
        session = await self._orm_session()
        person = await session.get(PersonRow, entry.person_id)
        created = person is None
        if person is None:
            person = PersonRow(id=entry.person_id, name=entry.name, role=Role.TECHNICIAN.value, created_at=at)
            session.add(person)
        person.name = entry.name
        person.role = Role.TECHNICIAN.value
        person.phone = entry.phone
        person.store_id = entry.store_id
        person.supervisor_id = entry.supervisor_id
        person.active = entry.active
        tech = await session.get(TechnicianRow, entry.person_id)
        if tech is None:
            tech = TechnicianRow(person_id=entry.person_id)
            session.add(tech)
        tech.certifications = sorted(entry.certifications)
        tech.skills = sorted(entry.skills)
        tech.excluded_categories = sorted(entry.excluded_categories)
        tech.on_duty = entry.on_duty
        tech.max_load = entry.max_load
        if entry.last_position is not None and entry.last_position_at is not None:
            tech.last_lat, tech.last_lng = entry.last_position.lat, entry.last_position.lng
            tech.last_position_at = entry.last_position_at
        for platform, external in identities.items():
            # One id per platform and person: a new id replaces the old one (the outbox looks it up).
            current = (await session.execute(select(IdentityRow).where(
                col(IdentityRow.person_id) == entry.person_id, col(IdentityRow.platform) == platform))).scalars().all()
            for ident in current:
                if ident.external_id != external:
                    await session.delete(ident)
            if not any(ident.external_id == external for ident in current):
                session.add(IdentityRow(platform=platform, external_id=external, person_id=entry.person_id))
        platforms = [p for p in identities if p != "local"]
        if platforms and person.preferred_channel in (None, "local"):
            # Someone who never wrote to the bot is reached on the platform the import names;
            # once they write, the conversation switches to where they last spoke.
            person.preferred_channel = platforms[0]
        await session.flush()
        return created

    async def set_active(self, person_id: str, active: bool) -> bool:
        self._directory_changed()
        result = await (await self._connection()).execute(
            update(PersonRow).where(col(PersonRow.id) == person_id, col(PersonRow.role) == Role.TECHNICIAN.value)
            .values(active=active))
        return result.rowcount == 1

    async def set_on_duty(self, person_id: str, on_duty: bool) -> bool:
        self._directory_changed()
        result = await (await self._connection()).execute(
            update(TechnicianRow).where(col(TechnicianRow.person_id) == person_id).values(on_duty=on_duty))
        return result.rowcount == 1
