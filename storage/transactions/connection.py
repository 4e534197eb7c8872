"""A transaction at the connection level, without an ORM session unless one is asked for.

Why: an AsyncSession's transaction bookkeeping (its state machine, connection binding, identity
map, closing) cost ~100 µs per transaction, and the hot paths (a unit of work of intake, the inbox
accept, the playground read-back) run Core statements only. `Transaction` begins on the connection
itself: its own BEGIN … COMMIT on a connection from the pool, or a savepoint of the task's shared
transaction (storage/transactions/shared.py). An ORM session (`orm()`) is made only for the few
reads and writes of mapped rows, inside the transaction, as a savepoint of its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from storage.sqlite.inline import InlineDBAPI
from storage.sqlite.session import inline_connection, let_others_run
from storage.transactions.shared import shared_here


class Transaction:
    """Begins on the first `connection()`, ends with `end()`; may begin again after that."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, savepoint: bool = True) -> None:
        """`savepoint=False`: inside a shared transaction, no savepoint of its own, for work that
        cannot fail halfway (one statement, or reads): a failure fails the shared transaction's block."""
        self._sessions = sessions
        self._savepoint = savepoint
        self.engine: AsyncEngine = sessions.kw["bind"]
        # The inline SQLite driver never waits on I/O: begin, commit and savepoints run without a greenlet.
        self._inline = isinstance(self.engine.dialect.loaded_dbapi, InlineDBAPI)
        # While open: the connection, whether it is ours (else the shared transaction's), the
        # SQLAlchemy transaction on it (root or savepoint), and the ORM session if one was made.
        self._conn: AsyncConnection | None = None
        self._own_connection = False
        self._transaction: Any = None
        self._orm: AsyncSession | None = None

    async def connection(self) -> AsyncConnection:
        if self._conn is None:
            await self._begin()
            assert self._conn is not None
        return self._conn

    async def _begin(self) -> None:
        shared = shared_here()
        conn = shared.connection if shared is not None else await self.engine.connect()
        own = shared is None
        try:
            if not own and not self._savepoint:
                self._transaction = _Joined()
                if self._inline:
                    conn = inline_connection(conn.sync_connection)  # type: ignore[arg-type]
            elif self._inline:
                sync = conn.sync_connection
                assert sync is not None
                self._transaction = sync.begin() if own else sync.begin_nested()
                conn = inline_connection(sync)  # hot statements run on this one
            else:
                self._transaction = await (conn.begin() if own else conn.begin_nested())
        except BaseException:
            if own:
                await conn.close()
            raise
        self._conn, self._own_connection = conn, own

    async def orm(self) -> AsyncSession:
        """An ORM session inside this transaction, for loading and adding mapped rows."""
        if self._orm is None:
            self._orm = self._sessions(bind=await self.connection(), join_transaction_mode="create_savepoint")
        return self._orm

    async def end(self, *, commit: bool) -> None:
        """Commit (or roll back) and give the connection back; a later `connection()` begins anew."""
        conn, transaction, orm = self._conn, self._transaction, self._orm
        self._conn = self._transaction = self._orm = None
        if conn is None:
            return
        try:
            try:
                if orm is not None:
                    await (orm.commit() if commit else orm.close())  # its savepoint: released, or undone
                if commit:
                    await self._finish(transaction, commit=True)
            except BaseException:
                await self._finish(transaction, commit=False)
                raise
            if not commit:
                await self._finish(transaction, commit=False)
        finally:
            if self._own_connection:
                await conn.close()
                if self._inline:
                    await let_others_run()

    async def _finish(self, transaction: Any, *, commit: bool) -> None:
        if not transaction.is_active:
            return  # already ended, by an error while it ended
        if isinstance(transaction, _Joined):
            return  # the shared transaction's block ends it
        if self._inline:
            transaction.commit() if commit else transaction.rollback()
        else:
            await (transaction.commit() if commit else transaction.rollback())


class _Joined:
    """Work in the shared transaction itself, without a savepoint (`savepoint=False`)."""

    is_active = True
