"""Statements compiled once per dialect and run on the caller's DBAPI cursor.

SQLAlchemy's execution path (execution context, events, result object) costs about
15 µs a statement, several times what SQLite takes to run one of the store's
indexed lookups, and a verification runs a handful. A :class:`Prepared` statement is
a Core statement compiled by SQLAlchemy, for the connection's dialect, once; each
call binds its parameters in the compiled order and runs the SQL on the DBAPI
cursor of the caller's connection, inside its transaction. The SQL is the same
portable SQL SQLAlchemy would send; a DBAPI error is wrapped as SQLAlchemy wraps it
(``sqlalchemy.exc.DBAPIError`` subclasses, the connection invalidated on a
disconnect), so callers handle errors the same way. A statement whose compiled form
needs rendering per call (SQLAlchemy's "post-compile" parameters, which neither
SQLite nor PostgreSQL uses here) runs through SQLAlchemy instead.
"""

from __future__ import annotations

import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, ResourceClosedError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Executable


class _Form:
    """One statement compiled for one dialect."""

    __slots__ = ("defaults", "names", "positional", "processors", "required", "results", "row",
                 "sql")

    def __init__(self, statement: Any, dialect: Dialect,
                 columns: tuple[str, ...] | None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=columns)
        if not isinstance(compiled, SQLCompiler) or compiled.post_compile_params \
                or compiled.literal_execute_params or compiled.escaped_bind_names:
            raise _NotPreparable
        self.sql: str = compiled.string
        required = {bind.key for bind in compiled.binds.values() if bind.required}
        self.required = frozenset(required)
        # Every parameter's value by its name in the SQL: the statement's own (literals,
        # LIMIT) now, the caller's (the required ones) per call.
        self.defaults: dict[str, Any] = dict(compiled.construct_params(dict.fromkeys(required)))
        self.positional = compiled.positional
        self.names: tuple[str, ...] = tuple(compiled.positiontup or self.defaults)
        processors = {name: compiled.binds[name].type.dialect_impl(dialect)
                      .bind_processor(dialect) for name in set(self.names)}
        self.processors: dict[str, Callable[[Any], Any]] = {
            name: proc for name, proc in processors.items() if proc is not None}
        selected: list[Any] = list(getattr(statement, "selected_columns", ()))
        self.row: Any = namedtuple("Row", [c.key for c in selected], rename=True)  # type: ignore[misc]
        self.results: list[tuple[int, Callable[[Any], Any]]] = [
            (i, proc) for i, proc in enumerate(
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in selected)
            if proc is not None]

    def args(self, params: Mapping[str, Any]) -> Any:
        if not self.required <= params.keys():
            missing = ", ".join(sorted(self.required - params.keys()))
            raise ValueError(f"no value for the statement's parameters {missing}")
        values = {**self.defaults, **params}
        for name, proc in self.processors.items():
            values[name] = proc(values[name])
        if self.positional:
            return tuple(values[name] for name in self.names)
        return {name: values[name] for name in self.names}

    def make_row(self, raw: Any) -> Any:
        if self.results:
            raw = list(raw)
            for i, proc in self.results:
                raw[i] = proc(raw[i])
        return self.row._make(raw)


class _NotPreparable(Exception):
    """This dialect renders part of the statement per call: SQLAlchemy runs it."""


class Prepared:
    """A Core statement, compiled once per dialect, run on the caller's connection.

    ``columns`` names the columns an INSERT sets (the parameters' names), as the keys
    of the parameters passed to ``conn.execute`` would; the others take their defaults.
    """

    def __init__(self, statement: Executable, columns: tuple[str, ...] | None = None) -> None:
        self.statement = statement
        self.columns = columns
        # By dialect object: what SQLAlchemy compiles may depend on the server's version.
        self._forms: weakref.WeakKeyDictionary[Dialect, _Form | None] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first row (attributes by column name), or None."""
        form = self._form(conn)
        if form is None:
            return conn.execute(self.statement, dict(params)).first()
        cursor = self._run(conn, form, params)
        try:
            raw = cursor.fetchone()
        finally:
            cursor.close()
        return None if raw is None else form.make_row(raw)

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        form = self._form(conn)
        if form is None:
            return list(conn.execute(self.statement, dict(params)).all())
        cursor = self._run(conn, form, params)
        try:
            return [form.make_row(raw) for raw in cursor.fetchall()]
        finally:
            cursor.close()

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run an INSERT, UPDATE or DELETE; the number of rows it matched."""
        form = self._form(conn)
        if form is None:
            return int(conn.execute(self.statement, dict(params)).rowcount)
        cursor = self._run(conn, form, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _form(self, conn: Connection) -> _Form | None:
        dialect = conn.dialect
        try:
            return self._forms[dialect]
        except KeyError:
            pass
        with self._lock:
            try:
                form: _Form | None = _Form(self.statement, dialect, self.columns)
            except _NotPreparable:
                form = None
            self._forms[dialect] = form
        return form

    @staticmethod
    def _run(conn: Connection, form: _Form, params: Mapping[str, Any]) -> Any:
        args = form.args(params)
        return run_driver_sql(conn, form.sql, args)


def run_driver_sql(conn: Connection, sql: str, args: Any = ()) -> Any:
    """Execute ``sql`` on ``conn``'s DBAPI connection; the open cursor (the caller closes it).

    A DBAPI error comes out as SQLAlchemy's wrapper of it, as from ``conn.execute``.
    """
    dbapi_connection = conn.connection.dbapi_connection
    if dbapi_connection is None:
        raise ResourceClosedError("the connection has no DBAPI connection")
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql, args)
    except conn.dialect.loaded_dbapi.Error as exc:
        cursor.close()
        raise _wrapped(conn, sql, args, exc, dbapi_connection) from exc
    except BaseException:
        cursor.close()
        raise
    return cursor


def _wrapped(conn: Connection, sql: str, args: Any, exc: Any,
             dbapi_connection: Any) -> BaseException:
    """What SQLAlchemy raises for ``exc``; a lost connection is invalidated, as it does."""
    dialect = conn.dialect
    disconnected = dialect.is_disconnect(exc, dbapi_connection, None)
    wrapped: BaseException = DBAPIError.instance(
        sql, args, exc, dialect.loaded_dbapi.Error, hide_parameters=conn.engine.hide_parameters,
        connection_invalidated=disconnected, dialect=dialect)
    if disconnected:
        conn.invalidate(exc)
    return wrapped
