"""The store on a database server (PostgreSQL), through SQLAlchemy.

Imported only for a non-SQLite URL: SQLAlchemy brings the drivers, the connection
pool (with a liveness check, since a server drops idle connections) and URL parsing.
The statements are the same text as on SQLite, run with ``text()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, TextClause, create_engine, make_url, text
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    ProgrammingError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from attest.errors import StoreUnavailable, UsageError
from attest.store.db import (
    NO_PARAMS,
    UNAVAILABLE_HINT,
    Conflict,
    DatabaseError,
    Params,
    Row,
    redacted,
)
from attest.store.ddl import DIALECTS

# SQLSTATEs of a duplicate: a key (unique_violation), or a table or index that a
# concurrent opener created first (duplicate_table, duplicate_object).
_CONFLICTS = frozenset({"23505", "42P07", "42710"})
CONNECT_TIMEOUT_S = 10


def open_server(url: str) -> ServerDatabase:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise UsageError(f"not a database URL: {redacted(url)!r}",
                         hint="use sqlite:///PATH or postgresql://HOST/DB") from None
    if parsed.drivername == "postgres":
        # The scheme libpq and most hosting services hand out; SQLAlchemy knows no such name.
        parsed = parsed.set(drivername="postgresql")
    if parsed.get_backend_name() not in DIALECTS:
        # The tables are described for these two only (attest.store.ddl).
        raise UsageError(f"the store runs on SQLite or PostgreSQL, not {parsed.drivername}",
                         hint="use sqlite:///PATH or postgresql+psycopg://HOST/DB")
    if parsed.drivername == "postgresql":
        # SQLAlchemy's default for a bare postgresql:// is psycopg2; the store speaks psycopg.
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_driver_name() != "psycopg":
        # The SQL is text without column types: other drivers hand BLOBs back in other
        # types (psycopg2: memoryview), which the store's readers do not expect.
        raise UsageError(f"the store reaches PostgreSQL through psycopg (3), not "
                         f"{parsed.get_driver_name()}",
                         hint="use postgresql+psycopg://HOST/DB (pip install 'psycopg[binary]')")
    if "connect_timeout" not in parsed.query:
        # libpq waits for a TCP connect as long as the kernel does (minutes) when the
        # server's host is cut off: a replica would hang its requests and its shutdown
        # rather than answer 503. The URL's own connect_timeout wins.
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_S)})
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreUnavailable(f"no database driver for {redacted(url)!r}: {exc}",
                               hint="install the driver the URL names") from None
    return ServerDatabase(engine, secrets=_secrets(parsed.password, parsed.query))


def _secrets(password: str | None, query: Mapping[str, str | tuple[str, ...]]) -> tuple[str, ...]:
    """What a message about this database must never contain."""
    found = [password] if password else []
    for name, value in query.items():
        if name.lower() in ("password", "sslpassword"):
            found.extend([value] if isinstance(value, str) else value)
    return tuple(secret for secret in found if secret)


class ServerTransaction:
    """A transaction on one SQLAlchemy connection; see :class:`attest.store.db.Transaction`."""

    # Read committed: another transaction may change a row between a read and a write.
    holds_write_lock = False

    def __init__(self, database: ServerDatabase, connection: Connection) -> None:
        self._database = database
        self._connection = connection
        self.dialect = database.dialect
        self.committed: list[Callable[[], None]] = []  # after_commit's actions, in order

    def after_commit(self, action: Callable[[], None]) -> None:
        self.committed.append(action)

    def first(self, sql: str, params: Params = NO_PARAMS) -> Row | None:
        try:
            return self._run(sql, params).first()
        except StatementError as exc:
            raise self._database.failure(exc) from exc

    def all(self, sql: str, params: Params = NO_PARAMS) -> list[Row]:
        try:
            return list(self._run(sql, params).all())
        except StatementError as exc:
            raise self._database.failure(exc) from exc

    def scalar(self, sql: str, params: Params = NO_PARAMS) -> Any:
        try:
            return self._run(sql, params).scalar()
        except StatementError as exc:
            raise self._database.failure(exc) from exc

    def execute(self, sql: str, params: Params = NO_PARAMS) -> int:
        try:
            result = self._run(sql, params)
            count = result.rowcount
            result.close()
            return count
        except StatementError as exc:
            raise self._database.failure(exc) from exc

    def many(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            self._connection.execute(self._database.clause(sql), [dict(r) for r in rows])
        except StatementError as exc:
            raise self._database.failure(exc) from exc

    def stream(self, sql: str, params: Params = NO_PARAMS, chunk: int = 1000) -> Iterator[Row]:
        try:
            # yield_per: a server-side cursor, so a million rows are not held at once.
            result = self._connection.execute(
                self._database.clause(sql).execution_options(yield_per=chunk), dict(params))
            with result:
                yield from result
        except StatementError as exc:
            raise self._database.failure(exc) from exc

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        actions = len(self.committed)
        try:
            with self._connection.begin_nested():
                yield
        except BaseException:
            # What the undone statements asked to run after the commit is undone too.
            del self.committed[actions:]
            raise

    def _run(self, sql: str, params: Params) -> CursorResult[Any]:
        return self._connection.execute(self._database.clause(sql), dict(params))


class ServerDatabase:
    """A server database behind an SQLAlchemy engine; see :class:`attest.store.db.Database`."""

    def __init__(self, engine: Engine, *, secrets: tuple[str, ...] = ()) -> None:
        self._engine = engine
        self.dialect: str = engine.dialect.name
        self.where = redacted(engine.url.render_as_string(hide_password=True))
        self._secrets = secrets
        # text() parses a statement for its parameters: once per statement, not per call.
        self._clauses: dict[str, TextClause] = {}

    def read(self) -> AbstractContextManager[ServerTransaction]:
        return self._transaction()

    def write(self) -> AbstractContextManager[ServerTransaction]:
        return self._transaction()

    def close(self) -> None:
        self._engine.dispose()

    def clause(self, sql: str) -> TextClause:
        found = self._clauses.get(sql)
        if found is None:
            found = self._clauses.setdefault(sql, text(sql))
        return found

    def failure(self, exc: StatementError) -> Exception:
        """What the store raises for ``exc``: the caller raises it ``from exc``."""
        if not isinstance(exc, DBAPIError):
            return DatabaseError(str(exc))  # refused before the database saw it: a parameter
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if state in _CONFLICTS:
            return Conflict(self._scrub(str(exc.orig)))
        if isinstance(exc, IntegrityError | ProgrammingError):
            return DatabaseError(self._scrub(str(exc.orig)))
        return StoreUnavailable(f"verifier store {self.where}: {self._scrub(str(exc.orig))}",
                                hint=UNAVAILABLE_HINT)

    def _scrub(self, message: str) -> str:
        """``message`` without the URL's secrets: a driver may quote what it was given."""
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    @contextmanager
    def _transaction(self) -> Iterator[ServerTransaction]:
        # Errors of the statements inside come out translated already; what is left to
        # translate comes from connecting, BEGIN and COMMIT.
        try:
            with self._engine.connect() as connection, connection.begin():
                transaction = ServerTransaction(self, connection)
                yield transaction
        except DBAPIError as exc:
            raise self.failure(exc) from exc
        except PoolTimeout as exc:
            # Every pooled connection busy past pool_timeout: overload, not a bad request.
            raise StoreUnavailable(f"verifier store {self.where}: no connection free in the "
                                   f"pool: {type(exc).__name__}", hint=UNAVAILABLE_HINT) from exc
        for action in transaction.committed:
            action()
