"""The persistence port. storage/ implements it with sqlmodel on SQLite or PostgreSQL.

One unit of work is one database transaction: everything a command changes (ticket,
audit events, outbox rows, cards, timers) commits together or not at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from core.cards import Card, Notification
from core.model import AuditEvent, Person, Role, Ticket, TicketStatus

if TYPE_CHECKING:
    # The port names the records its capabilities persist; for typing only, so the kernel loads
    # without them (the import-layer test allows exactly these upward references).
    from core.dispatch.store import DispatchStore
    from core.lifecycle.photos import PhotoRecord
    from core.masterdata.store import MasterDataStore


@dataclass(slots=True)
class StoredCard:
    card: Card
    recipient_id: str
    ticket_number: str | None
    state: str  # "open" or "used"
    created_at: datetime
    used_by: str | None = None
    used_action: str | None = None


@dataclass(slots=True)
class TimerRow:
    id: int
    kind: str
    ticket_number: str | None
    due_at: datetime
    generation: int
    state: str  # pending, fired, cancelled
    payload: dict[str, Any]


class UnitOfWork(Protocol):
    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def commit(self) -> None: ...

    async def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` once what this unit of work committed is durable: at once, or, when it
        is part of a larger transaction (storage's shared transaction), once that commits."""
        ...

    # --- tickets ---
    async def next_ticket_sequence(self, day: date) -> int: ...

    async def add_ticket(self, ticket: Ticket) -> Ticket: ...

    async def save_ticket(self, ticket: Ticket) -> None:
        """Write back; raises core.errors.Conflict when someone saved it meanwhile."""
        ...

    async def get_ticket(self, number: str, *, lock: bool = False) -> Ticket | None: ...

    async def list_tickets(
        self,
        *,
        customer_id: str | None = None,
        assignee_id: str | None = None,
        statuses: set[TicketStatus] | None = None,
        limit: int = 50,
    ) -> list[Ticket]: ...

    async def recent_tickets(self, customer_id: str, since: datetime) -> list[Ticket]:
        """The customer's tickets created at or after `since`, newest first (at most 200): what intake
        reads on every report (follow-ups, the per-sender limit)."""
        ...

    # --- people ---
    async def get_person(self, person_id: str) -> Person | None: ...

    async def person_by_identity(self, platform: str, external_id: str) -> Person | None: ...

    async def external_id(self, person_id: str, platform: str) -> str | None: ...

    async def add_person(self, person: Person, identities: dict[str, str] | None = None) -> None: ...

    async def save_person(self, person: Person) -> None: ...

    async def link_identity(self, person_id: str, platform: str, external_id: str) -> None:
        """Map a platform user id to an existing person (replacing an older mapping of that id)."""
        ...

    async def list_people(self, role: Role | None = None, *, stores: Iterable[str | None] | None = None,
                          or_all: bool = False) -> list[Person]:
        """The active people (of `role`), by id; with `role` and `stores`: only those whose store is one of
        `stores` (None in it: those without a store) — or, with `or_all`, everyone in the role when nobody
        is at those stores."""
        ...

    async def people_by_phone(self, phone: str) -> list[Person]:
        """Everyone whose stored phone is exactly `phone` (normalised by the caller), oldest id first."""
        ...

    async def lock_person(self, person_id: str) -> None:
        """Hold this person's row until the transaction ends (intake: one report of a customer at a
        time, across processes, so the per-sender limit counts what the previous one committed).
        Taken before any ticket or the audit head: nothing that holds those locks a customer."""
        ...

    # --- technicians ---
    async def update_technician_position(self, person_id: str, lat: float, lng: float, at: datetime) -> bool:
        """Record a technician's last known position; False when the person is no technician."""
        ...

    async def add_technician_rating(self, person_id: str, rating: int) -> None: ...

    def dispatch_store(self) -> DispatchStore:
        """The technician directory (dispatch's port) on this unit of work's transaction."""
        ...

    def masterdata(self) -> MasterDataStore:
        """Stores, teams, customers, assets and contracts on this unit of work's transaction."""
        ...

    # --- photos (evidence; the bytes are stored outside, by hash) ---
    async def add_photo(self, photo: PhotoRecord) -> None: ...

    async def list_photos(self, ticket_number: str) -> list[PhotoRecord]: ...

    # --- audit (append-only, hash-chained) ---
    async def append_audit(
        self, *, kind: str, actor_id: str, at: datetime, payload: dict[str, Any], ticket_number: str | None
    ) -> None: ...

    async def lock_audit_chain(self, at: datetime) -> None:
        """Take the chain head's lock now rather than at the first append (held to the end of the
        transaction): a transaction that appends and also locks rows other than its ticket's takes it
        first, the lock order of core/timers.py."""
        ...

    async def audit_for_ticket(self, number: str) -> list[AuditEvent]: ...

    # --- outbox ---
    async def enqueue(self, notification: Notification, *, at: datetime, reply_context: dict[str, Any] | None) -> None:
        """Queue a notification; it is stored with the transaction's commit (dropped on rollback)."""

    # --- cards ---
    async def save_card(self, card: Card, *, recipient_id: str, ticket_number: str | None, at: datetime) -> None: ...

    async def get_card(self, card_id: str, *, lock: bool = False) -> StoredCard | None: ...

    async def close_card(self, card_id: str, *, card: Card, by: str, action: str, at: datetime) -> bool:
        """Mark an open card used; False when it was already used (someone was first)."""
        ...

    # --- durable timers ---
    async def schedule_timer(
        self, *, kind: str, ticket_number: str | None, due_at: datetime, payload: dict[str, Any]
    ) -> TimerRow:
        """Create or move the (kind, ticket) timer; bumps its generation so old alarms go stale."""
        ...

    async def schedule_timers(
        self, *, ticket_number: str | None, timers: Sequence[tuple[str, datetime, dict[str, Any]]]
    ) -> list[TimerRow]:
        """`schedule_timer` for several (kind, due_at, payload) of one ticket at once, distinct kinds."""
        ...

    async def cancel_timers(self, ticket_number: str, kinds: set[str] | None = None) -> int: ...

    async def get_timer(self, kind: str, ticket_number: str | None, *, lock: bool = False) -> TimerRow | None:
        """The (kind, ticket) timer row in any state, or None."""
        ...

    # Timers (re)scheduled in this unit of work, in order; the service hands them to the alarm
    # clock (arq) after the commit.
    scheduled_timers: list[TimerRow]
    # Whether this unit of work has committed (a handler may commit part of its work, then fail).
    committed: bool

    async def peek_timer(self, timer_id: int) -> TimerRow | None:
        """The timer row as last committed, without a lock (FireTimer: which ticket to lock first)."""
        ...

    async def claim_timer(self, timer_id: int, generation: int, now: datetime) -> TimerRow | None:
        """Mark a pending, due timer of this generation fired (locked); None when stale or early.
        Lock order: a ticket before its timer rows (see core/timers.py)."""
        ...

    # --- versioned configuration (rules, SLA matrix, dispatch policy, workflow) ---
    async def latest_config(self, kind: str) -> tuple[int, dict[str, Any]] | None: ...

    async def latest_configs(self, kinds: Sequence[str]) -> dict[str, tuple[int, dict[str, Any]] | None]:
        """The newest version of each kind (None: never saved), in one read: what every new ticket
        needs of several kinds (the SLA matrix and calendar) costs one round trip, not one per kind."""
        ...

    async def save_config(self, kind: str, payload: dict[str, Any], *, actor_id: str, note: str, at: datetime,
                          based_on: int | None = None) -> int:
        """Append the next version of `kind`. `based_on` is the version the payload was derived from:
        when another version landed since, raises core.errors.StaleRead (the command is re-run)."""

    async def config_history(self, kind: str, limit: int = 20) -> list[dict[str, Any]]: ...

    async def config_version(self, kind: str, version: int) -> dict[str, Any] | None: ...
