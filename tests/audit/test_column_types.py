"""A value of another type in any audit table column (SQLite keeps whatever an UPDATE
stores: TEXT for a BLOB, an INTEGER or a REAL, a BLOB for TEXT, a huge string) is
tampering that every `attest audit` command reports with exit 1, never a TypeError
(issue 11, item 3b).
"""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import pytest

from attest.audit import AuditLog, HeadPolicy
from attest.audit.schema import TABLES
from attest.store import Store, default_url
from tests.audit.conftest import fill, run

SIZE = 10  # heads at 4 and 8
_CHANGES = {"text": "'tampered'", "text_of_blob": "CAST({column} AS TEXT)",
            "blob": "X'00ff'", "integer": "12345", "real": "1.5",
            "huge": "hex(randomblob(300000))"}
# Columns `audit verify` does not read (the heads' times are bookkeeping; a head's
# signed note carries what is verified).
_NOT_VERIFIED = {("audit_state", "head_at"), ("audit_heads", "signed_at")}


def _filled(home: Path) -> None:
    with Store.open(default_url(home)) as store:
        fill(AuditLog.open(store, home, heads=HeadPolicy(every=4, interval=1e9)), SIZE)


def _change(db: sqlite3.Connection, table: str, column: str, change: str) -> bool:
    """Make the change to the last row; whether the column then holds another type than
    SQLite's affinity for it gives (SQLite refuses a change to a key column, and converts
    a value to the column's affinity where it can)."""
    value = _CHANGES[change].format(column=column)
    try:
        changed = db.execute(
            f"UPDATE {table} SET {column} = {value} WHERE rowid = "  # noqa: S608
            f"(SELECT max(rowid) FROM {table}) AND typeof({column}) != typeof({value})"
        ).rowcount
    except sqlite3.Error:
        return False
    stored = db.execute(f"SELECT typeof({column}) FROM {table}").fetchall()  # noqa: S608
    return changed > 0 and {row[0] for row in stored} != {_declared_affinity(table, column)}


def _declared_affinity(table: str, column: str) -> str:
    declared = next(c.type.sqlite for t in TABLES if t.name == table
                    for c in t.columns if c.name == column)
    return {"BLOB": "blob", "TEXT": "text"}.get(declared, "integer")


def _cases() -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """Every (table, column, change), split at collection time into the changes that
    leave another type in the column and those SQLite refuses or converts: each change is
    made on one filled log inside a transaction that is rolled back."""
    every = [(table.name, column.name, change) for table in TABLES
             for column in table.columns for change in _CHANGES]
    stick: list[tuple[str, str, str]] = []
    moot: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as home:
        _filled(Path(home))
        with closing(sqlite3.connect(Path(home) / "verifier.db", isolation_level=None)) as db:
            for case in every:
                db.execute("BEGIN")
                (stick if _change(db, *case) else moot).append(case)
                db.execute("ROLLBACK")
    return stick, moot


_STICK, _MOOT = _cases()


def test_sqlite_refuses_or_converts_the_other_changes(tmp_path: Path) -> None:
    # The changes not run below: on a log of its own, SQLite keeps none of them as
    # another type (so a tampering through SQL cannot make them either).
    assert _MOOT and _STICK
    _filled(tmp_path)
    with closing(sqlite3.connect(tmp_path / "verifier.db", isolation_level=None)) as db:
        for case in _MOOT:
            db.execute("BEGIN")
            assert not _change(db, *case), case
            db.execute("ROLLBACK")


@pytest.mark.parametrize(("table", "column", "change"), _STICK)
def test_a_column_of_another_type_is_reported_not_a_crash(
        tmp_path: Path, table: str, column: str, change: str) -> None:
    _filled(tmp_path)
    with closing(sqlite3.connect(tmp_path / "verifier.db", isolation_level=None)) as db:
        assert _change(db, table, column, change)
    verified = run(tmp_path, "verify")  # run() fails on "internal error"
    if (table, column) in _NOT_VERIFIED:
        assert verified.exit_code == 0, verified.output
    else:
        assert verified.exit_code == 1, verified.output
        assert "changed" in verified.output or "forged" in verified.output \
            or "deleted" in verified.output, verified.output
    for args in (("export",), ("consistency", "--from", "4", "--to", "8"),
                 ("prove", "--index", "3"), ("head",)):
        result = run(tmp_path, *args)
        assert result.exit_code in (0, 1), (args, result.output)


def test_text_instead_of_a_blob_entry_names_the_entry(tmp_path: Path) -> None:
    """The report of issue 11: an entry changed through SQL as text, not a BLOB."""
    with Store.open(default_url(tmp_path)) as store:
        fill(AuditLog.open(store, tmp_path, heads=HeadPolicy(every=4, interval=1e9)), SIZE)
    with closing(sqlite3.connect(tmp_path / "verifier.db", isolation_level=None)) as db:
        db.execute("UPDATE audit_entries SET data = CAST(data AS TEXT) WHERE idx = 6")
    result = run(tmp_path, "verify")
    assert result.exit_code == 1
    assert "changed outside attest: column data of the row with idx = 6 holds TEXT" \
        in result.output
