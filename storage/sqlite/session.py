"""An AsyncSession for the inline SQLite engine that calls the ORM session without a greenlet.

Why: SQLAlchemy's asyncio layer runs every call (execute, get, flush, commit, close ...) in a
new greenlet, so that a driver may suspend it to await I/O. The inline SQLite driver
(storage/sqlite/inline.py) never waits on I/O, so the greenlet only costs: ~11 µs per call
here, and a message is ~70 such calls. This session calls the sync session directly.

One wait remains: the pool's. SQLite has one connection; a session that needs it while another
coroutine holds it (suspended mid-transaction on some other await) must wait, and the pool can
only wait inside a greenlet. So the call that takes the connection, the first of each
transaction, still goes through SQLAlchemy's greenlet path; every later call runs inline.

And since nothing here waits, nothing here yields to the event loop either: closing a session
does (see `close`), so that requests keep being read while a backlog is processed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.ext.asyncio.session import AsyncSessionTransaction
from sqlalchemy.util import EMPTY_DICT, greenlet_spawn, immutabledict

from storage.sqlite.prepared import execute_maybe_hot

# What AsyncSession adds to every execute: results are buffered before the call returns.
_BUFFERED = immutabledict({"prebuffer_rows": True})


def _buffered(options: Any) -> Any:
    return immutabledict(options).union(_BUFFERED) if options else _BUFFERED


class InlineAsyncConnection(AsyncConnection):
    """The session's connection, once it holds one: statements run without a greenlet."""

    async def execute(self, statement: Any, parameters: Any = None, *,
                      execution_options: Any = None) -> Any:
        sync = self._proxied
        # Hot statements skip SQLAlchemy's per-call work (storage/sqlite/prepared.py), inside a
        # transaction the session began (autobegin and its BEGIN IMMEDIATE stay SQLAlchemy's).
        if execution_options is None:
            return execute_maybe_hot(sync, statement, parameters)
        return sync.execute(statement, parameters, execution_options=execution_options)

    async def exec_driver_sql(self, statement: str, parameters: Any = None,
                              execution_options: Any = None) -> Any:
        return self._proxied.exec_driver_sql(statement, parameters, execution_options)


YIELD_TURNS = 2


async def let_others_run(turns: int = YIELD_TURNS) -> None:
    """Give the event loop YIELD_TURNS turns after inline work. Statements on the inline engine never
    yield: without this, a backlog of inbox rows would be processed end to end while the platforms'
    callbacks (the inbox accepts, which processing otherwise waits for) sit unread in their sockets.
    Two turns: one reads the sockets (starting the handlers), one runs the handlers up to their own
    inbox transaction, before our next one."""
    for _ in range(turns):
        await asyncio.sleep(0)


def inline_connection(sync_connection: Connection) -> InlineAsyncConnection:
    """The InlineAsyncConnection over a connection of the inline engine (one per connection)."""
    proxy = InlineAsyncConnection._retrieve_proxy_for_target(sync_connection, regenerate=False)
    if isinstance(proxy, InlineAsyncConnection):
        return proxy
    return InlineAsyncConnection(AsyncEngine._retrieve_proxy_for_target(sync_connection.engine), sync_connection)


class InlineSessionTransaction(AsyncSessionTransaction):
    async def start(self, is_ctxmanager: bool = False) -> InlineSessionTransaction:
        sync_session = self.session.sync_session
        self.sync_transaction = self._assign_proxied(
            sync_session.begin_nested() if self.nested else sync_session.begin())
        if is_ctxmanager:
            self.sync_transaction.__enter__()
        return self

    async def commit(self) -> None:
        await self.session._take_connection_to_write()  # type: ignore[attr-defined]
        self._sync_transaction().commit()

    async def rollback(self) -> None:
        self._sync_transaction().rollback()

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        if type_ is None:
            await self.session._take_connection_to_write()  # type: ignore[attr-defined]
        self._sync_transaction().__exit__(type_, value, traceback)


class InlineAsyncSession(AsyncSession):
    """AsyncSession over the inline SQLite driver (see the module docstring)."""

    async def _take_connection(self) -> None:
        """Check the connection out of the pool, waiting in a greenlet if another session has it."""
        transaction = self.sync_session.get_transaction()
        # _connections: SessionTransaction's map of the connections it holds (private, but it has
        # kept its name through SQLAlchemy 1.4-2.1; tests/test_sqlite_session.py fails if it changes).
        if transaction is None or not transaction._connections:
            if self._joined:
                self.sync_session.connection()  # a connection already held: nothing to wait for
            else:
                await greenlet_spawn(self.sync_session.connection)

    async def _take_connection_to_write(self) -> None:
        """Before a flush or commit: only pending ORM changes need a connection."""
        sync_session = self.sync_session
        if sync_session.new or sync_session.deleted or sync_session.dirty:
            await self._take_connection()

    async def connection(self, bind_arguments: Any = None, execution_options: Any = None,
                         **kw: Any) -> AsyncConnection:
        await self._take_connection()
        return inline_connection(self.sync_session.connection(
            bind_arguments=bind_arguments, execution_options=execution_options, **kw))

    async def execute(self, statement: Any, params: Any = None, *,
                      execution_options: Any = EMPTY_DICT, bind_arguments: Any = None, **kw: Any) -> Any:
        await self._take_connection()
        return self.sync_session.execute(statement, params=params, execution_options=_buffered(execution_options),
                                         bind_arguments=bind_arguments, **kw)

    async def scalar(self, statement: Any, params: Any = None, *,
                     execution_options: Any = EMPTY_DICT, bind_arguments: Any = None, **kw: Any) -> Any:
        await self._take_connection()
        return self.sync_session.scalar(statement, params=params, execution_options=_buffered(execution_options),
                                        bind_arguments=bind_arguments, **kw)

    async def scalars(self, statement: Any, params: Any = None, *,
                      execution_options: Any = EMPTY_DICT, bind_arguments: Any = None, **kw: Any) -> Any:
        result = await self.execute(statement, params, execution_options=execution_options,
                                    bind_arguments=bind_arguments, **kw)
        return result.scalars()

    async def get(self, entity: Any, ident: Any, **kw: Any) -> Any:
        await self._take_connection()
        return self.sync_session.get(entity, ident, **kw)

    async def flush(self, objects: Any = None) -> None:
        await self._take_connection_to_write()
        self.sync_session.flush(objects=objects)

    async def delete(self, instance: object) -> None:
        await self._take_connection()
        self.sync_session.delete(instance)

    async def commit(self) -> None:
        await self._take_connection_to_write()
        self.sync_session.commit()

    async def rollback(self) -> None:
        self.sync_session.rollback()

    @property
    def _joined(self) -> bool:
        """Bound to a connection that holds a transaction (storage.database's shared transaction)."""
        return isinstance(self.bind, AsyncConnection)

    async def close(self) -> None:
        self.sync_session.close()
        if self._joined:
            return  # one of several units of work in one caller's transaction, which holds the connection
        # Then let the loop run, as AsyncSession's `async with` did, closing in a task.
        await let_others_run()

    def begin(self) -> AsyncSessionTransaction:
        return InlineSessionTransaction(self)

    def begin_nested(self) -> AsyncSessionTransaction:
        return InlineSessionTransaction(self, nested=True)

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        # AsyncSession closes in a shielded task so that a cancellation cannot interrupt it; an
        # inline close cannot be interrupted until it yields, and then it is closed already.
        await self.close()
