"""Outbound webhooks (issue 23): subscriptions, the webhook outbox and its delivery log.

`SqlWebhookOutbox` is core.hub.webhook_events.WebhookOutbox on a unit of work's transaction
(`uow.webhooks()`): deliveries are written with the change that caused them. `SqlWebhookStore` is
everything else, each call its own short transaction: subscriptions (CLI), claiming due deliveries
and recording attempts (bot/jobs/webhooks.py), redelivery and the dashboard (CLI, chat).

Most services have no subscription at all, and every fault report audits events a webhook may
want: the outbox remembers, per process and database, which event types any active subscription
wants (`_WANTED`). An event type nobody wanted at the last read costs no query for RECHECK_S
seconds; every other case reads the subscriptions in the command's transaction, as before. A
subscription added in this process is seen at once (add and remove forget the cache); one added in
ANOTHER process (`ticketbot webhook add`, another worker) is honoured by every event emitted more than
RECHECK_S after its commit (the staleness bound; the belief is re-read that often, in the
transaction of whichever command asks). A removal is never stale: a wanted type is always read in
the command's transaction. (There is no re-enable: a removed subscription stays removed.)

Personal data (docs/webhooks.md, "Personal data"): a stored body can carry what a customer typed (a
ticket's description, a parts note) with their phone number in it. Bodies older than the retention,
and at once those about a forgotten customer's tickets, get the phones masked the way the tickets'
own scrub masks them (core/masterdata/privacy.py); the rows, statuses and attempts stay.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from core.masterdata.identifiers import mask_phone
from core.masterdata.prefill import PHONE_IN_TEXT
from core.ports import Clock
from storage.database import Sessions
from storage.sqlite.prepared import hot
from storage.tables import ApiClientRow, TicketRow, WebhookAttemptRow, WebhookDeliveryRow, WebhookSubscriptionRow

RETRY_WINDOW = timedelta(days=3)  # retried with backoff this long, then dead-lettered
LEASE = timedelta(minutes=2)  # a claimed delivery whose sender died is due again after this
MAX_ERROR = 500

# Read on every unit of work that audits an event a webhook may want (a fault report does): hot.
_ACTIVE_SUBSCRIPTIONS = hot(select(col(WebhookSubscriptionRow.id), col(WebhookSubscriptionRow.client),
                                   col(WebhookSubscriptionRow.events))
                            .where(col(WebhookSubscriptionRow.active).is_(True)))
_INSERT_DELIVERY = hot(insert(WebhookDeliveryRow))
_DUE_SUBSCRIPTIONS = hot(select(col(WebhookDeliveryRow.subscription_id)).distinct().where(
    col(WebhookDeliveryRow.status) == "pending", col(WebhookDeliveryRow.next_attempt_at) <= bindparam("now")))
_CLAIMS: dict[str, Any] = {}
_INSERT_ATTEMPT = hot(insert(WebhookAttemptRow))
_STILL_SENDING = (col(WebhookDeliveryRow.id) == bindparam("w_id"), col(WebhookDeliveryRow.status) == "sending")
_MARK_DELIVERED = hot(update(WebhookDeliveryRow).where(*_STILL_SENDING).values(
    status="delivered", delivered_at=bindparam("at"), last_attempt_at=bindparam("at"), last_status=bindparam("code"),
    last_latency_ms=bindparam("ms"), last_error=None))
_MARK_FAILED = hot(update(WebhookDeliveryRow).where(*_STILL_SENDING).values(
    status=bindparam("w_status"), next_attempt_at=bindparam("next"), last_attempt_at=bindparam("at"),
    last_status=bindparam("code"), last_latency_ms=bindparam("ms"), last_error=bindparam("error")))


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# Identifiers of our bodies (core/hub/webhook_events.py): keys, not text; receivers match on them.
_ID_KEYS = frozenset({"customer_key", "global_id", "id", "number", "assignee_id", "store_id", "asset_id"})


def _masked(value: Any) -> Any:
    """Every phone number in the text of a JSON value masked; identifiers are left alone (the ids
    of our bodies, and any UUID: its hex digits are no phone)."""
    if isinstance(value, str):
        return value if _UUID.fullmatch(value) else PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(1)), value)
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, dict):
        return {k: v if k in _ID_KEYS else _masked(v) for k, v in value.items()}
    return value


def mask_body(body: str) -> str:
    """The body with its phone numbers masked, encoded as bodies are (core/hub/webhook_events.py `encode`)."""
    try:
        document = json.loads(body)
    except ValueError:  # not ours (never written so): mask the text itself
        return PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(1)), body)
    return json.dumps(_masked(document), ensure_ascii=False, separators=(",", ":"))


def _claim(dialect: str) -> Any:
    """UPDATE … WHERE id IN (the oldest due ids, locked and skipping locked rows on PostgreSQL)
    RETURNING: a claim is one statement."""
    if dialect not in _CLAIMS:
        due = (select(col(WebhookDeliveryRow.id))
               .where(col(WebhookDeliveryRow.subscription_id) == bindparam("sid"),
                      col(WebhookDeliveryRow.status) == "pending",
                      col(WebhookDeliveryRow.next_attempt_at) <= bindparam("now"))
               .order_by(col(WebhookDeliveryRow.id)).limit(bindparam("limit")))
        if dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        _CLAIMS[dialect] = hot(update(WebhookDeliveryRow).where(col(WebhookDeliveryRow.id).in_(due.scalar_subquery()))
                               .values(status="sending", attempts=WebhookDeliveryRow.attempts + 1,
                                       next_attempt_at=bindparam("lease"))
                               .returning(col(WebhookDeliveryRow.id), col(WebhookDeliveryRow.event_id),
                                          col(WebhookDeliveryRow.event_type), col(WebhookDeliveryRow.body),
                                          col(WebhookDeliveryRow.attempts), col(WebhookDeliveryRow.give_up_at)))
    return _CLAIMS[dialect]


# Called (synchronously) whenever deliveries are queued in this process: the dispatcher's wake-up. It
# then claims on the one connection SQLite has, so after the queueing transaction committed; on
# PostgreSQL a claim that came too early is repeated by its next poll.
_QUEUED_LISTENERS: list[Callable[[], None]] = []


def on_queued(listener: Callable[[], None]) -> Callable[[], None]:
    """Register `listener`; returns the function that unregisters it."""
    _QUEUED_LISTENERS.append(listener)
    return lambda: _QUEUED_LISTENERS.remove(listener) if listener in _QUEUED_LISTENERS else None


# How long "nobody wants event type X" may be believed without reading the subscriptions again:
# the bound on how late a subscription added by another process (`ticketbot webhook add`) is honoured.
RECHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class _Wanted:
    types: frozenset[str]  # the event types at least one active subscription wants
    read_at: float  # time.monotonic() when the read that found them began


# Per database (its engine), in this process: several services (tests) may share a process.
_WANTED: weakref.WeakKeyDictionary[Engine, _Wanted] = weakref.WeakKeyDictionary()


def forget_wanted() -> None:
    """A subscription was added or removed in this process: read them again next time."""
    _WANTED.clear()


class SqlWebhookOutbox:
    """Deliveries in the unit of work's transaction; the subscriptions are read at most once per unit
    of work, and not at all for an event type no subscription wanted within RECHECK_S (module docstring)."""

    def __init__(self, connection: Callable[[], Awaitable[AsyncConnection]]) -> None:
        self._connection = connection
        self._subscriptions: list[tuple[int, str, frozenset[str]]] | None = None
        self.pending: list[Any] = []  # core.hub.webhook_events.PendingEvent: this command's events

    async def subscribers(self, event_type: str) -> list[tuple[int, str]]:
        if self._subscriptions is None:
            conn = await self._connection()
            engine = conn.sync_engine
            wanted = _WANTED.get(engine)
            started = time.monotonic()
            if wanted is not None and event_type not in wanted.types and started - wanted.read_at < RECHECK_S:
                return []
            rows = await conn.execute(_ACTIVE_SUBSCRIPTIONS)
            self._subscriptions = [(int(r[0] or 0), str(r[1]), frozenset(r[2] or ())) for r in rows]
            _WANTED[engine] = _Wanted(frozenset().union(*(events for _, _, events in self._subscriptions)), started)
        return [(sid, client) for sid, client, events in self._subscriptions if event_type in events]

    async def queue(self, *, event_id: str, event_type: str, ticket_number: str | None, at: datetime,
                    bodies: list[tuple[int, str]]) -> None:
        rows = [{"subscription_id": sid, "event_id": event_id, "event_type": event_type,
                 "ticket_number": ticket_number, "body": body, "status": "pending", "attempts": 0,
                 "created_at": at, "next_attempt_at": at, "give_up_at": at + RETRY_WINDOW,
                 "last_attempt_at": None, "delivered_at": None, "last_status": None, "last_latency_ms": None,
                 "last_error": None} for sid, body in bodies]
        await (await self._connection()).execute(_INSERT_DELIVERY, rows)
        for listener in _QUEUED_LISTENERS:
            listener()


@dataclass(slots=True)
class Subscription:
    id: int
    client: str
    url: str
    secret: str
    events: list[str]
    active: bool
    created_at: datetime

    def public(self) -> dict[str, Any]:
        """Everything but the secret (shown once, at `webhook add`)."""
        return {"id": self.id, "client": self.client, "url": self.url, "events": list(self.events),
                "active": self.active, "created_at": self.created_at.isoformat()}


@dataclass(slots=True)
class ClaimedDelivery:
    id: int
    subscription_id: int
    event_id: str
    event_type: str
    body: str
    attempts: int  # including this one
    give_up_at: datetime


@dataclass(slots=True)
class Attempt:
    """What one attempt gave: a status code (None: no answer), the time it took, an error."""

    signature: str
    status_code: int | None
    latency_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _subscription(row: Any) -> Subscription:
    return Subscription(id=int(row.id), client=row.client, url=row.url, secret=row.secret,
                        events=list(row.events or []), active=bool(row.active), created_at=row.created_at)


class SqlWebhookStore:
    def __init__(self, sessions: Sessions, clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    # --- subscriptions ---
    async def add_subscription(self, *, client: str, url: str, secret: str, events: list[str]) -> Subscription:
        now = self._clock.now()
        async with self._sessions.transaction() as conn:
            new_id = (await conn.execute(insert(WebhookSubscriptionRow).values(
                client=client, url=url, secret=secret, events=events, active=True, created_at=now)
                .returning(col(WebhookSubscriptionRow.id)))).scalar_one()
        forget_wanted()
        return Subscription(int(new_id or 0), client, url, secret, events, True, now)

    async def client_known(self, client: str) -> bool:
        """Whether `client` is a registered, unrevoked API client (`ticketbot api-client add`)."""
        async with self._sessions.transaction() as conn:
            row = (await conn.execute(select(col(ApiClientRow.active)).where(col(ApiClientRow.name) == client)))\
                .one_or_none()
        return bool(row and row[0])

    async def subscriptions(self, *, active_only: bool = True) -> list[Subscription]:
        stmt = select(WebhookSubscriptionRow).order_by(col(WebhookSubscriptionRow.id))
        if active_only:
            stmt = stmt.where(col(WebhookSubscriptionRow.active).is_(True))
        async with self._sessions.transaction() as conn:
            return [_subscription(r) for r in await conn.execute(stmt)]

    async def subscription(self, subscription_id: int) -> Subscription | None:
        async with self._sessions.transaction() as conn:
            row = (await conn.execute(select(WebhookSubscriptionRow).where(
                col(WebhookSubscriptionRow.id) == subscription_id))).one_or_none()
        return _subscription(row) if row else None

    async def remove_subscription(self, subscription_id: int) -> bool:
        """Deactivate it: no new deliveries, its pending ones are dead-lettered (the log stays)."""
        now = self._clock.now()
        async with self._sessions.transaction() as conn:
            result = await conn.execute(update(WebhookSubscriptionRow).where(
                col(WebhookSubscriptionRow.id) == subscription_id, col(WebhookSubscriptionRow.active).is_(True))
                .values(active=False, removed_at=now))
            if not result.rowcount:
                return False
            await conn.execute(update(WebhookDeliveryRow).where(
                col(WebhookDeliveryRow.subscription_id) == subscription_id,
                col(WebhookDeliveryRow.status).in_(["pending", "sending"]))
                .values(status="dead", last_error="subscription removed"))
        forget_wanted()
        return True

    # --- delivery (bot/jobs/webhooks.py) ---
    async def claim_due(self, subscription_id: int, limit: int, lease: timedelta = LEASE) -> list[ClaimedDelivery]:
        """Claim up to `limit` due deliveries of one subscription, oldest first, in one statement
        (SKIP LOCKED on PostgreSQL: several processes may deliver)."""
        now = self._clock.now()
        async with self._sessions.transaction() as conn:
            rows = list(await conn.execute(_claim(self._sessions.kw["bind"].dialect.name), {
                "sid": subscription_id, "now": now, "lease": now + lease, "limit": limit}))
        rows.sort(key=lambda r: r.id)  # RETURNING promises no order
        return [ClaimedDelivery(int(r.id), subscription_id, r.event_id, r.event_type, r.body, int(r.attempts),
                                r.give_up_at) for r in rows]

    async def due_subscriptions(self) -> set[int]:
        """The subscriptions with a delivery due now: the dispatcher's one poll query."""
        async with self._sessions.transaction() as conn:
            return {int(r[0]) for r in await conn.execute(_DUE_SUBSCRIPTIONS, {"now": self._clock.now()})}

    async def next_due(self) -> datetime | None:
        """When the next pending delivery falls due (the dispatcher sleeps until then, at most its idle time)."""
        async with self._sessions.transaction() as conn:
            return (await conn.execute(select(func.min(WebhookDeliveryRow.next_attempt_at)).where(
                col(WebhookDeliveryRow.status) == "pending"))).scalar_one_or_none()

    async def record(self, delivery: ClaimedDelivery, attempt: Attempt, retry_in: timedelta) -> str:
        """Log the attempt and settle the delivery: delivered, pending again after `retry_in`, or dead
        when that would pass its give-up time. Returns the new status."""
        return (await self.record_many([(delivery, attempt, retry_in)]))[0]

    async def record_many(self, outcomes: list[tuple[ClaimedDelivery, Attempt, timedelta]]) -> list[str]:
        """`record` for several attempts in one transaction (the dispatcher flushes what finished
        meanwhile together: a transaction per delivery cost more than the delivery)."""
        now = self._clock.now()
        attempts: list[dict[str, Any]] = []
        delivered: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        statuses: list[str] = []
        for delivery, attempt, retry_in in outcomes:
            error = attempt.error[:MAX_ERROR] if attempt.error else None
            attempts.append({"delivery_id": delivery.id, "subscription_id": delivery.subscription_id, "at": now,
                             "signature": attempt.signature[:128], "status_code": attempt.status_code,
                             "latency_ms": attempt.latency_ms, "error": error})
            last = {"w_id": delivery.id, "at": now, "code": attempt.status_code, "ms": attempt.latency_ms}
            if attempt.ok:
                statuses.append("delivered")
                delivered.append(last)
            else:
                status = "dead" if now + retry_in > delivery.give_up_at else "pending"
                statuses.append(status)
                failed.append({**last, "error": error, "w_status": status, "next": now + retry_in})
        async with self._sessions.transaction() as conn:
            await conn.execute(_INSERT_ATTEMPT, attempts)
            # Only deliveries still ours: a redelivery meanwhile re-armed them (then they stay pending).
            if delivered:
                await conn.execute(_MARK_DELIVERED, delivered)
            if failed:
                await conn.execute(_MARK_FAILED, failed)
        return statuses

    async def release(self, delivery_ids: list[int]) -> None:
        """Claimed but never sent (the dispatcher stopped): pending again now, the claim undone."""
        if not delivery_ids:
            return
        async with self._sessions.transaction() as conn:
            await conn.execute(update(WebhookDeliveryRow).where(
                col(WebhookDeliveryRow.id).in_(delivery_ids), col(WebhookDeliveryRow.status) == "sending")
                .values(status="pending", attempts=WebhookDeliveryRow.attempts - 1,
                        next_attempt_at=self._clock.now()))

    async def requeue_stuck(self) -> int:
        """'sending' rows whose sender died (their lease ran out): due again."""
        async with self._sessions.transaction() as conn:
            result = await conn.execute(update(WebhookDeliveryRow).where(
                col(WebhookDeliveryRow.status) == "sending",
                col(WebhookDeliveryRow.next_attempt_at) <= self._clock.now()).values(status="pending"))
            return int(result.rowcount or 0)

    # --- redelivery ---
    async def redeliver(self, delivery_id: int) -> bool:
        """Send one delivery again now (any state but in flight), with a fresh retry window."""
        now = self._clock.now()
        async with self._sessions.transaction() as conn:
            result = await conn.execute(update(WebhookDeliveryRow).where(
                col(WebhookDeliveryRow.id) == delivery_id, col(WebhookDeliveryRow.status) != "sending")
                .values(status="pending", next_attempt_at=now, give_up_at=now + RETRY_WINDOW))
            return bool(result.rowcount)

    async def delivery_exists(self, delivery_id: int) -> bool:
        async with self._sessions.transaction() as conn:
            return (await conn.execute(select(col(WebhookDeliveryRow.id)).where(
                col(WebhookDeliveryRow.id) == delivery_id))).first() is not None

    async def redeliver_failed(self, since: datetime, *, client: str | None = None) -> int:
        """Every failed delivery of an event since `since`: dead-lettered ones, and pending ones whose
        last attempt failed (their backoff is skipped). Sent again now, with a fresh retry window."""
        now = self._clock.now()
        failed = ((col(WebhookDeliveryRow.status) == "dead")
                  | ((col(WebhookDeliveryRow.status) == "pending") & (col(WebhookDeliveryRow.attempts) > 0)))
        stmt = update(WebhookDeliveryRow).where(failed, col(WebhookDeliveryRow.created_at) >= since)
        if client is not None:
            stmt = stmt.where(col(WebhookDeliveryRow.subscription_id).in_(
                select(col(WebhookSubscriptionRow.id)).where(col(WebhookSubscriptionRow.client) == client)))
        async with self._sessions.transaction() as conn:
            result = await conn.execute(stmt.values(status="pending", next_attempt_at=now,
                                                    give_up_at=now + RETRY_WINDOW))
            return int(result.rowcount or 0)

    # --- personal data ---
    async def forget(self, person_id: str) -> int:
        """`customer forget`: mask the phones in the bodies of every delivery about the person's tickets.
        Returns how many bodies changed."""
        theirs = col(WebhookDeliveryRow.ticket_number).in_(
            select(col(TicketRow.number)).where(col(TicketRow.customer_id) == person_id).scalar_subquery())
        async with self._sessions.transaction(savepoint=False) as conn:
            rows = list(await conn.execute(select(col(WebhookDeliveryRow.id), col(WebhookDeliveryRow.body))
                                           .where(theirs)))
            return await self._rewrite(conn, rows)

    async def mask_before(self, cutoff: datetime, *, after_id: int, limit: int = 100) -> tuple[int, int, bool]:
        """The retention: mask the phones in the bodies of the deliveries after `after_id` (id order is
        creation order) up to the first one created at or after `cutoff`, at most `limit` of them.
        Returns (bodies changed, the id up to which everything is done, whether the walk reached a
        delivery too young or the end)."""
        async with self._sessions.transaction(savepoint=False) as conn:
            rows = list(await conn.execute(
                select(col(WebhookDeliveryRow.id), col(WebhookDeliveryRow.body), col(WebhookDeliveryRow.created_at))
                .where(col(WebhookDeliveryRow.id) > after_id).order_by(col(WebhookDeliveryRow.id)).limit(limit)))
            due = list(itertools.takewhile(lambda r: r.created_at < cutoff, rows))
            changed = await self._rewrite(conn, due)
        return changed, int(due[-1].id) if due else after_id, len(due) < limit

    @staticmethod
    async def _rewrite(conn: AsyncConnection, rows: list[Any]) -> int:
        updates = [{"w_id": int(r.id), "w_body": masked} for r in rows if (masked := mask_body(r.body)) != r.body]
        if updates:
            await conn.execute(update(WebhookDeliveryRow).where(col(WebhookDeliveryRow.id) == bindparam("w_id"))
                               .values(body=bindparam("w_body")), updates)
        return len(updates)

    # --- the delivery log and the dashboard ---
    async def pending_by_client(self) -> dict[str, int]:
        """Deliveries not yet settled (pending or sending) per system: the /metrics gauge."""
        async with self._sessions.transaction() as conn:
            rows = await conn.execute(
                select(col(WebhookSubscriptionRow.client), func.count())
                .select_from(WebhookDeliveryRow)
                .join(WebhookSubscriptionRow, col(WebhookSubscriptionRow.id) == col(WebhookDeliveryRow.subscription_id))
                .where(col(WebhookDeliveryRow.status).in_(["pending", "sending"]))
                .group_by(col(WebhookSubscriptionRow.client)))
            return {str(client): int(count) for client, count in rows}

    async def log(self, subscription_id: int, limit: int = 20) -> list[dict[str, Any]]:
        """The subscription's latest deliveries, newest first, each with its attempts."""
        async with self._sessions.transaction() as conn:
            deliveries = list(await conn.execute(select(WebhookDeliveryRow).where(
                col(WebhookDeliveryRow.subscription_id) == subscription_id)
                .order_by(col(WebhookDeliveryRow.id).desc()).limit(limit)))
            ids = [d.id for d in deliveries]
            attempts: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
            if ids:
                for a in await conn.execute(select(WebhookAttemptRow).where(
                        col(WebhookAttemptRow.delivery_id).in_(ids)).order_by(col(WebhookAttemptRow.id))):
                    attempts[a.delivery_id].append({"at": a.at.isoformat(), "status_code": a.status_code,
                                                    "latency_ms": a.latency_ms, "error": a.error,
                                                    "signature": a.signature})
        return [{"id": d.id, "event_id": d.event_id, "event_type": d.event_type, "ticket_number": d.ticket_number,
                 "status": d.status, "attempts": d.attempts, "created_at": d.created_at.isoformat(),
                 "last_status": d.last_status, "last_latency_ms": d.last_latency_ms, "last_error": d.last_error,
                 "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
                 "request": {"body": d.body}, "attempt_log": attempts[d.id]} for d in deliveries]

    async def health(self, since: datetime) -> list[dict[str, Any]]:
        """Per system (client): deliveries ok / pending / failed of events since `since`, the success
        rate of the attempts made since then, the last error and when it happened, and since when
        deliveries have been failing (the first failed attempt after the last success), per subscription."""
        async with self._sessions.transaction() as conn:
            subs = {s.id: s for s in (_subscription(r) for r in await conn.execute(
                select(WebhookSubscriptionRow).where(col(WebhookSubscriptionRow.active).is_(True))))}
            counts = list(await conn.execute(
                select(col(WebhookDeliveryRow.subscription_id), col(WebhookDeliveryRow.status), func.count())
                .where(col(WebhookDeliveryRow.created_at) >= since)
                .group_by(col(WebhookDeliveryRow.subscription_id), col(WebhookDeliveryRow.status))))
            tries = list(await conn.execute(
                select(col(WebhookAttemptRow.subscription_id),
                       func.sum(case((col(WebhookAttemptRow.status_code).between(200, 299), 1), else_=0)),
                       func.count())
                .where(col(WebhookAttemptRow.at) >= since).group_by(col(WebhookAttemptRow.subscription_id))))
            last_ok = dict(list(await conn.execute(
                select(col(WebhookAttemptRow.subscription_id), func.max(WebhookAttemptRow.id))
                .where(col(WebhookAttemptRow.status_code).between(200, 299))
                .group_by(col(WebhookAttemptRow.subscription_id)))))
            failing: dict[int, tuple[datetime, datetime, str | None]] = {}
            for sid in subs:
                after = int(last_ok.get(sid) or 0)
                row = (await conn.execute(
                    select(func.min(WebhookAttemptRow.at), func.max(WebhookAttemptRow.at),
                           func.max(WebhookAttemptRow.id))
                    .where(col(WebhookAttemptRow.subscription_id) == sid, col(WebhookAttemptRow.id) > after))).one()
                if row[0] is not None:
                    latest = (await conn.execute(select(col(WebhookAttemptRow.error),
                                                        col(WebhookAttemptRow.status_code))
                                                 .where(col(WebhookAttemptRow.id) == row[2]))).one()
                    failing[sid] = (row[0], row[1], latest[0] or (f"HTTP {latest[1]}" if latest[1] else None))
        systems: dict[str, dict[str, Any]] = {}
        for sid, sub in subs.items():
            system = systems.setdefault(sub.client, {"client": sub.client, "subscriptions": [], "ok": 0,
                                                     "pending": 0, "failed": 0, "attempts": 0, "succeeded": 0,
                                                     "last_error": None, "last_error_at": None})
            system["subscriptions"].append(sid)
            if sid in failing:
                first, last, error = failing[sid]
                system.setdefault("failing", []).append({"subscription": sid, "url": sub.url, "since": first,
                                                         "last_error": error})
                if system["last_error_at"] is None or last > system["last_error_at"]:
                    system["last_error"], system["last_error_at"] = error, last
        for sid, status, count in counts:
            if sid not in subs:
                continue
            system = systems[subs[sid].client]
            key = {"delivered": "ok", "dead": "failed"}.get(status, "pending")
            system[key] += int(count)
        for sid, succeeded, count in tries:
            if sid in subs:
                system = systems[subs[sid].client]
                system["attempts"] += int(count)
                system["succeeded"] += int(succeeded or 0)
        for system in systems.values():
            system["success_rate"] = system["succeeded"] / system["attempts"] if system["attempts"] else None
        return sorted(systems.values(), key=lambda s: s["client"])
