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
NAMES_IN_AFTER = hot(select(things.c.name).where(things.c.name.in_(bindparam("names", expanding=True)),
                                                things.c.at >= bindparam("since")).order_by(things.c.name))
NAMES_NOT_IN = hot(select(things.c.name).where(things.c.name.not_in(bindparam("names", expanding=True)))
                   .order_by(things.c.name))
INSERT_PLAIN = hot(insert(things))
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
    assert len(seen) == 2 + 4 * 2 + 2  # inserts, the four pairs, the update and upsert


async def test_in_lists_run_hot_with_sqlalchemys_rows(engine: AsyncEngine) -> None:
    seen = observed(engine)
    async with engine.begin() as conn:
        for name in ("a", "b", "c"):
            await conn.execute(INSERT_RETURNING, row(name, at=AT.replace(second=ord(name) % 60)))
        for names in (["b", "a", "x"], ["c"], [], ["a", "b", "c", "a"]):
            hot_names, plain_names = await both(conn, NAMES_IN, {"names": names})
            assert hot_names.scalars().all() == plain_names.scalars().all() == sorted(set(names) - {"x"})
        # A parameter after the list (numbered before the list's own by SQLAlchemy), a processed value in it.
        for names in (["a", "c"], []):
            hot_rows, plain_rows = await both(conn, NAMES_IN_AFTER, {"names": names, "since": AT.replace(second=0)})
            assert hot_rows.scalars().all() == plain_rows.scalars().all() == [
                n for n in ("a", "c") if n in names]
            hot_rest, plain_rest = await both(conn, NAMES_NOT_IN, {"names": names})
            assert hot_rest.scalars().all() == plain_rest.scalars().all() == [
                n for n in ("a", "b", "c") if n not in names]
        # The same sizes again with other values (the SQL for a size is made once, the values are these).
        for names, since, expected in ((["c", "b"], 0, ["b", "c"]), (["a", "b"], ord("b") % 60, ["b"]),
                                       (["x", "a"], 0, ["a"])):
            hot_rows, plain_rows = await both(conn, NAMES_IN_AFTER, {"names": names, "since": AT.replace(second=since)})
            assert hot_rows.scalars().all() == plain_rows.scalars().all() == expected
    assert len(seen) == 3 + 4 * 2 + 2 * 2 * 2 + 3 * 2  # the listeners see the hot ones too


async def test_several_rows_go_in_one_round_trip_as_sqlalchemy_would_insert_them(engine: AsyncEngine) -> None:
    seen = observed(engine)
    async with engine.begin() as conn:
        data = {"text": "底盘异响", "list": [1, "二", None]}
        hot_rows = [row(f"hot{i}", lat=None if i else 1.5, data=data) for i in range(3)]
        inserted = await conn.execute(INSERT_PLAIN, hot_rows)
        assert isinstance(inserted, HotResult)
        await conn.execute(INSERT_PLAIN, [row(f"plain{i}", lat=None if i else 1.5, data=data) for i in range(3)],
                           execution_options={"compiled_cache": None})
        returned = await conn.execute(INSERT_RETURNING, [row("r0"), row("r1")])
        assert isinstance(returned, HotResult)
        assert [r.name for r in returned] == ["r0", "r1"] and returned.rowcount == 2
        assert all(isinstance(r.id, int) for r in returned)
        stored = (await conn.execute(select(things).order_by(things.c.id))).all()
    assert len(seen) == 4  # one statement (one round trip) for each list of rows
    by_name = {r.name: r for r in stored}
    for i in range(3):
        hot_row, plain_row = by_name[f"hot{i}"], by_name[f"plain{i}"]
        assert hot_row[2:] == plain_row[2:]  # at, data, flag, state, lat: the same values either way
    assert by_name["hot0"].data == data and by_name["hot0"].at == AT


async def test_a_failing_row_of_several_fails_the_statement_and_its_savepoint_undoes_it(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(INSERT_PLAIN, [row("kept")])
        savepoint = await conn.begin_nested()
        with pytest.raises(IntegrityError) as raised:
            await conn.execute(INSERT_PLAIN, [row("new"), row("kept")])
        assert "pg_hot_things_name_key" in str(raised.value)
        await savepoint.rollback()
        with pytest.raises(IntegrityError):
            async with conn.begin_nested():
                await conn.execute(INSERT_RETURNING, [row("other"), row("other")])
    async with engine.connect() as conn:
        assert (await conn.execute(select(things.c.name))).scalars().all() == ["kept"]


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



async def test_savepoints_go_straight_to_asyncpg_and_undo_exactly_their_part(engine: AsyncEngine) -> None:
    seen = observed(engine)
    async with engine.connect() as conn:
        transaction = await conn.begin()
        first = await conn.begin_nested()  # the transaction's first statement: BEGIN goes before it
        await conn.execute(INSERT_RETURNING, row("undone-first"))
        await first.rollback()
        await conn.execute(INSERT_RETURNING, row("kept"))
        kept = await conn.begin_nested()
        await conn.execute(INSERT_RETURNING, row("released"))
        inner = await conn.begin_nested()
        with pytest.raises(IntegrityError):
            await conn.execute(INSERT_RETURNING, row("kept"))
        await inner.rollback()  # the failed statement undone alone; the transaction goes on
        await kept.commit()
        undone = await conn.begin_nested()
        await conn.execute(INSERT_RETURNING, row("undone-last"))
        await undone.rollback()
        await transaction.commit()
    async with engine.connect() as conn:
        assert sorted((await conn.execute(select(things.c.name))).scalars().all()) == ["kept", "released"]
    assert not [s for s in seen if "SAVEPOINT" in s.upper()]  # sent on asyncpg itself, not through a cursor


async def test_a_savepoint_on_a_lost_connection_fails_as_sqlalchemy_errors_do(engine: AsyncEngine) -> None:
    from sqlalchemy.exc import DBAPIError

    async with engine.connect() as conn:
        await conn.begin()
        await conn.execute(INSERT_RETURNING, row("x"))
        raw = (await conn.get_raw_connection()).driver_connection
        pid = raw.get_server_pid()
        async with engine.connect() as other:
            await other.execute(select(func.pg_terminate_backend(pid)))
        with pytest.raises(DBAPIError):
            await conn.begin_nested()
    async with engine.connect() as conn:  # the pool replaced it; nothing was committed
        assert (await conn.execute(select(func.count()).select_from(things))).scalar_one() == 0
