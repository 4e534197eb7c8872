"""The SQLite driver shim (storage/sqlite/inline.py): statements run inline; results and errors as usual."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError

from storage.database import create_engine, session_factory
from tests.sqlite_tables import engine_with_tables, items


@pytest.fixture
async def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with engine_with_tables(tmp_path / "inline.db") as engine:
        yield engine


async def test_statements_run_on_the_event_loop_thread(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection._connection
        raw.create_function("thread_id", 0, threading.get_ident)
        assert (await conn.execute(text("SELECT thread_id()"))).scalar_one() == threading.get_ident()


async def test_returning_executemany_and_rowcount(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        first = (await conn.execute(insert(items).returning(items.c.id), {"name": "a"})).scalar_one()
        await conn.execute(insert(items), [{"name": "b"}, {"name": "c"}])
        changed = await conn.execute(update(items).where(items.c.id > first).values(name=items.c.name + "!"))
        assert changed.rowcount == 2
    async with engine.connect() as conn:
        names = (await conn.execute(select(items.c.name).order_by(items.c.id))).scalars().all()
    assert names == ["a", "b!", "c!"]


async def test_a_constraint_error_is_sqlalchemys_and_the_rollback_keeps_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    async with sessions() as session:
        await session.begin()
        await session.execute(insert(items), {"name": "kept"})
        await session.commit()
    async with sessions() as session:
        await session.begin()
        await session.execute(insert(items), {"name": "lost"})
        with pytest.raises(IntegrityError):
            await session.execute(insert(items), {"name": "kept"})
        await session.rollback()
    async with sessions() as session:
        assert (await session.execute(select(items.c.name))).scalars().all() == ["kept"]


async def test_streamed_results_arrive_whole(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await conn.execute(insert(items), [{"name": f"n{i}"} for i in range(250)])
    async with engine.connect() as conn:
        result = await conn.stream(select(items.c.name).order_by(items.c.id))
        names = [row.name async for row in result]
    assert names == [f"n{i}" for i in range(250)]


async def test_a_closed_engine_refuses_statements_clearly(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'closed.db'}")
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        raw.driver_connection.stop()  # the file handle is gone, as after a crash of the connection
        with pytest.raises(Exception, match="closed"):
            await conn.execute(text("SELECT 1"))
    await engine.dispose()
