"""InlineAsyncSession (storage/sqlite/session.py): SQLite sessions without a greenlet per call,
still waiting their turn for the one connection."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.util.concurrency import in_greenlet

from storage.database import session_factory
from storage.sqlite.session import InlineAsyncSession
from tests.sqlite_tables import Note, engine_with_tables, items


@pytest.fixture
async def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with engine_with_tables(tmp_path / "inline.db") as engine:
        yield engine


def record_greenlet_use(engine: Any) -> list[bool]:
    seen: list[bool] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(*_args: Any) -> None:
        seen.append(in_greenlet())

    return seen


async def test_sqlite_sessions_are_inline_and_only_the_checkout_uses_a_greenlet(engine) -> None:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    seen = record_greenlet_use(engine)
    async with sessions() as session, session.begin():
        assert isinstance(session, InlineAsyncSession)
        await session.execute(insert(items), {"name": "a"})  # checks the connection out: BEGIN, then this
        conn = await session.connection()
        await conn.execute(insert(items), {"name": "b"})
        assert (await session.scalar(select(items.c.name).where(items.c.name == "b"))) == "b"
        session.add(Note(text="n"))
        await session.flush()
    # Only taking the connection from the pool (and BEGIN IMMEDIATE, which is no statement event
    # any more) ran in a greenlet: the four statements ran directly.
    assert seen == [False, False, False, False]
    async with sessions() as session:
        assert (await session.scalars(select(items.c.name).order_by(items.c.id))).all() == ["a", "b"]
        assert (await session.get(Note, 1)) is not None


async def test_a_transaction_holds_the_write_lock_from_its_start(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    other = sqlite3.connect(tmp_path / "inline.db", timeout=0, isolation_level=None)
    try:
        async with sessions() as session, session.begin():
            await session.execute(select(items.c.id))  # only a read so far, yet no one else may write
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("INSERT INTO items (name) VALUES ('other')")
        other.execute("INSERT INTO items (name) VALUES ('other')")  # released at commit
    finally:
        other.close()


async def test_a_second_session_waits_for_the_connection_instead_of_failing(engine) -> None:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    order: list[str] = []
    holding = asyncio.Event()

    async def first(name: str) -> None:
        async with sessions() as session, session.begin():
            await session.execute(insert(items), {"name": name})
            holding.set()
            await asyncio.sleep(0.05)  # suspended mid-transaction, holding the only connection
            order.append("first commits")

    async def second(use_orm: bool) -> None:
        await holding.wait()
        async with sessions() as session, session.begin():
            if use_orm:
                session.add(Note(text="second"))  # the commit's flush is what needs the connection
            else:
                await session.execute(insert(items), {"name": "second"})
        order.append("second committed")

    await asyncio.gather(first("one"), second(use_orm=False))
    assert order == ["first commits", "second committed"]
    holding.clear()
    order.clear()
    await asyncio.gather(first("two"), second(use_orm=True))
    assert order == ["first commits", "second committed"]
    async with sessions() as session:
        assert (await session.scalars(select(Note.text))).all() == ["second"]


async def test_errors_are_sqlalchemys_and_a_rollback_keeps_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        await session.execute(insert(items), {"name": "kept"})
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            await session.execute(insert(items), {"name": "lost"})
            await session.execute(insert(items), {"name": "kept"})
    async with sessions() as session:
        async with session.begin():
            await session.execute(insert(items), {"name": "outer"})
            savepoint = session.begin_nested()
            await savepoint.start()
            await session.execute(insert(items), {"name": "inner"})
            await savepoint.rollback()
        assert (await session.scalars(select(items.c.name).order_by(items.c.id))).all() == ["kept", "outer"]


async def test_a_session_that_changes_nothing_takes_no_connection(engine) -> None:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    seen = record_greenlet_use(engine)
    async with sessions() as session, session.begin():
        pass
    async with sessions() as session:
        await session.commit()
    assert seen == []


async def test_closing_a_session_lets_other_tasks_run(engine) -> None:  # type: ignore[no-untyped-def]
    """Inline statements never yield to the loop; the end of a session does, as AsyncSession's does."""
    sessions = session_factory(engine)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other task")

    task = asyncio.get_running_loop().create_task(other())
    async with sessions() as session, session.begin():
        await session.execute(insert(items), {"name": "x"})
        assert ran == []  # statements ran without a yield
    assert ran == ["other task"]
    await task
