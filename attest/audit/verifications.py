"""The last whole-log verification (``attest audit verify``), kept in the store.

``attest audit verify`` recomputes every leaf, subtree and root: work in proportion to
the log, which belongs in a job the operator schedules (cron, a timer), not in a page
request nor on every serving replica. What the console's Audit page needs is its
outcome, and where a check ran (a cron host) is not where the page is served, so the
outcome goes where every replica reads: one row in the store's database, replaced by
each verification, under a schema component of its own (the log's tables are
untouched). A deployment where nobody ran it says so ("never").

The row records what was checked, not a verdict to trust blindly: whoever can write
the database can write this row too. It tells an operator when to look, the way a
monitoring status does; the proof is running the verification again.
"""

from __future__ import annotations

from dataclasses import dataclass

from attest.store import Store
from attest.store.db import Conflict
from attest.store.ddl import BIGINT, BLOB, INTEGER, TEXT, Column, Table

COMPONENT = "audit-verifications"
VERSION = 1
_ROW = 1  # one row: the last verification replaces the one before
MAX_PROBLEM = 1000  # characters of the first finding kept: a message, not a report

audit_verifications = Table("audit_verifications", (
    Column("id", INTEGER, primary_key=True),
    Column("checked_at", BIGINT),
    Column("valid", INTEGER),  # 1: the log holds; 0: findings
    Column("entries", BIGINT, nullable=True),  # recomputed (a valid log's size)
    Column("heads", BIGINT, nullable=True),
    Column("root", BLOB, nullable=True),
    Column("problem", TEXT, nullable=True),  # the first finding, when invalid
    Column("findings", INTEGER),
))
_DELETE = "DELETE FROM audit_verifications WHERE id = :id"
_INSERT = audit_verifications.insert()
_READ = ("SELECT checked_at, valid, entries, heads, root, problem, findings "
         "FROM audit_verifications WHERE id = :id")


@dataclass(frozen=True)
class Verification:
    checked_at: int
    valid: bool
    entries: int | None = None
    heads: int | None = None
    root: bytes | None = None
    problem: str | None = None
    findings: int = 0


def ensure(store: Store) -> None:
    """The table, created in a store that has none yet."""
    store.ensure_schema(COMPONENT, VERSION, (audit_verifications,))


def record(store: Store, done: Verification) -> None:
    """``done`` as the store's last verification (replacing the one before)."""
    ensure(store)
    problem = None if done.problem is None else done.problem[:MAX_PROBLEM]
    try:
        with store.write() as tx:
            tx.execute(_DELETE, {"id": _ROW})
            tx.execute(_INSERT, {"id": _ROW, "checked_at": done.checked_at,
                                 "valid": int(done.valid), "entries": done.entries,
                                 "heads": done.heads, "root": done.root, "problem": problem,
                                 "findings": done.findings})
    except Conflict:
        # Another verification recorded its result at the same moment: it is as recent.
        return


def last(store: Store) -> Verification | None:
    """The last verification recorded, or None when none ran on this store."""
    with store.read() as tx:
        row = tx.first(_READ, {"id": _ROW})
    if row is None:
        return None
    return Verification(checked_at=row.checked_at, valid=bool(row.valid), entries=row.entries,
                        heads=row.heads, root=None if row.root is None else bytes(row.root),
                        problem=row.problem, findings=row.findings)
