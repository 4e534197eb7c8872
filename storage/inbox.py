"""The inbox: every inbound event is stored once, before the platform is acknowledged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from core.inbound import InboundMessage
from core.ports import Clock
from core.wakeups import wait_for_event
from storage.database import Sessions
from storage.sqlite.prepared import hot
from storage.tables import InboxRow
from storage.transactions.shared import after_commit

log = logging.getLogger(__name__)
MAX_INBOX_ATTEMPTS = 5
MAX_YIELD_S = 0.5  # the longest background processing waits for accepts in flight, per transaction

# Built once, run with parameters: every inbound message goes through these (see storage/unit_of_work.py).
_FINISH = hot(update(InboxRow).where(col(InboxRow.id) == bindparam("w_id")).values(
    status="done", error=None, processed_at=bindparam("w_now")))
# Claimed and finished at once, for rows handled inside the transaction that takes them (see `take`).
_TAKE = hot(update(InboxRow).where(col(InboxRow.id) == bindparam("w_id"), col(InboxRow.status) == "pending")
            .values(status="done", error=None, attempts=InboxRow.attempts + 1, processed_at=bindparam("w_now"))
            .returning(col(InboxRow.payload)))
_HOLD = hot(update(InboxRow).where(col(InboxRow.id) == bindparam("w_id")).values(status="processing"))
_FAIL = update(InboxRow).where(col(InboxRow.id) == bindparam("w_id")).values(
    status="failed", error=bindparam("w_error"))
_ACCEPT: dict[str, Any] = {}  # dialect name → insert ... on conflict do nothing returning id


def _accept_statement(dialect: str) -> Any:
    if dialect not in _ACCEPT:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        _ACCEPT[dialect] = hot(insert(InboxRow).on_conflict_do_nothing(index_elements=["platform", "event_key"])
                                .returning(col(InboxRow.id)))
    return _ACCEPT[dialect]


class SqlInbox:
    """Implements core.ports.InboxPort. `on_accepted(row_id, sender)` is told about each new row (the
    sender, "platform:external id", lets processing keep one sender's messages in order)."""

    def __init__(
        self, sessions: Sessions, clock: Clock,
        on_accepted: Callable[[int, str], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.on_accepted = on_accepted
        # Accepts in flight: background processing waits for them (see `accepts_settled`).
        self._accepting = 0
        self._settled = asyncio.Event()
        self._settled.set()

    async def accept(self, message: InboundMessage) -> bool:
        return await self.accept_row(message) is not None

    async def accept_row(self, message: InboundMessage, *, schedule: bool = True) -> int | None:
        """Insert; the row id for a new event, None for a redelivery. Committed on return (inside
        a shared transaction: with it).

        `schedule=False` when the caller processes the row itself (the playground waits for it):
        the row is then stored already claimed, one transaction less (a crash before it is
        finished leaves it "processing", which the sweep returns to pending after 5 minutes)."""
        now = self._clock.now()
        self._accepting += 1
        self._settled.clear()
        try:
            # On SQLite a shared transaction is a member of a group commit: an accept arriving while
            # a message is processed joins that transaction instead of waiting for it to end.
            async with self._sessions.shared_transaction(), \
                    self._sessions.transaction(savepoint=False) as conn:  # one statement
                row_id = (await conn.execute(_accept_statement(conn.dialect.name), {
                    "platform": message.platform, "event_key": message.event_key[:255], "received_at": now,
                    "payload": message.to_dict(), "status": "pending" if schedule else "processing",
                    "attempts": 0 if schedule else 1, "processed_at": None if schedule else now,
                })).scalar_one_or_none()
        finally:
            self._accepting -= 1
            if not self._accepting:
                self._settled.set()
        if row_id is not None and schedule and self.on_accepted is not None:
            accepted, new_row, sender = self.on_accepted, int(row_id), f"{message.platform}:{message.sender}"

            async def tell() -> None:
                accepted(new_row, sender)

            await after_commit(tell)  # inside a caller's shared transaction: once that commits
        return int(row_id) if row_id is not None else None

    def one_transaction(self) -> AbstractAsyncContextManager[None]:
        """Everything done through these sessions inside the block is one transaction (claim,
        handling, finish): see storage/transactions/shared.py."""
        return self._sessions.shared_transaction()

    async def accepts_settled(self) -> None:
        """Return once no accept is in flight, or after MAX_YIELD_S. The platform waits for an
        accept's answer (WeCom retries after 5 s), nobody waits for background processing: under a
        burst, processing that yields to accepts keeps the answers fast while the backlog is worked
        off between them. The bound keeps a stream of slow accepts (a struggling database) from
        starving processing altogether. (PostgreSQL's workers wait here; on SQLite the processor
        takes turns with accepts in the group commit instead: bot/jobs/delivery.py, `batch`.)"""
        if not self._accepting:
            return
        await wait_for_event(self._settled, MAX_YIELD_S)

    async def take(self, row_id: int) -> InboundMessage | None:
        """Take a pending row for a caller that handles it inside the transaction it takes it in
        (bot/jobs/delivery.py): claimed and finished in one statement, done when that transaction
        commits with the handling's work, pending again if it rolls back. A failed handling sets it
        back with `finish(error=...)`; work left for after the transaction `hold`s it until that work
        finishes it. None if another worker has the row or it is done, or if its payload cannot be
        read: that row fails at once, with why (a retry would read the same)."""
        async with self._sessions.transaction() as conn:
            payload = (await conn.execute(_TAKE, {"w_id": row_id, "w_now": self._clock.now()})).scalar_one_or_none()
            if payload is None:
                return None
            try:
                return InboundMessage.from_dict(payload)
            except (KeyError, TypeError, ValueError) as error:
                log.error("inbox row %s cannot be read, failed: %r", row_id, error)
                await conn.execute(_FAIL, {"w_id": row_id, "w_error": f"unreadable payload: {error!r}"[:2000]})
                return None

    async def hold(self, row_id: int) -> None:
        """A taken row whose handling left work for after its transaction: "processing" until
        `finish` (a crash before leaves it to the sweep, as a claimed row)."""
        async with self._sessions.transaction() as conn:
            await conn.execute(_HOLD, {"w_id": row_id})

    async def finish(self, row_id: int, *, error: str | None = None) -> None:
        if error is None:
            # The common case in one statement (a missing row is simply not updated).
            async with self._sessions.transaction() as conn:
                await self.finish_in(conn, row_id)
            return
        async with self._sessions() as session, session.begin():
            row = await session.get(InboxRow, row_id)
            if row is None:
                return
            # Unexpected failure: back to pending for the sweeper, until it gives up.
            row.status = "failed" if row.attempts >= MAX_INBOX_ATTEMPTS else "pending"
            row.error = error[:2000]
            row.processed_at = self._clock.now()

    async def finish_in(self, conn: AsyncConnection, row_id: int) -> None:
        """Mark a row done inside the caller's transaction (the playground reads back in the same one)."""
        await conn.execute(_FINISH, {"w_id": row_id, "w_now": self._clock.now()})

    async def stale_pending(self, older_than: timedelta, limit: int = 100) -> list[int]:
        """Rows nobody finished: a crash between commit and processing, or a retry after an error."""
        cutoff: datetime = self._clock.now() - older_than
        async with self._sessions() as session:
            stuck = update(InboxRow).where(col(InboxRow.status) == "processing",
                                           col(InboxRow.processed_at) < cutoff - timedelta(minutes=5))
            await session.execute(stuck.values(status="pending"))
            await session.commit()
            rows = await session.execute(
                select(col(InboxRow.id)).where(col(InboxRow.status) == "pending", col(InboxRow.received_at) < cutoff)
                .order_by(col(InboxRow.id)).limit(limit)
            )
            # A stored row's id is never NULL (InboxRow.id is `int | None` for unsaved rows).
            return [int(r) for r in rows.scalars()]  # type: ignore[arg-type]
