"""Heavy reads off the event loop: 报表 and its sections (issue 24, "nothing blocks the loop").

On SQLite the service's statements run inline on the event loop (storage/sqlite/inline.py), which is
right for a unit of work's few microsecond statements and wrong for a report that reads ~80,000
tickets and their trail at a million tickets: the whole service (intake, /healthz, the timers) would
stop for as long. A thread is not enough either: it shares the interpreter lock with the loop, so a
report computed in one takes up to half of the loop's time while it runs (and on a busy machine the
loop waits for the lock whenever the OS deschedules the thread holding it).

So a report job runs in a worker process (one for the whole service, started at the first report,
spawned — not forked from a process with threads and an event loop — and kept; jobs take turns, at
most one core), on a read-only connection of its own to the same SQLite file: WAL lets it read while
the service writes, and it sees what was committed when each statement began. Only the job's
arguments and its answer (the report's text) cross between the processes.

On PostgreSQL (no synchronous driver is installed) and for an in-memory SQLite (which another
connection cannot see), the job runs in a thread instead and hands each statement back to the loop,
where it is awaited like any other (asyncpg does not block); there, cyclic garbage collection is
paused while the job runs, since a collection stops every thread for as long as it walks the job's
objects.

Jobs that read and then write (`run_writing`: the report fold, every few seconds under intake) run in the
worker process too, so that the service's process spends nothing on them: on PostgreSQL over an asyncpg
connection driven by an event loop of the worker's own; on a SQLite file into the report tables' own file
(storage/report_store.py; the read jobs see the report tables there as well). Not for an in-memory
database: see `writes_in_worker`.

A job is `job(execute, *args)`: a module-level function (it is pickled by reference), `execute(statement)`
giving the rows of a Core statement typed as the service's own sessions type them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Executable
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bot.background_processes import background_pool
from storage import report_store
from storage.database import async_url, compact_json, parse_json, sqlite_path

T = TypeVar("T")
Execute = Callable[[Executable], Sequence[Any]]  # the rows (sqlalchemy Row) of a statement
THREAD_NAME = "ticketbot-report"


class ReportReads:
    """Where the report jobs of one database run (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = weakref.ref(engine)  # the registry below is keyed by the engine: no strong reference
        self._url = engine.url.render_as_string(hide_password=False)
        self.path = sqlite_path(self._url)
        self._postgres = engine.dialect.name == "postgresql"
        self._thread: ThreadPoolExecutor | None = None
        self._draining = False
        self._writing: set[concurrent.futures.Future[Any]] = set()  # run_writing's jobs in the worker process

    async def drain(self) -> None:
        """Wait for the job in the thread to end; its remaining statements fail at once. The runtime calls
        this when it stops: a job left running would open a connection on a loop about to close and leave
        it in its transaction (on PostgreSQL: a lock held until the process exits). Writing jobs in the
        worker process are waited for too (cancelling the caller does not stop them): nothing of this
        service writes to its database once it has stopped."""
        if self._writing:
            await asyncio.to_thread(concurrent.futures.wait, list(self._writing))
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._draining = True
        try:
            await asyncio.to_thread(thread.shutdown, wait=True)
        finally:
            self._draining = False

    @property
    def writes_in_worker(self) -> bool:
        """Whether `run_writing` is available: PostgreSQL, and a SQLite file, whose report tables are in a
        file of their own with its own write lock (storage/report_store.py). Not an in-memory
        database, which another process cannot open."""
        return self._postgres or self.path is not None

    async def run(self, job: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        if self.path is not None:
            return await self._in_worker_process(_in_worker, str(self.path.resolve()), job, args)
        thread = self._thread_executor()

        def bridged(statement: Executable) -> Sequence[Any]:
            if self._draining:
                raise RuntimeError("the service is stopping: report job abandoned")
            return asyncio.run_coroutine_threadsafe(self._on_loop(statement), loop).result()

        def in_thread() -> T:
            with _no_cyclic_gc():
                return job(bridged, *args)

        return await loop.run_in_executor(thread, in_thread)

    async def run_writing(self, job: Callable[..., T], *args: Any) -> T:
        """A job that reads and then writes, both in the worker process (PostgreSQL): `job(execute,
        write, *args)`, `write(fn, *a)` giving `fn(connection, *a)`, run on a synchronous connection in a
        transaction of its own that commits when `fn` returns — on an asyncpg connection driven by the
        worker's own event loop. Why: what the job reads and writes (the report fold) then costs the
        service's process nothing: no rows decoded on its loop, no thread taking its interpreter lock."""
        if self.path is not None:
            return await self._in_worker_process(_in_worker_sqlite, str(self.path.resolve()), job, args,
                                                 writing=True)
        if not self.writes_in_worker:
            raise RuntimeError("run_writing: not for an in-memory database (see writes_in_worker)")
        return await self._in_worker_process(_in_worker_postgres, self._url, job, args, writing=True)

    async def _in_worker_process(self, entry: Callable[..., T], target: str, job: Callable[..., T],
                                 args: tuple[Any, ...], *, writing: bool = False) -> T:
        """`entry(target, job, args)` in the worker process; `writing`: kept for `drain` until it ends."""
        for attempt in (1, 2):
            try:
                future: concurrent.futures.Future[T] = _worker_process().submit(entry, target, job, args)
                if writing:
                    self._writing.add(future)
                    future.add_done_callback(self._writing.discard)
                return await asyncio.wrap_future(future)
            except BrokenProcessPool:  # the worker died (killed, out of memory): a new one, once
                _drop_worker_process()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _thread_executor(self) -> Executor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
            weakref.finalize(self, self._thread.shutdown, wait=False)
        return self._thread

    async def _on_loop(self, statement: Executable) -> Sequence[Any]:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the database engine is gone")
        async with engine.connect() as connection:
            return (await connection.execute(statement)).all()


# --- the worker process ---

_PROCESS: ProcessPoolExecutor | None = None
_PROCESS_LOCK = threading.Lock()


def _worker_process() -> ProcessPoolExecutor:
    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is None:
            _PROCESS = background_pool(max_workers=1)
        return _PROCESS


def _drop_worker_process() -> None:
    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is not None:
            _PROCESS.shutdown(wait=False, cancel_futures=True)
        _PROCESS = None


def shutdown_worker_process() -> None:
    """Stop the worker process (it also ends with this process)."""
    _drop_worker_process()


_ENGINES: dict[str, Engine] = {}  # in the worker: one read-only engine per database file
_WRITERS: dict[str, Engine] = {}  # in the worker: one engine per reports file


def _reading(path: str) -> Engine:
    engine = _ENGINES.get(path)
    if engine is None:
        engine = _ENGINES[path] = read_only_sqlite(Path(path))
    return engine


def _in_worker(path: str, job: Callable[..., T], args: tuple[Any, ...]) -> T:
    with _reading(path).connect() as connection:
        return job(direct(connection), *args)


def _in_worker_sqlite(path: str, job: Callable[..., T], args: tuple[Any, ...]) -> T:
    """A writing job on a SQLite file: it reads as the read jobs do (the reports file with the service's
    attached) and writes on a connection of the reports file alone, in a BEGIN IMMEDIATE transaction
    that takes no lock of the service's file (storage/report_store.py)."""
    writer = _WRITERS.get(path)
    if writer is None:
        writer = _WRITERS[path] = report_store.writing_engine(Path(path))

    def write(fn: Callable[..., Any], *more: Any) -> Any:
        with writer.connect() as connection:
            with connection.begin():
                result = fn(connection, *more)
            report_store.rewind_log(connection)
            return result

    with _reading(path).connect() as connection:
        return job(direct(connection), write, *args)


_LOOP: asyncio.AbstractEventLoop | None = None  # in the worker: the event loop of its PostgreSQL connections
_POSTGRES: dict[str, AsyncEngine] = {}


def _in_worker_postgres(url: str, job: Callable[..., T], args: tuple[Any, ...]) -> T:
    """A writing job on PostgreSQL: one asyncpg connection for the job, driven by the worker's own loop
    (no synchronous driver is installed); its reads in one READ COMMITTED transaction (each statement
    sees what was committed when it began, as on the service's pool), ended before the write."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    loop = _LOOP
    engine = _POSTGRES.get(url)
    if engine is None:  # no pool: nothing of the worker's stays connected between jobs
        engine = _POSTGRES[url] = create_async_engine(async_url(url), poolclass=NullPool,
                                                      json_serializer=compact_json, json_deserializer=parse_json)
    connection = loop.run_until_complete(engine.connect())
    try:
        def execute(statement: Executable) -> Sequence[Any]:
            return loop.run_until_complete(_rows(connection, statement))

        def write(fn: Callable[..., Any], *more: Any) -> Any:
            return loop.run_until_complete(_write(connection, fn, more))

        return job(execute, write, *args)
    finally:
        loop.run_until_complete(connection.close())


async def _rows(connection: AsyncConnection, statement: Executable) -> Sequence[Any]:
    return (await connection.execute(statement)).all()


async def _write(connection: AsyncConnection, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    if connection.in_transaction():
        await connection.rollback()  # the reads' transaction: nothing in it to keep
    async with connection.begin():
        return await connection.run_sync(fn, *args)


def direct(connection: Connection) -> Execute:
    def execute(statement: Executable) -> Sequence[Any]:
        return connection.execute(statement).all()

    return execute


def read_only_sqlite(path: Path) -> Engine:
    """A synchronous engine reading the service's SQLite file (pysqlite: the same column types), with the
    report tables read from their own file beside it (storage/report_store.py)."""
    return report_store.reading_engine(path)


# --- the thread (PostgreSQL, in-memory SQLite) ---

_GC_LOCK = threading.Lock()
_GC_HOLDS = 0
_GC_WAS_ENABLED = [True]


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """No cyclic garbage collection while a job builds its objects in the thread: a collection stops
    every thread (the loop's too) for as long as it walks them, and finds nothing (they are freed by
    reference counting). GC is per process: the loop's own garbage is collected after."""
    global _GC_HOLDS
    with _GC_LOCK:
        if _GC_HOLDS == 0:
            _GC_WAS_ENABLED[0] = gc.isenabled()
            gc.disable()
        _GC_HOLDS += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_HOLDS -= 1
            if _GC_HOLDS == 0 and _GC_WAS_ENABLED[0]:
                gc.enable()


_READS: weakref.WeakKeyDictionary[AsyncEngine, ReportReads] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


async def drain_report_reads(engine: AsyncEngine) -> None:
    """Let the engine's report job (if one runs in a thread) end before the engine is disposed."""
    with _LOCK:
        reads = _READS.get(engine)
    if reads is not None:
        await reads.drain()


def report_reads(runtime: Any) -> ReportReads:
    """The report jobs of the runtime's database."""
    engine: AsyncEngine = runtime.engine
    with _LOCK:
        reads = _READS.get(engine)
        if reads is None:
            reads = _READS[engine] = ReportReads(engine)
        return reads
