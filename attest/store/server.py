"""The store on a database server (PostgreSQL), through SQLAlchemy.

Imported only for a non-SQLite URL: SQLAlchemy brings the drivers, the connection
pool (with a liveness check for connections that sat idle, since a server drops idle
connections) and URL parsing.
The statements are the same text as on SQLite, run with ``text()``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, TextClause, create_engine, event, make_url, text
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    NoSuchModuleError,
    ProgrammingError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from attest.errors import StoreUnavailable, UsageError
from attest.store.db import (
    NO_PARAMS,
    Conflict,
    DatabaseError,
    Params,
    Row,
    redacted,
)
from attest.store.ddl import DIALECTS

if TYPE_CHECKING:  # imported when a statement runs: open_server() names a missing driver
    import psycopg

# SQLSTATEs of a duplicate: a key (unique_violation), or a table or index that a
# concurrent opener created first (duplicate_table, duplicate_object).
_CONFLICTS = frozenset({"23505", "42P07", "42710"})
CONNECT_TIMEOUT_S = 10
# A pooled connection idle longer than this is pinged before use (_ping_when_idle).
IDLE_PING_S = 1.0
# SQLite's hint (a directory, a lock) says nothing to whom PostgreSQL refused.
SERVER_UNAVAILABLE_HINT = ("check the store URL (role, host or ?host=SOCKET_DIR, port, "
                           "database), that PostgreSQL is running there, and that it lets "
                           "this role in (pg_hba.conf, password in ~/.pgpass)")
# A named parameter as the store writes it (:name), not a PostgreSQL cast (::type).
_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


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
        engine = create_engine(parsed)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreUnavailable(f"no database driver for {redacted(url)!r}: {exc}",
                               hint="install the driver the URL names") from None
    _ping_when_idle(engine)
    return ServerDatabase(engine, secrets=_secrets(parsed.password, parsed.query))


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection's liveness at checkout only when it sat idle longer than
    IDLE_PING_S: a server drops idle connections (a restart, idle_session_timeout, a
    firewall), but a connection in steady use is alive, and SQLAlchemy's pre-ping on
    every checkout cost each transaction a round trip (three per verification). A
    connection that died in use fails its statement (StoreUnavailable: a denial or a
    503) and takes the whole pool with it (ServerDatabase.disconnected)."""

    @event.listens_for(engine, "checkin")
    def idle_from(_dbapi: Any, record: Any) -> None:
        record.info["idle_from"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping(dbapi: Any, record: Any, _proxy: Any) -> None:
        idle_from = record.info.get("idle_from")
        if idle_from is None or time.monotonic() - idle_from <= IDLE_PING_S:
            return
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(f"a pooled connection is gone: {exc}") from exc


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
        self._savepoints = 0  # savepoints named so far: each gets a name of its own

    def after_commit(self, action: Callable[[], None]) -> None:
        self.committed.append(action)

    # The statements run on the driver's connection, inside the transaction SQLAlchemy
    # began on it: SQLAlchemy's execution path per statement (clause lookup, events,
    # result wrapping) cost about 0.4 ms of Python against 0.1 ms for the round trip,
    # and a verification runs about 40 statements, most inside the group commit's lock
    # (scripts/bench --only service). The pool, BEGIN, COMMIT and savepoints stay
    # SQLAlchemy's; stream() too (a server-side cursor).
    def first(self, sql: str, params: Params = NO_PARAMS) -> Row | None:
        with self._cursor(sql, params) as cursor:
            return cursor.fetchone() if cursor.description is not None else None

    def all(self, sql: str, params: Params = NO_PARAMS) -> list[Row]:
        with self._cursor(sql, params) as cursor:
            return cursor.fetchall()

    def scalar(self, sql: str, params: Params = NO_PARAMS) -> Any:
        with self._cursor(sql, params) as cursor:
            row = cursor.fetchone() if cursor.description is not None else None
            return None if row is None else row[0]

    def execute(self, sql: str, params: Params = NO_PARAMS) -> int:
        with self._cursor(sql, params) as cursor:
            return cursor.rowcount

    def many(self, sql: str, rows: Sequence[Params]) -> None:
        import psycopg

        driver = self._driver()
        try:
            with driver.cursor() as cursor:
                cursor.executemany(self._database.pyformat(sql), [dict(r) for r in rows])
        except psycopg.Error as exc:
            raise self._failed(driver, exc) from exc

    def _failed(self, driver: psycopg.Connection[Any], exc: psycopg.Error) -> Exception:
        """What to raise for ``exc``, met on ``driver``; a connection it broke (the
        server gone) is dropped, with every other in the pool: SQLAlchemy does not see
        these statements, so its own disconnect handling would not."""
        if driver.broken or driver.closed:
            self._connection.invalidate(exc)
            self._database.disconnected()
        return self._database.driver_failure(exc)

    def _driver(self) -> psycopg.Connection[Any]:
        import psycopg

        driver = self._connection.connection.driver_connection
        if not isinstance(driver, psycopg.Connection):
            raise DatabaseError("the store reaches PostgreSQL through psycopg (3) only")
        return driver

    @contextmanager
    def _cursor(self, sql: str, params: Params) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor that has run ``sql``; the driver's errors translated as failure()
        translates SQLAlchemy's."""
        import psycopg
        from psycopg.rows import namedtuple_row

        driver = self._driver()
        try:
            with driver.cursor(row_factory=namedtuple_row) as cursor:
                cursor.execute(self._database.pyformat(sql), dict(params))
                yield cursor
        except psycopg.Error as exc:
            raise self._failed(driver, exc) from exc

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
        # On the driver's connection, as the statements: a group commit takes one per
        # acceptance, inside the log's lock, and SQLAlchemy's begin_nested() cost about
        # as much Python as the two round trips. Balanced here, so SQLAlchemy's own
        # transaction (BEGIN, COMMIT or ROLLBACK) never sees it.
        actions = len(self.committed)
        self._savepoints += 1
        name = f"attest_sp_{self._savepoints}"
        self.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            # What the undone statements asked to run after the commit is undone too.
            del self.committed[actions:]
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        self.execute(f"RELEASE SAVEPOINT {name}")


class ServerDatabase:
    """A server database behind an SQLAlchemy engine; see :class:`attest.store.db.Database`."""

    def __init__(self, engine: Engine, *, secrets: tuple[str, ...] = ()) -> None:
        self._engine = engine
        self.dialect: str = engine.dialect.name
        self.where = redacted(engine.url.render_as_string(hide_password=True))
        self._secrets = secrets
        # text() parses a statement for its parameters: once per statement, not per call.
        self._clauses: dict[str, TextClause] = {}
        self._pyformat: dict[str, str] = {}  # the same for the driver's %(name)s

    def read(self) -> AbstractContextManager[ServerTransaction]:
        return self._transaction()

    def write(self) -> AbstractContextManager[ServerTransaction]:
        return self._transaction()

    def close(self) -> None:
        self._engine.dispose()

    def disconnected(self) -> None:
        """A connection found the server gone: the others were opened to the same server
        and are gone too (a restart). A new pool, so that each does not fail a request of
        its own first; the connections checked out now are dropped as they come back."""
        self._engine.dispose(close=False)

    def clause(self, sql: str) -> TextClause:
        found = self._clauses.get(sql)
        if found is None:
            found = self._clauses.setdefault(sql, text(sql))
        return found

    def pyformat(self, sql: str) -> str:
        """``sql`` with the store's :name parameters in psycopg's %(name)s style (and any
        literal % doubled)."""
        found = self._pyformat.get(sql)
        if found is None:
            found = _PARAMETER.sub(r"%(\1)s", sql.replace("%", "%%"))
            self._pyformat[sql] = found
        return found

    def driver_failure(self, exc: psycopg.Error) -> Exception:
        """What :meth:`failure` says for the same error met on the driver directly."""
        import psycopg

        if exc.sqlstate in _CONFLICTS:
            return Conflict(self._scrub(str(exc)))
        if isinstance(exc, psycopg.IntegrityError | psycopg.ProgrammingError):
            return DatabaseError(self._scrub(str(exc)))
        return StoreUnavailable(f"verifier store {self.where}: {self._scrub(str(exc))}",
                                hint=SERVER_UNAVAILABLE_HINT)

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
                                hint=SERVER_UNAVAILABLE_HINT)

    def _scrub(self, message: str) -> str:
        """``message`` without the URL's secrets: a driver may quote what it was given."""
        for secret in self._secrets:
            message = message.replace(secret, "***")
        # libpq's messages run over lines ("...failed: refused\n\tIs the server
        # running..."): one line, which the CLI would otherwise print as \x0a\x09.
        return " ".join(message.split())

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
                                   f"pool: {type(exc).__name__}",
                                   hint=SERVER_UNAVAILABLE_HINT) from exc
        for action in transaction.committed:
            action()
