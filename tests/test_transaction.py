"""storage/transactions/connection.py: a transaction on the connection, with an ORM session only when asked for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from storage.database import Sessions
from storage.tables import ConfigVersionRow, StoreRow
from storage.transactions.connection import Transaction

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


async def stores(sessions: Sessions) -> list[str]:
    async with sessions.transaction() as conn:
        return list((await conn.execute(select(StoreRow.id).order_by(StoreRow.id))).scalars())


async def test_core_and_orm_work_commit_together_or_not_at_all(db_sessions: Sessions) -> None:
    for commit in (False, True):
        transaction = Transaction(db_sessions)
        conn = await transaction.connection()
        await conn.execute(insert(StoreRow), {"id": f"core-{commit}", "name": "店", "lat": 31.2, "lng": 121.4})
        orm = await transaction.orm()
        orm.add(StoreRow(id=f"orm-{commit}", name="店", lat=31.2, lng=121.4))
        await transaction.end(commit=commit)
    assert await stores(db_sessions) == ["core-True", "orm-True"]


async def test_after_a_commit_the_next_statement_begins_anew(db_sessions: Sessions) -> None:
    transaction = Transaction(db_sessions)
    await (await transaction.connection()).execute(insert(StoreRow), {"id": "a", "name": "甲", "lat": 1, "lng": 1})
    await transaction.end(commit=True)
    assert await stores(db_sessions) == ["a"]  # the connection went back to the pool in between (SQLite has one)
    await (await transaction.connection()).execute(insert(StoreRow), {"id": "b", "name": "乙", "lat": 1, "lng": 1})
    await transaction.end(commit=False)
    assert await stores(db_sessions) == ["a"]


async def test_a_failed_flush_rolls_back_and_leaves_the_connection_usable(db_sessions: Sessions) -> None:
    async with db_sessions.transaction() as conn:
        await conn.execute(insert(ConfigVersionRow), {"kind": "k", "version": 1, "payload": {}, "actor_id": "a",
                                                      "note": "", "created_at": NOW})
    transaction = Transaction(db_sessions)
    await (await transaction.connection()).execute(insert(StoreRow), {"id": "gone", "name": "丙", "lat": 1, "lng": 1})
    orm = await transaction.orm()
    orm.add(ConfigVersionRow(kind="k", version=1, payload={}, actor_id="b", note="", created_at=NOW))
    with pytest.raises(IntegrityError):
        await orm.flush()
    await transaction.end(commit=False)
    assert await stores(db_sessions) == []
    async with db_sessions.transaction() as conn:
        assert (await conn.execute(select(func.count()).select_from(ConfigVersionRow))).scalar_one() == 1


async def test_inside_a_shared_transaction_it_is_a_savepoint(db_sessions: Sessions) -> None:
    async with db_sessions.shared_transaction():
        with pytest.raises(RuntimeError):
            async with db_sessions.transaction() as conn:
                await conn.execute(insert(StoreRow), {"id": "undone", "name": "丁", "lat": 1, "lng": 1})
                raise RuntimeError("this part fails")
        async with db_sessions.transaction() as conn:
            await conn.execute(insert(StoreRow), {"id": "kept", "name": "戊", "lat": 1, "lng": 1})
    assert await stores(db_sessions) == ["kept"]


async def test_without_a_savepoint_it_is_the_shared_transaction_itself(db_sessions: Sessions) -> None:
    with pytest.raises(RuntimeError):
        async with db_sessions.shared_transaction():
            async with db_sessions.transaction(savepoint=False) as conn:
                await conn.execute(insert(StoreRow), {"id": "with-the-block", "name": "己", "lat": 1, "lng": 1})
            assert await stores(db_sessions) == ["with-the-block"]
            raise RuntimeError("the block fails: its work goes, savepoint or not")
    assert await stores(db_sessions) == []
    async with db_sessions.transaction(savepoint=False) as conn:  # outside one: an ordinary transaction
        await conn.execute(insert(StoreRow), {"id": "own", "name": "庚", "lat": 1, "lng": 1})
    assert await stores(db_sessions) == ["own"]


async def test_sqlite_sends_no_savepoint_for_it(sqlite_sessions: Sessions) -> None:
    sent: list[str] = []
    async with sqlite_sessions.kw["bind"].connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection._connection  # type: ignore[union-attr]
    async with sqlite_sessions.shared_transaction():
        raw.set_trace_callback(sent.append)
        try:
            async with sqlite_sessions.transaction(savepoint=False) as conn:
                await conn.execute(insert(StoreRow), {"id": "x", "name": "辛", "lat": 1, "lng": 1})
            async with sqlite_sessions.transaction() as conn:
                await conn.execute(insert(StoreRow), {"id": "y", "name": "壬", "lat": 1, "lng": 1})
        finally:
            raw.set_trace_callback(None)
    assert [s.split()[0] for s in sent] == ["INSERT", "SAVEPOINT", "INSERT", "RELEASE"]
