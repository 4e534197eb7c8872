"""The outbox: notifications are rows; a dispatcher delivers them with retries and backoff."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlmodel import col

from core.cards import CardKind, Notification
from core.ports import Clock
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


class SqlOutbox:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def claim_due(self, channels: set[str], limit: int = 50) -> list[ClaimedDelivery]:
        """Claim due rows for these channels. SKIP LOCKED lets several senders share the table."""
        if not channels:
            return []
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            stmt = (
                select(OutboxRow)
                .where(col(OutboxRow.status) == "pending", col(OutboxRow.next_attempt_at) <= now,
                       col(OutboxRow.channel).in_(sorted(channels)))
                .order_by(col(OutboxRow.id))
                .limit(limit)
            )
            if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]  # sessions are engine-bound
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list((await session.execute(stmt)).scalars())
            claimed = []
            for row in rows:
                row.status = "sending"
                row.attempts += 1
                # If this process dies mid-send, the row becomes due again after a while.
                row.next_attempt_at = now + timedelta(minutes=2)
                claimed.append(ClaimedDelivery(row.id or 0, row.recipient_id, row.channel,
                                               Notification.from_dict(row.payload), dict(row.reply_context or {}),
                                               row.attempts))
        return claimed

    async def mark_sent(self, outbox_id: int, external_id: str | None, *, offer_of: str | None = None) -> None:
        """The platform accepted the delivery now. `offer_of`: it was the dispatch offer of this
        ticket (see `offer_ticket`), whose first response it is unless another offer arrived first."""
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            await session.execute(update(OutboxRow).where(col(OutboxRow.id) == outbox_id).values(
                status="sent", sent_at=now, external_id=external_id, error=None))
            if offer_of is not None:
                await record_first_response(session, offer_of, now)

    async def mark_retry(self, outbox_id: int, attempt: int, reason: str, retry_after_s: float | None) -> None:
        backoff = min(600.0, 2.0 ** attempt)
        delay = max(backoff, retry_after_s or 0.0)
        status = "dead" if attempt >= MAX_DELIVERY_ATTEMPTS else "pending"
        async with self._sessions() as session, session.begin():
            await session.execute(update(OutboxRow).where(col(OutboxRow.id) == outbox_id).values(
                status=status, error=reason[:2000], next_attempt_at=self._clock.now() + timedelta(seconds=delay)))

    async def mark_dead(self, outbox_id: int, reason: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(update(OutboxRow).where(col(OutboxRow.id) == outbox_id).values(
                status="dead", error=reason[:2000]))

    async def requeue_stuck(self) -> int:
        """'sending' rows whose sender died: due again (their next_attempt_at has passed)."""
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
        async with self._sessions() as session, session.begin():
            row = await session.get(CardRow, card_id, with_for_update=True)
            if row is not None:
                refs = dict(row.platform_refs or {})
                refs[platform] = ref
                row.platform_refs = refs

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
