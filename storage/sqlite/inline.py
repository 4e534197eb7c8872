"""An aiosqlite connection that runs SQLite calls inline on the event loop thread.

Why: aiosqlite hands every statement to a worker thread and back. A unit of work here is
~30 statements, and each hand-off costs a GIL round trip (up to the 5 ms switch interval
under load), which capped intake at a few dozen tickets per second. SQLite calls on a
local WAL database take microseconds, so running them inline is far cheaper than the
hand-off. The cost: a statement waiting on another process's write lock blocks the loop,
so the busy timeout is kept short; the multi-process deployment uses PostgreSQL.

SQLAlchemy's aiosqlite dialect accepts this through `create_async_engine(async_creator=...)`.
Its adapter still awaits every cursor call through a greenlet switch (three or four per
statement), which costs more than SQLite itself: `InlineDBAPI` (passed as `module=`) hands
SQLAlchemy cursors that call the sqlite3 connection directly instead.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterator, Sequence
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util.concurrency import await_, in_greenlet


class _InlineQueue:
    """Stands in for aiosqlite's thread queue: runs the job at once and settles its future."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting caller, as aiosqlite does
            if future is not None and not future.done():
                future.set_exception(error)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _InlineQueue()  # type: ignore[assignment]

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return partial(fn, *args, **kwargs)()

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._connect().__await__()  # no worker thread to start

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _bind_none_and_bool_directly() -> None:
    """sqlite3 binds exact int, float and str parameters as they are, but for any other type (None,
    bool) it first looks for an adapter: in its registry, then as `PrepareProtocol.__adapt__`, a failed
    attribute lookup on a type that builds and discards an AttributeError with its message (~0.4 µs
    per parameter; a fault report binds ~30 NULLs and booleans). Registered adapters are found in the
    first step. They bind what sqlite3 would bind anyway: NULL for None (`{}.get` returns None, in C),
    0/1 for a bool. Process-wide; sqlite3 is ours alone here."""
    none: dict[None, None] = {}
    sqlite3.register_adapter(type(None), none.get)
    sqlite3.register_adapter(bool, int)


_bind_none_and_bool_directly()


def inline_creator(path: str, *, busy_timeout_s: float = 5.0) -> Callable[[], InlineConnection]:
    def create() -> InlineConnection:
        # check_same_thread=False: SQLAlchemy may dispose the pool from another thread.
        return InlineConnection(partial(sqlite3.connect, path, timeout=busy_timeout_s, check_same_thread=False,
                                        isolation_level=None))

    return create


class _Ready(Awaitable[None]):
    """An awaitable that is already done: awaiting it does not yield to the event loop."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that finishes at once


_READY = _Ready()


class InlineCursor:
    """The DBAPI cursor SQLAlchemy drives, straight over sqlite3: one greenlet switch per statement.

    Rows are fetched when the statement runs, as SQLAlchemy's own async cursors do, so a result
    read later never steps a statement while the next one runs.
    """

    __slots__ = ("_cursor", "_rows", "arraysize", "description", "lastrowid", "rowcount")
    server_side = False

    def __init__(self, adapt_connection: InlineAdaptedConnection) -> None:
        raw = adapt_connection._connection._connection
        if raw is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        self._cursor = raw.cursor()
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    def execute(self, operation: Any, parameters: Any = None) -> None:
        # AsyncConnection.execute insists that the driver awaited something (AwaitRequired otherwise):
        # one switch to the loop's side and straight back, instead of aiosqlite's three or four.
        # Outside a greenlet (InlineAsyncSession, storage/sqlite/session.py) nobody insists.
        if in_greenlet():
            await_(_READY)
        cursor = self._cursor
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        self._settle()

    def executemany(self, operation: Any, seq_of_parameters: Any) -> None:
        if in_greenlet():
            await_(_READY)
        self._cursor.executemany(operation, seq_of_parameters)
        self._settle()

    def _settle(self) -> None:
        cursor = self._cursor
        self.description = cursor.description
        self._rows = deque(cursor.fetchall()) if cursor.description else deque()
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid

    async def _async_soft_close(self) -> None:
        """SQLAlchemy's async result calls this; the rows are already buffered."""

    def close(self) -> None:
        self._rows.clear()
        self._cursor.close()

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        rows = self._rows
        count = self.arraysize if size is None else size
        return [rows.popleft() for _ in range(min(count, len(rows)))]

    def fetchall(self) -> Sequence[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()

    def setinputsizes(self, *_sizes: Any) -> None:
        pass


class InlineAdaptedConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = InlineCursor  # type: ignore[assignment]
    _ss_cursor_cls = InlineCursor  # type: ignore[assignment]

    def commit(self) -> None:
        raw = self._connection._connection
        if raw is not None:
            raw.commit()

    def rollback(self) -> None:
        raw = self._connection._connection
        if raw is not None:
            raw.rollback()

    def begin_immediate(self) -> None:
        raw = self._connection._connection
        if raw is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        raw.execute("BEGIN IMMEDIATE")


class InlineDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """aiosqlite's DBAPI shim, connecting through `async_creator` to an `InlineAdaptedConnection`."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> InlineAdaptedConnection:
        creator = kw.pop("async_creator_fn", None)
        if creator is None:
            raise TypeError("InlineDBAPI connects only through create_async_engine(async_creator=...)")
        return InlineAdaptedConnection(self, await_(creator(*arg, **kw)))


class InlineSQLiteDialect(SQLiteDialect_aiosqlite):
    """aiosqlite's dialect over `InlineDBAPI`, whose transactions begin with BEGIN IMMEDIATE.

    BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
    writes can fail with "database is locked" when another process wrote in between. It is
    sent here rather than from a "begin" event (SQLAlchemy's documented recipe): any engine
    event makes SQLAlchemy dispatch events around every statement, and the event's
    exec_driver_sql is a whole statement execution. An error here still arrives as
    SQLAlchemy's (Connection._begin_impl wraps it).
    """

    supports_statement_cache = True  # a subclass must say so again: it compiles as its parent does

    @classmethod
    def import_dbapi(cls) -> InlineDBAPI:
        return InlineDBAPI()

    def do_begin(self, dbapi_connection: Any) -> None:
        dbapi_connection.begin_immediate()

    # Savepoints (a session joined to a shared transaction has one per unit of work) straight on
    # sqlite3, for the same reason: SQLAlchemy's default runs each as a whole statement execution.
    def do_savepoint(self, connection: Any, name: str) -> None:
        raw_connection(connection).execute(f"SAVEPOINT {self.identifier_preparer.quote(name)}")

    def do_rollback_to_savepoint(self, connection: Any, name: str) -> None:
        # SQLite keeps a savepoint open after rolling back to it; SQLAlchemy is done with it, and a
        # group commit would otherwise nest every later savepoint one level deeper.
        raw = raw_connection(connection)
        quoted = self.identifier_preparer.quote(name)
        raw.execute(f"ROLLBACK TO SAVEPOINT {quoted}")
        raw.execute(f"RELEASE SAVEPOINT {quoted}")

    def do_release_savepoint(self, connection: Any, name: str) -> None:
        raw_connection(connection).execute(f"RELEASE SAVEPOINT {self.identifier_preparer.quote(name)}")


def raw_connection(connection: Any) -> sqlite3.Connection:
    """The sqlite3 connection under a SQLAlchemy Connection of the inline engine."""
    raw = connection.connection.dbapi_connection._connection._connection
    if raw is None:
        raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
    return raw


registry.register("sqlite.inline", __name__, "InlineSQLiteDialect")
