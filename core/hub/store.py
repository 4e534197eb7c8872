"""The hub's persistence port: idempotency keys and external references, on the unit of work's
transaction (storage/api_store.py), so that a key, a reference and the ticket commit together."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, cast

from core.repository import UnitOfWork


class HubStore(Protocol):
    async def claim_idempotency(self, client: str, key: str, request_hash: str, *, now: datetime,
                                expires_at: datetime) -> bool:
        """Insert the key's row; False when a live row exists (on PostgreSQL after waiting for the
        transaction that inserted it). An expired row of the key is replaced."""
        ...

    async def finish_idempotency(self, client: str, key: str, status: int, body: str) -> None: ...

    async def ticket_for_ref(self, system: str, ref: str) -> str | None: ...

    async def add_external_ref(self, system: str, ref: str, number: str, *, at: datetime) -> bool:
        """False when (system, ref) already names a ticket."""
        ...

    async def external_refs(self, number: str) -> dict[str, str]: ...


class _WithHub(Protocol):
    def hub(self) -> HubStore: ...


def hub_of(uow: UnitOfWork) -> HubStore:
    """The hub store of a unit of work. Not on the UnitOfWork port itself: only the hub uses it, and
    the kernel then needs no knowledge of this package (storage's unit of work has `hub()`)."""
    return cast(_WithHub, uow).hub()
