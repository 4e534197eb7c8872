"""Hot statements on SQLite (storage/sqlite/prepared.py): the same rows, values and errors as
SQLAlchemy gives for the same statement, without SQLAlchemy's per-call work."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, String, Table, bindparam, event, insert, select, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, NoResultFound, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.web.app import build_app
from storage.database import session_factory
from storage.sqlite.prepared import HotResult, hot
from storage.types import UtcDateTime
from tests.conftest import make_settings, runtime_of
from tests.playground_client import PlaygroundUser
from tests.sqlite_tables import engine_with_tables
from tests.statements import statements_sent

metadata = MetaData()
things = Table(
    "things", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True, nullable=False),
    Column("at", UtcDateTime(), nullable=True),
    Column("data", JSON, nullable=False),
    Column("flag", Boolean, nullable=False),
    Column("state", String, nullable=False, default="new"),  # a Python-side default
)
AT = datetime(2026, 11, 22, 3, 4, 5, 600, tzinfo=UTC)
DATA = {"text": "底盘异响", "nested": {"ok": True, "n": 1.5, "none": None}}

INSERT = hot(insert(things))
INSERT_RETURNING = hot(insert(things).returning(things.c.id, things.c.name))
UPSERT_RETURNING = hot(sqlite_dialect.insert(things).on_conflict_do_update(
    index_elements=["name"], set_={"flag": True, "state": "moved"}).returning(things.c.id, things.c.state))
BY_NAME = hot(select(things).where(things.c.name == bindparam("name")))
NAMES_IN = hot(select(things.c.name).where(things.c.name.in_(bindparam("names", expanding=True)))
               .order_by(things.c.name))
# `at` is NULL in some rows: an empty list decides for them too (IN: false, NOT IN: true).
AT_NOT_IN = hot(select(things.c.name).where(things.c.at.not_in(bindparam("moments", expanding=True)))
                .order_by(things.c.name))
AT_IN_OR_FLAGGED = hot(select(things.c.name).where(
    things.c.at.in_(bindparam("moments", expanding=True)) | things.c.flag.is_(True)).order_by(things.c.name))
FLAGGED = hot(select(things.c.name).where(things.c.flag.is_(True), things.c.state == "new").order_by(things.c.id))
RENAME = hot(update(things).where(things.c.name == bindparam("w_name")).values(name=bindparam("new_name")))
NOT_HOT = select(things.c.name).where(things.c.name == bindparam("name"))


def row(name: str, **extra: Any) -> dict[str, Any]:
    values = {"name": name, "at": AT, "data": {"n": name, "list": [1, "二"]}, "flag": False, "state": "new"}
    values.update(extra)
    return values


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with engine_with_tables(tmp_path / "hot.db", metadata) as engine:
        yield engine


def count_sqlalchemy_statements(engine: AsyncEngine) -> list[str]:
    seen: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda _c, _cur, statement, *_a: seen.append(statement))
    return seen


async def test_hot_statements_skip_sqlalchemy_and_read_back_what_it_reads(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    via_sqlalchemy = count_sqlalchemy_statements(engine)
    async with sessions() as session, session.begin():
        conn = await session.connection()
        inserted = await conn.execute(INSERT_RETURNING, row("a", flag=True))
        assert isinstance(inserted, HotResult)
        first_id, name = inserted.one()
        assert name == "a"
        await conn.execute(INSERT, [row("b"), row("c", at=None, flag=True)])  # executemany
        found = (await conn.execute(BY_NAME, {"name": "a"})).one()
        flagged = (await conn.execute(FLAGGED)).scalars().all()
    assert via_sqlalchemy == []  # BEGIN IMMEDIATE is the dialect's, not a statement event
    assert found.id == first_id and found[1] == "a"
    assert found.at == AT and found.at.tzinfo is UTC
    assert found.data == {"n": "a", "list": [1, "二"]} and found.flag is True and found.state == "new"
    assert flagged == ["a", "c"]  # the statement's own constants ("new", TRUE) applied

    # SQLAlchemy's own path, on a plain connection, stored and reads the same.
    async with engine.connect() as plain:
        assert (await plain.execute(BY_NAME, {"name": "a"})).one() == tuple(found)
        assert (await plain.execute(FLAGGED)).scalars().all() == flagged
        await plain.execute(INSERT, row("d", flag=True))
        stored = (await plain.execute(BY_NAME, {"name": "d"})).one()
        await plain.commit()
    async with sessions() as session, session.begin():
        assert tuple((await (await session.connection()).execute(BY_NAME, {"name": "d"})).one()) == tuple(stored)


async def test_values_are_stored_as_sqlalchemy_stores_them(engine: AsyncEngine, tmp_path: Path) -> None:
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        await (await session.connection()).execute(INSERT, row("hot", at=AT + timedelta(hours=8), data=DATA))
    async with engine.begin() as plain:
        await plain.execute(INSERT, row("plain", at=AT + timedelta(hours=8), data=DATA))
    with sqlite3.connect(tmp_path / "hot.db") as raw:
        stored = raw.execute("SELECT name, at, data, flag, state FROM things ORDER BY id").fetchall()
    assert stored[0][1:] == stored[1][1:]
    assert stored[0][1] == "2026-11-22 11:04:05.000600"  # naive UTC text, microseconds always written


async def test_nulls_and_booleans_are_bound_as_sqlite_binds_them(engine: AsyncEngine, tmp_path: Path) -> None:
    """storage/sqlite/inline.py registers sqlite3 adapters for None and bool (a speed-up): NULL stays
    NULL and a bool is the integer 0/1, hot or not, in Python's own binding too."""
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        await (await session.connection()).execute(INSERT, [row("t", at=None, flag=True), row("f", flag=False)])
    with sqlite3.connect(tmp_path / "hot.db") as raw:
        stored = raw.execute("SELECT name, typeof(at), flag, typeof(flag) FROM things ORDER BY id").fetchall()
        assert raw.execute("SELECT ?, typeof(?), ?, typeof(?)", (None, None, True, False)).fetchone() == (
            None, "null", 1, "integer")
    assert stored == [("t", "null", 1, "integer"), ("f", "text", 0, "integer")]


async def test_in_lists_of_any_length_and_an_empty_one(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        conn = await session.connection()
        await conn.execute(INSERT, [row(n) for n in ("a", "b")] + [row(n, at=None, flag=n == "d") for n in ("c", "d")])
        via_sqlalchemy = count_sqlalchemy_statements(engine)
        assert (await conn.execute(NAMES_IN, {"names": ["c"]})).scalars().all() == ["c"]
        assert (await conn.execute(NAMES_IN, {"names": ["d", "a", "x"]})).scalars().all() == ["a", "d"]
        # An empty list is SQLite's own `IN ()` (a store-less ticket's supervisor read takes one on every
        # escalation): always false for IN, always true for NOT IN, NULL or not — as SQLAlchemy renders it.
        hot_answers = [(await conn.execute(statement, params)).scalars().all() for statement, params in (
            (NAMES_IN, {"names": []}), (AT_NOT_IN, {"moments": []}), (AT_IN_OR_FLAGGED, {"moments": []}),
            (AT_NOT_IN, {"moments": [AT]}))]
        assert via_sqlalchemy == []
    assert hot_answers == [[], ["a", "b", "c", "d"], ["d"], []]
    async with engine.connect() as plain:  # SQLAlchemy's own rendering answers the same
        for statement, params, answer in zip((NAMES_IN, AT_NOT_IN, AT_IN_OR_FLAGGED, AT_NOT_IN), (
                {"names": []}, {"moments": []}, {"moments": []}, {"moments": [AT]}), hot_answers, strict=True):
            assert (await plain.execute(statement.execution_options(), params)).scalars().all() == answer


async def test_several_rows_with_returning_are_one_statement(engine: AsyncEngine, tmp_path: Path) -> None:
    sessions = session_factory(engine)
    sent: list[str] = []
    async with sessions() as session, session.begin():
        conn = await session.connection()
        await conn.execute(INSERT, row("b"))
        raw = (await conn.get_raw_connection()).driver_connection._connection  # type: ignore[union-attr]
        raw.set_trace_callback(sent.append)
        try:
            result = await conn.execute(UPSERT_RETURNING, [row("a"), row("b"), row("c")])
        finally:
            raw.set_trace_callback(None)
    assert len(sent) == 1 and sent[0].startswith("INSERT INTO things")
    assert sorted(state for _, state in result.all()) == ["moved", "new", "new"]
    async with engine.connect() as plain:
        assert (await plain.execute(select(things.c.name, things.c.state).order_by(things.c.name))).all() == [
            ("a", "new"), ("b", "moved"), ("c", "new")]


async def test_rowcount_and_result_shapes(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        conn = await session.connection()
        await conn.execute(INSERT, [row("a"), row("b")])
        assert (await conn.execute(RENAME, {"w_name": "a", "new_name": "z"})).rowcount == 1
        assert (await conn.execute(RENAME, {"w_name": "missing", "new_name": "y"})).rowcount == 0
        none = await conn.execute(BY_NAME, {"name": "missing"})
        assert none.first() is None and none.one_or_none() is None and none.scalar() is None
        with pytest.raises(NoResultFound):
            (await conn.execute(BY_NAME, {"name": "missing"})).one()
        with pytest.raises(MultipleResultsFound):
            (await conn.execute(select(things.c.name).where(things.c.flag.is_(False)))).one_or_none()
        with pytest.raises(MultipleResultsFound):
            (await conn.execute(NAMES_IN, {"names": ["b", "z"]})).scalar_one_or_none()
        assert [r.name for r in await conn.execute(NAMES_IN, {"names": ["b", "z"]})] == ["b", "z"]


async def test_errors_are_sqlalchemys_and_the_transaction_goes_on(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        conn = await session.connection()
        await conn.execute(INSERT, row("a"))
        savepoint = await conn.begin_nested()
        with pytest.raises(IntegrityError) as caught:
            await conn.execute(INSERT, row("a"))
        assert isinstance(caught.value.orig, sqlite3.IntegrityError) and "things.name" in str(caught.value)
        await savepoint.rollback()
        await conn.execute(INSERT, row("b"))
        # A required parameter left out: SQLAlchemy's own error, as before.
        with pytest.raises(StatementError):
            await conn.execute(BY_NAME, {})
    async with engine.connect() as plain:
        assert (await plain.execute(select(things.c.name).order_by(things.c.name))).scalars().all() == ["a", "b"]


async def test_what_a_plan_cannot_do_runs_through_sqlalchemy(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    via_sqlalchemy = count_sqlalchemy_statements(engine)
    async with sessions() as session, session.begin():
        conn = await session.connection()
        without_state = row("d")
        del without_state["state"]
        await conn.execute(INSERT, without_state)  # the column default is Python's: SQLAlchemy applies it
        assert (await conn.execute(NOT_HOT, {"name": "d"})).scalar_one() == "d"  # not marked hot
        found = await conn.execute(BY_NAME, {"name": "d"}, execution_options={"yield_per": 10})
        assert found.one().state == "new"
    assert len(via_sqlalchemy) == 3
    with pytest.raises(StatementError, match="A value is required for bind parameter 'at'"):
        async with sessions() as session, session.begin():
            await (await session.connection()).execute(INSERT, [row("e"), {"name": "f"}])  # rows of other keys


async def test_a_fault_report_runs_only_hot_statements(sqlite_url: str, tmp_path: Path) -> None:
    """The intake path (playground message → ticket → SLA → dispatch → answer) is all hot: a
    statement that silently fell back to SQLAlchemy would cost ~40 µs per call (the store-less
    stalled ticket's supervisor read did: ~150 µs, on most reports of bench/intake.py), unseen."""
    app = build_app(make_settings(sqlite_url, tmp_path))
    async with TestClient(TestServer(app)) as client:
        for i in range(8):  # the first reports warm up
            await PlaygroundUser(client, f"warm-{i}").say("底盘有异响")
        via_sqlalchemy = count_sqlalchemy_statements(runtime_of(client).engine)
        offered = await PlaygroundUser(client, "offered").say("底盘有异响")
        for i in range(8, 20):  # the four demo technicians' capacity is taken
            await PlaygroundUser(client, f"warm-{i}").say("底盘有异响")
        via_sqlalchemy.clear()
        stalled = await PlaygroundUser(client, "stalled").say("底盘有异响")
    assert "安排技师" in offered["messages"][1]["text"]
    assert "暂时没有可以接单的技师" in stalled["messages"][1]["text"]  # the supervisors were sent a pick card
    assert via_sqlalchemy == []


async def test_a_message_takes_savepoints_only_for_its_place_in_the_group_and_its_command(
        sqlite_url: str, tmp_path: Path) -> None:
    """The sender lookup of every message is a read: no savepoint of its own (three statements)."""
    app = build_app(make_settings(sqlite_url, tmp_path))
    async with TestClient(TestServer(app)) as client:
        await PlaygroundUser(client, "known").say("你好")
        for i in range(8):  # warm-up: the dispatch index is built (an ORM read, a savepoint) once
            await PlaygroundUser(client, f"warm-{i}").say("底盘有异响")
        for user in ("known", "new"):  # a stored sender, and one the report itself stores
            async with statements_sent(runtime_of(client).engine, with_control=True) as sent:
                answer = await PlaygroundUser(client, user).say("底盘有异响")
            assert any("GD-" in (m["text"] or "") for m in answer["messages"])
            savepoints = [s for s in sent if s.startswith("SAVEPOINT")]
            assert len(savepoints) == 2, sent
            assert not [s for s in sent if s.startswith("ROLLBACK")], sent


@pytest.mark.parametrize("moment", [AT, AT.astimezone(ZoneInfo("Asia/Shanghai")), AT.astimezone(ZoneInfo("UTC")),
                                    datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC)])
def test_timestamps_are_stored_as_naive_utc_text_with_microseconds(moment: datetime) -> None:
    from storage.sqlite.inline import InlineSQLiteDialect

    column = UtcDateTime()
    dialect = InlineSQLiteDialect()
    text = column.bind_processor(dialect)(moment)  # type: ignore[misc]
    assert text == moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    assert column.result_processor(dialect, None)(text) == moment  # type: ignore[misc]
    with pytest.raises(ValueError, match="naive"):
        column.bind_processor(dialect)(moment.replace(tzinfo=None))  # type: ignore[misc]
