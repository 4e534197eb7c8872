"""What the operators' view reads: the outbox (per channel and state, the failed rows with their error),
the webhook deliveries that failed, the pending timers by kind with their lateness; and the outbox
retry.

Every read is bounded: counts are GROUP BYs over the rows that are not done (the `ix_outbox_pending`,
`ix_webhook_deliveries_status_due` and `ix_timers_due` indexes start with the state), and lists stop at
`ROW_LIMIT`.

Retry of an outbox row does what the webhook redelivery (`SqlWebhookStore.redeliver`, `中枢 重推`) does
for a webhook: the row is due again now, and its retry budget starts over — for the outbox that budget
is `attempts` (dead at `MAX_DELIVERY_ATTEMPTS`), so it goes back to 0; the error stays until the next
attempt overwrites it. A row being sent right now is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, case, func, literal_column, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.database import Sessions
from storage.tables import OutboxRow, TimerRowTable, WebhookDeliveryRow, WebhookSubscriptionRow

ROW_LIMIT = 100
OPEN_STATES = ("pending", "sending", "dead")
STATE_LABELS = {"pending": "待投递", "sending": "发送中", "dead": "失败（死信）", "delivered": "已送达"}
RETRYABLE = ("pending", "dead")


@dataclass(frozen=True, slots=True)
class ChannelCount:
    channel: str
    state: str
    count: int
    oldest: datetime | None


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    id: int
    channel: str
    recipient_id: str
    state: str
    attempts: int
    error: str
    created_at: datetime
    next_attempt_at: datetime
    ticket_number: str | None
    summary: str  # the notification's text (or card title), clipped


@dataclass(frozen=True, slots=True)
class FailedWebhook:
    id: int
    client: str
    event_type: str
    ticket_number: str | None
    state: str
    attempts: int
    last_status: int | None
    error: str
    created_at: datetime
    last_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class TimerKind:
    kind: str
    pending: int
    overdue: int
    next_due: datetime
    lateness: timedelta | None  # now − the oldest due_at, when overdue


@dataclass(frozen=True, slots=True)
class LateTimer:
    id: int
    kind: str
    ticket: str
    due_at: datetime
    lateness: timedelta


# An always-true range on the second column of the state indexes (state, next_attempt_at): with planner
# statistics the state alone looks unselective to SQLite (nearly every row is sent/delivered), and it
# scanned the whole table (160 ms at 300,000 rows); with the range it reads the few open rows through the
# index (4 ms). Harmless elsewhere.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _newest_first(session: AsyncSession, table: str) -> Any:
    """`id DESC`, on SQLite written `+id`: with planner statistics the state column looks unselective
    (nearly every row is sent) and SQLite would walk the whole table backwards by rowid to find the few
    failures, instead of reading them through the state index and sorting them (storage/outbox.py `_due`)."""
    name = "+" if session.get_bind().dialect.name == "sqlite" else ""
    return literal_column(f"{name}{table}.id").desc()


def _summary(payload: dict[str, Any]) -> str:
    text = payload.get("text") or (payload.get("card") or {}).get("title") or ""
    text = " ".join(str(text).split())
    return text if len(text) <= 60 else text[:59] + "…"


def _aware(value: datetime | None) -> datetime | None:
    # Stored as UTC; a dialect that hands back naive values still means UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class OpsQueries:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def outbox_counts(self) -> list[ChannelCount]:
        stmt = (select(col(OutboxRow.channel), col(OutboxRow.status), func.count(), func.min(OutboxRow.created_at))
                .where(col(OutboxRow.status).in_(OPEN_STATES), col(OutboxRow.next_attempt_at) > EPOCH)
                .group_by(col(OutboxRow.channel), col(OutboxRow.status))
                .order_by(col(OutboxRow.channel), col(OutboxRow.status)))
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [ChannelCount(r[0], r[1], int(r[2]), _aware(r[3])) for r in rows]

    async def failed_deliveries(self, now: datetime, limit: int = ROW_LIMIT) -> list[FailedDelivery]:
        """Newest first: dead rows, rows waiting for a retry after a failed attempt, and rows being sent
        again after a failure or stuck in "sending" (their sender died: the claim's lease has run out).
        A first attempt in flight is not a failure."""
        failing = or_(col(OutboxRow.status) == "dead",
                      and_(col(OutboxRow.status) == "pending", col(OutboxRow.attempts) > 0),
                      and_(col(OutboxRow.status) == "sending",
                           or_(col(OutboxRow.error).is_not(None), col(OutboxRow.next_attempt_at) <= now)))
        async with self._sessions() as session:
            stmt = (select(OutboxRow).where(col(OutboxRow.status).in_(OPEN_STATES),
                                            col(OutboxRow.next_attempt_at) > EPOCH, failing)
                    .order_by(_newest_first(session, OutboxRow.__tablename__)).limit(limit))
            rows = (await session.execute(stmt)).scalars().all()
        return [FailedDelivery(int(r.id or 0), r.channel, r.recipient_id, r.status, r.attempts, r.error or "",
                               cast("datetime", _aware(r.created_at)), cast("datetime", _aware(r.next_attempt_at)),
                               (r.payload or {}).get("ticket_number"), _summary(r.payload or {})) for r in rows]

    async def retry_delivery(self, outbox_id: int, now: datetime) -> dict[str, Any] | None:
        """Make a failed or waiting row due now with a fresh retry budget. Returns what it was (status,
        attempts, error) or None when there is no such row or it is being sent / already sent."""
        async with self._sessions() as session, session.begin():
            row = await session.get(OutboxRow, outbox_id, with_for_update=True)
            if row is None or row.status not in RETRYABLE:
                return None
            before = {"status": row.status, "attempts": row.attempts, "error": (row.error or "")[:500],
                      "channel": row.channel, "recipient_id": row.recipient_id}
            result = cast("CursorResult[Any]", await session.execute(
                update(OutboxRow).where(col(OutboxRow.id) == outbox_id, col(OutboxRow.status).in_(RETRYABLE))
                .values(status="pending", attempts=0, next_attempt_at=now)))
            return before if result.rowcount else None

    async def retry_channel(self, channel: str, now: datetime) -> int:
        """Every dead row of a channel, due again now (the per-channel button)."""
        async with self._sessions() as session, session.begin():
            result = cast("CursorResult[Any]", await session.execute(
                update(OutboxRow).where(col(OutboxRow.channel) == channel, col(OutboxRow.status) == "dead")
                .values(status="pending", attempts=0, next_attempt_at=now)))
            return int(result.rowcount or 0)

    async def delivery_state(self, outbox_id: int) -> str | None:
        async with self._sessions() as session:
            row = await session.get(OutboxRow, outbox_id)
            return row.status if row is not None else None

    async def failed_webhooks(self, limit: int = ROW_LIMIT) -> list[FailedWebhook]:
        failing = or_(col(WebhookDeliveryRow.status) == "dead",
                      and_(col(WebhookDeliveryRow.status) == "pending", col(WebhookDeliveryRow.attempts) > 0))
        async with self._sessions() as session:
            stmt = (select(WebhookDeliveryRow, col(WebhookSubscriptionRow.client))
                    .join(WebhookSubscriptionRow,
                          col(WebhookSubscriptionRow.id) == col(WebhookDeliveryRow.subscription_id))
                    .where(col(WebhookDeliveryRow.status).in_(["pending", "dead"]),
                           col(WebhookDeliveryRow.next_attempt_at) > EPOCH, failing)
                    .order_by(_newest_first(session, WebhookDeliveryRow.__tablename__)).limit(limit))
            rows = (await session.execute(stmt)).all()
        return [FailedWebhook(int(d.id or 0), client, d.event_type, d.ticket_number, d.status, d.attempts,
                              d.last_status, d.last_error or "", cast("datetime", _aware(d.created_at)),
                              _aware(d.last_attempt_at)) for d, client in rows]

    async def webhook_counts(self) -> dict[str, int]:
        stmt = (select(col(WebhookDeliveryRow.status), func.count())
                .where(col(WebhookDeliveryRow.status).in_(OPEN_STATES), col(WebhookDeliveryRow.next_attempt_at) > EPOCH)
                .group_by(col(WebhookDeliveryRow.status)))
        async with self._sessions() as session:
            return {status: int(n) for status, n in (await session.execute(stmt)).all()}

    async def timer_kinds(self, now: datetime) -> list[TimerKind]:
        pending = col(TimerRowTable.state) == "pending"
        overdue = func.sum(case((col(TimerRowTable.due_at) <= now, 1), else_=0))
        stmt = (select(col(TimerRowTable.kind), func.count(), overdue, func.min(TimerRowTable.due_at))
                .where(pending).group_by(col(TimerRowTable.kind)).order_by(col(TimerRowTable.kind)))
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        out = []
        for kind, count, late, first in rows:
            first_due = cast("datetime", _aware(first))
            out.append(TimerKind(kind, int(count), int(late or 0), first_due,
                                 now - first_due if first_due <= now else None))
        return out

    async def late_timers(self, now: datetime, limit: int = ROW_LIMIT) -> list[LateTimer]:
        stmt = (select(col(TimerRowTable.id), col(TimerRowTable.kind), col(TimerRowTable.ticket_key),
                       col(TimerRowTable.due_at))
                .where(col(TimerRowTable.state) == "pending", col(TimerRowTable.due_at) <= now)
                .order_by(col(TimerRowTable.due_at)).limit(limit))
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [LateTimer(int(i or 0), k, t, cast("datetime", _aware(d)), now - cast("datetime", _aware(d)))
                for i, k, t, d in rows]
