"""Tampering with a real SQLite log: `attest audit verify` catches each change and names it.

The attacker edits the database file directly (sqlite3), with and without the care to
keep leaf hashes and subtree hashes in step; only the log key is out of their reach.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from attest.audit import AuditLog, HeadPolicy, NoteSigner, merkle, tree
from attest.store import Store, default_url
from tests.audit.conftest import entry, fill, run

SIZE = 20  # heads at 4, 8, 12, 16, 20


@pytest.fixture
def logged(home: Path) -> Path:
    """A home whose store holds a 20-entry log; every test tampers with its file."""
    with Store.open(default_url(home)) as store:
        fill(AuditLog.open(store, home, heads=HeadPolicy(every=4, interval=1e9)), SIZE)
    return home


@pytest.fixture
def db(logged: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(logged / "verifier.db", isolation_level=None)) as conn:
        yield conn


def _data(db: sqlite3.Connection, index: int) -> bytes:
    data: bytes = db.execute("SELECT data FROM audit_entries WHERE idx = ?", (index,)
                             ).fetchone()[0]
    return data


def _forged(index: int, jti: str = "forged") -> bytes:
    value = json.loads(entry(index).encode(index))
    value["jti"] = jti
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _put(db: sqlite3.Connection, index: int, data: bytes, *, rehash: bool = True) -> None:
    leaf = merkle.leaf_hash(data) if rehash else db.execute(
        "SELECT leaf_hash FROM audit_entries WHERE idx = ?", (index,)).fetchone()[0]
    db.execute("INSERT OR REPLACE INTO audit_entries (idx, data, leaf_hash) VALUES (?, ?, ?)",
               (index, data, leaf))


def _rebuild(home: Path, datas: list[bytes]) -> None:
    """The careful attacker: every leaf hash, subtree hash and the size redone to match."""
    with Store.open(default_url(home)) as store, store.write() as tx:
        tx.execute("DELETE FROM audit_entries")
        tx.execute("DELETE FROM audit_nodes")
        tree.extend(tx, 0, datas)
        tx.execute("UPDATE audit_state SET size = :size", {"size": len(datas)})


def _verify_fails(home: Path, *args: str) -> str:
    result = run(home, "verify", *args)
    assert result.exit_code == 1, result.output
    return result.output


def test_the_untouched_log_verifies(logged: Path) -> None:
    result = run(logged, "verify")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"ok: {SIZE} entries, 5 heads, root ")


def test_a_changed_entry_is_named(logged: Path, db: sqlite3.Connection) -> None:
    _put(db, 6, _forged(6), rehash=False)
    assert "entry 6 was changed: its data no longer hashes" in _verify_fails(logged)


def test_a_changed_entry_with_its_leaf_hash_redone_is_named(logged: Path,
                                                            db: sqlite3.Connection) -> None:
    _put(db, 6, _forged(6))
    assert "entries 6..7 were changed: their stored subtree hash" in _verify_fails(logged)


def test_a_log_rewritten_wholesale_contradicts_its_signed_heads(
        logged: Path, db: sqlite3.Connection) -> None:
    datas = [_data(db, i) for i in range(SIZE)]
    datas[6] = _forged(6)
    _rebuild(logged, datas)
    output = _verify_fails(logged)
    assert "no longer matches its tree head of size 8: an entry in 4..7 was changed" in output


def test_a_deleted_entry_is_named(logged: Path, db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM audit_entries WHERE idx = 6")
    assert "entry 6 was deleted" in _verify_fails(logged)


def test_a_deleted_entry_is_named_even_when_the_rest_are_renumbered(
        logged: Path, db: sqlite3.Connection) -> None:
    datas = [_data(db, i) for i in range(SIZE) if i != 6]
    _rebuild(logged, datas)
    assert "entry 6 was deleted; entry 7 and those after it were renumbered" in \
        _verify_fails(logged)


def test_two_swapped_entries_are_named(logged: Path, db: sqlite3.Connection) -> None:
    third, ninth = _data(db, 3), _data(db, 9)
    _put(db, 3, ninth)
    _put(db, 9, third)
    assert "entries 3 and 9 were swapped (reordered)" in _verify_fails(logged)


def test_an_inserted_entry_is_named(logged: Path, db: sqlite3.Connection) -> None:
    datas = [_data(db, i) for i in range(SIZE)]
    datas.insert(5, _forged(5, "inserted"))
    _rebuild(logged, datas)
    assert "entry 5 was inserted before the entry that names itself 5, now at index 6" in \
        _verify_fails(logged)


def test_an_entry_appended_behind_the_logs_back_is_named(logged: Path,
                                                         db: sqlite3.Connection) -> None:
    _put(db, SIZE, _forged(SIZE))
    assert f"entry {SIZE} was inserted past the end of the log" in _verify_fails(logged)


def test_a_truncated_log_is_named(logged: Path, db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM audit_entries WHERE idx >= 15")
    assert "the log was truncated: it records 20 entries and holds 15" in _verify_fails(logged)


def test_a_truncation_covered_up_is_caught_by_a_trusted_head(logged: Path,
                                                            db: sqlite3.Connection) -> None:
    saved = logged / "head.txt"
    saved.write_text(run(logged, "head").output)
    datas = [_data(db, i) for i in range(15)]
    db.execute("DELETE FROM audit_heads WHERE size > 15")
    db.execute("UPDATE audit_state SET head_size = 12")
    _rebuild(logged, datas)
    vkey = run(logged, "key").output.strip()
    # An auditor with the verifier key alone: consistent with itself...
    assert run(logged, "verify", "--key", vkey).exit_code == 0
    output = _verify_fails(logged, "--trusted-head", str(saved))  # ...but not with the past
    assert "the log was truncated: the trusted head covers 20 entries, the log holds 15" in output
    # Where the log key is, the last head it signed is that past.
    output = _verify_fails(logged)
    assert "the log was truncated: the trusted head covers 20 entries, the log holds 15" in output


def test_a_tree_head_forged_with_another_key_is_named(logged: Path,
                                                      db: sqlite3.Connection) -> None:
    note = db.execute("SELECT note FROM audit_heads WHERE size = 20").fetchone()[0]
    impostor = NoteSigner.generate(note.split("\n")[0])  # same name, another key
    db.execute("UPDATE audit_heads SET note = ? WHERE size = 20",
               (impostor.sign(20, merkle.root([merkle.leaf_hash(_data(db, i))
                                               for i in range(SIZE)])),))
    assert "the tree head of size 20 is forged: it is not signed by the log key" in \
        _verify_fails(logged)


@pytest.mark.parametrize("tamper", [
    lambda db: db.execute("DELETE FROM audit_state"),
    lambda db: db.execute("DELETE FROM audit_nodes WHERE level = 2 AND idx = 1"),
    lambda db: db.execute("DELETE FROM audit_heads WHERE size = 20"),
], ids=["state row", "subtree", "latest head"])
def test_other_deletions_are_caught(logged: Path, db: sqlite3.Connection,
                                    tamper: Callable[[sqlite3.Connection], object]) -> None:
    tamper(db)
    _verify_fails(logged)
