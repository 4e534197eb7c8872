"""What dispatch needs from storage beyond the UnitOfWork: a port (storage/technicians.py implements
it on the unit of work's transaction) and the plain records that cross it.

Reads serve the per-process candidate index (core/dispatch/live.py): full loads, the audit chain
as a change feed, and the few facts that change without an audit event (positions). Writes serve
the admin commands and the bulk import (core/dispatch/admin.py). `card_is_free` lets the offer
expiry step aside while a technician's press holds the card (see core/dispatch/handlers.py).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from core.dispatch.geo import GeoPoint
from core.model import AuditEvent, TicketStatus

GENESIS_HASH = "0" * 64  # the audit chain's hash before its first event


@dataclass(frozen=True, slots=True)
class ChainMark:
    """A point in the audit chain: the last event's sequence number and hash."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Store:
    id: str
    name: str
    position: GeoPoint
    address: str = ""


@dataclass(frozen=True, slots=True)
class TechnicianEntry:
    """One technician as stored (people + technicians + their store), without the derived load."""

    person_id: str
    name: str
    active: bool = True
    phone: str | None = None
    store_id: str | None = None
    store_position: GeoPoint | None = None
    supervisor_id: str | None = None
    certifications: frozenset[str] = frozenset()
    skills: frozenset[str] = frozenset()
    excluded_categories: frozenset[str] = frozenset()
    last_position: GeoPoint | None = None
    last_position_at: datetime | None = None
    on_duty: bool = True
    max_load: int = 5
    rating: float | None = None  # mean of customer ratings; None before the first one
    rating_count: int = 0
    identities: dict[str, str] = field(default_factory=dict)  # platform -> external id (only when asked)


@dataclass(frozen=True, slots=True)
class PositionReport:
    person_id: str
    position: GeoPoint
    at: datetime


class DispatchStore(Protocol):
    async def card_is_free(self, card_id: str) -> bool:
        """Lock the card row unless another transaction holds it; False when it is held (never waits)."""
        ...

    # --- the audit chain as a change feed ---
    async def chain_head(self) -> ChainMark:
        """The newest event of the audit chain, locked for this transaction like an append does,
        so that no other transaction can add events until this one ends."""
        ...

    async def events_after(self, seq: int, limit: int) -> list[AuditEvent]:
        """Events with a sequence number above `seq`, oldest first, at most `limit` (with id = seq and hash)."""
        ...

    # --- reads for the candidate index ---
    async def entries(self, person_ids: Collection[str] | None = None, *,
                      identities: bool = False) -> list[TechnicianEntry]:
        """Technicians (role technician, active or not) by id, or all of them."""
        ...

    async def assignments(self, statuses: Collection[TicketStatus],
                          numbers: Collection[str] | None = None) -> dict[str, tuple[str | None, bool]]:
        """number -> (assignee, status in `statuses`) for the given tickets; without numbers, every
        ticket in `statuses` that has an assignee."""
        ...

    async def acceptances_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """(technician, when) of every offer_accepted event at or after `since`."""
        ...

    async def positions_since(self, since: datetime | None) -> list[PositionReport]:
        """Last known positions reported at or after `since` (all known positions for None)."""
        ...

    # --- stores ---
    async def stores(self) -> dict[str, Store]: ...

    async def store(self, store_id: str) -> Store | None: ...

    # --- writes (admin commands, import) ---
    async def save_technician(self, entry: TechnicianEntry, *, identities: dict[str, str], at: datetime) -> bool:
        """Create or update the person (role technician), their technician row and add identities.
        The entry's last position is written only when it is set. True when the person was new."""
        ...

    async def set_active(self, person_id: str, active: bool) -> bool: ...

    async def set_on_duty(self, person_id: str, on_duty: bool) -> bool: ...
