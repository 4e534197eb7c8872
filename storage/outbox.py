"""The outbox: notifications are rows; a dispatcher delivers them with retries and backoff."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from core.cards import CardKind, Notification
from core.ports import Clock
from storage.database import Sessions
from storage.sqlite.prepared import hot
from storage.tables import CardRow, IdentityRow, OutboxRow, TicketRow

# The playground reads this after every message it sends: built once (composing costs more than running).
_LOCAL_MESSAGES = hot(select(col(OutboxRow.id), col(OutboxRow.payload), col(OutboxRow.created_at))
                      .where(col(OutboxRow.recipient_id) == bindparam("person_id"), col(OutboxRow.channel) == "local")
                      .order_by(col(OutboxRow.id).desc()).limit(bindparam("limit")))
_CARD_STATES = hot(select(col(CardRow.id), col(CardRow.payload), col(CardRow.state)).where(
    col(CardRow.id).in_(bindparam("ids", expanding=True))))

# A ticket's first response is the moment its first dispatch offer reached a technician's chat: set
# once, by the delivery that got there first, without a version bump (a command that read the
# ticket before keeps its save; storage/unit_of_work.py never writes a NULL over it).
_RECORD_FIRST_RESPONSE = hot(update(TicketRow).where(col(TicketRow.number) == bindparam("w_number"),
                                                     col(TicketRow.first_response_at).is_(None))
                             .values(first_response_at=bindparam("at")))

MAX_DELIVERY_ATTEMPTS = 12


def offer_ticket(notification: Notification) -> str | None:
    """The ticket whose dispatch offer this notification brings to a technician (not an update of
    the card in place): delivering it is that ticket's first response, if none came before."""
    card = notification.card
    if card is None or notification.replaces_card_id or card.kind is not CardKind.OFFER:
        return None
    return card.ticket_number


async def record_first_response(conn: AsyncConnection | AsyncSession, number: str, at: datetime) -> None:
    await conn.execute(_RECORD_FIRST_RESPONSE, {"w_number": number, "at": at})


@dataclass(slots=True)
class ClaimedDelivery:
    outbox_id: int
    recipient_id: str
    channel: str
    notification: Notification
    reply_context: dict[str, Any]
    attempt: int
    # The recipient's id on the channel, read with the claim (one statement for the whole batch,
    # not a lookup per delivery); `resolved` False: not read, look it up (`SqlOutbox.external_id`).
    external_id: str | None = None
    resolved: bool = False


@dataclass(slots=True)
class Sent:
    """A delivery the platform accepted, to mark (`SqlOutbox.mark_sent`)."""

    outbox_id: int
    external_id: str | None  # the platform's message id
    # It was the dispatch offer of this ticket (see `offer_ticket`), whose first response it is
    # unless another offer arrived first.
    offer_of: str | None = None
    # (card id, platform, reference) to remember for updating the card in place later.
    card_ref: tuple[str, str, dict[str, Any]] | None = None


# Claiming and marking run for every message delivered: built once (composing costs more than
# running), hot on SQLite, and written as members of the group commit (storage/transactions/shared.py)
# so that a burst of deliveries shares COMMITs with each other and with inbox processing.
# A row left "sending" by a sender that died is claimable again once its next_attempt_at passed
# (what `requeue_stuck` did as a statement and a commit of its own before every claim).
_RECIPIENT_EXTERNAL_ID = (select(col(IdentityRow.external_id))
                          .where(col(IdentityRow.person_id) == col(OutboxRow.recipient_id),
                                 col(IdentityRow.platform) == col(OutboxRow.channel))
                          .limit(1).scalar_subquery())


def _due(*, for_update: bool) -> Any:
    # SQLite: "+id", not "id". With planner statistics (ANALYZE) the status column looks unselective
    # (nearly every row is sent), and to skip the sort SQLite walked the whole table in id order:
    # 30 ms per claim at 300,000 rows, against 0.04 ms through ix_outbox_pending and a sort of the
    # few due rows. The unary plus keeps the ORDER BY off the rowid.
    order = col(OutboxRow.id) if for_update else literal_column(f"+{OutboxRow.__tablename__}.id")
    stmt = (select(col(OutboxRow.id), col(OutboxRow.recipient_id), col(OutboxRow.channel), col(OutboxRow.payload),
                   col(OutboxRow.reply_context), col(OutboxRow.attempts),
                   _RECIPIENT_EXTERNAL_ID.label("recipient_external_id"))
            .where(col(OutboxRow.status).in_(bindparam("statuses", expanding=True)),
                   col(OutboxRow.next_attempt_at) <= bindparam("now"),
                   col(OutboxRow.channel).in_(bindparam("channels", expanding=True)))
            .order_by(order).limit(bindparam("limit")))
    # PostgreSQL: several dispatchers share the table; SKIP LOCKED hands each its own rows.
    return hot(stmt.with_for_update(skip_locked=True, of=OutboxRow) if for_update else stmt)


_DUE = _due(for_update=False)  # SQLite
_DUE_LOCKED = _due(for_update=True)  # PostgreSQL
_CLAIMABLE = ["pending", "sending"]
_CLAIM = hot(update(OutboxRow).where(col(OutboxRow.id) == bindparam("w_id")).values(
    status="sending", attempts=OutboxRow.attempts + 1, next_attempt_at=bindparam("w_later")))
_MARK_SENT = hot(update(OutboxRow).where(col(OutboxRow.id) == bindparam("w_id")).values(
    status="sent", sent_at=bindparam("w_at"), external_id=bindparam("w_external"), error=None))
_MARK = hot(update(OutboxRow).where(col(OutboxRow.id) == bindparam("w_id")).values(
    status=bindparam("w_status"), error=bindparam("w_error"), next_attempt_at=bindparam("w_next")))
_MARK_DEAD = hot(update(OutboxRow).where(col(OutboxRow.id) == bindparam("w_id")).values(
    status="dead", error=bindparam("w_error")))
_CARD_REFS_LOCKED = hot(select(col(CardRow.id), col(CardRow.platform_refs))
                        .where(col(CardRow.id) == bindparam("card_id")).with_for_update())
_SET_CARD_REFS = hot(update(CardRow).where(col(CardRow.id) == bindparam("w_id")).values(
    platform_refs=bindparam("w_refs")))
# A claim's first delivery attempt is due again after this (a sender that died mid-send).
SENDING_TIMEOUT = timedelta(minutes=2)


# Told once a transaction that queued outbox rows has committed: the runtime's dispatcher wakes at
# once instead of at its next idle poll (half a second: most of a chat answer's latency).
_QUEUED_LISTENERS: list[Callable[[], None]] = []


def on_rows_queued(listener: Callable[[], None]) -> Callable[[], None]:
    """Register `listener` (called after each commit that queued rows); returns its unregistration."""
    _QUEUED_LISTENERS.append(listener)
    return lambda: _QUEUED_LISTENERS.remove(listener) if listener in _QUEUED_LISTENERS else None


async def rows_queued() -> None:
    for listener in list(_QUEUED_LISTENERS):
        listener()


class SqlOutbox:
    def __init__(self, sessions: Sessions, clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def _write(self) -> AbstractAsyncContextManager[None]:
        """A member of the shared transaction (SQLite: the group commit; PostgreSQL: its own), durable
        when the block ends, as a mark must be before the next claim can see the row."""
        return self._sessions.shared_transaction()

    async def claim_due(self, channels: set[str], limit: int = 50) -> list[ClaimedDelivery]:
        """Claim due rows for these channels, with each recipient's id on the channel. On PostgreSQL
        SKIP LOCKED lets several senders share the table. Committed on return."""
        if not channels:
            return []
        now = self._clock.now()
        async with self._write(), self._sessions.transaction(savepoint=False) as conn:
            locked = conn.dialect.name == "postgresql"
            rows = list(await conn.execute(_DUE_LOCKED if locked else _DUE, {
                "statuses": _CLAIMABLE, "now": now, "channels": sorted(channels), "limit": limit}))
            if not rows:
                return []
            # If this process dies mid-send, the row becomes due again after a while.
            later = now + SENDING_TIMEOUT
            await conn.execute(_CLAIM, [{"w_id": row.id, "w_later": later} for row in rows])
        return [ClaimedDelivery(int(row.id), row.recipient_id, row.channel, Notification.from_dict(row.payload),
                                dict(row.reply_context or {}), int(row.attempts) + 1,
                                external_id=row.recipient_external_id, resolved=True) for row in rows]

    async def mark_sent(self, sent: list[Sent]) -> None:
        """The platform accepted these deliveries: marked in one transaction, with the first responses
        and card references they bring (deliveries that went through together share it: one statement
        for the marks, not a transaction and a statement per message)."""
        now = self._clock.now()
        async with self._write(), self._sessions.transaction(savepoint=False) as conn:
            await conn.execute(_MARK_SENT, [{"w_id": one.outbox_id, "w_at": now, "w_external": one.external_id}
                                            for one in sent])
            for one in sent:
                if one.offer_of is not None:
                    await record_first_response(conn, one.offer_of, now)
                if one.card_ref is not None:
                    await self._remember_card_ref(conn, *one.card_ref)

    async def mark_retry(self, outbox_id: int, attempt: int, reason: str, retry_after_s: float | None) -> None:
        backoff = min(600.0, 2.0 ** attempt)
        delay = max(backoff, retry_after_s or 0.0)
        status = "dead" if attempt >= MAX_DELIVERY_ATTEMPTS else "pending"
        async with self._write(), self._sessions.transaction(savepoint=False) as conn:
            await conn.execute(_MARK, {"w_id": outbox_id, "w_status": status, "w_error": reason[:2000],
                                       "w_next": self._clock.now() + timedelta(seconds=delay)})

    async def mark_dead(self, outbox_id: int, reason: str) -> None:
        async with self._write(), self._sessions.transaction(savepoint=False) as conn:
            await conn.execute(_MARK_DEAD, {"w_id": outbox_id, "w_error": reason[:2000]})

    async def requeue_stuck(self) -> int:
        """'sending' rows whose sender died: due again (their next_attempt_at has passed). The
        dispatcher no longer needs it (`claim_due` takes such rows itself); kept for operators' tools."""
        async with self._sessions() as session, session.begin():
            # An UPDATE's result is a CursorResult (AsyncSession.execute is typed to return a plain Result).
            result = cast("CursorResult[Any]", await session.execute(update(OutboxRow).where(
                col(OutboxRow.status) == "sending", col(OutboxRow.next_attempt_at) <= self._clock.now())
                .values(status="pending")))
            return int(result.rowcount or 0)

    async def external_id(self, person_id: str, platform: str) -> str | None:
        async with self._sessions() as session:
            stmt = select(col(IdentityRow.external_id)).where(col(IdentityRow.person_id) == person_id,
                                                              col(IdentityRow.platform) == platform)
            return (await session.execute(stmt)).scalars().first()

    async def card_ref(self, card_id: str, platform: str) -> dict[str, Any] | None:
        async with self._sessions() as session:
            row = await session.get(CardRow, card_id)
            return (row.platform_refs or {}).get(platform) if row else None

    async def remember_card_ref(self, card_id: str, platform: str, ref: dict[str, Any]) -> None:
        async with self._write(), self._sessions.transaction(savepoint=False) as conn:
            await self._remember_card_ref(conn, card_id, platform, ref)

    @staticmethod
    async def _remember_card_ref(conn: AsyncConnection, card_id: str, platform: str, ref: dict[str, Any]) -> None:
        card = (await conn.execute(_CARD_REFS_LOCKED, {"card_id": card_id})).first()
        if card is not None:
            refs = {**(card.platform_refs or {}), platform: ref}
            await conn.execute(_SET_CARD_REFS, {"w_id": card_id, "w_refs": refs})

    async def local_messages(self, person_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """What the playground shows a person: local-channel notifications, oldest first,
        each card in its latest state (updated in place after a press)."""
        async with self._sessions() as session:
            return await self.local_messages_in(await session.connection(), person_id, limit)

    async def local_messages_in(self, conn: AsyncConnection, person_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """`local_messages` inside the caller's transaction."""
        rows = list(await conn.execute(_LOCAL_MESSAGES, {"person_id": person_id, "limit": limit}))[::-1]
        card_ids = [r.payload["card"]["id"] for r in rows if r.payload.get("card")]
        cards = {c.id: c for c in await conn.execute(_CARD_STATES, {"ids": card_ids})} if card_ids else {}
        items = []
        for row in rows:
            payload = row.payload
            if payload.get("replaces_card_id") and not payload.get("text"):
                continue  # an in-place update, already reflected in the original item
            item: dict[str, Any] = {"id": row.id, "at": row.created_at.isoformat(), "text": payload.get("text"),
                                    "urgent": payload.get("urgent", False)}
            if payload.get("card"):
                card_row = cards.get(payload["card"]["id"])
                card = dict(card_row.payload) if card_row else payload["card"]
                card["state"] = card_row.state if card_row else "open"
                item["card"] = card
            items.append(item)
        return items
