"""SQL implementation of the 微信客服 adapter's durable state (adapters/wecom/kf_state.py).

Every write is one conditional statement, atomic on SQLite and PostgreSQL alike: the budget is
booked by `UPDATE … SET sent = sent + 1 WHERE sent < 5 AND window_start > now - 48 h RETURNING
sent`, a cursor saved by `UPDATE … WHERE version = <read>`. Writes are members of a shared
transaction (`_write`): on SQLite they join the group commit of whatever is being processed
instead of queueing for the one connection (a reply's booking waited ~20 ms for it under load).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from storage.database import Sessions
from storage.tables_kf import KfBudgetRow, KfContactWayRow, KfCursorRow, KfHeldRow, KfSeenRow

SavedCursor = tuple[str, int]  # (cursor, version)
HeldNotice = tuple[int, str, str | None]  # (id, text, ticket number)


def _insert_ignore(conn: AsyncConnection, table: Any, values: dict[str, Any]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING in the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).values(**values).on_conflict_do_nothing()


class SqlKfState:
    """`messages` in `window` after the customer's last message: the platform's rule, given by the
    adapter (adapters/wecom/kf_state.py; 5 in 48 h for 微信客服)."""

    def __init__(self, sessions: Sessions, *, messages: int = 5, window: timedelta = timedelta(hours=48)) -> None:
        self._sessions = sessions
        self._messages = messages
        self._window = window

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._sessions.shared_transaction(), self._sessions.transaction() as conn:
            yield conn

    # --- cursors ---------------------------------------------------------------------

    async def cursor(self, open_kfid: str) -> SavedCursor:
        async with self._sessions.transaction() as conn:
            row = (await conn.execute(select(col(KfCursorRow.cursor), col(KfCursorRow.version))
                                      .where(col(KfCursorRow.open_kfid) == open_kfid))).first()
        return (str(row[0]), int(row[1])) if row else ("", 0)

    async def save_cursor(self, open_kfid: str, seen: SavedCursor, cursor: str) -> SavedCursor | None:
        now = datetime.now(UTC)
        async with self._write() as conn:
            version = seen[1]
            if version == 0:
                inserted = await conn.execute(_insert_ignore(conn, KfCursorRow, {
                    "open_kfid": open_kfid, "cursor": cursor, "version": 1, "updated_at": now}))
                return (cursor, 1) if inserted.rowcount == 1 else None
            moved = await conn.execute(
                update(KfCursorRow).where(col(KfCursorRow.open_kfid) == open_kfid,
                                          col(KfCursorRow.version) == version)
                .values(cursor=cursor, version=version + 1, updated_at=now))
        return (cursor, version + 1) if moved.rowcount == 1 else None

    # --- budget ----------------------------------------------------------------------

    async def customers_spoke(self, spoken: dict[str, tuple[datetime, str]]) -> set[str]:
        if not spoken:
            return set()
        async with self._write() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(KfBudgetRow)
            current, new = col(KfBudgetRow.window_start), stmt.excluded.window_start
            upsert = stmt.on_conflict_do_update(
                index_elements=[col(KfBudgetRow.external_id)],
                set_={"window_start": new, "last_msgid": stmt.excluded.last_msgid, "sent": 0},
                where=or_(current < new, and_(current == new, col(KfBudgetRow.last_msgid) != stmt.excluded.last_msgid)))
            await conn.execute(upsert, [{"external_id": who, "window_start": at, "last_msgid": msgid[:128], "sent": 0}
                                        for who, (at, msgid) in spoken.items()])
            held = await conn.execute(select(col(KfHeldRow.external_id)).distinct()
                                      .where(col(KfHeldRow.external_id).in_(list(spoken))))
            return {str(who) for who in held.scalars()}

    async def take(self, external_id: str, now: datetime) -> int | None:
        async with self._write() as conn:
            booked = await conn.execute(
                update(KfBudgetRow).where(col(KfBudgetRow.external_id) == external_id,
                                          col(KfBudgetRow.sent) < self._messages,
                                          col(KfBudgetRow.window_start) > now - self._window)
                .values(sent=col(KfBudgetRow.sent) + 1).returning(col(KfBudgetRow.sent)))
            sent = booked.scalar_one_or_none()
        return None if sent is None else self._messages - int(sent)

    async def spend(self, external_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(update(KfBudgetRow).where(col(KfBudgetRow.external_id) == external_id)
                               .values(sent=self._messages))

    async def remaining(self, external_id: str, now: datetime) -> int:
        async with self._sessions.transaction() as conn:
            row = (await conn.execute(select(col(KfBudgetRow.sent), col(KfBudgetRow.window_start))
                                      .where(col(KfBudgetRow.external_id) == external_id))).first()
        if row is None or row[1] <= now - self._window:
            return 0
        return max(0, self._messages - int(row[0]))

    # --- held notices ----------------------------------------------------------------

    async def hold(self, external_id: str, text: str, ticket_number: str | None, now: datetime) -> None:
        async with self._write() as conn:
            await conn.execute(insert(KfHeldRow).values(external_id=external_id, text=text,
                                                        ticket_number=ticket_number, held_at=now))

    async def take_held(self, external_id: str) -> list[HeldNotice]:
        async with self._write() as conn:
            rows = (await conn.execute(select(col(KfHeldRow.id), col(KfHeldRow.text), col(KfHeldRow.ticket_number))
                                       .where(col(KfHeldRow.external_id) == external_id)
                                       .order_by(col(KfHeldRow.id)))).all()
            if not rows:
                return []
            # Only the rows this call deleted are ours: a concurrent caller gets the others (or none).
            gone = await conn.execute(delete(KfHeldRow).where(col(KfHeldRow.id).in_([r[0] for r in rows]))
                                      .returning(col(KfHeldRow.id)))
            mine = {r[0] for r in gone.all()}
        return [(int(r[0] or 0), str(r[1]), r[2]) for r in rows if r[0] in mine]

    # --- msgids answered outside the inbox -----------------------------------------------

    async def first_time(self, msgid: str, now: datetime) -> bool:
        async with self._write() as conn:
            added = await conn.execute(_insert_ignore(conn, KfSeenRow,
                                                      {"msgid": msgid, "seen_at": now, "extra": {}}))
        return added.rowcount == 1

    # --- contact ways ----------------------------------------------------------------

    async def contact_way(self, store_code: str) -> str | None:
        async with self._sessions.transaction() as conn:
            row = (await conn.execute(select(col(KfContactWayRow.url))
                                      .where(col(KfContactWayRow.store_code) == store_code))).first()
        return str(row[0]) if row else None

    async def save_contact_way(self, store_code: str, open_kfid: str, url: str, now: datetime) -> None:
        async with self._write() as conn:
            await conn.execute(_insert_ignore(conn, KfContactWayRow, {
                "store_code": store_code, "open_kfid": open_kfid, "url": url, "created_at": now}))
