"""Runtime log segments: how a log too large for one artifact reaches a verifier.

The host sends the records in segments of at most :data:`SEGMENT_BYTES`, each after the
previous one's prefix (attest.verify.incremental.appraise_segment), then an artifact
from the last prefix. A segment is refused unless its AK is one the verifier trusts
(enrolled and sealed, or in the policy's trusted_aks): nobody else's segments take up
rows. What a segment establishes stays unconfirmed until a quote's replay confirms it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attest.artifact.model import RuntimeLogBase
from attest.decision import Denial
from attest.errors import AttestError
from attest.policy.model import EnrollmentMode, VerifierPolicy
from attest.reasons import Reason
from attest.store import LogPrefix, RevocationKind, Store
from attest.verify.incremental import UNCONFIRMED, PrefixSeal, appraise_segment

# Raw log bytes per segment: base64url in JSON stays well inside MAX_ARTIFACT_BYTES.
SEGMENT_BYTES = 4 << 20

SealPrefix = Callable[[LogPrefix], LogPrefix]
"""A prefix row with this verifier's seal (attest.audit.log.AuditLog.sealed_prefix)."""


def add_segment(policy: VerifierPolicy, store: Store, ak_name: bytes,
                base: RuntimeLogBase | None, data: bytes, now: int, *,
                sealed: Callable[[Any], bool] | None = None,
                seal: SealPrefix | None = None) -> RuntimeLogBase | Denial:
    """Appraise ``data`` (runtime records after ``base``) for the AK named ``ak_name`` and
    record the unconfirmed prefix it reaches; the new base, or why not. ``sealed`` and
    ``seal`` are the audit log's (the audited path's): rows are then used only under the
    verifier's seal and written sealed."""
    try:
        refused = _ak_refused(policy, store, ak_name, sealed, now)
        if refused is not None:
            return refused
        candidates = (() if base is None
                      else store.log_prefixes(ak_name, policy.digest, base.count))
        prefix_seal: PrefixSeal | None = sealed
        state = appraise_segment(data, base, candidates, policy, prefix_seal)
        if isinstance(state, Denial):
            return state
        row = LogPrefix(ak_name=ak_name.hex(), reset_count=UNCONFIRMED,
                        restart_count=UNCONFIRMED, policy_digest=policy.digest,
                        count=state.count, digest=state.digest, pcr_values=state.pcr_values,
                        commands=state.commands)
        store.record_log_prefix(row if seal is None else seal(row), now)
    except AttestError as exc:  # the store or the key out of reach: named
        return Denial(exc.reason or Reason.AUDIT_UNAVAILABLE, exc.message)
    return RuntimeLogBase(state.count, state.digest)


def _ak_refused(policy: VerifierPolicy, store: Store, ak_name: bytes,
                sealed: Callable[[Any], bool] | None, now: int) -> Denial | None:
    if policy.enrollment is EnrollmentMode.POLICY:
        trusted = policy.trusted_ak(ak_name)
        if trusted is None:
            return Denial(Reason.AK_UNKNOWN, "the AK is not among the policy's trusted_aks")
        # A revoked AK (or host) takes up no rows either, though the policy lists it:
        # its artifacts are denied, so what its segments would establish serves nothing.
        view = store.snapshot(ak_name, jti="", now=now, host=trusted.host)
        revoked = next((r for r in view.revocations
                        if r.kind in (RevocationKind.AK, RevocationKind.HOST,
                                      RevocationKind.EK)), None)
        if revoked is not None:
            return Denial(Reason.AK_REVOKED, f"the AK's {revoked.kind.value} is revoked")
        return None
    enrolled = store.enrollment(ak_name)
    if enrolled is None or (sealed is not None and not sealed(enrolled)):
        return Denial(Reason.AK_UNKNOWN, "the AK is not enrolled with this verifier")
    if enrolled.revoked:
        return Denial(Reason.AK_REVOKED, f"AK of host {enrolled.host} is revoked")
    return None
