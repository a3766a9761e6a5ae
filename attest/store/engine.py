"""Engines for the store: SQLite (WAL, durable, serialized writers) or any other URL as is.

Everything backend-specific lives here, in connection events; the SQL elsewhere is
portable Core. A ``postgresql+psycopg://`` URL goes through unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url

from attest.store.prepared import run_driver_sql

# Execution option that marks a connection as about to write. On SQLite its
# transaction starts with BEGIN IMMEDIATE: it takes the write lock up front, so a
# read-then-write transaction (consume nonce, insert jti, advance clock) waits for
# busy_timeout instead of failing with SQLITE_BUSY when another writer committed
# after its snapshot. Other backends ignore the option.
WRITE_OPTION = "attest_write"

# How long a writer waits for another writer's lock before the store is
# "unavailable". Writers hold the lock for one short transaction.
BUSY_TIMEOUT_MS = 15_000


def default_url(home: Path) -> str:
    """``sqlite:///$ATTEST_HOME/verifier.db``, absolute."""
    return URL.create("sqlite", database=str(home.resolve() / "verifier.db")).render_as_string()


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; raises SQLAlchemy's own errors (the caller words them)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # A server may drop idle connections; check them before handing them out.
        return create_engine(parsed, pool_pre_ping=True)
    engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def holds_write_lock(connection: Connection) -> bool:
    """Whether ``connection``'s transaction holds the database's write lock from its start.

    True for a write transaction on SQLite (BEGIN IMMEDIATE): no other writer can
    change a row between its reads and its writes. Elsewhere (PostgreSQL's read
    committed) another transaction may, and the caller must allow for it.
    """
    return (connection.dialect.name == "sqlite"
            and bool(connection.get_execution_options().get(WRITE_OPTION)))


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module, which would not BEGIN
    # before SELECTs or SAVEPOINTs (its "legacy" mode); _sqlite_begin emits BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL itself needs a lock another opener may hold.
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL: readers don't block the writer; persistent in the file once set.
        cursor.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit (an accepted decision) survives power loss, not only a crash.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # On the DBAPI cursor, as the store's prepared statements run (attest.store.prepared).
    begin = "BEGIN IMMEDIATE" if connection.get_execution_options().get(WRITE_OPTION) \
        else "BEGIN"
    run_driver_sql(connection, begin).close()
