"""The database layer: SQL text with :name parameters, rows, transactions, savepoints,
SQLite's locking, and every database error as Conflict, DatabaseError or StoreUnavailable."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from attest.errors import StoreUnavailable
from attest.store import Store
from attest.store import sqlite as sqlite_backend
from attest.store.db import Conflict, Database, DatabaseError, Transaction, open_database
from attest.store.ddl import BLOB, INTEGER, Column, Table, varchar
from tests.store import reads
from tests.store.helpers import AK, HOST, T0, clock, record

ITEMS = Table("items", (
    Column("id", INTEGER, primary_key=True),
    Column("name", varchar(32)),
    Column("body", BLOB, nullable=True),
    Column("parent", INTEGER, nullable=True, references=("items", "id")),
), unique=(("uq_items_name", ("name",)),))
ADD = ITEMS.insert(("id", "name", "body"))
NAMES = "SELECT name FROM items ORDER BY id"


@pytest.fixture
def database(url: str) -> Iterator[Database]:
    opened = open_database(url)
    with opened.write() as tx:
        for statement in ITEMS.create(tx.dialect):
            tx.execute(statement)
    yield opened
    opened.close()


def _names(database: Database) -> list[str]:
    with database.read() as tx:
        return [row.name for row in tx.all(NAMES)]


def _add(tx: Transaction, n: int, name: str | None = None) -> None:
    tx.execute(ADD, {"id": n, "name": name or f"item-{n}", "body": bytes([n])})


def test_rows_carry_their_columns_by_name_and_by_position(database: Database) -> None:
    with database.write() as tx:
        tx.many(ADD, [{"id": n, "name": f"item-{n}", "body": bytes([n])} for n in (3, 1, 2)])
    with database.read() as tx:
        row = tx.first("SELECT id, name, body FROM items WHERE name = :name", {"name": "item-2"})
        assert row is not None
        assert (row.id, row.name, row.body) == (2, "item-2", b"\x02") == tuple(row)
        assert tx.first("SELECT id FROM items WHERE id = :id", {"id": 99}) is None
        assert [r.id for r in tx.all("SELECT id FROM items ORDER BY id")] == [1, 2, 3]
        assert tx.all("SELECT id FROM items WHERE id > :id", {"id": 3}) == []
        assert tx.scalar("SELECT count(*) FROM items") == 3
        assert tx.scalar("SELECT name FROM items WHERE id = :id", {"id": 99}) is None
        # One parameter may appear several times; NULL compares as SQL says it does.
        assert tx.scalar("SELECT count(*) FROM items WHERE id = :n OR id = :n + 1",
                         {"n": 1}) == 2
        assert tx.scalar("SELECT count(*) FROM items WHERE name = :name", {"name": None}) == 0


def test_execute_counts_the_rows_a_statement_changed(database: Database) -> None:
    with database.write() as tx:
        assert tx.execute(ADD, {"id": 1, "name": "a", "body": None}) == 1
        _add(tx, 2)
        _add(tx, 3)
        assert tx.execute("UPDATE items SET body = :body WHERE id >= :id",
                          {"body": b"x", "id": 2}) == 2
        assert tx.execute("DELETE FROM items WHERE id = :id", {"id": 99}) == 0


def test_stream_gives_every_row_in_order_a_chunk_at_a_time(database: Database) -> None:
    with database.write() as tx:
        for n in range(25):
            _add(tx, n)
    with database.read() as tx:
        streamed = [row.name for row in tx.stream(NAMES, chunk=4)]
        assert streamed == [row.name for row in tx.all(NAMES)]
        assert len(streamed) == 25


def test_a_block_that_raises_writes_nothing(database: Database) -> None:
    with pytest.raises(RuntimeError), database.write() as tx:
        _add(tx, 1)
        raise RuntimeError("refused after writing")
    assert _names(database) == []
    with database.write() as tx:  # the connection is fit for the next transaction
        _add(tx, 1)
    assert _names(database) == ["item-1"]


@pytest.mark.parametrize("duplicate", [{"id": 1, "name": "other"}, {"id": 2, "name": "item-1"}])
def test_a_duplicate_key_is_a_conflict(database: Database, duplicate: dict[str, object]) -> None:
    with database.write() as tx:
        _add(tx, 1)
    with pytest.raises(Conflict) as caught, database.write() as tx:
        tx.execute(ADD, {**duplicate, "body": None})
    assert isinstance(caught.value, DatabaseError)
    assert _names(database) == ["item-1"]


def test_a_savepoint_undoes_its_block_and_the_transaction_goes_on(database: Database) -> None:
    with database.write() as tx:
        _add(tx, 1)
        with pytest.raises(Conflict), tx.savepoint():
            _add(tx, 2)
            _add(tx, 3, name="item-1")
        with tx.savepoint():  # nested: the inner one fails, the outer one stands
            _add(tx, 4)
            with pytest.raises(Conflict), tx.savepoint():
                _add(tx, 1)
            _add(tx, 5)
        assert [row.name for row in tx.all(NAMES)] == ["item-1", "item-4", "item-5"]
    assert _names(database) == ["item-1", "item-4", "item-5"]


def test_a_savepoint_undone_drops_the_actions_it_asked_for_after_commit(
        database: Database) -> None:
    """What a savepoint's block registered with after_commit goes with its statements: a
    batch member rolled back (a tree head it signed, say) leaves nothing to run."""
    ran: list[str] = []
    with database.write() as tx:
        tx.after_commit(lambda: ran.append("before"))
        with pytest.raises(Conflict), tx.savepoint():
            _add(tx, 1)
            tx.after_commit(lambda: ran.append("undone"))
            _add(tx, 2, name="item-1")
        with tx.savepoint():
            tx.after_commit(lambda: ran.append("kept"))
    assert ran == ["before", "kept"]


@pytest.mark.parametrize("statement", [
    "INSERT INTO items (id, name) VALUES (1, NULL)",  # NOT NULL
    "INSERT INTO items (id, name, parent) VALUES (1, 'orphan', 42)",  # foreign key
    "SELECT name FROM items WHERE id = :not_given",  # a parameter missing
])
def test_other_refusals_are_bugs_not_conflicts(database: Database, statement: str) -> None:
    with pytest.raises(DatabaseError) as caught, database.write() as tx:
        tx.execute(statement)
    assert not isinstance(caught.value, Conflict)


@pytest.mark.sqlite_only
def test_a_transaction_kept_past_its_block_runs_nothing(database: Database) -> None:
    with database.write() as tx:
        _add(tx, 1)
    with pytest.raises(RuntimeError, match="ended"):
        _add(tx, 2)
    with pytest.raises(RuntimeError, match="ended"):
        tx.all(NAMES)
    assert _names(database) == ["item-1"]


@pytest.mark.sqlite_only
def test_a_stream_left_half_read_reads_nothing_after_its_transaction(
        database: Database) -> None:
    """Its cursor is closed before COMMIT: the pooled connection holds no old snapshot."""
    with database.write() as tx:
        for n in range(10):
            _add(tx, n)
    with database.read() as tx:
        rows = tx.stream(NAMES, chunk=2)
        assert next(rows).name == "item-0"
    with pytest.raises(DatabaseError):
        list(rows)
    with database.write() as tx:  # the same pooled connection takes the write lock
        _add(tx, 10)
    assert len(_names(database)) == 11


@pytest.mark.sqlite_only
def test_a_write_transaction_takes_the_lock_at_its_start(url: str) -> None:
    first, second = open_database(url), open_database(url)  # two connections, one file
    events: list[str] = []
    done = threading.Event()

    def write_meanwhile() -> None:
        with second.write() as tx:
            events.append("second began")
            tx.execute("CREATE TABLE IF NOT EXISTS other (x INTEGER)")
        done.set()

    with first.write() as tx:
        assert tx.holds_write_lock
        thread = threading.Thread(target=write_meanwhile)
        thread.start()
        # BEGIN IMMEDIATE: the second writer waits although the first has not written yet.
        assert not done.wait(0.3)
        events.append("first commits")
    thread.join(timeout=10)
    assert events == ["first commits", "second began"]
    with first.read() as tx:
        assert not tx.holds_write_lock
    first.close()
    second.close()


@pytest.mark.sqlite_only
def test_a_read_transaction_is_one_snapshot(url: str, database: Database) -> None:
    writer = open_database(url)
    with database.write() as tx:
        _add(tx, 1)
    with database.read() as tx:
        assert [row.name for row in tx.all(NAMES)] == ["item-1"]
        with writer.write() as other:  # WAL: the writer does not wait for the reader
            _add(other, 2)
        assert [row.name for row in tx.all(NAMES)] == ["item-1"]
    assert _names(database) == ["item-1", "item-2"]
    writer.close()


@pytest.mark.sqlite_only
def test_a_lock_held_past_the_timeout_makes_the_store_unavailable(
        tmp_path: Path, url: str, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_backend, "BUSY_TIMEOUT_MS", 100)
    impatient = open_database(url)
    with closing(sqlite3.connect(tmp_path / "verifier.db", isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked") as caught, impatient.write():
            pass
        assert time.monotonic() - started < 5
        assert caught.value.hint
        holder.execute("ROLLBACK")
    with impatient.write() as tx:  # and it recovers once the lock is free
        _add(tx, 1)
    impatient.close()


@pytest.mark.sqlite_only
def test_a_broken_store_is_unavailable_and_writes_nothing(store: Store) -> None:
    with store.write() as tx:
        tx.execute("DROP TABLE ak_clocks")
    with pytest.raises(StoreUnavailable, match="no such table"):
        store.snapshot(AK, jti="j1", now=T0, host=HOST)
    with pytest.raises(StoreUnavailable, match="no such table"):
        store.accept(record("j1"), nonce=None, single_use=True, clock=clock(5), now=T0)
    assert not reads.jti_seen(store, "j1")


@pytest.mark.sqlite_only
def test_connections_are_kept_between_transactions_and_closed_with_the_store(
        url: str, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def counting(*args: object, **kwargs: object) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))  # type: ignore[arg-type]
        return opened[-1]

    monkeypatch.setattr(sqlite_backend.sqlite3, "connect", counting)
    fresh = open_database(url)
    for n in range(5):
        with fresh.write() as tx:
            _add(tx, n)
        with fresh.read() as tx:
            tx.all(NAMES)
    assert len(opened) == 1
    fresh.close()
    with pytest.raises(sqlite3.ProgrammingError):  # closed
        opened[0].execute("SELECT 1")
    assert _names(fresh) == [f"item-{n}" for n in range(5)]  # a new connection
    assert len(opened) == 2
    fresh.close()


def test_the_sqlite_store_and_audit_log_never_import_sqlalchemy(tmp_path: Path) -> None:
    code = f"""
import sys
from pathlib import Path
from attest.audit.hooks import append_decision, record_decision
from attest.audit.log import AuditLog
from attest.store import Store, default_url
from attest.reasons import Reason
from attest.decision import Decision, Denial
from tests.store.helpers import T0, clock, record

home = Path({str(tmp_path)!r})
with Store.open(default_url(home)) as store:
    log = AuditLog.open(store, home)
    accepted = Decision(True, jti="j1", subject="s", host="h")
    store.accept(record("j1"), nonce=None, single_use=True, clock=clock(1), now=T0,
                 in_transaction=lambda tx: append_decision(log, tx, accepted) and None)
    denied = Decision(False, (Denial(Reason.REPLAYED, "seen"),), jti="j1", subject="s")
    record_decision(log, denied)
    assert log.size() == 2 and log.receipt(1).checkpoint
print(sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy"))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_new_sqlite_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """Red team after issue 10 item 9: the verifier's database holds every accepted
    scope (command lines, with whatever secret one carried) and its nonces; sqlite3
    created it 0644, readable by every local user, in a home sqlite3 left 0755."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        path = tmp_path / "verifier.db"
        with Store.open(f"sqlite:///{path}") as store:
            store.issue_nonce(60, T0)
            files = [p for p in tmp_path.iterdir() if p.name.startswith("verifier.db")]
            assert len(files) >= 2  # the database and its write-ahead log
            assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    finally:
        os.umask(previous)
