"""Every decision in the audit log: acceptances inside their transaction, denials after.

An acceptance that cannot be logged is no acceptance (the verifier rolls it
back: audit_unavailable). A denial that cannot be logged stays a denial, and
says so with a second reason. An AK enrolled in the store is trusted only if its
enrollment carries the verifier's seal (attest.audit.seals): a row someone else wrote
into the database is ak_unknown. Likewise a child's parent: lineage is checked only
against a parent row the verifier sealed when it accepted it, else lineage_broken.
And an acceptance commits only over the revocation set
the verifier sealed (attest.audit.revseals): a revocation a database writer deleted
stays in force, as a denial of every artifact (audit_unavailable) until it is restored.
"""

from __future__ import annotations

import dataclasses

from attest.artifact import jws
from attest.audit.hooks import decision_hook, record_decision
from attest.audit.log import AuditLog
from attest.errors import AttestError
from attest.reasons import Reason
from attest.store.db import Transaction
from attest.verify.decision import Decision, Denial
from attest.verify.verifier import AuditHook, Verifier


def verify_logged(verifier: Verifier, log: AuditLog, raw: bytes,
                  now: int | None = None) -> Decision:
    # Enrollments and parent artifacts from the store count only under the log key's seal
    # (attest.audit.seals); the hook checks the revocation set's seals, then seals what
    # this decision accepts.
    decision = verifier.verify(raw, now=now, audit=_sealed_hook(log, verifier),
                               sealed=log.sealed)
    if decision.accepted:
        return decision
    try:
        index = record_decision(log, decision, verifier_id=verifier.verifier_id,
                                artifact=jws.identity(raw))
    except AttestError as exc:
        missing = Denial(Reason.AUDIT_UNAVAILABLE,
                         f"the denial could not be logged either: {exc.message}")
        return dataclasses.replace(decision, denials=(*decision.denials, missing))
    return dataclasses.replace(decision, audit_index=index)


def _sealed_hook(log: AuditLog, verifier: Verifier) -> AuditHook:
    """The acceptance's audit hook, after the revocation check: in the acceptance's own
    transaction, where Store.accept has just looked the revocations up, so the set the
    store's "not revoked" rests on is the sealed one. Its failure is the hook's
    (audit_unavailable), and only an acceptance runs it: a denial stands as it is."""
    append = decision_hook(log, verifier_id=verifier.verifier_id)

    def hook(decision: Decision, tx: Transaction) -> int:
        log.check_revocations(tx, decision.jti, decision.record)
        return append(decision, tx)
    return hook
