"""Queries the timer engines need: what is due, and when the next one is."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from storage.tables import TimerRowTable


class SqlTimerStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def due(self, now: datetime, limit: int = 500) -> list[tuple[int, int]]:
        """(timer id, generation) of pending timers due by `now`, oldest first."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(col(TimerRowTable.id), col(TimerRowTable.generation))
                .where(col(TimerRowTable.state) == "pending", col(TimerRowTable.due_at) <= now)
                .order_by(col(TimerRowTable.due_at)).limit(limit)
            )
            # A stored row's id is never NULL (TimerRowTable.id is `int | None` for unsaved rows).
            return [(int(r[0]), int(r[1])) for r in rows.all()]  # type: ignore[arg-type]

    async def pending_due_before(self, until: datetime, limit: int = 2000) -> list[tuple[int, int, datetime]]:
        """(id, generation, due_at) of pending timers due before `until` (overdue ones included), oldest first."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(col(TimerRowTable.id), col(TimerRowTable.generation), col(TimerRowTable.due_at))
                .where(col(TimerRowTable.state) == "pending", col(TimerRowTable.due_at) < until)
                .order_by(col(TimerRowTable.due_at)).limit(limit)
            )
            # A stored row's id is never NULL (TimerRowTable.id is `int | None` for unsaved rows).
            return [(int(r[0]), int(r[1]), r[2]) for r in rows.all()]  # type: ignore[arg-type]

    async def next_due_at(self) -> datetime | None:
        async with self._sessions() as session:
            value = (await session.execute(
                select(func.min(TimerRowTable.due_at)).where(col(TimerRowTable.state) == "pending"))).scalar_one()
        if value is None:
            return None
        # MIN() bypasses the column type on SQLite: normalise like UtcDateTime does.
        from storage.types import UtcDateTime

        # The sessions are bound to an engine: session.bind is never None here.
        return UtcDateTime().process_result_value(value, session.bind.dialect)  # type: ignore[union-attr]
