"""The store's database: SQL text run in transactions, on SQLite or on a server.

``open_database(url)`` gives a :class:`Database` whose :meth:`~Database.read` and
:meth:`~Database.write` yield a :class:`Transaction`. SQL is text with ``:name``
parameters, which both the standard library's ``sqlite3`` and SQLAlchemy's ``text()``
take, so one statement serves both backends:

- ``sqlite:///PATH`` (the default) runs on ``sqlite3`` directly (:mod:`.sqlite`).
  Importing SQLAlchemy takes longer than the rest of ``attest run``'s budget, and
  the store needs nothing from it on SQLite: no ORM, no SQL generation, one driver.
- any other URL (``postgresql+psycopg://...``) goes through SQLAlchemy (:mod:`.server`),
  imported only then, for its drivers, pool and URL handling.

Errors come out the same on both: :class:`Conflict` for a duplicate key (the store
settles races with it), :class:`DatabaseError` for a statement the database refuses
for what it is (a bug), and :class:`attest.errors.StoreUnavailable` when the
database cannot be reached, is locked past the timeout, or is damaged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import quote, unquote_to_bytes

from attest.errors import StoreUnavailable, UsageError

Params = Mapping[str, object]
NO_PARAMS: Params = MappingProxyType({})

Row = Any
"""A result row: a tuple whose columns are also attributes by name (``row.jti``)."""

UNAVAILABLE_HINT = ("check that the store URL is right, that its directory exists and is "
                    "writable, and that no other process holds the database locked")

# sqlite:///PATH, as SQLAlchemy spells it (its pysqlite driver named or not); no host.
_SQLITE_URL = re.compile(r"sqlite(?:\+pysqlite)?://(?:/(?P<path>[^?]*))?(?:\?(?P<query>.*))?",
                         re.DOTALL)


# The secrets a URL may carry: the password of its userinfo, and libpq's password or
# passfile parameters in its query. Never echoed in a message (`attest serve` prints them
# to logs an operator ships elsewhere).
_URL_PASSWORD = re.compile(r"(?P<head>^[^:/?#]*://[^/?#@]*?:)[^/?#]*(?=@)")
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:password|passfile|sslpassword)=)[^&#]*",
                           re.IGNORECASE)


def redacted(url: str) -> str:
    """``url`` with its password (and password parameters) replaced by ``***``."""
    return _QUERY_SECRET.sub(r"\g<head>***", _URL_PASSWORD.sub(r"\g<head>***", url))


class DatabaseError(Exception):
    """The database refused a statement for what it is or holds (a constraint, a mistake
    in the SQL or its parameters), not for the state of the database: a bug unless a
    subclass says otherwise."""


class Conflict(DatabaseError):
    """A row with the same primary or unique key exists (or, for DDL, the table does).

    The store settles races with it: whoever inserts second gets a Conflict, inside a
    savepoint when its transaction must go on.
    """


class Transaction(Protocol):
    """One open transaction; only the thread that opened it uses it."""

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""

    @property
    def holds_write_lock(self) -> bool:
        """Whether the transaction holds the database's write lock from its start.

        True for a write transaction on SQLite (BEGIN IMMEDIATE): no other writer can
        change a row between its reads and its writes. Elsewhere (PostgreSQL's read
        committed) another transaction may, and the caller must allow for it.
        """

    def first(self, sql: str, params: Params = NO_PARAMS) -> Row | None:
        """The first row, or None."""

    def all(self, sql: str, params: Params = NO_PARAMS) -> list[Row]:
        """Every row."""

    def scalar(self, sql: str, params: Params = NO_PARAMS) -> Any:
        """The first column of the first row, or None."""

    def execute(self, sql: str, params: Params = NO_PARAMS) -> int:
        """Run a statement; for an INSERT, UPDATE or DELETE, the number of rows it changed."""

    def many(self, sql: str, rows: Sequence[Params]) -> None:
        """Run a statement once for each set of parameters (an INSERT of many rows)."""

    def stream(self, sql: str, params: Params = NO_PARAMS, chunk: int = 1000) -> Iterator[Row]:
        """The rows, fetched ``chunk`` at a time: for results too big to hold at once."""

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: if the block raises, only its statements are undone."""

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once this transaction has committed (never if it rolls back).

        For what must follow the database and may not run ahead of it: the audit log
        key's record of the last head signed, say. An action that raises is not the
        transaction's failure: it committed. Actions catch what they must.
        """


class Database(Protocol):
    """Transactions on one database; safe to share between threads."""

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""

    @property
    def where(self) -> str:
        """The URL without its password, for messages."""

    def read(self) -> AbstractContextManager[Transaction]:
        """A read transaction: on SQLite, one consistent snapshot for all its queries."""

    def write(self) -> AbstractContextManager[Transaction]:
        """A write transaction: committed when the block ends, rolled back if it raises."""

    def close(self) -> None:
        """Close the idle connections (and the others once their transaction ends)."""


def default_url(home: Path) -> str:
    """``sqlite:///$ATTEST_HOME/verifier.db``, absolute."""
    # The file name's bytes, percent-encoded: a home that is not UTF-8 is still a path.
    return "sqlite:///" + quote(os.fsencode(home.resolve() / "verifier.db"), safe=" +/")


def open_database(url: str) -> Database:
    """The database at ``url``; UsageError for a URL that names none, StoreUnavailable
    for one that cannot be reached (on SQLite: at the first transaction)."""
    if url.startswith("sqlite"):
        from attest.store.sqlite import SQLiteDatabase

        return SQLiteDatabase(_sqlite_path(url), url)
    try:
        from attest.store.server import open_server
    except ImportError as exc:
        raise StoreUnavailable(f"no database driver for {redacted(url)!r}: {exc}",
                               hint="install SQLAlchemy and the driver the URL names") from None
    return open_server(url)


def _sqlite_path(url: str) -> str:
    """The absolute file name a ``sqlite:///PATH`` URL names."""
    match = _SQLITE_URL.fullmatch(url)
    if match is None:
        raise UsageError(f"not a SQLite URL the store can open: {url!r}",
                         hint="use sqlite:///PATH (a relative PATH), sqlite:////PATH "
                              "(an absolute one)")
    if match["query"]:
        raise UsageError(f"the store takes no options in a SQLite URL: {match['query']!r}",
                         hint="use sqlite:///PATH")
    path = os.fsdecode(unquote_to_bytes(os.fsencode(match["path"] or "")))
    if path in ("", ":memory:"):
        # Every nonce and jti would be forgotten at exit: replays would pass.
        raise UsageError("the verifier's store must be a file, not an in-memory database",
                         hint="use sqlite:///PATH")
    # Resolved once, so that a later change of directory does not change the database.
    return os.path.abspath(path)
