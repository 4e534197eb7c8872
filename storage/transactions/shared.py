"""Shared transactions: everything a task does through the session factory inside one block is one
database transaction, and on SQLite consecutive blocks share one transaction (group commit).

Why. The playground answers a message only after handling it, so its answer is the
acknowledgement: storing the message, the units of work that handle it, and finishing and reading
it back can be one transaction (each unit of work a savepoint, undone alone if it fails) instead
of four. On SQLite there is one connection and transactions run one after another anyway; a
COMMIT writes every page the transaction changed to the log, and consecutive fault reports change
mostly the same pages (the last leaf of each table and index). So while blocks keep arriving, each
becomes a savepoint of the same transaction, and one COMMIT makes the whole group durable; every
member waits for it before it answers. Nothing is visible to other connections before the commit,
and nothing is acknowledged before it either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.sqlite.inline import InlineDBAPI

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]

# A group commits once this many loop turns passed without a new member, or when it is this big
# or this old: the first member's answer waits at most about MAX_GROUP_AGE_S for the others.
QUIET_TURNS = 2
MAX_GROUP_MEMBERS = 64
MAX_GROUP_AGE_S = 0.05


@dataclass(slots=True)
class SharedTransaction:
    connection: AsyncConnection
    owner: asyncio.Task[Any] | None
    after_commit: list[AfterCommit] = field(default_factory=list)
    commit_soon: Callable[[], None] | None = None  # a group member's: see `commit_soon`


_SHARED: ContextVar[SharedTransaction | None] = ContextVar("ticketbot_shared_transaction", default=None)


def shared_here() -> SharedTransaction | None:
    """The shared transaction this task is inside, if any."""
    # Only the task that opened it: a task spawned meanwhile inherits the context variable, but it
    # may outlive the transaction and must not slip its work into someone else's.
    shared = _SHARED.get()
    return shared if shared is not None and shared.owner is asyncio.current_task() else None


async def after_commit(callback: AfterCommit) -> None:
    """Run `callback` once what this task wrote is durable: now, or when its shared transaction commits."""
    shared = shared_here()
    if shared is None:
        await callback()
    else:
        shared.after_commit.append(callback)


def commit_soon() -> None:
    """Inside a member of a group commit: commit the group as soon as this member ends, without
    waiting for a pause in arrivals. For background work that waits for its commit before it takes
    more (the inbox processor): under a steady stream of accepts a group only closes at its age
    limit, and a batch per MAX_GROUP_AGE_S is all the processing would get. Elsewhere: nothing."""
    shared = shared_here()
    if shared is not None and shared.commit_soon is not None:
        shared.commit_soon()


async def _run_after_commit(callbacks: list[AfterCommit]) -> None:
    # The work is committed whatever these do; what they start (the arq timer alarm) is also
    # recovered by a sweep, so a failure is logged rather than turned into a failed answer.
    for callback in callbacks:
        try:
            await callback()
        except Exception:
            log.exception("after-commit work failed")


@asynccontextmanager
async def savepoint() -> AsyncIterator[None]:
    """A savepoint of this task's shared transaction: an exception in the block undoes the block's
    work only (and drops the after-commit work it registered) and propagates. Used to handle several
    inbox rows in one member of a group commit, each undone alone if it fails."""
    shared = shared_here()
    if shared is None:
        raise RuntimeError("savepoint() outside a shared transaction")
    registered = len(shared.after_commit)
    sync = shared.connection.sync_connection
    assert sync is not None
    # The inline driver never waits on I/O: no greenlet for the savepoint (as in TransactionGroup.member).
    inline = _is_inline(shared.connection)
    nested: Any = sync.begin_nested() if inline else await shared.connection.begin_nested()
    try:
        yield
    except BaseException:
        if nested.is_active:
            nested.rollback() if inline else await nested.rollback()
        del shared.after_commit[registered:]
        raise
    if nested.is_active:
        nested.commit() if inline else await nested.commit()


def _is_inline(connection: AsyncConnection) -> bool:
    return isinstance(connection.dialect.loaded_dbapi, InlineDBAPI)


@asynccontextmanager
async def _joined(connection: AsyncConnection) -> AsyncIterator[SharedTransaction]:
    shared = SharedTransaction(connection, asyncio.current_task())
    token = _SHARED.set(shared)
    try:
        yield shared
    finally:
        _SHARED.reset(token)


@asynccontextmanager
async def own_transaction(engine: AsyncEngine) -> AsyncIterator[None]:
    """A shared transaction of its own (PostgreSQL: each block on a connection of the pool)."""
    async with engine.connect() as connection:
        await connection.begin()
        try:
            async with _joined(connection) as shared:
                yield
        except BaseException:
            await connection.rollback()
            raise
        await connection.commit()
    await _run_after_commit(shared.after_commit)


@dataclass(slots=True)
class _Member:
    committed: asyncio.Future[None]
    after_commit: list[AfterCommit]


class TransactionGroup:
    """Group commit on the inline SQLite engine (one connection): see the module docstring."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._turn = asyncio.Lock()  # one member runs at a time; the commit waits for it
        self._connection: AsyncConnection | None = None
        self._opened_at = 0.0
        self._members: list[_Member] = []
        self._arrived = 0  # members since the group opened: is anyone still arriving?
        self._closing: asyncio.Task[None] | None = None
        self._hurried = False  # a member asked for the commit once it ends (`commit_soon`)

    def _hurry(self) -> None:
        self._hurried = True

    @asynccontextmanager
    async def member(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()
        async with self._turn:
            connection = self._connection or await self._open()
            self._arrived += 1
            try:
                # The inline driver never waits on I/O: the savepoint's statements need no greenlet.
                savepoint = connection.sync_connection.begin_nested()  # type: ignore[union-attr]
                try:
                    async with _joined(connection) as shared:
                        shared.commit_soon = self._hurry
                        yield
                except BaseException:
                    savepoint.rollback()  # this member's work only
                    raise
                savepoint.commit()
                self._members.append(_Member(committed, shared.after_commit))
            finally:
                if self._closing is None:
                    self._closing = loop.create_task(self._commit_when_quiet())
        await asyncio.shield(committed)  # a member that stops waiting is committed all the same

    async def _open(self) -> AsyncConnection:
        connection = await self._engine.connect()
        try:
            await connection.begin()
        except BaseException:
            await connection.close()
            raise
        self._connection, self._opened_at = connection, asyncio.get_running_loop().time()
        return connection

    async def _commit_when_quiet(self) -> None:
        loop = asyncio.get_running_loop()
        quiet = 0
        while (not self._hurried and quiet < QUIET_TURNS and len(self._members) < MAX_GROUP_MEMBERS
               and loop.time() - self._opened_at < MAX_GROUP_AGE_S):
            arrived = self._arrived
            await asyncio.sleep(0)
            quiet = quiet + 1 if self._arrived == arrived and not self._turn.locked() else 0
        async with self._turn:
            members, self._members = self._members, []
            connection, self._connection = self._connection, None
            self._closing, self._arrived, self._hurried = None, 0, False
            assert connection is not None
            try:
                await connection.commit()
            except Exception as error:  # the disk, most likely: every member's answer is an error
                log.exception("group commit of %s members failed", len(members))
                with contextlib.suppress(Exception):
                    await connection.rollback()  # SQLite keeps a transaction whose COMMIT failed open
                for member in members:
                    member.committed.set_exception(error)
                    member.committed.add_done_callback(_retrieved)  # also for a member no longer waiting
                return
            finally:
                await connection.close()
        for member in members:
            # Its after-commit work first (the arq alarm: set when the answer arrives, as without
            # a group), here rather than in the member, which may have stopped waiting.
            await _run_after_commit(member.after_commit)
            member.committed.set_result(None)


def _retrieved(future: asyncio.Future[None]) -> None:
    future.exception()
