"""An aiosqlite connection that runs SQLite calls inline on the event loop thread.

Why: aiosqlite hands every statement to a worker thread and back. A unit of work here is
~30 statements, and each hand-off costs a GIL round trip (up to the 5 ms switch interval
under load), which capped intake at a few dozen tickets per second. SQLite calls on a
local WAL database take microseconds, so running them inline is far cheaper than the
hand-off. The cost: a statement waiting on another process's write lock blocks the loop,
so the busy timeout is kept short; the multi-process deployment uses PostgreSQL.

SQLAlchemy's aiosqlite dialect accepts this through `create_async_engine(async_creator=...)`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import aiosqlite


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

    def stop(self) -> None:  # type: ignore[override]
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def inline_creator(path: str, *, busy_timeout_s: float = 5.0) -> Callable[[], InlineConnection]:
    def create() -> InlineConnection:
        # check_same_thread=False: SQLAlchemy may dispose the pool from another thread.
        return InlineConnection(partial(sqlite3.connect, path, timeout=busy_timeout_s, check_same_thread=False,
                                        isolation_level=None))

    return create
