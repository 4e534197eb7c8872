"""SqlUnitOfWork: the core's UnitOfWork port on one SQLAlchemy async session (one transaction)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Row, bindparam, exists, func, insert, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased
from sqlmodel import col

from core.audit.chain import SEAL_ACTOR, SEAL_KIND, AuditKey, event_hash, head_mac, seal_payload
from core.cards import Card, Notification
from core.errors import Conflict, StaleRead
from core.lifecycle.photos import PhotoRecord
from core.model import AuditEvent, Person, Role, Ticket, TicketStatus
from core.repository import StoredCard, TimerRow
from storage.api_store import SqlHubStore
from storage.audit_keys import audit_key_for
from storage.masterdata import SqlMasterDataStore
from storage.outbox import offer_ticket, record_first_response, rows_queued
from storage.sqlite.prepared import hot
from storage.tables import (
    AuditEventRow,
    AuditHeadRow,
    CardRow,
    ConfigVersionRow,
    IdentityRow,
    OutboxRow,
    PersonRow,
    PhotoRow,
    TechnicianRow,
    TicketCounterRow,
    TicketRow,
    TimerRowTable,
)
from storage.technicians import SqlDispatchStore
from storage.transactions.connection import Transaction
from storage.transactions.shared import after_commit as run_after_commit
from storage.types import UtcDateTime
from storage.webhook_store import SqlWebhookOutbox

LOCAL_CHANNEL = "local"

log = logging.getLogger(__name__)
_FOREIGN_HEAD_REPORTED: list[bool] = []  # a head under another audit key is logged once per process


def ticket_from_row(row: TicketRow | Row[Any]) -> Ticket:
    # A mapped row, or a Core row of its columns (select(TicketRow) run on a connection).
    return Ticket(
        id=row.id,
        number=row.number,
        customer_id=row.customer_id,
        subject=row.subject,
        description=row.description,
        category=row.category,
        priority=row.priority,
        impact=row.impact,
        status=TicketStatus(row.status),
        assignee_id=row.assignee_id,
        needs_review=row.needs_review,
        site_lat=row.site_lat,
        site_lng=row.site_lng,
        store_id=row.store_id,
        asset_id=row.asset_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        first_response_at=row.first_response_at,
        closed_at=row.closed_at,
        response_due=row.response_due,
        resolution_due=row.resolution_due,
        version=row.version,
        data=dict(row.data or {}),
    )


def person_from_row(row: PersonRow | Row[Any]) -> Person:
    return Person(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        phone=row.phone,
        store_id=row.store_id,
        supervisor_id=row.supervisor_id,
        preferred_channel=row.preferred_channel,
        active=row.active,
    )


def _timer_from_row(row: Row[Any]) -> TimerRow:
    return TimerRow(id=row.id, kind=row.kind, ticket_number=row.ticket_key or None, due_at=row.due_at,
                    generation=row.generation, state=row.state, payload=dict(row.payload or {}))


_TICKET_FIELDS = (
    "customer_id", "subject", "description", "category", "priority", "impact", "assignee_id", "needs_review",
    "site_lat", "site_lng", "created_at", "updated_at", "first_response_at", "closed_at", "response_due",
    "resolution_due", "data", "store_id", "asset_id",
)

# Hot statements are built once and run with parameters on the transaction's connection: building a
# statement with .values(...) per call and running it through the ORM session cost several times the
# SQLite call itself (fault intake runs ~20 of them per report).
_INSERT_TICKET = hot(insert(TicketRow).returning(col(TicketRow.id)))
# first_response_at is recorded by the delivery of the first offer (storage/outbox.py) without a
# version bump: a save never writes NULL over it (COALESCE), so a command that read before keeps it.
_SAVE_TICKET = hot(update(TicketRow).where(col(TicketRow.number) == bindparam("w_number"),
                                           col(TicketRow.version) == bindparam("w_version"))
                   .values(first_response_at=func.coalesce(bindparam("w_first_response_at", type_=UtcDateTime()),
                                                           TicketRow.first_response_at)))
_INSERT_AUDIT = hot(insert(AuditEventRow))
_UPDATE_AUDIT_HEAD = hot(update(AuditHeadRow).where(col(AuditHeadRow.id) == 1))
_INSERT_OUTBOX = hot(insert(OutboxRow))
_INSERT_CARD = hot(insert(CardRow))
_CHANNEL_OF = hot(select(col(PersonRow.preferred_channel)).where(col(PersonRow.id) == bindparam("person_id")))
_PERSON_BY_IDENTITY = hot(select(PersonRow).join(IdentityRow, col(IdentityRow.person_id) == PersonRow.id).where(
    col(IdentityRow.platform) == bindparam("platform"), col(IdentityRow.external_id) == bindparam("external_id")))
_PERSON_BY_ID = hot(select(PersonRow).where(col(PersonRow.id) == bindparam("person_id")))
_AUDIT_HEAD_LOCKED = hot(select(col(AuditHeadRow.seq), col(AuditHeadRow.hash), col(AuditHeadRow.mac))
                         .where(col(AuditHeadRow.id) == 1)
                         .with_for_update())
_INSERT_PERSON = hot(insert(PersonRow))
_INSERT_IDENTITY = hot(insert(IdentityRow))
_ACTIVE_PEOPLE = hot(select(PersonRow).where(col(PersonRow.active).is_(True))
                     .order_by(col(PersonRow.id)))
_ACTIVE_PEOPLE_IN_ROLE = hot(_ACTIVE_PEOPLE.where(col(PersonRow.role) == bindparam("role")))


def _at_stores(person: Any, suffix: str = "") -> Any:
    """`person` (PersonRow or an alias) is at one of the stores (or, with `storeless`, at none)."""
    return or_(person.store_id.in_(bindparam("stores" + suffix, expanding=True)),
               person.store_id.is_(None) & bindparam("storeless" + suffix))


_OTHER_PERSON = aliased(PersonRow)
# A role's people at some stores and/or at none, or (`or_all`) everyone in the role when nobody is there: the
# supervisor chain's one read (a chain of 50 stores reads its few candidates, not 50 store managers, for every
# ticket that escalates; the last resort in the same round trip).
_ACTIVE_PEOPLE_IN_ROLE_AT = hot(_ACTIVE_PEOPLE_IN_ROLE.where(or_(
    _at_stores(PersonRow),
    bindparam("or_all") & ~exists().where(col(_OTHER_PERSON.role) == bindparam("role_2"),
                                          col(_OTHER_PERSON.active).is_(True),
                                          _at_stores(_OTHER_PERSON, "_2")))))
RECENT_TICKETS_LIMIT = 200
# Intake reads it on every report: on the (customer_id, created_at) index.
_RECENT_TICKETS = hot(select(TicketRow).where(
    col(TicketRow.customer_id) == bindparam("customer_id"),
    col(TicketRow.created_at) >= bindparam("since", type_=UtcDateTime()),
).order_by(col(TicketRow.created_at).desc(), col(TicketRow.id).desc()).limit(RECENT_TICKETS_LIMIT))
_PEOPLE_BY_PHONE = hot(select(PersonRow).where(col(PersonRow.phone) == bindparam("phone")).order_by(col(PersonRow.id)))
# Every customer report takes it (the per-sender limit): a no-op on SQLite, which serialises writers anyway.
_LOCK_PERSON = hot(select(col(PersonRow.id)).where(col(PersonRow.id) == bindparam("person_id")).with_for_update())
_TIMER_COLUMNS = (col(TimerRowTable.id), col(TimerRowTable.kind), col(TimerRowTable.ticket_key),
                  col(TimerRowTable.due_at), col(TimerRowTable.generation), col(TimerRowTable.state),
                  col(TimerRowTable.payload))
_GET_TIMER = hot(select(*_TIMER_COLUMNS).where(col(TimerRowTable.kind) == bindparam("kind"),
                                              col(TimerRowTable.ticket_key) == bindparam("ticket_key")))
_GET_TIMER_LOCKED = hot(_GET_TIMER.with_for_update())
_PEEK_TIMER = hot(select(*_TIMER_COLUMNS).where(col(TimerRowTable.id) == bindparam("timer_id")))
# The claim is one UPDATE: it takes the row lock, and on PostgreSQL re-checks its WHERE on the row as a
# concurrent transaction committed it, so a generation bumped meanwhile claims nothing.
_CLAIM_TIMER = hot(update(TimerRowTable).where(
    col(TimerRowTable.id) == bindparam("w_id"), col(TimerRowTable.generation) == bindparam("w_generation"),
    col(TimerRowTable.state) == "pending", col(TimerRowTable.due_at) <= bindparam("w_now", type_=UtcDateTime()),
).values(state="fired", fired_at=bindparam("fired_at", type_=UtcDateTime())).returning(*_TIMER_COLUMNS))
_CANCEL_TIMERS = hot(update(TimerRowTable).where(
    col(TimerRowTable.ticket_key) == bindparam("w_ticket_key"), col(TimerRowTable.state) == "pending"
).values(state="cancelled", generation=TimerRowTable.generation + 1))
_CANCEL_TIMER_KINDS = hot(_CANCEL_TIMERS.where(
    col(TimerRowTable.kind).in_(bindparam("w_kinds", expanding=True))))
_LATEST_CONFIG = hot(select(col(ConfigVersionRow.version), col(ConfigVersionRow.payload))
                     .where(col(ConfigVersionRow.kind) == bindparam("kind"))
                     .order_by(col(ConfigVersionRow.version).desc()).limit(1))
_NEWER_CONFIG = aliased(ConfigVersionRow)
_LATEST_CONFIGS = hot(select(col(ConfigVersionRow.kind), col(ConfigVersionRow.version), col(ConfigVersionRow.payload))
                      .where(col(ConfigVersionRow.kind).in_(bindparam("kinds", expanding=True)),
                             col(ConfigVersionRow.version) == select(func.max(col(_NEWER_CONFIG.version)))
                             .where(col(_NEWER_CONFIG.kind) == col(ConfigVersionRow.kind)).scalar_subquery()))
_UPSERTS: dict[str, tuple[Any, Any]] = {}  # dialect name → (ticket counter upsert, timer upsert)


_EXTERNAL_ID = hot(select(col(IdentityRow.external_id)).where(
    col(IdentityRow.person_id) == bindparam("person_id"), col(IdentityRow.platform) == bindparam("platform")))

def _upserts(dialect: str) -> tuple[Any, Any]:
    if dialect not in _UPSERTS:
        upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        counter = upsert(TicketCounterRow).on_conflict_do_update(
            index_elements=["day"], set_={"last": TicketCounterRow.last + 1}).returning(col(TicketCounterRow.last))
        # A new timer row at generation 1, or the existing one rescheduled with the next generation
        # (the row lock the upsert takes serialises concurrent reschedules like SELECT ... FOR UPDATE did).
        new_timer = upsert(TimerRowTable)
        timer = new_timer.on_conflict_do_update(
            index_elements=["kind", "ticket_key"],
            set_={"generation": TimerRowTable.generation + 1, "due_at": new_timer.excluded.due_at, "state": "pending",
                  # null(), not None: a None here is a bound parameter, which makes SQLAlchemy send a
                  # multi-row upsert (schedule_timers) one row at a time (sqlalchemy issue #13130).
                  "payload": new_timer.excluded.payload, "fired_at": null()},
        ).returning(col(TimerRowTable.id), col(TimerRowTable.generation),
                    col(TimerRowTable.kind))  # kind: to match several rows
        _UPSERTS[dialect] = (hot(counter), hot(timer))
    return _UPSERTS[dialect]


@dataclass(slots=True)
class _UnwrittenTicket:
    ticket: Ticket  # its state as it will be written
    stored_version: int | None  # the version the row has in the database; None: a new ticket


class SqlUnitOfWork:
    """The core's UnitOfWork on one transaction (storage/transactions/connection.py): Core statements on its
    connection, an ORM session only for the few methods that load or add mapped rows."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, channels: frozenset[str] | None = None,
                 savepoint: bool = True) -> None:
        """`savepoint=False`: for lookups (and at most one write) inside a shared transaction, which
        need no savepoint of their own to be undone alone (see Transaction)."""
        self._transaction = Transaction(sessions, savepoint=savepoint)
        self._connection = self._transaction.connection  # begins a transaction (again after a commit)
        self._orm = self._transaction.orm
        # Channels this deployment delivers on (settings-wide, the same in every process). A person
        # whose preferred channel is not among them is answered in the playground channel rather
        # than queued for a platform nobody sends to. None: trust the preferred channel.
        self._deliverable = channels
        # Timers (re)scheduled in this transaction, for the alarm clock after commit (see TicketService).
        self.scheduled_timers: list[TimerRow] = []
        self.committed = False
        # Tickets this transaction created: no timer of theirs exists beyond those it scheduled.
        self._created_tickets: set[str] = set()
        # People this transaction added, as added (get_person need not read them back).
        self._added_people: dict[str, Person] = {}
        self._webhooks: SqlWebhookOutbox | None = None  # issue 23: see webhooks()
        # The audit head once this transaction holds its lock: later appends need not read it again.
        self._audit_head: tuple[int, str] | None = None
        # The head row is written once, at commit, not after every event: other transactions see the
        # last committed head either way (no other appender gets past the row lock), and this
        # transaction's readers ask us (dispatch_store's chain_head).
        self._audit_head_dirty = False
        # Audit events appended and not inserted yet, in chain order: they go in as one statement at
        # commit (one round trip on PostgreSQL, not one per event), or before this transaction reads
        # the chain (audit_for_ticket; the dispatch store serves its catch-up from them: pending_audit).
        # Other transactions cannot tell: the head row stays locked until this one ends.
        self._pending_audit: list[dict[str, Any]] = []
        # Outbox rows wait for the commit and go in as one statement: nothing reads the outbox
        # inside a command's transaction, and a rollback must drop them anyway.
        self._outbox_rows: list[dict[str, Any]] = []
        # preferred_channel per person, for enqueue (several notifications per command go to one person).
        self._channels: dict[str, str | None] = {}
        # Tickets saved in this transaction and not written yet (see _write_tickets), by number.
        self._unwritten: dict[str, _UnwrittenTicket] = {}
        # (ticket, at) of dispatch offers queued for the playground: readable there, so delivered, at commit.
        self._local_offers: list[tuple[str, datetime]] = []

    async def __aenter__(self) -> SqlUnitOfWork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._pending_audit.clear()  # not committed: undone with the transaction
        await self._transaction.end(commit=False)

    async def commit(self) -> None:
        queued = bool(self._outbox_rows)
        await self._write_deferred()
        await self._transaction.end(commit=True)
        self.committed = True
        if queued:  # the dispatcher delivers now (after the group's COMMIT, in a shared transaction)
            await run_after_commit(rows_queued)
        # A new transaction begins with the next statement (on SQLite the connection went back to the
        # pool meanwhile): nothing cached for the old one (the audit head it had locked) holds.
        self._audit_head = None
        self._channels.clear()
        self._created_tickets.clear()  # committed: others may schedule their timers now
        self._added_people.clear()  # committed: others may change them now
        self._unwritten.clear()  # written by _write_deferred

    async def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        await run_after_commit(callback)

    async def _write_deferred(self) -> None:
        # Offers queued for the playground are delivered by this commit: their ticket's first response.
        # A ticket this transaction created gets it with its INSERT (one statement, not an INSERT and
        # an UPDATE); others were saved by dispatch and are updated once written: row locks this
        # transaction holds already (ticket before audit head).
        offers, self._local_offers = self._local_offers, []
        updates = []
        for number, at in offers:
            unwritten = self._unwritten.get(number)
            if unwritten is None or unwritten.stored_version is not None:
                updates.append((number, at))
            elif unwritten.ticket.first_response_at is None:  # the first offer delivered is the first response
                unwritten.ticket.first_response_at = at
        await self._write_tickets()
        for number, at in updates:
            await record_first_response(await self._connection(), number, at)
        await self._write_audit()
        if not (self._audit_head_dirty or self._outbox_rows):
            return
        conn = await self._connection()
        if self._audit_head_dirty and self._audit_head is not None:
            seq, digest = self._audit_head
            await conn.execute(_UPDATE_AUDIT_HEAD, {"seq": seq, "hash": digest,
                                                    "mac": head_mac(self._audit_key(), seq, digest)})
            self._audit_head_dirty = False
        if self._outbox_rows:
            rows, self._outbox_rows = self._outbox_rows, []
            await conn.execute(_INSERT_OUTBOX, rows)

    @property
    def dialect(self) -> str:
        return str(self._transaction.engine.dialect.name)

    # --- tickets ---
    async def next_ticket_sequence(self, day: date) -> int:
        counter, _ = _upserts(self.dialect)
        return int((await (await self._connection()).execute(counter, {"day": day, "last": 1})).scalar_one())

    # Tickets are written once per transaction, at commit or before this transaction reads tickets:
    # a new ticket is saved again by the SLA clock and by dispatch within its command, which made an
    # INSERT and two UPDATEs (each rewriting every index of the table) where one INSERT does.
    # Nothing else in the transaction can tell: its ticket reads go through here (and the dispatch
    # store, which is given the unwritten state), and other transactions never saw the rows before
    # the commit anyway. A stale save still fails with Conflict, here or when written.
    async def add_ticket(self, ticket: Ticket) -> Ticket:
        ticket.id = None  # known once written
        ticket.version = 1
        self._unwritten[ticket.number] = _UnwrittenTicket(ticket, stored_version=None)
        self._created_tickets.add(ticket.number)
        return ticket

    async def save_ticket(self, ticket: Ticket) -> None:
        unwritten = self._unwritten.get(ticket.number)
        if unwritten is None:
            self._unwritten[ticket.number] = _UnwrittenTicket(ticket, stored_version=ticket.version)
        elif unwritten.ticket.version != ticket.version:
            raise Conflict("工单刚刚被其他人更新了，请重试。", number=ticket.number)
        else:
            unwritten.ticket = ticket
        ticket.version += 1

    async def _write_tickets(self) -> None:
        if not self._unwritten:
            return
        conn = await self._connection()
        unwritten, self._unwritten = self._unwritten, {}
        for item in unwritten.values():
            ticket = item.ticket
            values = {f: getattr(ticket, f) for f in _TICKET_FIELDS}
            values.update(status=ticket.status.value, version=ticket.version)
            if item.stored_version is None:
                # RETURNING id of a row just inserted: never NULL (TicketRow.id is `int | None` for unsaved rows).
                ticket.id = int((await conn.execute(
                    _INSERT_TICKET, {**values, "number": ticket.number})).scalar_one())  # type: ignore[arg-type]
                continue
            values.update(w_number=ticket.number, w_version=item.stored_version,
                          w_first_response_at=values.pop("first_response_at"))
            if (await conn.execute(_SAVE_TICKET, values)).rowcount != 1:
                raise Conflict("工单刚刚被其他人更新了，请重试。", number=ticket.number)

    def unwritten_tickets(self) -> dict[str, Ticket]:
        """Tickets saved in this transaction and not written yet, as they will be written."""
        return {number: item.ticket for number, item in self._unwritten.items()}

    async def get_ticket(self, number: str, *, lock: bool = False) -> Ticket | None:
        await self._write_tickets()
        stmt = select(TicketRow).where(col(TicketRow.number) == number)
        if lock:
            stmt = stmt.with_for_update()
        row = (await (await self._connection()).execute(stmt)).one_or_none()
        return ticket_from_row(row) if row else None

    async def list_tickets(
        self,
        *,
        customer_id: str | None = None,
        assignee_id: str | None = None,
        statuses: set[TicketStatus] | None = None,
        limit: int = 50,
    ) -> list[Ticket]:
        await self._write_tickets()
        stmt = select(TicketRow).order_by(col(TicketRow.id).desc()).limit(limit)
        if customer_id is not None:
            stmt = stmt.where(col(TicketRow.customer_id) == customer_id)
        if assignee_id is not None:
            stmt = stmt.where(col(TicketRow.assignee_id) == assignee_id)
        if statuses:
            stmt = stmt.where(col(TicketRow.status).in_([s.value for s in statuses]))
        return [ticket_from_row(r) for r in await (await self._connection()).execute(stmt)]

    async def recent_tickets(self, customer_id: str, since: datetime) -> list[Ticket]:
        if customer_id in self._added_people and not self._created_tickets:
            # Added by this transaction, which has created no ticket yet: nobody can have filed one
            # for them (a ticket's customer is a person who existed when it was made; people are
            # never deleted). The report of every new sender would read an empty list.
            return []
        await self._write_tickets()
        rows = await (await self._connection()).execute(_RECENT_TICKETS, {"customer_id": customer_id, "since": since})
        return [ticket_from_row(r) for r in rows]

    # --- people ---
    async def get_person(self, person_id: str) -> Person | None:
        added = self._added_people.get(person_id)
        if added is not None:
            return replace(added)
        row = (await (await self._connection()).execute(_PERSON_BY_ID, {"person_id": person_id})).one_or_none()
        return self._seen(person_from_row(row)) if row else None

    def _seen(self, person: Person) -> Person:
        # What enqueue needs to know about a recipient we have just read anyway.
        self._channels[person.id] = person.preferred_channel
        return person

    async def person_by_identity(self, platform: str, external_id: str) -> Person | None:
        row = (await (await self._connection()).execute(
            _PERSON_BY_IDENTITY, {"platform": platform, "external_id": external_id})).one_or_none()
        return self._seen(person_from_row(row)) if row else None

    async def external_id(self, person_id: str, platform: str) -> str | None:
        # Built once (issue 23: asked for every ticket registered for a customer, API v1 included).
        row = (await (await self._connection()).execute(
            _EXTERNAL_ID, {"person_id": person_id, "platform": platform})).first()
        return None if row is None else str(row[0])

    async def add_person(self, person: Person, identities: dict[str, str] | None = None) -> None:
        conn = await self._connection()
        await conn.execute(_INSERT_PERSON, {
            "id": person.id, "name": person.name, "role": person.role.value, "phone": person.phone,
            "store_id": person.store_id, "supervisor_id": person.supervisor_id,
            "preferred_channel": person.preferred_channel, "active": person.active, "created_at": None})
        if identities:
            rows = [{"platform": platform, "external_id": external, "person_id": person.id}
                    for platform, external in identities.items()]
            await conn.execute(_INSERT_IDENTITY, rows)
        self._channels[person.id] = person.preferred_channel  # what enqueue would read back
        self._added_people[person.id] = replace(person)

    async def save_person(self, person: Person) -> None:
        self._channels.pop(person.id, None)
        self._added_people.pop(person.id, None)
        await (await self._connection()).execute(
            update(PersonRow).where(col(PersonRow.id) == person.id).values(
                name=person.name, role=person.role.value, phone=person.phone, store_id=person.store_id,
                supervisor_id=person.supervisor_id, preferred_channel=person.preferred_channel,
                active=person.active)
        )

    async def link_identity(self, person_id: str, platform: str, external_id: str) -> None:
        self._channels.pop(person_id, None)
        session = await self._orm()
        row = await session.get(IdentityRow, (platform, external_id))
        if row is None:
            session.add(IdentityRow(platform=platform, external_id=external_id, person_id=person_id))
        else:
            row.person_id = person_id
        await session.flush()

    async def list_people(self, role: Role | None = None, *, stores: Iterable[str | None] | None = None,
                          or_all: bool = False) -> list[Person]:
        conn = await self._connection()
        if stores is not None and role is not None:
            wanted = set(stores)
            at = {"role": role.value, "stores": sorted(s for s in wanted if s), "storeless": None in wanted}
            rows = await conn.execute(_ACTIVE_PEOPLE_IN_ROLE_AT, {
                **at, **{f"{k}_2": v for k, v in at.items()}, "or_all": or_all})
        else:
            rows = await (conn.execute(_ACTIVE_PEOPLE) if role is None
                          else conn.execute(_ACTIVE_PEOPLE_IN_ROLE, {"role": role.value}))
        return [self._seen(person_from_row(r)) for r in rows]

    async def people_by_phone(self, phone: str) -> list[Person]:
        rows = await (await self._connection()).execute(_PEOPLE_BY_PHONE, {"phone": phone})
        return [self._seen(person_from_row(r)) for r in rows]

    async def lock_person(self, person_id: str) -> None:
        if person_id in self._added_people:
            return  # inserted by this transaction: no other can see, let alone lock, the row before it commits
        await (await self._connection()).execute(_LOCK_PERSON, {"person_id": person_id})

    # --- technicians ---
    async def update_technician_position(self, person_id: str, lat: float, lng: float, at: datetime) -> bool:
        result = await (await self._connection()).execute(update(TechnicianRow).where(
            col(TechnicianRow.person_id) == person_id).values(
            last_lat=lat, last_lng=lng, last_position_at=at))
        return result.rowcount == 1

    async def add_technician_rating(self, person_id: str, rating: int) -> None:
        await (await self._connection()).execute(update(TechnicianRow).where(
            col(TechnicianRow.person_id) == person_id).values(
            rating_sum=TechnicianRow.rating_sum + rating, rating_count=TechnicianRow.rating_count + 1))

    def dispatch_store(self) -> SqlDispatchStore:
        return SqlDispatchStore(self._connection, self._orm, audit_head=lambda: self._audit_head,
                                pending_audit=lambda: self._pending_audit, write_audit=self._write_audit,
                                # its writes (technicians) may change people this transaction added
                                directory_changed=self._added_people.clear,
                                unwritten_tickets=self.unwritten_tickets, write_tickets=self._write_tickets)

    def masterdata(self) -> SqlMasterDataStore:
        return SqlMasterDataStore(self._connection, write_tickets=self._write_tickets,
                                  # customers are people: what this transaction cached of them goes stale
                                  people_changed=self._forget_people)

    def webhooks(self) -> SqlWebhookOutbox:
        """Issue 23: the webhook outbox on this transaction (core/hub/webhook_events.py); one per unit
        of work, so the subscriptions are read once however many events it audits."""
        if self._webhooks is None:
            self._webhooks = SqlWebhookOutbox(self._connection)
        return self._webhooks

    def hub(self) -> SqlHubStore:
        """Issue 23: idempotency keys and external refs on this transaction (core/hub/store.py)."""
        return SqlHubStore(self._connection)

    def _forget_people(self) -> None:
        self._added_people.clear()
        self._channels.clear()

    # --- photos ---
    async def add_photo(self, photo: PhotoRecord) -> None:
        session = await self._orm()
        session.add(PhotoRow(ticket_number=photo.ticket_number, uploader_id=photo.uploader_id,
                             sha256=photo.sha256, path=photo.path, size=photo.size, purpose=photo.purpose,
                             created_at=photo.created_at))
        await session.flush()

    async def list_photos(self, ticket_number: str) -> list[PhotoRecord]:
        stmt = select(PhotoRow).where(col(PhotoRow.ticket_number) == ticket_number).order_by(col(PhotoRow.id))
        return [PhotoRecord(ticket_number=r.ticket_number, uploader_id=r.uploader_id, sha256=r.sha256, path=r.path,
                            size=r.size, purpose=r.purpose, created_at=r.created_at)
                for r in await (await self._connection()).execute(stmt)]

    # --- audit ---
    async def append_audit(
        self, *, kind: str, actor_id: str, at: datetime, payload: dict[str, Any], ticket_number: str | None
    ) -> None:
        head = self._audit_head or await self._lock_audit_head(at)
        self._audit_head = await self._insert_audit(head, kind=kind, actor_id=actor_id, at=at, payload=payload,
                                                    ticket_number=ticket_number)
        self._audit_head_dirty = True

    async def seal_legacy_audit(self, at: datetime) -> bool:
        """Seal a chain written before audit keys now (at start) rather than at its next event; True
        when it did (commit then). See core/audit/chain.py."""
        if self._audit_head is None:
            self._audit_head = await self._lock_audit_head(at)
        return self._audit_head_dirty

    async def lock_audit_chain(self, at: datetime) -> None:
        if self._audit_head is None:
            self._audit_head = await self._lock_audit_head(at)

    def _audit_key(self) -> AuditKey:
        return audit_key_for(self._transaction.engine)

    async def _insert_audit(self, head: tuple[int, str], *, kind: str, actor_id: str, at: datetime,
                            payload: dict[str, Any], ticket_number: str | None) -> tuple[int, str]:
        seq = head[0] + 1
        digest = event_hash(self._audit_key(), prev_hash=head[1], seq=seq, kind=kind, actor_id=actor_id, at=at,
                            ticket_number=ticket_number, payload=payload)
        # A copy of the payload as hashed now: the caller may change its dict (or a list in it) before
        # the commit writes the row, which would then not verify. JSON in, JSON out: what the row stores.
        snapshot = orjson.loads(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS))
        self._pending_audit.append({"seq": seq, "ticket_number": ticket_number, "actor_id": actor_id, "at": at,
                                    "kind": kind, "payload": snapshot, "prev_hash": head[1], "hash": digest})
        return seq, digest

    async def _write_audit(self) -> None:
        if self._pending_audit:
            rows, self._pending_audit = self._pending_audit, []
            await (await self._connection()).execute(_INSERT_AUDIT, rows)

    async def _lock_audit_head(self, at: datetime) -> tuple[int, str]:
        # Locking the head row serialises appenders across processes (PostgreSQL) until this transaction
        # ends, so the head stays ours to cache; SQLite already holds the write lock (BEGIN IMMEDIATE).
        conn = await self._connection()
        head = (await conn.execute(_AUDIT_HEAD_LOCKED)).first()
        if head is None:
            # The very first event: two first appenders must not both start at seq 1, so the head row
            # is created race-free (the loser waits for the winner's commit) and then locked.
            upsert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            await conn.execute(upsert(AuditHeadRow).values(id=1, seq=0, hash="0" * 64)
                                       .on_conflict_do_nothing(index_elements=["id"]))
            head = (await conn.execute(_AUDIT_HEAD_LOCKED)).one()
        seq, digest, mac = int(head[0]), str(head[1]), head[2]
        if mac is None and seq > 0:
            # Events from before audit keys: the first keyed event seals them (its MAC covers their last hash).
            log.warning("sealing the %s audit events written before audit keys (the seal is event #%s)", seq, seq + 1)
            self._audit_head_dirty = True
            return await self._insert_audit((seq, digest), kind=SEAL_KIND, actor_id=SEAL_ACTOR, at=at,
                                            payload=seal_payload(seq, digest), ticket_number=None)
        if mac is not None and not _FOREIGN_HEAD_REPORTED and mac != head_mac(self._audit_key(), seq, digest):
            _FOREIGN_HEAD_REPORTED.append(True)
            log.error("the audit chain's head does not carry this process's audit key: AUDIT_KEY differs from the "
                      "key the chain was written with (several hosts must share one AUDIT_KEY), or the head was "
                      "tampered with; run `ticketbot audit verify`")
        return seq, digest

    async def audit_for_ticket(self, number: str) -> list[AuditEvent]:
        await self._write_audit()
        stmt = select(AuditEventRow).where(col(AuditEventRow.ticket_number) == number).order_by(col(AuditEventRow.seq))
        return [
            AuditEvent(kind=r.kind, actor_id=r.actor_id, at=r.at, payload=r.payload, ticket_number=r.ticket_number,
                       id=r.seq, prev_hash=r.prev_hash, hash=r.hash)
            for r in await (await self._connection()).execute(stmt)
        ]

    # --- outbox ---
    async def enqueue(self, notification: Notification, *, at: datetime, reply_context: dict[str, Any] | None) -> None:
        recipient = notification.recipient_id
        conn = await self._connection()
        if recipient not in self._channels:
            self._channels[recipient] = (await conn.execute(_CHANNEL_OF, {"person_id": recipient})).scalar_one_or_none()
        channel = self._channels[recipient] or LOCAL_CHANNEL
        if self._deliverable is not None and channel not in self._deliverable:
            channel = LOCAL_CHANNEL
        local = channel == LOCAL_CHANNEL
        if local and (offered := offer_ticket(notification)) is not None:
            self._local_offers.append((offered, at))
        values = dict(
            recipient_id=recipient,
            channel=channel,
            payload=notification.to_dict(),
            reply_context=reply_context or {},
            # The playground reads its messages straight from the outbox: delivered on commit.
            status="sent" if local else "pending",
            created_at=at,
            next_attempt_at=at,
            sent_at=at if local else None,
            attempts=0,
        )
        self._outbox_rows.append(values)

    # --- cards ---
    async def save_card(self, card: Card, *, recipient_id: str, ticket_number: str | None, at: datetime) -> None:
        await (await self._connection()).execute(_INSERT_CARD, {
            "id": card.id, "kind": card.kind.value, "ticket_number": ticket_number, "recipient_id": recipient_id,
            "payload": card.to_dict(), "state": "open", "created_at": at, "platform_refs": {}})

    async def get_card(self, card_id: str, *, lock: bool = False) -> StoredCard | None:
        stmt = select(CardRow).where(col(CardRow.id) == card_id)
        if lock:
            stmt = stmt.with_for_update()
        row = (await (await self._connection()).execute(stmt)).one_or_none()
        if row is None:
            return None
        return StoredCard(card=Card.from_dict(row.payload), recipient_id=row.recipient_id,
                          ticket_number=row.ticket_number, state=row.state, created_at=row.created_at,
                          used_by=row.used_by, used_action=row.used_action)

    async def close_card(self, card_id: str, *, card: Card, by: str, action: str, at: datetime) -> bool:
        result = await (await self._connection()).execute(
            update(CardRow).where(col(CardRow.id) == card_id, col(CardRow.state) == "open").values(
                state="used", used_at=at, used_by=by, used_action=action, payload=card.to_dict())
        )
        return result.rowcount == 1

    # --- timers ---
    async def schedule_timer(
        self, *, kind: str, ticket_number: str | None, due_at: datetime, payload: dict[str, Any]
    ) -> TimerRow:
        _, upsert = _upserts(self.dialect)
        timer_id, generation, _ = (await (await self._connection()).execute(upsert, {
            "kind": kind, "ticket_key": ticket_number or "", "due_at": due_at, "generation": 1, "state": "pending",
            "payload": payload, "fired_at": None})).one()
        timer = TimerRow(id=int(timer_id), kind=kind, ticket_number=ticket_number, due_at=due_at,
                         generation=int(generation), state="pending", payload=payload)
        self.scheduled_timers.append(timer)
        return timer

    async def schedule_timers(
        self, *, ticket_number: str | None, timers: Sequence[tuple[str, datetime, dict[str, Any]]]
    ) -> list[TimerRow]:
        if len({kind for kind, _, _ in timers}) != len(timers):
            # One statement may not upsert a row twice (PostgreSQL refuses it in a multi-row upsert).
            raise ValueError("schedule_timers: one timer per kind")
        if len(timers) < 2:
            return [await self.schedule_timer(kind=kind, ticket_number=ticket_number, due_at=due_at, payload=payload)
                    for kind, due_at, payload in timers]
        rows = [{"kind": kind, "ticket_key": ticket_number or "", "due_at": due_at, "generation": 1,
                 "state": "pending", "payload": payload, "fired_at": None} for kind, due_at, payload in timers]
        # One multi-row statement; RETURNING comes back in no promised order, so rows are matched by kind.
        result = await (await self._connection()).execute(_upserts(self.dialect)[1], rows)
        stored = {str(kind): (int(timer_id), int(generation)) for timer_id, generation, kind in result.all()}
        scheduled = [TimerRow(id=stored[kind][0], kind=kind, ticket_number=ticket_number, due_at=due_at,
                              generation=stored[kind][1], state="pending", payload=payload)
                     for kind, due_at, payload in timers]
        self.scheduled_timers.extend(scheduled)
        return scheduled

    async def get_timer(self, kind: str, ticket_number: str | None, *, lock: bool = False) -> TimerRow | None:
        if ticket_number in self._created_tickets and not any(
                t.ticket_number == ticket_number and t.kind == kind for t in self.scheduled_timers):
            return None  # a ticket this transaction created has only the timers it scheduled (see cancel_timers)
        row = (await (await self._connection()).execute(
            _GET_TIMER_LOCKED if lock else _GET_TIMER, {"kind": kind, "ticket_key": ticket_number or ""})
        ).one_or_none()
        if row is None:
            return None
        return TimerRow(id=row.id, kind=row.kind, ticket_number=row.ticket_key or None, due_at=row.due_at,
                        generation=row.generation, state=row.state, payload=dict(row.payload or {}))

    async def cancel_timers(self, ticket_number: str, kinds: set[str] | None = None) -> int:
        if ticket_number in self._created_tickets and not any(
                t.ticket_number == ticket_number and (not kinds or t.kind in kinds) for t in self.scheduled_timers):
            # A ticket this transaction created has only the timers it scheduled (its number is new).
            return 0
        conn = await self._connection()
        if kinds:
            result = await conn.execute(_CANCEL_TIMER_KINDS, {"w_ticket_key": ticket_number, "w_kinds": sorted(kinds)})
        else:
            result = await conn.execute(_CANCEL_TIMERS, {"w_ticket_key": ticket_number})
        return int(result.rowcount or 0)

    async def peek_timer(self, timer_id: int) -> TimerRow | None:
        row = (await (await self._connection()).execute(_PEEK_TIMER, {"timer_id": timer_id})).one_or_none()
        return _timer_from_row(row) if row else None

    async def claim_timer(self, timer_id: int, generation: int, now: datetime) -> TimerRow | None:
        row = (await (await self._connection()).execute(_CLAIM_TIMER, {
            "w_id": timer_id, "w_generation": generation, "w_now": now, "fired_at": now})).one_or_none()
        return _timer_from_row(row) if row else None

    # --- config versions ---
    async def latest_config(self, kind: str) -> tuple[int, dict[str, Any]] | None:
        row = (await (await self._connection()).execute(_LATEST_CONFIG, {"kind": kind})).one_or_none()
        return (int(row[0]), row[1]) if row else None

    async def latest_configs(self, kinds: Sequence[str]) -> dict[str, tuple[int, dict[str, Any]] | None]:
        found: dict[str, tuple[int, dict[str, Any]] | None] = dict.fromkeys(kinds)
        for kind, version, payload in await (await self._connection()).execute(
                _LATEST_CONFIGS, {"kinds": sorted(set(kinds))}):
            found[str(kind)] = (int(version), payload)
        return found

    async def save_config(self, kind: str, payload: dict[str, Any], *, actor_id: str, note: str, at: datetime,
                          based_on: int | None = None) -> int:
        session = await self._orm()
        current = (await session.execute(
            select(func.max(ConfigVersionRow.version)).where(col(ConfigVersionRow.kind) == kind))).scalar_one()
        version = int(current or 0) + 1
        # PostgreSQL (READ COMMITTED) lets another admin's version land between our read of the
        # config and this insert: saving would silently drop their change.
        if based_on is not None and version != based_on + 1:
            raise StaleRead(_STALE_CONFIG, kind=kind, based_on=based_on, latest=version - 1)
        session.add(ConfigVersionRow(kind=kind, version=version, payload=payload, actor_id=actor_id,
                                     note=note, created_at=at))
        try:
            await session.flush()
        except IntegrityError as error:  # the other writer has not committed yet: (kind, version) collides
            raise StaleRead(_STALE_CONFIG, kind=kind, based_on=based_on, latest=version) from error
        return version

    async def config_history(self, kind: str, limit: int = 20) -> list[dict[str, Any]]:
        stmt = (select(ConfigVersionRow).where(col(ConfigVersionRow.kind) == kind)
                .order_by(col(ConfigVersionRow.version).desc()).limit(limit))
        return [
            {"version": r.version, "actor_id": r.actor_id, "note": r.note, "created_at": r.created_at.isoformat()}
            for r in await (await self._connection()).execute(stmt)
        ]

    async def config_version(self, kind: str, version: int) -> dict[str, Any] | None:
        stmt = select(ConfigVersionRow).where(col(ConfigVersionRow.kind) == kind,
                                              col(ConfigVersionRow.version) == version)
        row = (await (await self._connection()).execute(stmt)).one_or_none()
        return row.payload if row else None


_STALE_CONFIG = "配置刚被其他管理员修改，这次修改没有保存。请查看最新配置后重试。"


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff for outbox/inbox retries: 2, 4, 8 ... capped at 10 minutes."""
    return timedelta(seconds=min(600, 2 ** max(1, attempts)))
