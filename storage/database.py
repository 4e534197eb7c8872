"""Engine creation: plain URLs in, the right async driver out; sessions that can share one transaction."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_only

from storage.errors import StorageError
from storage.sqlite.inline import InlineDBAPI, inline_creator
from storage.sqlite.prepared import HotResult, HotStatement, Plan, _row_type, hot_statement
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


# PostgreSQL: a pooled connection idle for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_S = 5.0


def create_engine(url: str, *, inline_checkpoint_pages: int | None = None,
                  ping_after_idle_s: float = PING_AFTER_IDLE_S, **kwargs: Any) -> AsyncEngine:
    """`inline_checkpoint_pages` (SQLite): the log size at which a commit checkpoints inline, for a
    process that checkpoints in the background (storage/sqlite/wal_checkpoint.py); None keeps SQLite's 1000.
    `ping_after_idle_s` (PostgreSQL): see _check_connections_out."""
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
    engine = create_async_engine(url, pool_size=10, max_overflow=10, **kwargs)
    _check_connections_out(engine, ping_after_idle_s)
    if engine.dialect.driver == "asyncpg":
        _savepoints_on_asyncpg(engine.sync_engine.dialect)
        engine = _HotAsyncEngine(engine.sync_engine)
    return engine


def _savepoints_on_asyncpg(dialect: Any) -> None:
    """SAVEPOINT, RELEASE and ROLLBACK TO straight on the asyncpg connection (as the inline SQLite
    dialect sends them): SQLAlchemy's own compiles a statement for each (the names differ) and runs it
    through a cursor, ~100 µs of CPU each, twice per unit of work inside a shared transaction.
    SQLAlchemy still keeps its bookkeeping of them (the Connection's nested transactions)."""
    quote = dialect.identifier_preparer.quote

    def send(connection: Any, sql: str) -> None:
        adapted = connection.connection.dbapi_connection  # SQLAlchemy's AsyncAdapt_asyncpg_connection

        async def run() -> None:
            async with adapted._execute_mutex:
                if adapted._transaction is None:  # as the adapter does before a transaction's first statement
                    await adapted._start_transaction()
                try:
                    await adapted._connection.execute(sql)
                except Exception as error:  # noqa: BLE001 — translated (and raised) as SQLAlchemy's cursor does
                    adapted._handle_exception(error)

        try:
            await_only(run())
        except dialect.loaded_dbapi.Error as error:
            raise exc.DBAPIError.instance(sql, None, error, dialect.loaded_dbapi.Error, dialect=dialect) from error

    dialect.do_savepoint = lambda connection, name: send(connection, f"SAVEPOINT {quote(name)}")
    dialect.do_release_savepoint = lambda connection, name: send(connection, f"RELEASE SAVEPOINT {quote(name)}")
    dialect.do_rollback_to_savepoint = lambda connection, name: send(connection, f"ROLLBACK TO SAVEPOINT {quote(name)}")


def _check_connections_out(engine: AsyncEngine, ping_after_idle_s: float) -> None:
    """SQLAlchemy's pool_pre_ping on every checkout, but only where a dead connection is likely.

    pool_pre_ping cost three round trips per checkout on asyncpg (BEGIN, ";", ROLLBACK): ~6 of a
    fault report's ~44 statements, each a socket write and a wake-up. A connection the server closed
    (a restart, pg_terminate_backend, an idle timeout) is known closed for free: asyncpg saw the
    socket end while it sat in the pool. One idle for longer than `ping_after_idle_s` (where a silent
    network drop can hide) is still pinged. Either way DisconnectionError makes the pool replace it
    with a fresh connection, as pool_pre_ping would."""
    pool_events = engine.sync_engine.pool

    @event.listens_for(pool_events, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(pool_events, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.pop("checked_in_at", None)
        if checked_in_at is None:
            return  # a fresh connection
        raw = getattr(dbapi_connection, "driver_connection", None)
        if raw is not None and raw.is_closed():
            raise exc.DisconnectionError("the server closed this pooled connection")
        if time.monotonic() - checked_in_at > ping_after_idle_s:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as error:  # any failure: replace the connection, as pool_pre_ping does
                raise exc.DisconnectionError(f"pooled connection failed its ping: {error}") from error


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


# --- hot statements on asyncpg -------------------------------------------------------------------
# The statements storage/unit_of_work.py marks hot (built once at import; SQLite runs them through
# storage/sqlite/prepared.py) run here straight on the asyncpg connection, in the transaction the
# connection began, as the SQL and positional arguments SQLAlchemy's own compilation and bind
# processors make (a Plan, once per parameter-key set), through the SQLAlchemy adapter's own cache
# of prepared statements. Why: SQLAlchemy's execute costs ~160 µs of CPU per statement over
# asyncpg's own ~90 (cache-key lookup, execution context, a greenlet, result set-up), and a fault
# report runs ~20 of these. Errors come out as SQLAlchemy's (IntegrityError ...), as before.
# IN lists are expanded by SQLAlchemy's own compiled statement (construct_expanded_state: the SQL for
# these many values, once per number of values); several rows of parameters (executemany) go as one pipelined round
# trip (asyncpg's executemany, or fetchmany for RETURNING), one execution of the statement per row
# as SQLAlchemy's executemany does. What a plan cannot reproduce (Python-side defaults, a statement
# not marked hot, rows with different keys, execution options) runs through SQLAlchemy.
# SQLAlchemy's before_cursor_execute listeners, if any, still see every statement (once per list of
# rows, as executemany). tests/test_pg_hot.py runs them both ways.

class _PgPlan:
    """A Plan's SQL and arguments; the rows' conversion is made at the first run, from the column
    types asyncpg reports (SQLAlchemy's result processors for asyncpg want them, e.g. for numerics)."""

    __slots__ = ("_by_sizes", "columns", "compiled", "convert", "plan")

    def __init__(self, plan: Plan, columns: list[Any], compiled: Any) -> None:
        self.plan = plan
        self.columns = columns  # SQLAlchemy's result columns
        self.compiled = compiled  # for IN lists: SQLAlchemy expands them (numbered after the other parameters)
        self.convert: Any = None
        # IN lists' sizes → (SQL, where each argument is in the Plan's arguments): SQLAlchemy's expansion
        # (~40 µs a call) done once per sizes.
        self._by_sizes: dict[tuple[int, ...], tuple[str, list[int]]] = {}

    def statement(self, parameters: dict[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and its arguments for these parameters."""
        plan = self.plan
        if not plan.expanding:
            return plan.sql, plan.arguments(parameters)
        sizes = tuple(len(parameters[key]) for key, _ in plan.expanding)
        known = self._by_sizes.get(sizes)
        if known is None:
            return self._expand(parameters, sizes)
        flat = plan.arguments(parameters)
        return known[0], [flat[i] for i in known[1]]

    def _expand(self, parameters: dict[str, Any], sizes: tuple[int, ...]) -> tuple[str, list[Any]]:
        state = self.compiled.construct_expanded_state(parameters)
        processors, values = state.processors, state.parameters
        arguments = [processors[name](values[name]) if name in processors else values[name]
                     for name in state.positiontup]
        # The Plan's arguments are in the compiled order with each list's values in its place;
        # SQLAlchemy numbers the lists' values after the other parameters. Learnt from the names, and
        # kept only if it gives exactly SQLAlchemy's arguments.
        flat_names = [n for name in self.compiled.positiontup for n in state.parameter_expansion.get(name, [name])]
        position: dict[str, int] = {}
        for i, name in enumerate(flat_names):
            position.setdefault(name, i)
        if all(name in position for name in state.positiontup) and len(self._by_sizes) < 64:
            order = [position[name] for name in state.positiontup]
            flat = self.plan.arguments(parameters)
            if len(flat) == len(flat_names) and [flat[i] for i in order] == arguments:
                self._by_sizes[sizes] = (state.statement, order)
        return state.statement, arguments

    def converter(self, dialect: Any, attributes: Any) -> Any:
        if self.convert is None:
            processors = [column.type._cached_result_processor(dialect, attribute.type.oid)
                          for column, attribute in zip(self.columns, attributes, strict=True)]
            row_type = _row_type(tuple(column.keyname for column in self.columns))
            self.convert = lambda record: row_type(*(value if f is None else f(value)
                                                     for f, value in zip(processors, record, strict=True)))
        return self.convert


_PG_PLANS: dict[tuple[int, frozenset[str]], _PgPlan | None] = {}


def _pg_plan(hot: HotStatement, dialect: Any, keys: frozenset[str]) -> _PgPlan | None:
    key = (id(hot), keys)
    if key not in _PG_PLANS:
        _PG_PLANS[key] = _compile_pg(hot, dialect, keys)
    return _PG_PLANS[key]


def _compile_pg(hot: HotStatement, dialect: Any, keys: frozenset[str]) -> _PgPlan | None:
    compiled = hot.statement.compile(dialect=dialect, column_keys=sorted(keys))  # type: ignore[attr-defined]
    if (not compiled.positional or compiled.literal_execute_params or compiled.insert_prefetch
            or compiled.update_prefetch or any(not b.expanding for b in compiled.post_compile_params)):
        return None
    columns = list(compiled._result_columns)
    arguments_only = copy.copy(compiled)
    arguments_only._result_columns = []  # the rows are converted by _PgPlan
    try:
        _row_type(tuple(column.keyname for column in columns))
        return _PgPlan(Plan(arguments_only, keys), columns, arguments_only)
    except Exception:  # noqa: BLE001 — _Unplannable: SQLAlchemy runs it
        return None


def _rows_of(parameters: Any) -> list[dict[str, Any]] | None:
    """Several rows of parameters with the same keys (executemany), or None."""
    if not isinstance(parameters, list | tuple) or not parameters:
        return None
    if not all(isinstance(p, dict) for p in parameters):
        return None
    keys = parameters[0].keys()
    return list(parameters) if all(p.keys() == keys for p in parameters) else None


async def run_hot_asyncpg(sync: Any, hot: HotStatement, parameters: Any) -> HotResult | None:
    """Run a hot statement on this (sync) connection's asyncpg connection; None: let SQLAlchemy run it."""
    if parameters is None:
        parameters = {}
    rows_of_params = None if isinstance(parameters, dict) else _rows_of(parameters)
    if rows_of_params is None and not isinstance(parameters, dict):
        return None  # positional, or rows with different keys: SQLAlchemy's
    keys = frozenset(parameters if rows_of_params is None else rows_of_params[0])
    pg_plan = _pg_plan(hot, sync.dialect, keys)
    if pg_plan is None or (rows_of_params is not None and pg_plan.plan.expanding):
        return None
    adapted = sync.connection.dbapi_connection  # SQLAlchemy's AsyncAdapt_asyncpg_connection
    arguments: Any
    if rows_of_params is None:
        sql, arguments = pg_plan.statement(parameters)
    else:
        sql, arguments = pg_plan.plan.sql, [pg_plan.plan.arguments(p) for p in rows_of_params]
    if sync._has_events or sync.engine._has_events:
        # Statement observers (tests/statements.py) see these as they saw them through SQLAlchemy.
        for listener in sync.dispatch.before_cursor_execute:
            sql, arguments = listener(sync, None, sql, arguments, None, rows_of_params is not None)
    try:
        async with adapted._execute_mutex:
            if adapted._transaction is None:  # the adapter sends BEGIN before a transaction's first statement
                await adapted._start_transaction()
            try:
                prepared, attributes = await adapted._prepare(sql, adapted._invalidate_schema_cache_asof)
                if rows_of_params is None:
                    records = await prepared.fetch(*arguments)
                    status = prepared.get_statusmsg() or ""
                elif pg_plan.columns:
                    records = await prepared.fetchmany(arguments)
                    status = f"INSERT 0 {len(records)}"  # what SQLAlchemy's insertmanyvalues reports
                else:
                    await prepared.executemany(arguments)
                    records, status = [], ""  # SQLAlchemy's executemany on asyncpg counts no rows either
            except Exception as error:  # noqa: BLE001 — translated (and raised) as SQLAlchemy's cursor does
                adapted._handle_exception(error)
    except sync.dialect.loaded_dbapi.Error as error:
        # A lost connection is not invalidated here (that would await outside a greenlet): the pool
        # finds it closed at its next checkout (_check_connections_out) and replaces it.
        raise exc.DBAPIError.instance(sql, arguments, error, sync.dialect.loaded_dbapi.Error,
                                      dialect=sync.dialect) from error
    counted = _ROWCOUNT.match(status)
    rows = list(map(pg_plan.converter(sync.dialect, attributes), records)) if pg_plan.columns else []
    return HotResult(rows, int(counted.group(1)) if counted else -1)


_ROWCOUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


class _HotAsyncConnection(AsyncConnection):
    async def execute(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        hot = hot_statement(statement)
        if hot is not None and execution_options is None:
            sync = self._proxied
            if sync.in_transaction():
                result = await run_hot_asyncpg(sync, hot, parameters)
                if result is not None:
                    return result
        return await super().execute(statement, parameters, execution_options=execution_options)


class _HotAsyncEngine(AsyncEngine):
    _connection_cls = _HotAsyncConnection


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
