"""The verifier's state: SQLite (WAL, through sqlite3) by default, PostgreSQL (through
SQLAlchemy) for replicas; one SQL text for both (:mod:`attest.store.db`).

``Store.open(url)`` creates the schema on first use. Every state change a decision
depends on (nonce consumed, jti recorded, TPM clock advanced) happens in
:meth:`Store.accept`'s single transaction, so a denial leaves no trace.
"""

from attest.errors import StoreUnavailable
from attest.store.db import default_url
from attest.store.errors import (
    ApprovalRolledBack,
    ClockRejected,
    NonceRejected,
    Replayed,
    Revoked,
)
from attest.store.records import (
    ApprovalUse,
    ArtifactRecord,
    Enrollment,
    EpochRecord,
    LogPrefix,
    NonceState,
    Revocation,
    RevocationKind,
    SeenClock,
    Snapshot,
)
from attest.store.store import Store

__all__ = [
    "ApprovalRolledBack",
    "ApprovalUse",
    "ArtifactRecord",
    "ClockRejected",
    "Enrollment",
    "EpochRecord",
    "LogPrefix",
    "NonceRejected",
    "NonceState",
    "Replayed",
    "Revocation",
    "RevocationKind",
    "Revoked",
    "SeenClock",
    "Snapshot",
    "Store",
    "StoreUnavailable",
    "default_url",
]
