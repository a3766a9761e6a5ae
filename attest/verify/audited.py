"""Every decision in the audit log: acceptances inside their transaction, denials after.

An acceptance that cannot be logged is no acceptance (the verifier rolls it
back: audit_unavailable). A denial that cannot be logged stays a denial, and
says so with a second reason. An AK enrolled in the store is trusted only if its
enrollment carries the verifier's seal (attest.audit.seals): a row someone else wrote
into the database is ak_unknown. Likewise a child's parent: lineage is checked only
against a parent row the verifier sealed when it accepted it, else lineage_broken.
"""

from __future__ import annotations

import dataclasses

from attest.artifact import jws
from attest.audit.hooks import decision_hook, record_decision
from attest.audit.log import AuditLog
from attest.errors import AttestError
from attest.reasons import Reason
from attest.verify.decision import Decision, Denial
from attest.verify.verifier import Verifier


def verify_logged(verifier: Verifier, log: AuditLog, raw: bytes,
                  now: int | None = None) -> Decision:
    # Enrollments and parent artifacts from the store count only under the log key's seal
    # (attest.audit.seals); the hook seals what this decision accepts.
    decision = verifier.verify(raw, now=now,
                               audit=decision_hook(log, verifier_id=verifier.verifier_id),
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
