"""The tamper-evident audit log: an RFC 9162 Merkle log of decisions, enrollments and
revocations, in the verifier's store, with signed tree heads (C2SP checkpoints).

- :mod:`attest.audit.merkle`: the pure tree hashing, proofs and their verification;
- :class:`AuditLog`: appends (inside a transaction, or standalone with group commit),
  heads, proofs, receipts;
- :mod:`attest.audit.hooks`: what the verifier and the revocation commands log;
- :func:`verify_log`: the whole-log audit behind ``attest audit verify``.
"""

from typing import TYPE_CHECKING, Any

from attest.audit.entry import Entry, EntryKind, Outcome
from attest.audit.log import AuditLog, HeadPolicy, SignedHead, StoredEntry
from attest.audit.note import Checkpoint, NoteSigner, VerifierKey
from attest.audit.proofs import ConsistencyProof, InclusionProof, parse_proof
from attest.errors import AuditUnavailable, ProofError

if TYPE_CHECKING:
    from attest.audit.check import LogInvalid, LogSummary, Problem, verify_log

# The log checker on first use (PEP 562): a verifier that only appends (`attest run`)
# does not pay for it. The rest is what appending imports anyway.
_CHECKER = frozenset({"LogInvalid", "LogSummary", "Problem", "verify_log"})


def __getattr__(name: str) -> Any:
    if name not in _CHECKER:
        raise AttributeError(f"module 'attest.audit' has no attribute {name!r}")
    from attest.audit import check

    value = getattr(check, name)
    globals()[name] = value
    return value


__all__ = [
    "AuditLog",
    "AuditUnavailable",
    "Checkpoint",
    "ConsistencyProof",
    "Entry",
    "EntryKind",
    "HeadPolicy",
    "InclusionProof",
    "LogInvalid",
    "LogSummary",
    "NoteSigner",
    "Outcome",
    "Problem",
    "ProofError",
    "SignedHead",
    "StoredEntry",
    "VerifierKey",
    "parse_proof",
    "verify_log",
]
