"""Policy digests computed in software, the way a TPM trial session computes them.

TPM 2.0 Part 3: each policy command extends policyDigest as
``policyDigest' = H(policyDigest || TPM_CC || command-specific data)``.
"""

from __future__ import annotations

import struct

from attest.evidence.pcrs import DIGEST_SIZES, PCRSelection, PCRValues, composite_digest, digest

TPM_CC_POLICY_PCR = 0x0000017F
TPM_CC_POLICY_AUTH_VALUE = 0x0000016B
TPM_CC_POLICY_AUTHORIZE = 0x0000016A


def initial(session_hash: str = "sha256") -> bytes:
    return bytes(DIGEST_SIZES[session_hash])


def policy_pcr(
    previous: bytes,
    selection: PCRSelection,
    values: PCRValues,
    session_hash: str = "sha256",
) -> bytes:
    """PolicyPCR: H(prev || CC || TPML_PCR_SELECTION || H_session(selected values))."""
    pcr_digest = composite_digest(selection, values, session_hash)
    return digest(
        session_hash,
        previous + struct.pack(">I", TPM_CC_POLICY_PCR) + selection.marshal() + pcr_digest,
    )


def policy_auth_value(previous: bytes, session_hash: str = "sha256") -> bytes:
    return digest(session_hash, previous + struct.pack(">I", TPM_CC_POLICY_AUTH_VALUE))


def policy_authorize(
    previous: bytes, authority_name: bytes, policy_ref: bytes = b"", session_hash: str = "sha256"
) -> bytes:
    """PolicyAuthorize: H(H(prev || CC || authorityName) || policyRef); the PolicyReset
    that precedes it is why `previous` is normally all zeros."""
    inner = digest(
        session_hash, previous + struct.pack(">I", TPM_CC_POLICY_AUTHORIZE) + authority_name
    )
    return digest(session_hash, inner + policy_ref)


def pcr_auth_policy(
    selection: PCRSelection, values: PCRValues, session_hash: str = "sha256"
) -> bytes:
    """The policy of a PCR-bound signing key: PolicyPCR then PolicyAuthValue."""
    return policy_auth_value(
        policy_pcr(initial(session_hash), selection, values, session_hash), session_hash
    )


def approval_digest(approved_policy: bytes, policy_ref: bytes, hash_alg: str = "sha256") -> bytes:
    """aHash an authority signs to approve a policy: H(approvedPolicy || policyRef)."""
    return digest(hash_alg, approved_policy + policy_ref)
