"""The store on SQLite through the standard library's ``sqlite3``: WAL, durable commits,
writers serialized from the start of their transaction.

Connections live in a small pool: a transaction takes one, uses it on its own thread
and puts it back. A connection is thus never used by two threads at once, which is
what ``check_same_thread=False`` asks of us in exchange for letting a connection serve
another thread in its next transaction (and :meth:`SQLiteDatabase.close` close the
idle ones from any thread). Connections per thread would pile up under a server that
starts a thread per request; the pool keeps at most :data:`MAX_IDLE` open.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NoReturn

from attest.errors import StoreUnavailable
from attest.store import rowtypes
from attest.store.db import (
    NO_PARAMS,
    UNAVAILABLE_HINT,
    Conflict,
    DatabaseError,
    Params,
    Row,
)

# How long a writer waits for another writer's lock before the store is
# "unavailable". Writers hold the lock for one short transaction.
BUSY_TIMEOUT_MS = 15_000

# Connections kept open between transactions: a verifier's worker threads, about.
MAX_IDLE = 8

# After busy_timeout, which comes first: switching to WAL needs a lock another opener
# may hold.
_SETUP = (
    # WAL: readers don't block the writer; persistent in the file once set.
    "PRAGMA journal_mode = WAL",
    # FULL: a commit (an accepted decision) survives power loss, not only a crash.
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
)

# The extended result codes of a duplicate key: what the store's race handling catches.
_DUPLICATE_KEY = frozenset({sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY,
                            sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_ROWID})

Failure = Callable[[sqlite3.Error], Exception]


class SQLiteTransaction:
    """A transaction on one pooled connection; see :class:`attest.store.db.Transaction`."""

    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection, write: bool, failure: Failure) -> None:
        self._connection: sqlite3.Connection | _Ended = connection
        # A write transaction began with BEGIN IMMEDIATE: it holds the lock from its start.
        self.holds_write_lock = write
        self._failure = failure
        self._savepoints = 0
        # Cursors of streams not read to the end: closed when the transaction ends, so
        # that none reads on after COMMIT (holding a snapshot on a pooled connection).
        self._streams: list[sqlite3.Cursor] = []
        self.committed: list[Callable[[], None]] = []  # after_commit's actions, in order

    def first(self, sql: str, params: Params = NO_PARAMS) -> Row | None:
        try:
            cursor = self._connection.execute(sql, _args(params))
            try:
                raw = cursor.fetchone()
                return None if raw is None else _row_maker(cursor.description)(raw)
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise self._failure(exc) from exc

    def all(self, sql: str, params: Params = NO_PARAMS) -> list[Row]:
        try:
            cursor = self._connection.execute(sql, _args(params))
            try:
                raws = cursor.fetchall()
                if not raws:
                    return []
                make = _row_maker(cursor.description)
                return [make(raw) for raw in raws]
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise self._failure(exc) from exc

    def scalar(self, sql: str, params: Params = NO_PARAMS) -> Any:
        try:
            cursor = self._connection.execute(sql, _args(params))
            try:
                raw = cursor.fetchone()
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise self._failure(exc) from exc
        if raw is None:
            return None
        rowtypes.check_row((name := cursor.description[0][0],), rowtypes.checks((name,)), raw)
        return raw[0]

    def execute(self, sql: str, params: Params = NO_PARAMS) -> int:
        try:
            cursor = self._connection.execute(sql, _args(params))
            try:
                return cursor.rowcount
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise self._failure(exc) from exc

    def many(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            self._connection.executemany(sql, map(_args, rows)).close()
        except sqlite3.Error as exc:
            raise self._failure(exc) from exc

    def stream(self, sql: str, params: Params = NO_PARAMS, chunk: int = 1000) -> Iterator[Row]:
        try:
            cursor = self._connection.execute(sql, _args(params))
        except sqlite3.Error as exc:
            raise self._failure(exc) from exc
        self._streams.append(cursor)
        try:
            make = _row_maker(cursor.description)
            while True:
                try:
                    raws = cursor.fetchmany(chunk)
                except sqlite3.Error as exc:
                    raise self._failure(exc) from exc
                if not raws:
                    return
                yield from map(make, raws)
        finally:
            # A stream its reader abandoned (a refusal mid-way) may be closed after its
            # connection; the transaction's end closed the cursor already.
            with contextlib.suppress(sqlite3.ProgrammingError):
                cursor.close()

    def end(self) -> None:
        # The connection may serve another thread next: a transaction kept past its block
        # must not reach it, nor a stream left half-read (its generator would go on
        # reading from the connection, outside any transaction of ours).
        self._connection = _ENDED
        streams, self._streams = self._streams, []
        for cursor in streams:
            cursor.close()

    def after_commit(self, action: Callable[[], None]) -> None:
        self.committed.append(action)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        # Nested savepoints get names of their own; a finished one's name is reused.
        name = f"sp{self._savepoints}"
        self.execute(f"SAVEPOINT {name}")
        self._savepoints += 1
        actions = len(self.committed)
        try:
            yield
        except BaseException:
            # What the undone statements asked to run after the commit is undone too (a
            # tree head rolled back was never signed: attest.verify.batch undoes members).
            del self.committed[actions:]
            # ROLLBACK TO leaves the savepoint open: it is released as after success.
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.execute(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            self.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            self._savepoints -= 1


class SQLiteDatabase:
    """One SQLite file; see :class:`attest.store.db.Database`."""

    dialect = "sqlite"

    def __init__(self, path: str, where: str) -> None:
        self._path = path
        self.where = where
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        # Bumped by close(): a connection taken out before then is closed on return.
        self._generation = 0

    def read(self) -> AbstractContextManager[SQLiteTransaction]:
        return self._transaction(write=False)

    def write(self) -> AbstractContextManager[SQLiteTransaction]:
        return self._transaction(write=True)

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def failure(self, exc: sqlite3.Error) -> Exception:
        """What the store raises for ``exc``: the caller raises it ``from exc``."""
        if isinstance(exc, sqlite3.IntegrityError) and exc.sqlite_errorcode in _DUPLICATE_KEY:
            return Conflict(str(exc))
        if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError
                      | sqlite3.InterfaceError):
            return DatabaseError(str(exc))
        # Locked past the timeout, unreadable, not a database, disk full, no such table...
        return StoreUnavailable(f"verifier store {self.where}: {exc}", hint=UNAVAILABLE_HINT)

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[SQLiteTransaction]:
        connection, generation = self._checkout()
        reusable = False
        transaction = SQLiteTransaction(connection, write, self.failure)
        try:
            self._run(connection, "BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield transaction
            except BaseException as exc:
                transaction.end()
                reusable = _rolled_back(connection, exc)
                raise
            transaction.end()  # before COMMIT: an open stream cursor would outlive it
            self._run(connection, "COMMIT")
            reusable = not connection.in_transaction
        finally:
            transaction.end()
            # A connection whose state is in doubt is closed, which rolls back what it holds.
            self._checkin(connection, generation, reusable)
        for action in transaction.committed:
            action()

    def _checkout(self) -> tuple[sqlite3.Connection, int]:
        with self._lock:
            generation = self._generation
            if self._idle:
                return self._idle.pop(), generation
        return self._connect(), generation

    def _checkin(self, connection: sqlite3.Connection, generation: int, reusable: bool) -> None:
        if reusable:
            with self._lock:
                if generation == self._generation and len(self._idle) < MAX_IDLE:
                    self._idle.append(connection)
                    return
        connection.close()

    def _connect(self) -> sqlite3.Connection:
        _create_private(self._path)
        try:
            # isolation_level=None: the sqlite3 module issues no BEGIN or COMMIT of its own
            # (it would not BEGIN before a SELECT or a SAVEPOINT); _transaction does.
            connection = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_MS / 1000,
                                         isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self.failure(exc) from exc
        # TEXT that is not UTF-8 (a BLOB cast to TEXT by SQL) is a changed row, not an
        # unreadable store: read it as NotUtf8, which no column's check accepts.
        connection.text_factory = rowtypes.decode_text
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}").close()
            for pragma in _SETUP:
                connection.execute(pragma).close()
        except sqlite3.Error as exc:
            connection.close()
            raise self.failure(exc) from exc
        return connection

    def _run(self, connection: sqlite3.Connection, sql: str) -> None:
        try:
            connection.execute(sql).close()
        except sqlite3.Error as exc:
            raise self.failure(exc) from exc


def _create_private(path: str) -> None:
    """Create a missing database file 0600 (SQLite gives its -wal and -shm files the
    database file's mode): it holds every accepted scope, command lines included, and
    the verifier's nonces; sqlite3 would create it 0644 under the usual umask. An
    existing file keeps the mode its administrator chose."""
    # There already; or no folder, or no right to create: then sqlite3 says which.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


class _Ended:
    """What a transaction runs its statements on once it has ended."""

    def execute(self, *args: object) -> NoReturn:
        raise RuntimeError("the store transaction has ended")

    def executemany(self, *args: object) -> NoReturn:
        raise RuntimeError("the store transaction has ended")


_ENDED = _Ended()


def _rolled_back(connection: sqlite3.Connection, exc: BaseException) -> bool:
    """Roll back after ``exc``; whether the connection is fit for another transaction."""
    if not connection.in_transaction:
        return True  # SQLite rolled it back itself (it does after some I/O errors)
    try:
        connection.execute("ROLLBACK").close()
    except sqlite3.Error as failed:
        exc.add_note(f"rolling back the store's transaction failed too: {failed}")
        return False
    return True


def _args(params: Params) -> Any:
    # sqlite3 binds named parameters from a dict only (not any mapping).
    return params if type(params) is dict else dict(params)


@functools.lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> Any:
    # rename: a column named by an expression (count(*)) becomes _0, _1, ...
    return namedtuple("Row", names, rename=True)


def _row_maker(description: Any) -> Callable[[Any], Row]:
    names = tuple([column[0] for column in description])
    # SQLite stores any type in any column: a value of another type is a changed row.
    maker: Callable[[Any], Row] = rowtypes.maker(names, _row_type(names)._make)
    return maker
