"""Pending enrollments: the credential challenges the service issued (``POST
/v1/enrollments``) and that wait for their activation, single use, with a TTL.

Its own schema component ("pending_enrollments", version 1) beside the store's and the
audit log's, created when the service opens the store: `attest run`, `attest verify`
and the other commands never open it, and its versions move apart from theirs.

Only a hash of each secret is kept, so a copy of the database activates nothing, and
every row carries the verifier's seal (attest.verify.enrollment): a row written by
someone else who can write the database enrolls nothing. A row is consumed by one
conditional UPDATE in the enrollment's own transaction: two activations of one row
enroll once. Rows are purged once their TTL has passed; until then a consumed row
answers a replay as one.
"""

from __future__ import annotations

from dataclasses import dataclass

from attest.store import identities
from attest.store.db import Transaction
from attest.store.ddl import BIGINT, BLOB, INTEGER, Column, Table, varchar
from attest.store.schema import MAX_EK_ID, MAX_HEX_NAME, MAX_HOST
from attest.store.store import Store

COMPONENT = "pending_enrollments"
SCHEMA_VERSION = 1
MAX_ID = 32  # base64url of 16 random bytes is 22 characters

pending_enrollments = Table("pending_enrollments", (
    Column("enrollment_id", varchar(MAX_ID), primary_key=True),
    Column("host", varchar(MAX_HOST)),
    Column("ak_name", varchar(MAX_HEX_NAME)),
    Column("ak_public", BLOB),  # TPM2B_PUBLIC
    Column("ak_qualified_name", BLOB),
    Column("ek_certificate", BLOB),  # as the host sent it (DER, possibly NV-padded)
    Column("ek", varchar(MAX_EK_ID), indexed=True),  # the EK id, for the per-TPM cap
    Column("secret_hash", BLOB),  # attest.verify.enrollment.secret_hash
    Column("created_at", BIGINT),
    Column("expires_at", BIGINT, indexed=True),
    Column("used_at", BIGINT, nullable=True),
    Column("attempts", INTEGER),  # activations with a wrong secret
    Column("mac", BLOB),  # the verifier's seal over the row's fixed fields
))
TABLES = (pending_enrollments,)

_INSERT = pending_enrollments.insert()
_ROW = "SELECT * FROM pending_enrollments WHERE enrollment_id = :id"
_LIVE = ("SELECT COUNT(*) FROM pending_enrollments "
         "WHERE used_at IS NULL AND expires_at >= :now")
_LIVE_FOR_EK = ("SELECT COUNT(*) FROM pending_enrollments "
                "WHERE ek = :ek AND used_at IS NULL AND expires_at >= :now")
_PURGE = "DELETE FROM pending_enrollments WHERE expires_at < :now"
# An EK's oldest live challenges, dropped to make room for its newest.
_EVICT_FOR_EK = ("DELETE FROM pending_enrollments WHERE enrollment_id IN ("
                 "SELECT enrollment_id FROM pending_enrollments "
                 "WHERE ek = :ek AND used_at IS NULL AND expires_at >= :now "
                 "ORDER BY created_at, enrollment_id LIMIT :excess)")
# Single use: only the first of concurrent activations changes the row; the others find
# used_at set (PostgreSQL re-reads the row once the first commits) and change nothing.
_CONSUME = ("UPDATE pending_enrollments SET used_at = :now "
            "WHERE enrollment_id = :id AND used_at IS NULL AND expires_at >= :now")
_FAILED = "UPDATE pending_enrollments SET attempts = attempts + 1 WHERE enrollment_id = :id"


@dataclass(frozen=True)
class PendingEnrollment:
    """One challenge: the enrollment it activates and how to tell its secret."""

    id: str
    host: str
    ak_name: str  # lowercase hex
    ak_public: bytes
    ak_qualified_name: bytes
    ek_certificate: bytes
    ek: str
    secret_hash: bytes
    created_at: int
    expires_at: int
    used_at: int | None = None
    attempts: int = 0
    mac: bytes = b""


class PendingFull(Exception):
    """No room for another pending enrollment (``per_ek`` is always False since an EK past
    its cap gives up its oldest challenge instead: kept for callers that read it)."""

    def __init__(self, message: str, *, per_ek: bool) -> None:
        super().__init__(message)
        self.per_ek = per_ek


class PendingGone(Exception):
    """The pending enrollment was consumed or expired between its check and its use."""


def open_pending(store: Store) -> None:
    """Create the component's table on first use; refuse a newer schema (exit 3)."""
    store.ensure_schema(COMPONENT, SCHEMA_VERSION, TABLES)


def add(store: Store, row: PendingEnrollment, *, now: int, cap: int, cap_per_ek: int,
        admissible: bool = True) -> None:
    """Store ``row``, first purging the expired ones; PendingFull past ``cap`` live rows.
    Past ``cap_per_ek`` live rows for its EK, that EK's oldest are dropped instead: EK
    certificates are public, so refusing the EK would let anyone who read one lock its
    TPM out of enrolling with a few requests per TTL; dropping the oldest keeps the EK
    within its cap and the TPM's own new challenge usable. The counts and the insert
    share a write transaction (serialized on SQLite; on PostgreSQL concurrent adds may
    pass a cap by a few).
    With ``admissible``, EnrollmentRefused first when the enrollment would be refused now
    (:func:`check_admissible`): no challenge for a revoked TPM or a host id it can't take."""
    with store.write() as tx:
        if admissible:
            check_admissible(tx, row, now)
        tx.execute(_PURGE, {"now": now})
        live_for_ek = int(tx.scalar(_LIVE_FOR_EK, {"ek": row.ek, "now": now}) or 0)
        if live_for_ek >= cap_per_ek:
            tx.execute(_EVICT_FOR_EK, {"ek": row.ek, "now": now,
                                       "excess": live_for_ek - cap_per_ek + 1})
        if int(tx.scalar(_LIVE, {"now": now}) or 0) >= cap:
            raise PendingFull(f"the verifier holds {cap} pending enrollments", per_ek=False)
        tx.execute(_INSERT, {
            "enrollment_id": row.id, "host": row.host, "ak_name": row.ak_name,
            "ak_public": row.ak_public,
            "ak_qualified_name": row.ak_qualified_name, "ek_certificate": row.ek_certificate,
            "ek": row.ek, "secret_hash": row.secret_hash, "created_at": row.created_at,
            "expires_at": row.expires_at, "used_at": None, "attempts": 0, "mac": row.mac})


class _Undo(Exception):
    """Rolls back the savepoint of a trial admission."""


def check_admissible(tx: Transaction, row: PendingEnrollment, now: int) -> None:
    """EnrollmentRefused if enrolling ``row`` would be refused now: the rules of
    :func:`attest.store.identities.admit` themselves, tried in a savepoint undone after.
    The activation applies them again, in its own transaction: this only answers early."""
    try:
        with tx.savepoint():
            identities.admit(tx, host=row.host, ak_name=row.ak_name, ek=row.ek, now=now,
                             move_host=False)
            raise _Undo
    except _Undo:
        pass


def find(store: Store, pending_id: str) -> PendingEnrollment | None:
    with store.read() as tx:
        row = tx.first(_ROW, {"id": pending_id})
    if row is None:
        return None
    return PendingEnrollment(
        id=row.enrollment_id, host=row.host, ak_name=row.ak_name, ak_public=bytes(row.ak_public),
        ak_qualified_name=bytes(row.ak_qualified_name),
        ek_certificate=bytes(row.ek_certificate), ek=row.ek,
        secret_hash=bytes(row.secret_hash), created_at=int(row.created_at),
        expires_at=int(row.expires_at),
        used_at=None if row.used_at is None else int(row.used_at),
        attempts=int(row.attempts), mac=bytes(row.mac))


def consume(tx: Transaction, pending_id: str, now: int) -> None:
    """Mark the row used in ``tx``; PendingGone (roll back) unless this call did."""
    if tx.execute(_CONSUME, {"id": pending_id, "now": now}) != 1:
        raise PendingGone(pending_id)


def failed_attempt(store: Store, pending_id: str) -> None:
    with store.write() as tx:
        tx.execute(_FAILED, {"id": pending_id})


def purge(store: Store, now: int) -> int:
    """Delete the rows whose TTL has passed; how many."""
    with store.write() as tx:
        return tx.execute(_PURGE, {"now": now})
