"""The tamper-evident audit log: an RFC 9162 Merkle log of decisions, enrollments and
revocations, in the verifier's store, with signed tree heads (C2SP checkpoints).

- :mod:`attest.audit.merkle`: the pure tree hashing, proofs and their verification;
- :class:`AuditLog`: appends (inside a transaction, or standalone with group commit),
  heads, proofs, receipts;
- :mod:`attest.audit.hooks`: what the verifier and the revocation commands log;
- :func:`verify_log`: the whole-log audit behind ``attest audit verify``.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attest.audit.check import LogInvalid, LogSummary, Problem, verify_log
    from attest.audit.entry import Entry, EntryKind, Outcome
    from attest.audit.log import AuditLog, HeadPolicy, SignedHead, StoredEntry
    from attest.audit.note import Checkpoint, NoteSigner, VerifierKey
    from attest.audit.proofs import ConsistencyProof, InclusionProof, parse_proof
    from attest.errors import AuditUnavailable, ProofError

# Each name from the module that defines it, on first use (PEP 562): a verifier that
# only appends (`attest run`) does not pay for the checker, notes and proofs.
_HOME = {
    "LogInvalid": "attest.audit.check", "LogSummary": "attest.audit.check",
    "Problem": "attest.audit.check", "verify_log": "attest.audit.check",
    "Entry": "attest.audit.entry", "EntryKind": "attest.audit.entry",
    "Outcome": "attest.audit.entry",
    "AuditLog": "attest.audit.log", "HeadPolicy": "attest.audit.log",
    "SignedHead": "attest.audit.log", "StoredEntry": "attest.audit.log",
    "Checkpoint": "attest.audit.note", "NoteSigner": "attest.audit.note",
    "VerifierKey": "attest.audit.note",
    "ConsistencyProof": "attest.audit.proofs", "InclusionProof": "attest.audit.proofs",
    "parse_proof": "attest.audit.proofs",
    "AuditUnavailable": "attest.errors", "ProofError": "attest.errors",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'attest.audit' has no attribute {name!r}")
    value = getattr(import_module(home), name)
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
