"""The AR4SI trustworthiness vector of a decision, and its EAR status.

Restated from draft-ietf-rats-ar4si (claim names and values) and draft-ietf-rats-ear
(``ear.status``, ``ear.trustworthiness-vector``): each of eight claims holds a small
integer whose range is its tier: -1..1 none, 2..31 affirming, 32..95 warning, 96..127
contraindicated; 0 is "no claim", 1 "unexpected evidence", -1 "verifier malfunction",
99 "cryptographic validation failed".

attest's mapping, in ONE place (:data:`REASON_CLAIMS`): an acceptance asserts what the
appraisal established (:data:`ACCEPTED_VECTOR`); a denial sets, for each of its
reasons, the one claim that reason speaks to, and leaves the others without a claim
(the appraisal did not finish). ``ear.status`` is NOT derived from the vector: it is
``affirming`` for an acceptance and ``contraindicated`` for every denial, whatever tier
its vector's worst claim has (a reboot, ``tpm_reset``, is a warning in the vector and
still a denial). A relying party acts on the status; the vector says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType

from attest.reasons import Reason


class Status(StrEnum):
    AFFIRMING = "affirming"
    WARNING = "warning"
    CONTRAINDICATED = "contraindicated"
    NONE = "none"


class Claim(StrEnum):
    INSTANCE_IDENTITY = "instance-identity"
    CONFIGURATION = "configuration"
    EXECUTABLES = "executables"
    FILE_SYSTEM = "file-system"
    HARDWARE = "hardware"
    RUNTIME_OPAQUE = "runtime-opaque"
    STORAGE_OPAQUE = "storage-opaque"
    SOURCED_DATA = "sourced-data"


# Values shared by every claim (AR4SI).
NO_CLAIM = 0
UNEXPECTED_EVIDENCE = 1
VERIFIER_MALFUNCTION = -1
CRYPTO_FAILED = 99
# Per-claim values used here (AR4SI's names in comments).
TRUSTWORTHY_INSTANCE = 2      # instance-identity
UNTRUSTWORTHY_INSTANCE = 96   # instance-identity
UNRECOGNIZED_INSTANCE = 97    # instance-identity
APPROVED_CONFIG = 2           # configuration
UNSUPPORTABLE_CONFIG = 96     # configuration
APPROVED_RUNTIME = 2          # executables
UNRECOGNIZED_RUNTIME = 33     # executables
CONTRAINDICATED_RUNTIME = 96  # executables
GENUINE_HARDWARE = 2          # hardware
UNSAFE_HARDWARE = 32          # hardware
CONTRAINDICATED_HARDWARE = 96  # hardware
UNRECOGNIZED_HARDWARE = 97    # hardware
HW_KEYS_ENCRYPTED_SECRETS = 2  # storage-opaque
UNENCRYPTED_SECRETS = 96      # storage-opaque
CONTRAINDICATED_SOURCES = 96  # sourced-data

# What an acceptance establishes: the signer is a TPM key certified by an enrolled AK
# (instance), whose EK chains to a manufacturer root (hardware), whose private part
# never leaves the TPM (storage-opaque), the quoted PCRs are the policy's (configuration)
# and the runtime log replays to reference values (executables). attest says nothing of
# files, memory encryption or the data sources of the request: no claim.
ACCEPTED_VECTOR: Mapping[Claim, int] = MappingProxyType({
    Claim.INSTANCE_IDENTITY: TRUSTWORTHY_INSTANCE,
    Claim.CONFIGURATION: APPROVED_CONFIG,
    Claim.EXECUTABLES: APPROVED_RUNTIME,
    Claim.FILE_SYSTEM: NO_CLAIM,
    Claim.HARDWARE: GENUINE_HARDWARE,
    Claim.RUNTIME_OPAQUE: NO_CLAIM,
    Claim.STORAGE_OPAQUE: HW_KEYS_ENCRYPTED_SECRETS,
    Claim.SOURCED_DATA: NO_CLAIM,
})

_I, _C, _E, _H = (Claim.INSTANCE_IDENTITY, Claim.CONFIGURATION, Claim.EXECUTABLES,
                  Claim.HARDWARE)
_S, _D = Claim.STORAGE_OPAQUE, Claim.SOURCED_DATA

# Every reason code, and the claim and value a denial for it sets. Freshness and
# single use (nonce, replay, lifetime) speak to the instance: this request can't be
# attributed to the instance as it is now. tests/unit/test_ear_vector.py fails when a
# reason is added to attest.reasons without a line here.
REASON_CLAIMS: Mapping[Reason, tuple[Claim, int]] = MappingProxyType({
    Reason.MALFORMED_ARTIFACT: (_I, CRYPTO_FAILED),
    Reason.ALG_NOT_ALLOWED: (_I, CRYPTO_FAILED),
    Reason.INVALID_SIGNATURE: (_I, CRYPTO_FAILED),
    Reason.KEY_ATTRIBUTES_INVALID: (_S, UNENCRYPTED_SECRETS),
    Reason.KEY_NOT_CERTIFIED: (_I, UNTRUSTWORTHY_INSTANCE),
    Reason.CERTIFY_SIGNATURE_INVALID: (_I, CRYPTO_FAILED),
    Reason.KEY_POLICY_MISMATCH: (_S, UNENCRYPTED_SECRETS),
    Reason.AK_UNKNOWN: (_I, UNRECOGNIZED_INSTANCE),
    Reason.AK_REVOKED: (_I, UNTRUSTWORTHY_INSTANCE),
    Reason.EK_CHAIN_INVALID: (_H, UNRECOGNIZED_HARDWARE),
    Reason.QUOTE_MALFORMED: (_H, CRYPTO_FAILED),
    Reason.QUOTE_SIGNATURE_INVALID: (_H, CRYPTO_FAILED),
    Reason.BINDING_MISMATCH: (_H, CRYPTO_FAILED),
    Reason.NONCE_UNKNOWN: (_I, UNTRUSTWORTHY_INSTANCE),
    Reason.NONCE_REUSED: (_I, UNTRUSTWORTHY_INSTANCE),
    Reason.STALE_EVIDENCE: (_I, UNTRUSTWORTHY_INSTANCE),
    Reason.TPM_RESET: (_H, UNSAFE_HARDWARE),
    Reason.CLOCK_ROLLBACK: (_H, CONTRAINDICATED_HARDWARE),
    Reason.PCR_SELECTION_INSUFFICIENT: (_C, UNSUPPORTABLE_CONFIG),
    Reason.PCR_DIGEST_MISMATCH: (_C, UNSUPPORTABLE_CONFIG),
    Reason.EVENTLOG_MALFORMED: (_E, UNEXPECTED_EVIDENCE),
    Reason.EVENTLOG_MISMATCH: (_E, CONTRAINDICATED_RUNTIME),
    Reason.REFERENCE_VALUE_MISMATCH: (_E, UNRECOGNIZED_RUNTIME),
    Reason.LOG_PREFIX_UNKNOWN: (_E, UNEXPECTED_EVIDENCE),
    Reason.EXPIRED: (_I, UNTRUSTWORTHY_INSTANCE),
    Reason.NOT_YET_VALID: (_I, UNTRUSTWORTHY_INSTANCE),
    Reason.REPLAYED: (_I, UNTRUSTWORTHY_INSTANCE),
    Reason.REVOKED: (_I, UNTRUSTWORTHY_INSTANCE),
    Reason.LINEAGE_BROKEN: (_D, CONTRAINDICATED_SOURCES),
    Reason.SCOPE_ESCALATION: (_D, CONTRAINDICATED_SOURCES),
    Reason.POLICY_MISMATCH: (_C, UNSUPPORTABLE_CONFIG),
    # Continuous attestation: the host's last report showed a measurement its reference
    # values do not know (runtime), or it stopped reporting (its instance is unproven).
    Reason.HOST_UNTRUSTED: (_E, CONTRAINDICATED_RUNTIME),
    Reason.HOST_STALE: (_I, UNTRUSTWORTHY_INSTANCE),
    # Enrollment: the TPM could not prove it holds the EK (activation), or the id or
    # the host id it asks for is not its to take.
    Reason.ACTIVATION_FAILED: (_H, UNRECOGNIZED_HARDWARE),
    Reason.ENROLLMENT_UNKNOWN: (_I, UNRECOGNIZED_INSTANCE),
    Reason.ENROLLMENT_CONFLICT: (_I, UNTRUSTWORTHY_INSTANCE),
    Reason.AUDIT_UNAVAILABLE: (_I, VERIFIER_MALFUNCTION),
    # A signed payload that is not the file shown: the data's source is not this signer.
    Reason.PAYLOAD_MISMATCH: (_D, CONTRAINDICATED_SOURCES),
    Reason.BATCH_PROOF_INVALID: (_H, CRYPTO_FAILED),
    Reason.PROOF_INVALID: (_I, VERIFIER_MALFUNCTION),
    Reason.INTERNAL_ERROR: (_I, VERIFIER_MALFUNCTION),
})


def tier(value: int) -> Status:
    """The tier an AR4SI value falls in."""
    if 2 <= value <= 31:
        return Status.AFFIRMING
    if 32 <= value <= 95:
        return Status.WARNING
    if 96 <= value <= 127:
        return Status.CONTRAINDICATED
    return Status.NONE


_RANK = {Status.AFFIRMING: 0, Status.NONE: 1, Status.WARNING: 2, Status.CONTRAINDICATED: 3}


def denied_vector(reasons: Iterable[Reason]) -> dict[Claim, int]:
    """The vector of a denial for ``reasons``: each claim the worst value its reasons set
    (by tier, then value), the others no claim. A verifier malfunction (-1) gives way to
    any finding about the attester."""
    vector = dict.fromkeys(Claim, NO_CLAIM)
    for reason in reasons:
        claim, value = REASON_CLAIMS[reason]
        held = vector[claim]
        if (_RANK[tier(value)], abs(value)) > (_RANK[tier(held)], abs(held)):
            vector[claim] = value
    return vector


def vector_for(accepted: bool, reasons: Iterable[Reason]) -> dict[Claim, int]:
    return dict(ACCEPTED_VECTOR) if accepted else denied_vector(reasons)


def status_for(accepted: bool) -> Status:
    return Status.AFFIRMING if accepted else Status.CONTRAINDICATED
