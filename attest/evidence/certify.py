"""Verifying a TPM2_Certify of a signing key by the AK.

The certification proves properties of the key (TPM-bound, policy-gated, which
policy), not freshness, so it may be made once per key and cached. Checks, in
order: AK attributes (key_attributes_invalid); signature parses, scheme
allowed, verifies over the exact bytes (certify_signature_invalid /
alg_not_allowed); TPMS_ATTEST parses with type certify 0x8017, qualifiedSigner
and extraData as expected, certified name == name of the presented public
(key_not_certified); key attributes (key_attributes_invalid); authPolicy ==
expected digest (key_policy_mismatch).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from attest.errors import EvidenceError
from attest.evidence.ak import check_ak, check_signing_key
from attest.evidence.signatures import PublicKey, VerifyingKey, public_key, verify_tpm_signature
from attest.evidence.structures import (
    ST,
    CertifyInfo,
    ClockInfo,
    Public,
    Signature,
    parse_attest,
    parse_public_tpm2b,
    parse_signature,
)
from attest.reasons import Reason


@dataclass(frozen=True)
class CertifiedKey:
    """A signing key the AK's TPM vouches for, with the policy that gates its use."""

    public: Public
    name: bytes
    key: PublicKey
    auth_policy: bytes
    signer: bytes  # the AK's qualified name
    qualified_name: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int


def verify_certification(
    attest: bytes,
    signature: bytes | Signature,
    ak: VerifyingKey,
    key_public: bytes | Public,
    *,
    expected_policy: bytes,
    expected_extra_data: bytes | None = None,
    expected_signer: bytes | None = None,
    allow_sha1: bool = False,
) -> CertifiedKey:
    """Verify that the AK certified ``key_public`` (a TPM2B_PUBLIC) and return its facts.

    Raises EvidenceError; ``expected_extra_data`` and ``expected_signer`` (the
    AK's qualified name) are checked when given.
    """
    if isinstance(ak, Public):
        check_ak(ak)
    sig = (
        signature
        if isinstance(signature, Signature)
        else parse_signature(signature, Reason.CERTIFY_SIGNATURE_INVALID)
    )
    verify_tpm_signature(
        attest, sig, ak, reason=Reason.CERTIFY_SIGNATURE_INVALID, allow_sha1=allow_sha1
    )
    parsed = parse_attest(attest, Reason.KEY_NOT_CERTIFIED)
    info = parsed.attested
    if parsed.type != ST.ATTEST_CERTIFY or not isinstance(info, CertifyInfo):
        raise EvidenceError(
            f"attestation type 0x{parsed.type:04x} is not a certification (0x8017)",
            reason=Reason.KEY_NOT_CERTIFIED,
        )
    if expected_signer is not None and not hmac.compare_digest(
        parsed.qualified_signer, expected_signer
    ):
        raise EvidenceError(
            "qualifiedSigner is not the AK's qualified name", reason=Reason.KEY_NOT_CERTIFIED
        )
    if expected_extra_data is not None and not hmac.compare_digest(
        parsed.extra_data, expected_extra_data
    ):
        raise EvidenceError(
            "the certification's extraData is not the expected value",
            reason=Reason.KEY_NOT_CERTIFIED,
        )
    public = key_public if isinstance(key_public, Public) else parse_public_tpm2b(key_public)
    if not hmac.compare_digest(public.name, info.name):
        raise EvidenceError(
            "the certified name is not the name of the presented public key",
            reason=Reason.KEY_NOT_CERTIFIED,
        )
    check_signing_key(public)
    if not hmac.compare_digest(public.auth_policy, expected_policy):
        raise EvidenceError(
            f"the key's authPolicy {public.auth_policy.hex()} is not the expected "
            f"{expected_policy.hex()}",
            reason=Reason.KEY_POLICY_MISMATCH,
        )
    return CertifiedKey(
        public=public,
        name=public.name,
        key=public_key(public),
        auth_policy=public.auth_policy,
        signer=parsed.qualified_signer,
        qualified_name=info.qualified_name,
        extra_data=parsed.extra_data,
        clock_info=parsed.clock_info,
        firmware_version=parsed.firmware_version,
    )
