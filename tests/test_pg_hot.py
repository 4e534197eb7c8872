"""Hot statements on PostgreSQL (storage/database.py, run_hot_asyncpg): straight on the asyncpg
connection, with the same rows, values, row counts, errors and transaction as SQLAlchemy gives for the
same statement, and without SQLAlchemy's per-call work; its cursor-event listeners still see them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError, NoResultFound
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.database import create_engine
from storage.sqlite.prepared import HotResult, hot
from storage.types import UtcDateTime

metadata = MetaData()
things = Table(
    "pg_hot_things", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True, nullable=False),
    Column("at", UtcDateTime(), nullable=True),
    Column("data", JSON, nullable=False),
    Column("flag", Boolean, nullable=False),
    Column("state", String, nullable=False),
    # A float: SQLAlchemy's asyncpg result processor for it needs the type asyncpg reports.
    Column("lat", Float, nullable=True),
)
AT = datetime(2026, 11, 22, 3, 4, 5, 600, tzinfo=UTC)

INSERT_RETURNING = hot(insert(things).returning(things.c.id, things.c.name))
UPSERT_RETURNING = hot(postgresql.insert(things).on_conflict_do_update(
    index_elements=["name"], set_={"flag": True, "state": "moved"}).returning(things.c.id, things.c.state))
BY_NAME = hot(select(things).where(things.c.name == bindparam("name")))
COUNT = hot(select(func.count()).select_from(things))
NAMES_IN = hot(select(things.c.name).where(things.c.name.in_(bindparam("names", expanding=True)))
               .order_by(things.c.name))
FLAGGED = hot(select(things.c.name).where(things.c.flag.is_(True), things.c.state == "new").order_by(things.c.id))
RENAME = hot(update(things).where(things.c.name.like(bindparam("w_like"))).values(state=bindparam("new_state")))


def row(name: str, **extra: Any) -> dict[str, Any]:
    values = {"name": name, "at": AT, "data": {"n": name, "text": "底盘异响", "list": [1, "二", None]}, "flag": False,
              "state": "new", "lat": 31.2304}
    values.update(extra)
    return values


@pytest.fixture
async def engine(postgres_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_database)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await engine.dispose()


def observed(engine: AsyncEngine) -> list[str]:
    """The statements a before_cursor_execute listener sees (tests/statements.py counts with one)."""
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    return seen


async def both(conn: AsyncConnection, statement: Any, parameters: Any = None) -> tuple[Any, Any]:
    """The statement hot, then through SQLAlchemy (any execution option takes that path)."""
    hot_result = await conn.execute(statement, parameters)
    plain = await conn.execute(statement, parameters, execution_options={"compiled_cache": None})
    assert isinstance(hot_result, HotResult) and not isinstance(plain, HotResult)
    return hot_result, plain


async def test_hot_statements_give_what_sqlalchemy_gives(engine: AsyncEngine) -> None:
    seen = observed(engine)
    async with engine.begin() as conn:
        inserted = await conn.execute(INSERT_RETURNING, row("a"))
        assert isinstance(inserted, HotResult)
        first = inserted.one()
        assert first.name == "a" and first == (first.id, "a")
        await conn.execute(INSERT_RETURNING, row("b", flag=True))
        assert [s.split()[:3] for s in seen] == [["INSERT", "INTO", "pg_hot_things"]] * 2

        hot_row, plain_row = await both(conn, BY_NAME, {"name": "a"})
        a, b = hot_row.one(), plain_row.one()
        assert tuple(a) == tuple(b)
        assert a.at == AT and a.at.tzinfo is not None and a.data == row("a")["data"] and a.flag is False
        assert a.lat == 31.2304 and isinstance(a.lat, float)
        hot_count, plain_count = await both(conn, COUNT)
        assert hot_count.scalar_one() == plain_count.scalar_one() == 2
        hot_flagged, plain_flagged = await both(conn, FLAGGED)
        assert hot_flagged.scalars().all() == plain_flagged.scalars().all() == ["b"]
        missing, _ = await both(conn, BY_NAME, {"name": "none"})
        assert missing.first() is None
        with pytest.raises(NoResultFound):
            missing.one()

        renamed = await conn.execute(RENAME, {"w_like": "%", "new_state": "seen"})
        assert renamed.rowcount == 2
        moved = await conn.execute(UPSERT_RETURNING, row("a"))
        assert moved.one().state == "moved"
        # An IN list is not planned here: SQLAlchemy runs it, with the same result.
        names = await conn.execute(NAMES_IN, {"names": ["b", "a", "x"]})
        assert not isinstance(names, HotResult) and names.scalars().all() == ["a", "b"]
    assert len(seen) == 2 + 4 * 2 + 2 + 1  # inserts, the four pairs, the update and upsert, the IN list


async def test_the_first_hot_statement_begins_the_transaction(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(INSERT_RETURNING, row("undone"))
        await transaction.rollback()
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(things))).scalar_one() == 0
    async with engine.begin() as conn:
        await conn.execute(INSERT_RETURNING, row("kept"))
    async with engine.connect() as conn:
        assert (await conn.execute(select(things.c.name))).scalars().all() == ["kept"]


async def test_errors_are_sqlalchemys_and_fail_the_transaction_as_before(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(INSERT_RETURNING, row("dup"))
    with pytest.raises(IntegrityError) as raised:
        async with engine.begin() as conn:
            await conn.execute(INSERT_RETURNING, row("dup"))
    assert "pg_hot_things_name_key" in str(raised.value)
    # A savepoint undoes the failed statement alone, as the units of work rely on.
    async with engine.begin() as conn:
        savepoint = await conn.begin_nested()
        with pytest.raises(IntegrityError):
            await conn.execute(INSERT_RETURNING, row("dup"))
        await savepoint.rollback()
        await conn.execute(INSERT_RETURNING, row("after"))
    async with engine.connect() as conn:
        assert sorted((await conn.execute(select(things.c.name))).scalars().all()) == ["after", "dup"]
