"""Hot statements on SQLite: compiled once, then run straight on the sqlite3 connection.

Why: a statement run through SQLAlchemy's Connection.execute costs ~40-50 µs of Python on top
of SQLite's own ~5-15 µs (cache-key lookup, execution context, parameter processing, cursor
result set-up). A fault report runs ~20 of them. Statements that are built once at import
(see storage/unit_of_work.py) are marked with `hot(...)`; on the inline SQLite driver the
session's connection (storage/sqlite/session.py) runs them through a plan made from
SQLAlchemy's own compilation, once per parameter-key set:

  * the SQL text, the order of the positional parameters, and for each either the caller's key
    or the constant the statement carries (`status == "pending"`), with SQLAlchemy's own bind
    processors (UTC datetimes, JSON, booleans);
  * the result columns with SQLAlchemy's own result processors, as rows that read like
    SQLAlchemy's (`row.id`, `row[0]`, unpacking) in a result with the methods callers use.

Errors arrive as SQLAlchemy's (IntegrityError, OperationalError ...), as before. What a plan
cannot reproduce exactly runs through SQLAlchemy as before: Python-side column defaults, IN
lists in an executemany, executemany with RETURNING, a parameter the statement requires but the caller
left out (SQLAlchemy raises its own error), and any statement not marked hot. PostgreSQL never
comes here. tests/test_sqlite_prepared.py compares every hot statement's plan with SQLAlchemy.
"""

from __future__ import annotations

import keyword
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from storage.sqlite.inline import InlineSQLiteDialect, raw_connection

S = TypeVar("S")
_Processor = Callable[[Any], Any] | None
_HOT: dict[int, HotStatement] = {}
MAX_ARGUMENTS = 32_000  # SQLite's limit on parameters per statement is 32,766 (since 3.32)


def hot(statement: S) -> S:
    """Mark a statement built once (at import) to run on SQLite without SQLAlchemy's per-call work.
    Only long-lived statements: the registry holds them for the life of the process."""
    _HOT[id(statement)] = HotStatement(statement)
    return statement


def hot_statement(statement: object) -> HotStatement | None:
    return _HOT.get(id(statement))


class Plan:
    """One hot statement compiled for one set of parameter keys.

    The argument list and the row conversion are generated once per plan as small functions
    (as namedtuple generates its class): a loop over the positions costs more than SQLite."""

    __slots__ = ("_sql_by_sizes", "arguments", "columns", "convert", "expanding", "returns_rows", "sql", "values")

    def __init__(self, compiled: SQLCompiler, keys: frozenset[str]) -> None:
        self.sql: str = compiled.string
        bind_processors = compiled._bind_processors
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        namespace: dict[str, Any] = {}
        items: list[str] = []
        self.expanding: list[tuple[str, str]] = []  # (caller's key, placeholder in the SQL) of IN lists
        for position, name in enumerate(compiled.positiontup or ()):
            bind = by_name[name]
            processor = bind_processors.get(name)
            if bind.key in keys or name in keys:
                key = bind.key if bind.key in keys else name
                value = f"p[{key!r}]"
                if processor is not None:
                    namespace[f"f{position}"] = processor
                if bind.expanding:
                    self.expanding.append((key, f"__[POSTCOMPILE_{name}]"))
                    items.append(f"*map(f{position}, {value})" if processor is not None else f"*{value}")
                else:
                    items.append(f"f{position}({value})" if processor is not None else value)
            elif bind.required or bind.expanding:
                raise _Unplannable("a required parameter is missing")
            elif bind.callable is not None:
                raise _Unplannable("a callable bind value")
            else:
                # A constant of the statement (`status == "pending"`), processed once, here.
                namespace[f"c{position}"] = processor(bind.value) if processor is not None else bind.value  # type: ignore[operator]
                items.append(f"c{position}")
        self.arguments: Callable[[dict[str, Any]], list[Any]] = _generate(
            "arguments", "p", f"[{', '.join(items)}]", namespace)
        self._sql_by_sizes: dict[tuple[int, ...], str] = {}
        # Several rows into one INSERT ... VALUES (...), (...) RETURNING: how many leading arguments
        # are a row's VALUES, and the VALUES clause to repeat. The arguments after them (an upsert's
        # SET) must be the statement's own constants, the same for every row.
        self.values: tuple[int, str, str] | None = None
        imv = compiled._insertmanyvalues
        if imv is not None and not imv.embed_values_counter and not imv.sentinel_columns:
            width = imv.num_positional_params_counted
            clause = f"VALUES ({imv.single_values_expr})"
            if self.sql.count(clause) == 1 and all(item.startswith("c") for item in items[width:]):
                self.values = (width, clause, f"({imv.single_values_expr})")
        self.columns: tuple[str, ...] = tuple(column.keyname for column in compiled._result_columns)
        self.returns_rows = bool(self.columns)
        self.convert: Callable[[Any], Any] | None = None
        if self.returns_rows:
            row_type = _row_type(self.columns)
            fields = []
            namespace = {"row_type": row_type}
            for i, column in enumerate(compiled._result_columns):
                processor = column.type._cached_result_processor(compiled.dialect, None)
                if processor is not None:
                    namespace[f"r{i}"] = processor
                fields.append(f"r{i}(v[{i}])" if processor is not None else f"v[{i}]")
            self.convert = _generate("convert", "v", f"row_type({', '.join(fields)},)", namespace)

    def rows_sql(self, count: int) -> str:
        """The INSERT for `count` rows (self.values is set)."""
        assert self.values is not None
        _, clause, row = self.values
        return self.sql.replace(clause, "VALUES " + ", ".join([row] * count), 1)

    def rows_arguments(self, rows: list[dict[str, Any]]) -> list[Any]:
        assert self.values is not None
        width = self.values[0]
        out: list[Any] = []
        for params in rows:
            out += self.arguments(params)[:width]
        return out + self.arguments(rows[0])[width:]

    def sql_for(self, params: dict[str, Any]) -> str:
        """The SQL text for these parameters: IN lists become as many placeholders as they have
        values. An empty one becomes SQLite's empty list, `x IN ()`: false, and `x NOT IN ()` true, for
        any x including NULL — what SQLAlchemy's always-false subquery for an empty list gives."""
        if not self.expanding:
            return self.sql
        sizes = tuple(len(params[key]) for key, _ in self.expanding)
        sql = self._sql_by_sizes.get(sizes)
        if sql is None:
            sql = self.sql
            for (_, placeholder), size in zip(self.expanding, sizes, strict=True):
                sql = sql.replace(placeholder, ", ".join("?" * size), 1)
            if len(self._sql_by_sizes) < 64:  # IN lists of many sizes: keep a few
                self._sql_by_sizes[sizes] = sql
        return sql


def _generate(name: str, argument: str, expression: str, namespace: dict[str, Any]) -> Any:
    # Only names made here go into the code; values reach it through the namespace.
    exec(f"def {name}({argument}):\n    return {expression}\n", namespace)
    return namespace[name]


class _Unplannable(Exception):
    pass


def _row_type(columns: tuple[str, ...]) -> Any:
    if len(set(columns)) != len(columns) or not all(
            c.isidentifier() and not keyword.iskeyword(c) and not c.startswith("_") for c in columns):
        raise _Unplannable(f"result columns {columns!r} cannot be row attributes")
    return namedtuple("HotRow", columns)


class HotStatement:
    __slots__ = ("plans", "statement")

    def __init__(self, statement: object) -> None:
        self.statement = statement
        # (parameter keys, executemany) → plan, or None where SQLAlchemy runs it.
        self.plans: dict[tuple[frozenset[str], bool], Plan | None] = {}

    def plan(self, dialect: Dialect, keys: frozenset[str], many: bool) -> Plan | None:
        key = (keys, many)
        if key not in self.plans:
            self.plans[key] = self._compile(dialect, keys, many)
        return self.plans[key]

    def _compile(self, dialect: Dialect, keys: frozenset[str], many: bool) -> Plan | None:
        compiled = self.statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, column_keys=sorted(keys), for_executemany=many)
        if (not compiled.positional or compiled.literal_execute_params or compiled.insert_prefetch
                or compiled.update_prefetch or any(not b.expanding for b in compiled.post_compile_params)):
            return None
        try:
            return Plan(compiled, keys)
        except _Unplannable:
            return None


def execute_maybe_hot(connection: Connection, statement: Any, parameters: Any = None) -> Any:
    """`connection.execute`, except that a hot statement inside a transaction of the inline engine runs
    without SQLAlchemy's per-call work (autobegin and its BEGIN IMMEDIATE stay SQLAlchemy's). For a
    synchronous connection of that engine (`AsyncConnection.run_sync`); InlineAsyncConnection does the same."""
    hot = hot_statement(statement)
    if hot is not None and isinstance(connection.dialect, InlineSQLiteDialect) and connection.in_transaction():
        result = execute(connection, hot, parameters)
        if result is not None:
            return result
    return connection.execute(statement, parameters)


def execute(connection: Connection, hot_stmt: HotStatement, parameters: Any) -> Any:
    """Run a hot statement on the connection's transaction; None: let SQLAlchemy run it."""
    if parameters is None:
        rows_of_params: list[dict[str, Any]] = [{}]
    elif isinstance(parameters, dict):
        rows_of_params = [parameters]
    elif isinstance(parameters, list | tuple) and parameters and all(isinstance(p, dict) for p in parameters):
        rows_of_params = list(parameters)
    else:
        return None
    keys = frozenset(rows_of_params[0])
    many = len(rows_of_params) > 1
    if many and any(frozenset(p) != keys for p in rows_of_params):
        return None  # rows with different keys: SQLAlchemy groups them (or refuses)
    plan = hot_stmt.plan(connection.dialect, keys, many)
    if plan is None:
        return None
    raw = raw_connection(connection)
    sql: str | None = plan.sql
    arguments: Any = None
    try:
        if not plan.returns_rows and many:
            if plan.expanding:
                return None
            arguments = [plan.arguments(p) for p in rows_of_params]
            return HotResult([], raw.executemany(plan.sql, arguments).rowcount)
        if many and plan.values is not None and len(rows_of_params) * plan.values[0] <= MAX_ARGUMENTS:
            sql = plan.rows_sql(len(rows_of_params))
            arguments = plan.rows_arguments(rows_of_params)
            cursor = raw.execute(sql, arguments)
            assert plan.convert is not None
            return HotResult(list(map(plan.convert, cursor.fetchall())), cursor.rowcount)
        rows: list[Any] = []
        rowcount = 0
        # Otherwise one statement per row: the same rows (RETURNING promises no order either way).
        for params in rows_of_params:
            sql = plan.sql_for(params)
            arguments = plan.arguments(params)
            cursor = raw.execute(sql, arguments)
            if plan.convert is not None:
                rows.extend(map(plan.convert, cursor.fetchall()))
            rowcount += cursor.rowcount
        return HotResult(rows, rowcount if rowcount >= 0 else -1)
    except sqlite3.Error as error:
        raise exc.DBAPIError.instance(sql, arguments, error, sqlite3.Error,
                                      dialect=connection.dialect) from error


class _Buffered:
    """Items already fetched, with the Result methods that pick among them."""

    __slots__ = ("_items",)

    def __init__(self, items: list[Any]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def all(self) -> list[Any]:
        return list(self._items)

    def first(self) -> Any:
        return self._items[0] if self._items else None

    def one_or_none(self) -> Any:
        if len(self._items) > 1:
            raise exc.MultipleResultsFound("Multiple rows were found when one or none was required")
        return self.first()

    def one(self) -> Any:
        if not self._items:
            raise exc.NoResultFound("No row was found when one was required")
        return self.one_or_none()


class HotResult(_Buffered):
    """The buffered result of a hot statement, with the methods of SQLAlchemy's Result used here."""

    __slots__ = ("rowcount",)

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        super().__init__(rows)
        self.rowcount = rowcount

    def fetchall(self) -> list[Any]:
        return self.all()

    def scalar(self) -> Any:
        row = self.first()
        return row[0] if row is not None else None

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return row[0] if row is not None else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> HotScalars:
        return HotScalars([row[0] for row in self._items])


class HotScalars(_Buffered):
    """`result.scalars()`: the first column of each row."""

    __slots__ = ()
