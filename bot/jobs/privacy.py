"""The retention purge: closed tickets older than CUSTOMER_DATA_RETENTION_DAYS lose the customer's
contact data (core/masterdata/privacy.py `scrub`; docs/masterdata.md, "Personal data").

Run from the runtime's sweep loop at most once an hour. A pass walks the tickets that ended between
the watermark and the cutoff one day at a time, each day two index ranges (`closed_at` for closed
tickets, `(status, updated_at)` for cancelled ones), and scrubs them in commands of CHUNK tickets
(each one transaction, audited per ticket; the loop gets a turn between them: issue 24). The watermark
— everything that ended before it is done — is kept as a config version (at most one a day), so a
restart does not walk a million scrubbed tickets again, and no query reads more than a day of ended
tickets while the loop waits.

The same pass masks the phones in the logs that outlive their tickets' contact data: the SMS log
(`sms_sends`, whose expired codes go too) and the stored webhook bodies, every row older than the
retention, walked in id order (the primary key: no scan) from an id watermark kept in the same config
version (storage/sms_store.py, storage/webhook_store.py `mask_before`); and it deletes the handled
inbox and delivered outbox rows older than the retention the same way (storage/message_logs.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from core.masterdata.privacy import PurgeContactData
from core.model import TicketStatus
from core.service import SYSTEM_ACTOR, TicketService
from storage.database import Sessions
from storage.message_logs import MIN_KEPT, SqlMessageLogs
from storage.sms_store import SqlSmsStore
from storage.tables import InboxRow, OutboxRow, TicketRow
from storage.webhook_store import SqlWebhookStore

log = logging.getLogger(__name__)
EVERY = timedelta(hours=1)
# Tickets per command. A command holds the event loop from its first read to its commit (on SQLite every
# statement runs inline): ~1.5 ms per ticket at 100,000 tickets (locked read, scrub, save, audited), so 200
# held it ~0.3 s (bench/loop_stall.py, issue 24); 10 keep each hold ~15 ms.
CHUNK = 10
WATERMARK_KIND = "privacy.retention_watermark"
CANCELLED = TicketStatus.CANCELLED.value


class RetentionPurge:
    def __init__(self, sessions: Sessions, service: TicketService, retention_days: int) -> None:
        self.sessions = sessions
        self.service = service
        self.retention_days = retention_days
        self.last_run: datetime | None = None
        self.done_until: datetime | None = None  # tickets ended before this are done
        self.logs_done_through: dict[str, int] | None = None  # per log table: rows up to this id are done

    async def maybe_run(self, now: datetime) -> int:
        if self.retention_days <= 0 or (self.last_run is not None and now - self.last_run < EVERY):
            return 0
        self.last_run = now
        return await self.run(now)

    async def run(self, now: datetime) -> int:
        """One pass; returns how many tickets were scrubbed."""
        cutoff = now - timedelta(days=self.retention_days)
        stored_payload = await self._stored_watermark()
        stored = datetime.fromisoformat(stored_payload["done_until"]) if stored_payload else None
        if self.logs_done_through is None:
            self.logs_done_through = dict((stored_payload or {}).get("logs_done_through") or {})
        start = self.done_until or stored or await self._oldest_end()
        purged = 0
        day = start
        while day is not None and day < cutoff:
            end = min(day + timedelta(days=1), cutoff)
            numbers = await self._ended_between(day, end)
            for first in range(0, len(numbers), CHUNK):
                purged += int(await self.service.handle(
                    PurgeContactData(tuple(numbers[first:first + CHUNK]), self.retention_days, cutoff),
                    SYSTEM_ACTOR))
                await asyncio.sleep(0)  # a command runs on the loop from start to commit: the loop's turn
            day = end
            await asyncio.sleep(0)  # a first pass over years of history yields between days
        self.done_until = cutoff
        masked = await self._mask_logs(now, cutoff)
        if stored is None or cutoff.date() != stored.date():
            await self._store_watermark(cutoff)
        if purged or masked:
            log.info("retention purge: contact data removed from %s closed tickets, %s log rows masked or deleted",
                     purged, masked)
        return purged

    async def _mask_logs(self, now: datetime, cutoff: datetime) -> int:
        """Mask the phones of the SMS log's and the webhook deliveries' rows older than `cutoff`; delete
        the handled inbox and delivered outbox rows older than it (storage/message_logs.py)."""
        assert self.logs_done_through is not None
        sms = SqlSmsStore(self.sessions)
        messages = SqlMessageLogs(self.sessions)
        steps: dict[str, Callable[..., Awaitable[tuple[int, int, bool]]]] = {
            "sms_sends": sms.mask_before,
            "webhook_deliveries": SqlWebhookStore(self.sessions, self.service.clock).mask_before,
            "inbox": partial(messages.drop_before, InboxRow),
            "outbox": partial(messages.drop_before, OutboxRow),
        }
        masked = 0
        for table, step in steps.items():
            after = int(self.logs_done_through.get(table, 0))
            # The inbox keeps its dedupe keys at least MIN_KEPT whatever the retention (platforms redeliver).
            until = min(cutoff, now - MIN_KEPT) if table in ("inbox", "outbox") else cutoff
            finished = False
            while not finished:
                count, after, finished = await step(until, after_id=after)
                masked += count
                await asyncio.sleep(0)  # a first pass over a long log yields between chunks
            self.logs_done_through[table] = after
        await sms.drop_expired_codes(now)
        return masked

    async def _ended_between(self, start: datetime, end: datetime) -> list[str]:
        closed = select(col(TicketRow.number)).where(col(TicketRow.closed_at) >= start,
                                                     col(TicketRow.closed_at) < end)
        cancelled = select(col(TicketRow.number)).where(col(TicketRow.status) == CANCELLED,
                                                        col(TicketRow.updated_at) >= start,
                                                        col(TicketRow.updated_at) < end)
        async with self.sessions() as session:
            found = [str(n) for n in (await session.execute(closed)).scalars()]
            found += [str(n) for n in (await session.execute(cancelled)).scalars()]
        return found

    async def _oldest_end(self) -> datetime | None:
        async with self.sessions() as session:
            closed = (await session.execute(select(func.min(col(TicketRow.closed_at))))).scalar_one_or_none()
            cancelled = (await session.execute(select(func.min(col(TicketRow.updated_at))).where(
                col(TicketRow.status) == CANCELLED))).scalar_one_or_none()
        found = [d for d in (closed, cancelled) if d is not None]
        return min(found) if found else None

    async def _stored_watermark(self) -> dict[str, Any] | None:
        async with self.service.uow_factory() as uow:
            latest = await uow.latest_config(WATERMARK_KIND)
        return dict(latest[1]) if latest else None

    async def _store_watermark(self, until: datetime) -> None:
        payload = {"done_until": until.isoformat(), "logs_done_through": dict(self.logs_done_through or {})}
        async with self.service.uow_factory() as uow:
            await uow.save_config(WATERMARK_KIND, payload, actor_id=SYSTEM_ACTOR.id,
                                  note="retention purge watermark", at=until)
            await uow.commit()
