"""The inbox and the outbox as logs of what customers wrote and were told (PIPL; docs/masterdata.md,
"Personal data").

Both exist for delivery: the inbox makes each platform event processed exactly once (its
`(platform, event_key)` must outlive the platforms' redeliveries, which end within hours), the outbox
delivers answers with retries. Once handled, their rows are logs that hold a customer's own words
(phone numbers, addresses typed into a report), shared locations and photos (the playground's images
are inline), and what the service told them. The ticket and the audit trail are the record of the
work, so these rows go: every row older than CUSTOMER_DATA_RETENTION_DAYS (never younger than
MIN_KEPT, which keeps the dedupe keys) by the hourly retention job, and a customer's own rows at once
when they are forgotten. Rows still being delivered or handled are left alone by the retention.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlmodel import col

from storage.database import Sessions
from storage.tables import InboxRow, OutboxRow
from storage.tables_kf import KfHeldRow

MIN_KEPT = timedelta(days=7)
SCAN_SPAN = 5_000  # inbox ids per transaction of the forget's scan: ~12 ms of SQLite's write lock each
_INBOX_FINISHED = ("done", "failed")
_OUTBOX_FINISHED = ("sent", "dead")
_SENDER = col(InboxRow.payload)["sender"].as_string()


def _walk(table: Any) -> tuple[Any, Any, Any, tuple[str, ...]]:
    if table is InboxRow:
        return col(InboxRow.id), col(InboxRow.received_at), col(InboxRow.status), _INBOX_FINISHED
    return col(OutboxRow.id), col(OutboxRow.created_at), col(OutboxRow.status), _OUTBOX_FINISHED


class SqlMessageLogs:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def drop_before(self, table: type[InboxRow] | type[OutboxRow], cutoff: datetime, *, after_id: int,
                          limit: int = 500) -> tuple[int, int, bool]:
        """The retention: delete the finished rows after `after_id` (id order is arrival order) up to the
        first one that arrived at or after `cutoff`, at most `limit` rows looked at. Returns (rows deleted,
        the id up to which everything is done, whether the walk reached a row too young or the end).
        A row still pending is passed over and kept (the walk does not wait for it)."""
        key, at, status, finished = _walk(table)
        async with self._sessions.transaction(savepoint=False) as conn:
            rows = list(await conn.execute(select(key, at).where(key > after_id).order_by(key).limit(limit)))
            due = [int(row[0]) for row in itertools.takewhile(lambda row: row[1] < cutoff, rows)]
            dropped = 0
            if due:
                result = await conn.execute(delete(table).where(key > after_id, key <= due[-1],
                                                                status.in_(finished)))
                dropped = int(result.rowcount or 0)
        return dropped, due[-1] if due else after_id, len(due) < limit

    async def inbox_rows_from(self, senders: Collection[tuple[str, str]], *,
                              span: int = SCAN_SPAN) -> tuple[list[int], int]:
        """The ids of the inbox rows that these (platform, external id) senders sent, and the highest id
        at the time of reading. The sender is inside the payload, so this reads the whole inbox: before
        the forget's transaction (which then looks only at rows after that id), and `span` ids per
        transaction — on SQLite every transaction holds the write lock, which the service's writers
        would otherwise wait on for the whole scan."""
        async with self._sessions.transaction(savepoint=False) as conn:
            newest = int((await conn.execute(select(func.max(col(InboxRow.id))))).scalar() or 0)
        wanted = set(senders)
        found: list[int] = []
        for start in range(0, newest if wanted else 0, span):
            # The senders are matched here, not in SQL: a platform condition there made SQLite walk the
            # (platform, event_key) index — the whole inbox of that platform for every span.
            async with self._sessions.transaction(savepoint=False) as conn:
                rows = await conn.execute(select(col(InboxRow.id), col(InboxRow.platform), _SENDER).where(
                    col(InboxRow.id) > start, col(InboxRow.id) <= min(start + span, newest)))
                found += [int(row_id) for row_id, platform, sender in rows if (platform, sender) in wanted]
        return found, newest

    async def forget(self, person_id: str, senders: Collection[tuple[str, str]], inbox_ids: Collection[int],
                     read_through: int) -> tuple[int, int]:
        """`customer forget`: delete what was sent to the person and what they sent — the inbox rows found
        before (`inbox_rows_from`) and any of theirs that arrived since, and the 微信客服 messages held
        for them. Returns (outbox rows, inbox rows) deleted. Call inside the forget's transaction."""
        async with self._sessions.transaction(savepoint=False) as conn:
            sent = await conn.execute(delete(OutboxRow).where(col(OutboxRow.recipient_id) == person_id))
            ids = sorted(inbox_ids)
            if senders:
                wanted = set(senders)
                later = await conn.execute(select(col(InboxRow.id), col(InboxRow.platform), _SENDER).where(
                    col(InboxRow.id) > read_through))  # a range of the primary key: what arrived since
                ids += [int(row_id) for row_id, platform, sender in later if (platform, sender) in wanted]
                externals = sorted({external for _, external in senders})
                await conn.execute(delete(KfHeldRow).where(col(KfHeldRow.external_id).in_(externals)))
            received = 0
            for first in range(0, len(ids), 500):
                chunk = await conn.execute(delete(InboxRow).where(col(InboxRow.id).in_(ids[first:first + 500])))
                received += int(chunk.rowcount or 0)
        return int(sent.rowcount or 0), received

