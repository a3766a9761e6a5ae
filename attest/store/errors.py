"""Why the store refused an acceptance; each carries the reason code a verifier reports.

All are refusals (exit 1). A store that cannot be reached at all raises
:class:`attest.errors.StoreUnavailable` (exit 3) instead.
"""

from __future__ import annotations

from attest.errors import AttestError, StoreUnavailable
from attest.reasons import Reason
from attest.store.records import NonceState, Revocation, RevocationKind

__all__ = ["ApprovalRolledBack", "ClockRejected", "EnrollmentRefused", "ForeignSchemaObject",
           "NonceRejected", "Replayed", "Revoked", "StoreUnavailable"]

_NONCE_REASONS = {
    NonceState.UNKNOWN: Reason.NONCE_UNKNOWN,
    NonceState.USED: Reason.NONCE_REUSED,
    # The challenge outlived its TTL: the evidence answering it is too old.
    NonceState.EXPIRED: Reason.STALE_EVIDENCE,
}


class Replayed(AttestError):
    """The jti was accepted before (single use), or names a different artifact."""

    default_reason = Reason.REPLAYED

    def __init__(self, jti: str) -> None:
        super().__init__(f"artifact {jti} was already accepted")
        self.jti = jti


class NonceRejected(AttestError):
    """The artifact's eat_nonce is not a usable challenge; :attr:`state` says why."""

    def __init__(self, state: NonceState) -> None:
        words = {
            NonceState.UNKNOWN: "was not issued by this verifier",
            NonceState.USED: "was already used",
            NonceState.EXPIRED: "has expired",
        }.get(state, f"is {state.value}")
        super().__init__(f"the nonce {words}",
                         reason=_NONCE_REASONS.get(state, Reason.NONCE_REUSED),
                         hint="ask the verifier for a new challenge (attest challenge)")
        self.state = state


class Revoked(AttestError):
    """Something the artifact rests on (itself, an ancestor, its key, AK or host) is revoked."""

    def __init__(self, revocation: Revocation) -> None:
        via = f" (revoked with {revocation.cascaded_from})" if revocation.cascaded_from else ""
        # A revoked EK is a revoked TPM: every AK in it reads as revoked.
        reason = (Reason.AK_REVOKED if revocation.kind in (RevocationKind.AK, RevocationKind.EK)
                  else Reason.REVOKED)
        super().__init__(f"{revocation.kind.value} {revocation.subject} is revoked{via}: "
                         f"{revocation.reason}", reason=reason)
        self.revocation = revocation


class ForeignSchemaObject(StoreUnavailable):
    """The database holds a trigger, view, rule, index or table definition attest did not
    create (:mod:`attest.store.integrity`): the store refuses to run on it (exit 3)."""

    def __init__(self, objects: list[str], *, hint: str) -> None:
        shown = "; ".join(objects[:5]) + (f"; and {len(objects) - 5} more"
                                         if len(objects) > 5 else "")
        super().__init__(f"the verifier's database holds objects attest did not create: "
                         f"{shown}", hint=hint)
        self.objects = objects


class ApprovalRolledBack(AttestError):
    """The AK signed under a newer approval of the same authority before: a rollback."""

    def __init__(self, serial: int, highest: int) -> None:
        super().__init__(rolled_back_message(serial, highest), reason=Reason.KEY_POLICY_MISMATCH)
        self.serial = serial
        self.highest = highest


def rolled_back_message(serial: int, highest: int) -> str:
    return (f"approval serial {serial} is older than serial {highest}, under which this "
            "host's AK already had an artifact accepted: the host went back to an "
            "older approved state")


class EnrollmentRefused(AttestError):
    """An enrollment would lift a revocation or take an identity another TPM holds."""


class ClockRejected(AttestError):
    """The quote's TPM clock contradicts the AK's boot epoch as stored at commit time:
    made before a TPM restart seen meanwhile (stale_evidence), or impossible for one
    TPM (clock_rollback)."""

    def __init__(self, message: str, reason: Reason) -> None:
        super().__init__(message, reason=reason)
