"""What the verifier and the store's commands log, and how.

- :func:`append_decision` appends a decision inside the acceptance transaction, so an
  acceptance that can't be logged is not committed; it also seals the accepted artifact
  there (attest.audit.seals), for its children (attest.verify.verifier calls it).
- :func:`record_decision` logs a denial, which commits nothing else to attach to.
- :func:`enrollment_entry`, :func:`revocation_entry` and :func:`readmission_entry` are
  the entries of changes of trust, appended inside the transaction that makes the change
  (``Store.enroll(..., in_transaction=...)``), so that no change commits unlogged;
- :func:`enroll_logged` enrolls an AK the way `attest enroll` does: the enrollment, a
  move of its host id, their entries and the enrollment's seal (attest.audit.seals) in
  one transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from attest.audit.entry import Entry, EntryKind, Outcome, fit
from attest.audit.log import AuditLog
from attest.decision import Decision
from attest.store import Store
from attest.store.db import Transaction
from attest.store.identities import HostMove
from attest.store.records import ArtifactRecord, RevocationKind

_DIGEST = "SELECT sha256 FROM artifacts WHERE jti = :jti"


def decision_entry(decision: Decision, *, time: int, verifier_id: str | None = None,
                   artifact: str | None = None) -> Entry:
    return Entry(
        kind=EntryKind.DECISION,
        decision=Outcome.ACCEPTED if decision.accepted else Outcome.DENIED,
        time=time, verifier=verifier_id, reasons=decision.reasons, artifact=artifact,
        jti=fit(decision.jti), host=fit(decision.host), subject=fit(decision.subject))


def append_decision(log: AuditLog, tx: Transaction, decision: Decision, *,
                    verifier_id: str | None = None,
                    record: ArtifactRecord | None = None) -> int:
    """Append ``decision`` to ``log`` inside the caller's write transaction ``tx`` (an
    acceptance's, so that none commits unlogged); its index. With ``record``, the accepted
    artifact's row, seal it there too (attest.audit.seals): the audited verifier accepts
    the children of this artifact only against a row it sealed.

    Raises :class:`attest.errors.AuditUnavailable` when the entry can't be appended.
    """
    # The verifier's decisions carry the artifact's digest. Otherwise the acceptance
    # transaction has just stored it under the jti: read it back from there.
    digest = decision.artifact_sha256
    if digest is None and decision.jti is not None:
        digest = tx.scalar(_DIGEST, {"jti": decision.jti})
    index = log.append(tx, decision_entry(decision, time=log.now(), verifier_id=verifier_id,
                                          artifact=digest))
    if decision.accepted and record is not None:
        log.seal_artifact(tx, record)
    return index


def record_decision(log: AuditLog, decision: Decision, *, verifier_id: str | None = None,
                    artifact: str | None = None, now: int | None = None) -> int:
    """Log a decision in a transaction of its own (a denial); its index, once durable."""
    return log.record(decision_entry(decision, time=log.now() if now is None else now,
                                     verifier_id=verifier_id, artifact=artifact))


def enrollment_entry(host: str, ak_name: bytes | str, *, time: int,
                     verifier_id: str | None = None) -> Entry:
    """That ``host`` enrolled the AK named ``ak_name`` (TPM name)."""
    name = ak_name.hex() if isinstance(ak_name, bytes) else ak_name
    return Entry(kind=EntryKind.ENROLLMENT, decision=Outcome.ENROLLED, time=time,
                 verifier=verifier_id, host=fit(host),
                 subject=fit(f"{RevocationKind.AK.value}:{name}"))


def revocation_entry(kind: RevocationKind, subject: str, reason: str, *, time: int,
                     verifier_id: str | None = None) -> Entry:
    """A revocation of ``subject`` (a jti, key name, AK name or host) and its reason."""
    return Entry(kind=EntryKind.REVOCATION, decision=Outcome.REVOKED, time=time,
                 verifier=verifier_id, reasons=(reason,),
                 jti=fit(subject) if kind is RevocationKind.ARTIFACT else None,
                 host=fit(subject) if kind is RevocationKind.HOST else None,
                 subject=fit(f"{kind.value}:{subject}"))


def readmission_entry(ak_name: bytes, reason: str, *, time: int,
                      verifier_id: str | None = None) -> Entry:
    """That the AK named ``ak_name`` was re-admitted after a TPM reset, and why."""
    return Entry(kind=EntryKind.REVOCATION, decision=Outcome.READMITTED, time=time,
                 verifier=verifier_id, reasons=(reason,), subject=ak_name.hex())


def move_entry(moved: HostMove, *, time: int, verifier_id: str | None = None) -> Entry:
    """The entry of an administrator's move of a host id to another TPM (enroll
    --move-host), naming the AKs that no longer speak for it."""
    new = "(no EK)" if moved.ek is None else f"ek:{moved.ek}"
    old = "a TPM not recorded" if moved.previous is None else f"ek:{moved.previous}"
    return Entry(kind=EntryKind.ENROLLMENT, decision=Outcome.ENROLLED, time=time,
                 verifier=verifier_id, host=moved.host, subject=new,
                 reasons=(f"host id moved by an administrator from {old}",
                          *(f"dropped ak:{ak}" for ak in moved.dropped[:32])))


def enroll_logged(store: Store, log: AuditLog, host: str, ak_name: bytes, ak_public: bytes,
                  ak_qualified_name: bytes, ek_certificate: bytes | None, *,
                  ek: str | None, move_host: bool = False, now: int | None = None,
                  verifier_id: str | None = None,
                  before: Callable[[Transaction], None] | None = None) -> HostMove | None:
    """Enroll an AK (:meth:`Store.enroll`) with its audit entries and its seal, all in
    the enrollment's transaction: no AK is trusted unlogged, and the audited verifier
    trusts only enrollments sealed here. Raises AuditUnavailable (nothing enrolled)
    when the log cannot take the entries or the key is missing. ``before`` runs first
    in that transaction (the service consumes the pending enrollment there: what it
    raises rolls the enrollment back)."""
    when = log.now() if now is None else now
    entry = enrollment_entry(host, ak_name, time=when, verifier_id=verifier_id)

    def logged(tx: Transaction, move: HostMove | None) -> None:
        if before is not None:
            before(tx)
        if move is not None:
            log.append(tx, move_entry(move, time=when, verifier_id=verifier_id))
        log.append(tx, entry)
        # A move drops the host id's other AKs with their seals (attest.store.identities);
        # the AKs that remain keep theirs, as nothing they are sealed over changed.
        log.seal_enrollment(tx, ak_name)

    return store.enroll(host, ak_name, ak_public, ak_qualified_name, ek_certificate, when,
                        ek=ek, move_host=move_host, in_transaction=logged)


def revoke_logged(store: Store, log: AuditLog, kind: RevocationKind, subject: str | bytes,
                  reason: str, *, now: int | None = None,
                  verifier_id: str | None = None) -> list[tuple[RevocationKind, str]]:
    """Revoke ``subject`` the way `attest revoke` does: the revocation with its cascade
    (an artifact's descendants; a host's or an EK's TPM identity), their seals
    (attest.audit.revseals) and their entries, all in one transaction. Returns what was
    revoked, ``subject`` first. Raises AuditUnavailable (nothing revoked) when the log
    cannot take the entries or the key is missing."""
    when = log.now() if now is None else now
    done: list[tuple[RevocationKind, str]] = []
    if isinstance(subject, bytes):
        subject = subject.hex()
    if kind in (RevocationKind.KEY, RevocationKind.AK, RevocationKind.EK):
        # TPM names as the store keys them (lowercase hex): the seal and the entry name
        # the row the store holds.
        subject = subject.strip().lower()

    def logged(tx: Transaction, pairs: list[tuple[RevocationKind, str]]) -> None:
        # Sealed first: the set's row is locked before the log's state row, the order
        # every acceptance takes them in (AuditLog.check_revocations), so none deadlock.
        log.seal_revocations(tx, pairs)
        for revoked_kind, revoked in pairs:
            log.append(tx, revocation_entry(revoked_kind, revoked, reason, time=when,
                                            verifier_id=verifier_id))
        # A head over them, kept beside the key once this commits: the revocations can
        # no longer be wiped with the log as if it were new (AuditLog.pin).
        log.pin(tx)
        done[:] = pairs

    def one(tx: Transaction) -> None:
        logged(tx, [(kind, subject)])

    if kind is RevocationKind.ARTIFACT:
        store.revoke_artifact(subject, reason, when, in_transaction=lambda tx, jtis: logged(
            tx, [(RevocationKind.ARTIFACT, jti) for jti in jtis]))
    elif kind is RevocationKind.KEY:
        store.revoke_key(subject, reason, when, in_transaction=one)
    elif kind is RevocationKind.AK:
        store.revoke_ak(subject, reason, when, in_transaction=one)
    elif kind is RevocationKind.APPROVAL:
        store.revoke_approval(subject, reason, when, in_transaction=one)
    elif kind is RevocationKind.EK:
        store.revoke_ek(subject, reason, when, in_transaction=logged)
    else:
        store.revoke_host(subject, reason, when, in_transaction=logged)
    return done
