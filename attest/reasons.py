"""Denial reason codes: stable strings shared by the library, CLI, HTTP API and audit log.

They live at the bottom of the layer stack (not in ``verify/``) because the pure
evidence layer raises errors that already carry their reason.
"""

from enum import StrEnum


class Reason(StrEnum):
    MALFORMED_ARTIFACT = "malformed_artifact"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    INVALID_SIGNATURE = "invalid_signature"
    KEY_ATTRIBUTES_INVALID = "key_attributes_invalid"
    KEY_NOT_CERTIFIED = "key_not_certified"
    CERTIFY_SIGNATURE_INVALID = "certify_signature_invalid"
    KEY_POLICY_MISMATCH = "key_policy_mismatch"
    AK_UNKNOWN = "ak_unknown"
    AK_REVOKED = "ak_revoked"
    EK_CHAIN_INVALID = "ek_chain_invalid"
    QUOTE_MALFORMED = "quote_malformed"
    QUOTE_SIGNATURE_INVALID = "quote_signature_invalid"
    BINDING_MISMATCH = "binding_mismatch"
    NONCE_UNKNOWN = "nonce_unknown"
    NONCE_REUSED = "nonce_reused"
    STALE_EVIDENCE = "stale_evidence"
    TPM_RESET = "tpm_reset"
    CLOCK_ROLLBACK = "clock_rollback"
    PCR_SELECTION_INSUFFICIENT = "pcr_selection_insufficient"
    PCR_DIGEST_MISMATCH = "pcr_digest_mismatch"
    EVENTLOG_MALFORMED = "eventlog_malformed"
    EVENTLOG_MISMATCH = "eventlog_mismatch"
    REFERENCE_VALUE_MISMATCH = "reference_value_mismatch"
    # The artifact sends its runtime log from a prefix (evidence.runtime_log_base) this
    # verifier has not appraised for the AK, boot and policy: send the whole log.
    LOG_PREFIX_UNKNOWN = "log_prefix_unknown"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REPLAYED = "replayed"
    REVOKED = "revoked"
    LINEAGE_BROKEN = "lineage_broken"
    SCOPE_ESCALATION = "scope_escalation"
    POLICY_MISMATCH = "policy_mismatch"
    AUDIT_UNAVAILABLE = "audit_unavailable"
    # Continuous attestation (policy freshness.report_max_age; attest.server.reports):
    # the host's last report showed an unexpected measurement (untrusted), or the host
    # has no accepted report within report_max_age (stale). The artifact may be sound.
    HOST_UNTRUSTED = "host_untrusted"
    HOST_STALE = "host_stale"
    # Enrollment over HTTP (attest.verify.enrollment), not artifact denials: the secret
    # sent back is not the one wrapped to the EK for the AK (the AK is not in that TPM);
    # no pending enrollment has that id (never issued by this verifier, or purged); the
    # host id or the AK belongs to another TPM or host id (moving it needs an admin).
    ACTIVATION_FAILED = "activation_failed"
    ENROLLMENT_UNKNOWN = "enrollment_unknown"
    ENROLLMENT_CONFLICT = "enrollment_conflict"
    # attest verify-signature: a file given to check is not the signed payload, nor among
    # the signed statement's subjects (the signature itself may be sound).
    PAYLOAD_MISMATCH = "payload_mismatch"
    # A batched signature (attest.signing.batch): the inclusion proof does not put this
    # payload's signature input under the signed batch root, or the batch member is
    # malformed (a root reused for a payload not in its batch ends here).
    BATCH_PROOF_INVALID = "batch_proof_invalid"
    # Not a verifier denial: an audit proof, tree head or log that does not verify.
    PROOF_INVALID = "proof_invalid"
    INTERNAL_ERROR = "internal_error"
