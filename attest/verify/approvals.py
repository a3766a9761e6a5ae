"""The approval check of ``key_policy.kind: authorize``: which approval was used, and
whether it still counts.

The certified authPolicy proves only that the key signs under *some* approval by
the authority, ever: the TPM cannot forget one, so a host rolled back to firmware
v1 signs with v1's approval long after v2 shipped. Hence the artifact names the
approval it signed under, and a verifier denies (``key_policy_mismatch``) unless
that approval

- is signed by the policy's authority, both for the TPM and as a document, for the
  policy's policyRef (attest.evidence.approval);
- covers exactly the sealed PCRs of the policy, and approves the values the quote
  shows for them: the quoted state is the approved one, whatever the host says;
- is unexpired (``not_after``, against the verifier's clock);
- is not retired (``min_approval_serial``) nor listed in ``revoked_approvals``;
- is not older than an approval this AK had an artifact accepted under before (the
  store's mark, attest.store.approvals): going back needs a new, higher serial.

A revocation of the approval in the store (``attest revoke --approval ID``) is a
store-level revocation (``revoked``), checked with the others.
"""

from __future__ import annotations

from collections.abc import Generator
from functools import lru_cache

from attest import timetext
from attest.artifact.model import Evidence
from attest.decision import Denial
from attest.errors import EvidenceError
from attest.evidence.approval import Approval, approved_for, parse_approval, verify_approval
from attest.evidence.quote import QuoteFacts
from attest.evidence.structures import Public
from attest.memo import remember
from attest.policy.authority import authority_public
from attest.policy.model import KeyPolicyKind, VerifierPolicy
from attest.reasons import Reason
from attest.store.errors import rolled_back_message
from attest.store.records import ApprovalUse

# Approvals parsed, by their bytes: a verifier reads each artifact's approval up to three
# times (revocation lookup, check, commit), and a fleet's artifacts carry the same few.
# Only well-formed ones are kept, each at most MAX_APPROVAL_BYTES.
APPROVAL_CACHE_SIZE = 256
_parsed: dict[bytes, Approval] = {}


# Approvals whose signatures verified, by (bytes, authority PEM, policyRef): checking
# two signatures is pure, and the same approval comes with every artifact of a host.
_verified: dict[tuple[bytes, bytes, bytes], bool] = {}


@lru_cache(maxsize=8)
def _authority(pem: bytes) -> Public:
    return authority_public(pem)


def _parse(data: bytes) -> Approval:
    known = _parsed.get(data)
    if known is None:
        known = remember(_parsed, bytes(data), parse_approval(data), APPROVAL_CACHE_SIZE)
    return known


def check_approval(policy: VerifierPolicy, evidence: Evidence, quote: QuoteFacts | None,
                   now: int, highest: int | None = None
                   ) -> Generator[Denial, None, Approval | None]:
    """Yield the denials the artifact's approval earns under ``policy``; return the
    approval (None when there is none, or it does not parse); nothing to check for
    ``kind: pcr``. ``highest``: the AK's highest serial accepted before, from the store
    (see approval_use)."""
    key_policy = policy.key_policy
    if key_policy.kind is not KeyPolicyKind.AUTHORIZE:
        return None
    if evidence.approval is None:
        yield Denial(Reason.KEY_POLICY_MISMATCH,
                     "the key is bound to an authority's approvals; the artifact does not "
                     "carry the approval it was signed under (evidence.approval)")
        return None
    try:
        approval = _parse(evidence.approval)
    except EvidenceError as exc:
        yield Denial(exc.reason, exc.message)
        return None
    if key_policy.authority_pem is None:  # the loader refuses this; fail closed anyway
        yield Denial(Reason.KEY_POLICY_MISMATCH, "the policy names no authority")
        return approval
    checked = (bytes(evidence.approval), key_policy.authority_pem, key_policy.policy_ref)
    if checked not in _verified:
        try:
            verify_approval(approval, _authority(key_policy.authority_pem),
                            key_policy.policy_ref)
        except EvidenceError as exc:
            # Nothing else it says can be believed: serial, expiry and values are the host's.
            yield Denial(exc.reason, exc.message)
            return approval
        remember(_verified, checked, True, APPROVAL_CACHE_SIZE)
    yield from _standing(policy, approval, quote, now, highest)
    return approval


def approval_use(policy: VerifierPolicy, evidence: Evidence) -> ApprovalUse | None:
    """The artifact's approval as the store keys it (its revocations, the AK's serial
    mark); None when the policy is not ``authorize`` or there is no well-formed approval
    (check_approval denies that). Unauthenticated until check_approval has passed: the
    store only reads with it then, and records it only when everything passed."""
    key_policy = policy.key_policy
    if (key_policy.kind is not KeyPolicyKind.AUTHORIZE or evidence.approval is None
            or key_policy.authority_name is None):
        return None
    try:
        approval = _parse(evidence.approval)
    except EvidenceError:
        return None
    return ApprovalUse(approval.id, key_policy.authority_name.hex(), key_policy.policy_ref.hex(),
                       approval.serial)


def _standing(policy: VerifierPolicy, approval: Approval, quote: QuoteFacts | None,
              now: int, highest: int | None) -> Generator[Denial, None, None]:
    key_policy = policy.key_policy
    where = f"approval {approval.id[:16]}… (serial {approval.serial})"
    if approval.selection != policy.pcrs.sealed_selection:
        yield Denial(Reason.KEY_POLICY_MISMATCH,
                     f"{where} approves PCRs {approval.selection}; the policy's sealed "
                     f"PCRs are {policy.pcrs.sealed_selection}")
    elif quote is not None:
        quoted = {(bank, index): value for bank, values in quote.pcrs.items()
                  for index, value in values.items()}
        if not approved_for(approval, quoted):
            changed = [f"{bank}:{index}" for (bank, index), value in approval.values.items()
                       if quoted.get((bank, index)) != value]
            yield Denial(Reason.KEY_POLICY_MISMATCH,
                         f"{where} does not approve the quoted sealed PCRs (differing: "
                         f"{', '.join(changed) or 'none'})")
    if approval.not_after is not None and now > approval.not_after:
        yield Denial(Reason.KEY_POLICY_MISMATCH,
                     f"{where} expired at {timetext.moment(approval.not_after, now)}")
    if approval.serial < key_policy.min_approval_serial:
        yield Denial(Reason.KEY_POLICY_MISMATCH,
                     f"{where} is superseded: the policy requires serial "
                     f"{key_policy.min_approval_serial} or later")
    if approval.id in key_policy.revoked_approvals:
        yield Denial(Reason.KEY_POLICY_MISMATCH,
                     f"{where} is revoked by the policy (revoked_approvals)")
    if highest is not None and approval.serial < highest:
        yield Denial(Reason.KEY_POLICY_MISMATCH,
                     f"{where}: {rolled_back_message(approval.serial, highest)}")
