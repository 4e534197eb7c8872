"""Engine creation: plain URLs in, the right async driver out; sessions that can share one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.errors import StorageError
from storage.sqlite.inline import InlineDBAPI, inline_creator
from storage.sqlite.session import InlineAsyncSession
from storage.transactions.connection import Transaction
from storage.transactions.shared import TransactionGroup, own_transaction, shared_here


def async_url(url: str) -> str:
    """`sqlite:///x` → aiosqlite, `postgresql://` / `postgres://` → asyncpg. Explicit drivers are kept."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite")) if driver in ("", "pysqlite") else url
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False) if driver in (
            "", "psycopg2", "psycopg") else url
    raise StorageError(f"unsupported DATABASE_URL scheme: {parsed.drivername!r} (use sqlite:/// or postgresql://)")


def is_sqlite(url: str) -> bool:
    return make_url(async_url(url)).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(async_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def compact_json(value: Any) -> str:
    """JSON columns as stored: Chinese as itself, not as \\uXXXX escapes (half the bytes), and
    no blanks. Readers parse either form; the audit chain hashes its own canonical form (the
    standard library's, which this must never replace), not this. orjson: a fault report stores
    ~20 JSON values, and the standard encoder took ~5 µs for each."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def parse_json(text: str | bytes) -> Any:
    return orjson.loads(text)


def create_engine(url: str, *, inline_checkpoint_pages: int | None = None, **kwargs: Any) -> AsyncEngine:
    """`inline_checkpoint_pages` (SQLite): the log size at which a commit checkpoints inline, for a
    process that checkpoints in the background (storage/sqlite/wal_checkpoint.py); None keeps SQLite's 1000."""
    url = async_url(url)
    kwargs.setdefault("json_serializer", compact_json)
    kwargs.setdefault("json_deserializer", parse_json)
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        database = str(path) if path is not None else ":memory:"
        # One connection, statements run inline on the loop (see storage/sqlite/inline.py).
        # The "inline" driver is aiosqlite's dialect over InlineDBAPI (registered in sqlite_inline).
        engine = create_async_engine(make_url(url).set(drivername="sqlite+inline"),
                                     async_creator=inline_creator(database), pool_size=1, max_overflow=0, **kwargs)
        _configure_sqlite(engine, inline_checkpoint_pages)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: AsyncEngine, inline_checkpoint_pages: int | None) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (InlineSQLiteDialect.do_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        # Statement and savepoint journals (the original of each page a statement or a savepoint
        # changes, to undo it) in memory, not in a temporary file: a file write per first-changed
        # page made an upsert of four timer rows ~3x slower inside a savepoint.
        cursor.execute("PRAGMA temp_store=MEMORY")
        if inline_checkpoint_pages is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint={int(inline_checkpoint_pages)}")
        cursor.close()


class Sessions(async_sessionmaker[AsyncSession]):
    """The session factory. Inside `shared_transaction()` its sessions join that transaction."""

    def __init__(self, engine: AsyncEngine, **kw: Any) -> None:
        super().__init__(engine, **kw)
        # SQLite's one connection: consecutive shared transactions commit as a group.
        self._group = TransactionGroup(engine) if isinstance(engine.dialect.loaded_dbapi, InlineDBAPI) else None

    def __call__(self, **local_kw: Any) -> AsyncSession:
        shared = shared_here()
        if shared is not None and not local_kw:
            # begin/commit/rollback of the session become a SAVEPOINT, its release and its rollback:
            # a unit of work that fails is undone alone, and nothing is durable before the end.
            local_kw = {"bind": shared.connection, "join_transaction_mode": "create_savepoint"}
        return super().__call__(**local_kw)

    @asynccontextmanager
    async def transaction(self, *, savepoint: bool = True) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction of its own (or a savepoint of the shared one), committed at
        the end; Core statements only, no ORM session (storage/transactions/connection.py says why, and what
        `savepoint=False` is for)."""
        transaction = Transaction(self, savepoint=savepoint)
        try:
            yield await transaction.connection()
        except BaseException:
            await transaction.end(commit=False)
            raise
        await transaction.end(commit=True)

    @asynccontextmanager
    async def shared_transaction(self) -> AsyncIterator[None]:
        """One database transaction for everything this task does through these sessions until the
        block ends, durable when the block ends (an exception rolls it all back). See
        storage/transactions/shared.py: on SQLite the block is a savepoint of a group commit."""
        if shared_here() is not None:
            yield  # already inside one
        elif self._group is not None:
            async with self._group.member():
                yield
        else:
            async with own_transaction(self.kw["bind"]):
                yield


def session_factory(engine: AsyncEngine) -> Sessions:
    # The inline SQLite driver never waits on I/O: its sessions skip the greenlet per call.
    session_class = InlineAsyncSession if isinstance(engine.dialect.loaded_dbapi, InlineDBAPI) else AsyncSession
    return Sessions(engine, class_=session_class, expire_on_commit=False, autoflush=False)
