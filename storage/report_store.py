"""On a SQLite file, the report aggregates live in a file of their own beside it (issues 20, 24).

Why: the aggregates are written by a background fold (bot/jobs/report_aggregates.py) every few
seconds under intake. In the service's file the fold had two bad choices: write on the event loop
(~10 % of a fault report's instructions: the facts row with its covering indexes, the day counters,
their pages in the log — on the process that takes the reports), or write from the report worker
process and queue for the file's one write lock behind the service's back-to-back group commits
(SQLite's busy handler sleeps and retries without a queue: the worker got the lock every 0.6–4 s and
folded a fifth of the tickets while a load lasted; docs/benchmarks.md). A file of their own has a
write lock of its own: the worker process plans a step reading both files and writes it in the
reports file, and the service's process spends nothing on it.

`ticketbot.db` → `ticketbot.db-reports` (beside SQLite's own `-wal` and `-shm`). It holds only derived
data — every row can be folded again from the tickets and their audit trail — so it has no migrations:
its schema's fingerprint is its `user_version`, and a file of another schema (an upgrade changed the
tables) is emptied and folded again from the start (`ensure_report_store`). Deleting it while the service
is stopped is safe (until the fold has caught up 报表 computes from the tickets). The same tables in the
service's file (the migrations create them, for PostgreSQL, where they are used) are
not written any more; a new reports file takes what a fold wrote there before (`_take_folded`). Aggregates
that are not of the service file's audit chain (a restored backup, another database) are told by the hash
at their watermark (storage/report_aggregates.py `of_this_chain`) and folded again.

Connections: the worker reads with the reports file as `main` and the service's file attached read-only
(`reading_engine`): SQLite resolves a table name without a schema in `main` first, so the report
tables come from the reports file and every other table from the service's file, and the report
queries need no change. It writes on a connection of the reports file alone (`writing_engine`), so
that its BEGIN IMMEDIATE takes no lock of the service's file.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy
from sqlalchemy import Table
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, CreateTable

from storage.database import compact_json, parse_json
from storage.tables_reports import REPORT_TABLES

SUFFIX = "-reports"
SERVICE_SCHEMA = "service"  # the service's file, attached read-only to the reading connections


def report_store_path(service_path: Path) -> Path:
    return service_path.with_name(service_path.name + SUFFIX)


def _uri(path: Path, mode: str) -> str:
    """A SQLite URI filename (a path with `?` or `#` in it stays a path)."""
    return f"file:{quote(str(path.resolve()))}?mode={mode}"


def _schema_ddl(tables: list[Table]) -> list[str]:
    """CREATE TABLE and CREATE INDEX of the tables, as SQLite's dialect compiles the models."""
    dialect = sqlite_dialect.dialect()
    statements = []
    for table in tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)))
        statements.extend(str(CreateIndex(index).compile(dialect=dialect))
                          for index in sorted(table.indexes, key=lambda i: str(i.name)))
    return statements


SCHEMA = _schema_ddl(REPORT_TABLES)
# The schema's fingerprint, kept as the file's user_version (a positive 31-bit integer).
SCHEMA_VERSION = zlib.crc32("\n".join(SCHEMA).encode()) & 0x7FFFFFFF or 1

_ENSURED: set[Path] = set()
_ENSURE_LOCK = threading.Lock()


def ensure_report_store(service_path: Path) -> Path:
    """The reports file of a service's SQLite file, made (or made again, when its schema is another's)
    on the first call of a process; its path."""
    service = service_path.resolve()
    path = report_store_path(service)
    with _ENSURE_LOCK:
        if path in _ENSURED and path.exists():
            return path
        # A long wait allowed: another process may be making the file (the copy below: ~36 s at 1 M tickets).
        connection = sqlite3.connect(_uri(path, "rwc"), uri=True, isolation_level=None, timeout=300.0)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            if connection.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                _rebuild(connection, service)
        finally:
            connection.close()
        _ENSURED.add(path)
        return path


def _rebuild(connection: sqlite3.Connection, service: Path) -> None:
    """Drop whatever the file holds and create the report tables, in one transaction (a second process
    doing the same at once waits, then finds the version set). A new file takes the aggregates the
    service's file holds, if any (folded there before the report tables had a file of their own): the fold
    goes on from their watermark instead of folding every ticket again (~25 min at a million tickets)."""
    fresh = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    if fresh:  # ATTACH is refused inside a transaction
        connection.execute(f"ATTACH DATABASE ? AS {SERVICE_SCHEMA}", (_uri(service, "ro"),))
    connection.execute("BEGIN IMMEDIATE")
    try:
        if connection.execute("PRAGMA main.user_version").fetchone()[0] == SCHEMA_VERSION:
            connection.execute("ROLLBACK")
            return
        names = [r[0] for r in connection.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for name in names:
            connection.execute(f'DROP TABLE main."{name}"')
        for statement in SCHEMA:
            connection.execute(statement)
        if fresh:
            _take_folded(connection)
        connection.execute(f"PRAGMA main.user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    finally:
        if fresh:
            connection.execute(f"DETACH DATABASE {SERVICE_SCHEMA}")


def _take_folded(connection: sqlite3.Connection) -> None:
    """Copy the service's file's report tables (their common columns) when it holds a fold state: they
    were written together, in the fold's transactions, so they are a consistent cut at that watermark."""
    present = {r[0] for r in connection.execute(
        f"SELECT name FROM {SERVICE_SCHEMA}.sqlite_master WHERE type = 'table'")}
    if any(t.name not in present for t in REPORT_TABLES) or not connection.execute(
            f"SELECT count(*) FROM {SERVICE_SCHEMA}.report_fold_state").fetchone()[0]:
        return
    for table in REPORT_TABLES:
        theirs = {r[1] for r in connection.execute(f'PRAGMA {SERVICE_SCHEMA}.table_info("{table.name}")')}
        columns = ", ".join(f'"{c.name}"' for c in table.columns if c.name in theirs)
        connection.execute(f'INSERT INTO main."{table.name}" ({columns}) '
                           f'SELECT {columns} FROM {SERVICE_SCHEMA}."{table.name}"')


def _store_engine(service_path: Path, mode: str) -> Engine:
    """A synchronous engine (pysqlite: the service's column types) of the reports file, opened in `mode`."""
    store_uri = _uri(ensure_report_store(service_path), mode)

    def connect() -> sqlite3.Connection:
        ensure_report_store(service_path)  # made again if it was deleted meanwhile (a stat when it is there)
        return sqlite3.connect(store_uri, uri=True, check_same_thread=False)

    return sqlalchemy.create_engine(  # connections made here: SQLAlchemy's URL would unquote the path
        "sqlite://", creator=connect, poolclass=NullPool, json_serializer=compact_json, json_deserializer=parse_json)


def reading_engine(service_path: Path) -> Engine:
    """A read-only engine: the reports file as `main`, the service's file attached as `service`."""
    engine = _store_engine(service_path, "ro")
    service_uri = _uri(service_path, "ro")

    @sqlalchemy.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=5000")
        dbapi_connection.execute("PRAGMA temp_store=MEMORY")  # sorts of a large period in memory, not a file
        dbapi_connection.execute(f"ATTACH DATABASE ? AS {SERVICE_SCHEMA}", (service_uri,))

    return engine


def writing_engine(service_path: Path) -> Engine:
    """An engine of the reports file alone whose transactions begin with BEGIN IMMEDIATE."""
    engine = _store_engine(service_path, "rw")

    @sqlalchemy.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions begun below, not by the driver
        dbapi_connection.execute("PRAGMA busy_timeout=5000")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @sqlalchemy.event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def rewind_log(connection: Any) -> None:
    """Copy the reports file's log back and start it over, after a fold step's commit (the worker's, off the
    service). Left to SQLite's automatic (passive) checkpoint the log did not start over (seen: 96 MB after
    20 backfill steps, each step slower than the one before; why it never got a moment without a reader of
    the log was not pinned down). A reader in another process makes this wait up to the busy timeout."""
    raw = connection.connection.driver_connection  # outside a transaction (SQLAlchemy would begin one)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def async_engine(service_path: Path) -> AsyncEngine:
    """An async engine (aiosqlite) of the reports file with the service's file attached read-write, for
    tools and tests that look at both: report tables resolve to the reports file, the others to the
    service's. Not the service's own engine: attaching would make each of its BEGIN IMMEDIATE lock both files."""
    store = ensure_report_store(service_path)
    engine = create_async_engine(f"sqlite+aiosqlite:///{store}", poolclass=NullPool,
                                 json_serializer=compact_json, json_deserializer=parse_json)
    service = str(service_path.resolve())

    @sqlalchemy.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute(f"ATTACH DATABASE ? AS {SERVICE_SCHEMA}", (service,))
        cursor.close()

    return engine
