"""What SQL a database receives, for tests that count statements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@asynccontextmanager
async def statements_sent(engine: AsyncEngine, *, with_control: bool = False) -> AsyncIterator[list[str]]:
    """Every statement sent while the block runs. On SQLite from sqlite3's own trace (hot statements,
    storage/sqlite/prepared.py, bypass SQLAlchemy's events; the engine has its one connection), on
    PostgreSQL from SQLAlchemy's cursor events (which savepoints bypass there: storage/database.py sends
    them on asyncpg itself). Transaction control (BEGIN, COMMIT, SAVEPOINT ...) is left out unless
    `with_control`."""
    sent: list[str] = []
    control = () if with_control else ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")

    def keep(statement: str) -> None:
        if not statement.lstrip().upper().startswith(control):
            sent.append(statement)

    if engine.dialect.name == "sqlite":
        async with engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection._connection  # type: ignore[union-attr]
        raw.set_trace_callback(keep)
        try:
            yield sent
        finally:
            raw.set_trace_callback(None)
        return

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        keep(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
