"""API v1 persistence (issue 23): registered clients, idempotency keys, external refs, and the
ticket listing with a cursor. `SqlHubStore` is core.hub.store.HubStore on a unit of work's
transaction; the rest are reads and admin writes on it too (`uow.hub()`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from core.model import Ticket
from storage.sqlite.prepared import hot
from storage.tables import (
    ApiClientRow,
    ApiIdempotencyRow,
    AssetRow,
    AuditEventRow,
    ContractRow,
    CustomerRow,
    PersonRow,
    TicketExternalRefRow,
    TicketRow,
    TimerRowTable,
)

_DROP_EXPIRED_KEY = hot(delete(ApiIdempotencyRow).where(
    col(ApiIdempotencyRow.client) == bindparam("client"), col(ApiIdempotencyRow.key) == bindparam("key"),
    col(ApiIdempotencyRow.expires_at) < bindparam("now")))
_FINISH_KEY = hot(update(ApiIdempotencyRow).where(
    col(ApiIdempotencyRow.client) == bindparam("c"), col(ApiIdempotencyRow.key) == bindparam("k")).values(
    status=bindparam("status"), body=bindparam("body")))
_KEY_ROW = hot(select(col(ApiIdempotencyRow.request_hash), col(ApiIdempotencyRow.status),
                      col(ApiIdempotencyRow.body), col(ApiIdempotencyRow.expires_at)).where(
    col(ApiIdempotencyRow.client) == bindparam("client"), col(ApiIdempotencyRow.key) == bindparam("key")))
_TICKET_OF_REF = hot(select(col(TicketExternalRefRow.ticket_number)).where(
    col(TicketExternalRefRow.system) == bindparam("system"), col(TicketExternalRefRow.ref) == bindparam("ref")))
_REFS_OF = hot(select(col(TicketExternalRefRow.system), col(TicketExternalRefRow.ref)).where(
    col(TicketExternalRefRow.ticket_number) == bindparam("number")))
_CLIENT_BY_HASH = hot(select(ApiClientRow).where(col(ApiClientRow.token_hash) == bindparam("hash")))
_INSERTS: dict[str, tuple[Any, Any]] = {}


def _inserts(dialect: str) -> tuple[Any, Any]:
    """INSERT … ON CONFLICT DO NOTHING for a key row and a ref row: on PostgreSQL a second inserter
    of the same key waits for the first transaction and then inserts nothing (rowcount 0)."""
    if dialect not in _INSERTS:
        upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        key = upsert(ApiIdempotencyRow).on_conflict_do_nothing(index_elements=["client", "key"])
        ref = upsert(TicketExternalRefRow).on_conflict_do_nothing(index_elements=["system", "ref"])
        _INSERTS[dialect] = (hot(key), hot(ref))
    return _INSERTS[dialect]


@dataclass(frozen=True, slots=True)
class StoredKey:
    request_hash: str
    status: int
    body: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ApiClient:
    name: str
    scopes: frozenset[str]
    person_id: str
    active: bool
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scopes": sorted(self.scopes), "person_id": self.person_id, "active": self.active,
                "created_at": self.created_at.isoformat(),
                "rotated_at": self.rotated_at.isoformat() if self.rotated_at else None,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


def _client(row: Any) -> ApiClient:
    return ApiClient(row.name, frozenset(s for s in row.scopes.split(",") if s), row.person_id, row.active,
                     row.created_at, row.rotated_at, row.revoked_at)


class SqlHubStore:
    def __init__(self, connection: Callable[[], Awaitable[AsyncConnection]]) -> None:
        self._connection = connection

    async def _conn(self) -> AsyncConnection:
        return await self._connection()

    # --- idempotency (core.hub.store.HubStore) ---
    async def claim_idempotency(self, client: str, key: str, request_hash: str, *, now: datetime,
                                expires_at: datetime) -> bool:
        conn = await self._conn()
        insert_key, _ = _inserts(conn.dialect.name)
        row = {"client": client, "key": key, "request_hash": request_hash, "status": 0, "body": "",
               "created_at": now, "expires_at": expires_at}
        if (await conn.execute(insert_key, row)).rowcount == 1:
            return True
        # Taken: by a live key (a retry), or by an expired one, which this claim replaces.
        if (await conn.execute(_DROP_EXPIRED_KEY, {"client": client, "key": key, "now": now})).rowcount != 1:
            return False
        return bool((await conn.execute(insert_key, row)).rowcount == 1)

    async def finish_idempotency(self, client: str, key: str, status: int, body: str) -> None:
        await (await self._conn()).execute(_FINISH_KEY, {"c": client, "k": key, "status": status, "body": body})

    async def stored_key(self, client: str, key: str) -> StoredKey | None:
        row = (await (await self._conn()).execute(_KEY_ROW, {"client": client, "key": key})).first()
        return None if row is None else StoredKey(row.request_hash, row.status, row.body, row.expires_at)

    async def purge_expired_keys(self, now: datetime) -> int:
        result = await (await self._conn()).execute(
            delete(ApiIdempotencyRow).where(col(ApiIdempotencyRow.expires_at) < now))
        return int(result.rowcount or 0)

    # --- external refs ---
    async def ticket_for_ref(self, system: str, ref: str) -> str | None:
        row = (await (await self._conn()).execute(_TICKET_OF_REF, {"system": system, "ref": ref})).first()
        return None if row is None else str(row[0])

    async def add_external_ref(self, system: str, ref: str, number: str, *, at: datetime) -> bool:
        conn = await self._conn()
        _, insert_ref = _inserts(conn.dialect.name)
        result = await conn.execute(insert_ref, {"system": system, "ref": ref, "ticket_number": number,
                                                 "created_at": at})
        return bool(result.rowcount == 1)

    async def external_refs(self, number: str) -> dict[str, str]:
        rows = await (await self._conn()).execute(_REFS_OF, {"number": number})
        return {str(r.system): str(r.ref) for r in rows}

    async def known_refs(self, system: str, refs: Sequence[str]) -> set[str]:
        """Which of `refs` name a ticket of `system` here (the hub's reconcile), in chunks of 500."""
        found: set[str] = set()
        conn = await self._conn()
        for start in range(0, len(refs), 500):
            chunk = list(refs[start:start + 500])
            found.update(str(r) for r in await conn.scalars(select(col(TicketExternalRefRow.ref)).where(
                col(TicketExternalRefRow.system) == system, col(TicketExternalRefRow.ref).in_(chunk))))
        return found

    async def external_refs_of(self, numbers: Sequence[str]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {n: {} for n in numbers}
        if not numbers:
            return found
        rows = await (await self._conn()).execute(
            select(col(TicketExternalRefRow.ticket_number), col(TicketExternalRefRow.system),
                   col(TicketExternalRefRow.ref)).where(col(TicketExternalRefRow.ticket_number).in_(list(numbers))))
        for number, system, ref in rows:
            found.setdefault(number, {})[system] = ref
        return found

    # --- tickets, newest first, by id (the cursor is the last id seen) ---
    async def ticket_page(self, *, before_id: int | None, limit: int, statuses: Sequence[str] = (),
                          store_id: str | None = None, customer_id: str | None = None,
                          updated_since: datetime | None = None) -> list[Ticket]:
        from storage.unit_of_work import ticket_from_row  # the one row → Ticket conversion

        stmt = select(TicketRow).order_by(col(TicketRow.id).desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(col(TicketRow.id) < before_id)
        if statuses:
            stmt = stmt.where(col(TicketRow.status).in_(list(statuses)))
        if store_id is not None:
            stmt = stmt.where(col(TicketRow.store_id) == store_id)
        if customer_id is not None:
            stmt = stmt.where(col(TicketRow.customer_id) == customer_id)
        if updated_since is not None:
            stmt = stmt.where(col(TicketRow.updated_at) >= updated_since)
        return [ticket_from_row(r) for r in await (await self._conn()).execute(stmt)]

    async def tickets_by_state(self) -> dict[str, int]:
        """A grouped count on the status index (metrics, at scrape time)."""
        rows = await (await self._conn()).execute(
            select(col(TicketRow.status), func.count()).group_by(col(TicketRow.status)))
        return {str(status): int(count) for status, count in rows}

    async def audit_count(self, kind: str) -> int:
        """Events of one kind (on the kind index: no table scan)."""
        return int((await (await self._conn()).execute(
            select(func.count()).where(col(AuditEventRow.kind) == kind))).scalar_one())

    async def timer_lateness(self, since: datetime, limit: int = 5000) -> tuple[list[float], datetime | None]:
        """Seconds late of timers fired after `since` (their due times are at most that recent plus
        lateness: the due index bounds the read), and the newest fired time seen."""
        rows = await (await self._conn()).execute(
            select(col(TimerRowTable.due_at), col(TimerRowTable.fired_at)).where(
                col(TimerRowTable.state) == "fired", col(TimerRowTable.due_at) >= since - timedelta(hours=1),
                col(TimerRowTable.fired_at) > since).limit(limit))
        late: list[float] = []
        newest: datetime | None = None
        for due, fired in rows:
            if due is None or fired is None:
                continue
            late.append((fired - due).total_seconds())
            newest = fired if newest is None or fired > newest else newest
        return late, newest

    async def latest_audit(self, kind: str, limit: int = 200) -> list[dict[str, Any]]:
        """The newest events of one kind (on the kind index), newest first: the hub's reconcile reports."""
        rows = await (await self._conn()).execute(
            select(col(AuditEventRow.at), col(AuditEventRow.actor_id), col(AuditEventRow.payload))
            .where(col(AuditEventRow.kind) == kind).order_by(col(AuditEventRow.seq).desc()).limit(limit))
        return [{"at": at, "actor_id": actor, "payload": payload} for at, actor, payload in rows]

    # --- master data keys, in key order after a cursor (the records are read through uow.masterdata()) ---
    async def keys_after(self, kind: str, after: str | None, limit: int) -> list[str]:
        column = {"customers": col(CustomerRow.person_id), "assets": col(AssetRow.id),
                  "contracts": col(ContractRow.number), "people": col(PersonRow.id)}[kind]
        stmt = select(column).order_by(column).limit(limit)
        if kind == "people":
            stmt = stmt.where(col(PersonRow.role) != "customer")
        if after is not None:
            stmt = stmt.where(column > after)
        return [str(k) for k in (await (await self._conn()).scalars(stmt))]

    async def person_row(self, person_id: str) -> dict[str, Any] | None:
        row = (await (await self._conn()).execute(select(PersonRow).where(col(PersonRow.id) == person_id))).first()
        if row is None:
            return None
        return {"id": row.id, "name": row.name, "role": row.role, "store": row.store_id, "team": row.team_id,
                "supervisor_id": row.supervisor_id, "title": row.title, "active": row.active}

    # --- clients ---
    async def client_by_token_hash(self, token_hash: str) -> ApiClient | None:
        row = (await (await self._conn()).execute(_CLIENT_BY_HASH, {"hash": token_hash})).first()
        return None if row is None else _client(row)

    async def client(self, name: str) -> ApiClient | None:
        row = (await (await self._conn()).execute(select(ApiClientRow).where(col(ApiClientRow.name) == name))).first()
        return None if row is None else _client(row)

    async def clients(self) -> list[ApiClient]:
        rows = await (await self._conn()).execute(select(ApiClientRow).order_by(col(ApiClientRow.name)))
        return [_client(r) for r in rows]

    async def add_client(self, name: str, token_hash: str, scopes: Sequence[str], person_id: str, *,
                         at: datetime) -> None:
        await (await self._conn()).execute(insert(ApiClientRow).values(
            name=name, token_hash=token_hash, scopes=",".join(sorted(scopes)), person_id=person_id, active=True,
            created_at=at))

    async def set_token(self, name: str, token_hash: str, *, at: datetime) -> bool:
        result = await (await self._conn()).execute(update(ApiClientRow).where(col(ApiClientRow.name) == name).values(
            token_hash=token_hash, rotated_at=at, active=True, revoked_at=None))
        return bool(result.rowcount == 1)

    async def revoke_client(self, name: str, *, at: datetime) -> bool:
        result = await (await self._conn()).execute(update(ApiClientRow).where(
            col(ApiClientRow.name) == name, col(ApiClientRow.active)).values(active=False, revoked_at=at))
        return bool(result.rowcount == 1)
