"""Every reason code the verifier reports, each produced from a real artifact made on swtpm.

Where the artifact needs no TPM to make (a recorded one as it is, cut, or with its
signature broken, under a policy derived from the recorded one), the test runs from the
recorded corpus, without a TPM: test_corpus_reasons.py. Here are the others: artifacts
issued by attest's issuance code on the rig's simulator; where a test needs a later check
to be reached, the altered artifact is re-quoted by the AK and re-signed by the PCR-bound
key inside the TPM, as a host that lies would do, or the TPM itself is rebooted or
restored. Each test asserts the exact reasons, so that a check firing for the wrong cause
is caught too.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from typing import Any

import pytest
from tpm2_pytss import TPMA_OBJECT

from attest.artifact import jws
from attest.artifact.model import Evidence, new_jti
from attest.evidence.pcrs import PCRSelection
from attest.policy import NonceMode, Rule
from attest.reasons import Reason
from attest.tpm import keys as signing
from tests.verify.rig import HOST_ID, Rig, accepted, denied, split

# Which test makes each reason: from the recorded corpus (no TPM) or on a live swtpm.
# test_every_reason_has_a_test keeps this complete.
CORPUS, LIVE, LINEAGE = ("tests.verify.test_corpus_reasons", "tests.verify.test_reasons",
                         "tests.verify.test_lineage")
ENROLL = "tests.server.test_enroll"
REPORTS = "tests.server.test_reports"
BATCH = "tests.signing.test_batch"
PRODUCED_BY = {
    Reason.MALFORMED_ARTIFACT: (CORPUS, "test_malformed_artifact"),
    Reason.ALG_NOT_ALLOWED: (LIVE, "test_alg_not_allowed"),
    Reason.INVALID_SIGNATURE: (CORPUS, "test_invalid_signature"),
    Reason.KEY_ATTRIBUTES_INVALID: (
        LIVE, "test_key_attributes_invalid_signing_key_with_user_with_auth"),
    Reason.KEY_NOT_CERTIFIED: (LIVE, "test_key_not_certified_kid_names_another_key"),
    Reason.CERTIFY_SIGNATURE_INVALID: (LIVE, "test_certify_signature_invalid"),
    Reason.KEY_POLICY_MISMATCH: (CORPUS, "test_key_policy_mismatch"),
    Reason.AK_UNKNOWN: (CORPUS, "test_ak_unknown_not_enrolled"),
    Reason.AK_REVOKED: (CORPUS, "test_ak_revoked"),
    Reason.EK_CHAIN_INVALID: (CORPUS, "test_ek_chain_invalid_and_valid"),
    Reason.QUOTE_MALFORMED: (LIVE, "test_quote_malformed_a_certification_in_place_of_the_quote"),
    Reason.QUOTE_SIGNATURE_INVALID: (LIVE, "test_quote_signature_invalid"),
    Reason.BINDING_MISMATCH: (LIVE, "test_binding_mismatch_claims_edited_after_the_quote"),
    Reason.NONCE_UNKNOWN: (CORPUS, "test_nonce_unknown_never_issued"),
    Reason.NONCE_REUSED: (LIVE, "test_nonce_reused"),
    Reason.STALE_EVIDENCE: (CORPUS, "test_stale_evidence_old_iat"),
    Reason.TPM_RESET: (LIVE, "test_tpm_reset_denied_when_the_policy_says_so"),
    Reason.CLOCK_ROLLBACK: (LIVE, "test_clock_rollback"),
    Reason.PCR_SELECTION_INSUFFICIENT: (LIVE, "test_pcr_selection_insufficient"),
    Reason.PCR_DIGEST_MISMATCH: (LIVE, "test_pcr_digest_mismatch"),
    Reason.EVENTLOG_MALFORMED: (LIVE, "test_eventlog_malformed"),
    Reason.EVENTLOG_MISMATCH: (LIVE, "test_eventlog_mismatch_a_measurement_hidden"),
    Reason.REFERENCE_VALUE_MISMATCH: (LIVE, "test_reference_value_mismatch"),
    Reason.EXPIRED: (CORPUS, "test_expired"),
    Reason.NOT_YET_VALID: (CORPUS, "test_not_yet_valid"),
    Reason.REPLAYED: (CORPUS, "test_replayed"),
    Reason.REVOKED: (CORPUS, "test_revoked_artifact"),
    Reason.LINEAGE_BROKEN: (CORPUS, "test_lineage_broken_unknown_parent"),
    Reason.SCOPE_ESCALATION: (LINEAGE, "test_scope_escalation"),
    Reason.POLICY_MISMATCH: (CORPUS, "test_policy_mismatch_rule_for_another_host"),
    Reason.AUDIT_UNAVAILABLE: (CORPUS, "test_audit_unavailable_consumes_nothing"),
    Reason.HOST_UNTRUSTED: (REPORTS, "test_an_unexpected_measurement_makes_the_host_untrusted"
                                     "_and_its_artifacts_denied"),
    Reason.HOST_STALE: (REPORTS, "test_no_report_within_the_age_makes_the_host_stale"),
    Reason.LOG_PREFIX_UNKNOWN: (
        LIVE, "test_log_prefix_unknown_a_log_sent_from_a_prefix_never_seen"),
    Reason.BATCH_PROOF_INVALID: (
        BATCH, "test_batch_proof_invalid_is_the_reason_of_a_payload_not_in_the_batch"),
    Reason.PROOF_INVALID: (LIVE, "test_proof_invalid_is_the_reason_of_an_audit_proof_that_fails"),
    Reason.INTERNAL_ERROR: (CORPUS, "test_every_exception_inside_is_a_denial"),
    # attest verify-signature: a file that is not what the bundle signed.
    Reason.PAYLOAD_MISMATCH: ("tests.signing.test_bundle_tpm", "test_a_wrong_file_is_denied"),
    # Enrollment over HTTP, not artifact denials.
    Reason.ACTIVATION_FAILED: (
        ENROLL, "test_a_bad_activation_secret_is_denied_and_enrolls_nothing"),
    Reason.ENROLLMENT_UNKNOWN: (ENROLL, "test_an_unknown_enrollment_id_is_denied"),
    Reason.ENROLLMENT_CONFLICT: (ENROLL, "test_a_host_id_of_another_tpm_is_not_taken"),
}

STORE_ENROLLMENT: dict[str, Any] = {"trusted_aks": []}  # render_policy: enrollment: store


def test_every_reason_has_a_test() -> None:
    import importlib

    assert set(PRODUCED_BY) == set(Reason)
    missing = {f"{module}::{name}" for module, name in PRODUCED_BY.values()
               if not callable(getattr(importlib.import_module(module), name, None))}
    assert missing == set()


def test_proof_invalid_is_the_reason_of_an_audit_proof_that_fails() -> None:
    # Not an artifact denial: `attest audit check-proof` and `audit verify` refuse with it
    # (tests/test_cli_errors.py runs them).
    from attest.audit import merkle
    from attest.audit.hashing import leaf_hash
    from attest.errors import ProofError

    leaf = leaf_hash(b"entry")
    with pytest.raises(ProofError) as caught:
        merkle.verify_inclusion(leaf, 0, 1, [], bytes(32))
    assert caught.value.reason is Reason.PROOF_INVALID
    assert caught.value.exit_code == 1


# -- 1. the JWS ------------------------------------------------------------------------


def _without_jti(rig: Rig, raw: bytes) -> bytes:
    header, payload, _ = split(raw)
    del payload["jti"]
    return rig.sign_json(header, payload)


def _with_ak(value: bytes) -> Any:
    return lambda e: dataclasses.replace(e, ak_public=value)


@pytest.mark.parametrize("alter", [
    pytest.param(_without_jti, id="claim-missing-resigned"),
    pytest.param(lambda rig, raw: rig.reissue(raw, evidence=_with_ak(b"\x00\x04junk")),
                 id="evidence-ak-not-a-public-resigned"),
])
def test_malformed_artifact_signed_in_the_tpm(rig: Rig, alter: Any) -> None:
    """What only a host's TPM can sign; cut or unsigned ones: test_corpus_reasons.py."""
    raw = rig.issue()
    verifier = rig.verifier()
    denied(verifier.verify(alter(rig, raw)), "malformed_artifact")
    accepted(verifier.verify(raw))


@pytest.mark.parametrize("alg", ["HS256", "none", "ES384", "RS256"])
def test_alg_not_allowed(rig: Rig, alg: str) -> None:
    raw = rig.reissue(rig.issue(), header=lambda h: {**h, "alg": alg})
    denied(rig.verifier().verify(raw), "alg_not_allowed")


def test_invalid_signature_by_another_key_of_the_same_host(rig: Rig) -> None:
    rig.host.ok("key", "create", "--name", "other")
    raw = rig.reissue(rig.issue(), key="other")  # kid and certification still the default key's
    denied(rig.verifier().verify(raw), "invalid_signature")


# -- 2. the AK -------------------------------------------------------------------------


def test_ak_unknown_iss_is_not_the_evidence_ak(rig: Rig) -> None:
    raw = rig.reissue(rig.issue(), claims=lambda c: dataclasses.replace(c, iss="000b" + "ab" * 32),
                      requote=True)
    denied(rig.verifier().verify(raw), "ak_unknown")


def test_key_attributes_invalid_an_unrestricted_key_enrolled_as_ak(rig: Rig) -> None:
    """A host enrolled a non-restricted key as its "AK": it could sign a forged quote."""
    key = signing.load_key(rig.home, rig.key)
    store = rig.store()
    store.enroll(HOST_ID, key.tpm_name, key.public, b"", None, int(time.time()))
    raw = rig.reissue(rig.issue(), claims=lambda c: dataclasses.replace(
        c, iss=key.tpm_name.hex(), jti=new_jti(key.tpm_name.hex(), bytes(16)),
        evidence=dataclasses.replace(c.evidence, ak_public=key.public)))
    denied(rig.verifier(rig.policy(**STORE_ENROLLMENT), store).verify(raw),
           "key_attributes_invalid")


def test_key_attributes_invalid_signing_key_with_user_with_auth(rig: Rig) -> None:
    """A signing key whose password alone signs (userWithAuth): its PCR policy is moot."""
    rig.create_key("loose", TPMA_OBJECT.USERWITHAUTH)
    decision = rig.verifier().verify(rig.issue(key="loose"))
    denied(decision, "key_attributes_invalid")
    assert "userWithAuth" in decision.denials[0].message


# -- 3. the key's certification --------------------------------------------------------


def test_key_not_certified_kid_names_another_key(rig: Rig) -> None:
    raw = rig.reissue(rig.issue(), header=lambda h: {**h, "kid": rig.identity.ak_name.hex()})
    denied(rig.verifier().verify(raw), "key_not_certified")


def test_key_not_certified_an_uncertified_key_borrows_a_certification(rig: Rig) -> None:
    rig.host.ok("key", "create", "--name", "other")
    certified = jws.parse(rig.issue()).claims.evidence

    def borrow(evidence: Evidence) -> Evidence:
        return dataclasses.replace(evidence, certify=certified.certify,
                                   certify_signature=certified.certify_signature)

    raw = rig.reissue(rig.issue(key="other"), evidence=borrow, key="other")
    denied(rig.verifier().verify(raw), "key_not_certified")


@pytest.mark.parametrize(("field", "offset"), [
    ("certify_signature", 10),  # inside R
    ("certify_signature", -3),  # inside S
    ("certify", -1),  # the certified body itself
])
def test_certify_signature_invalid(rig: Rig, field: str, offset: int) -> None:
    def flip(evidence: Evidence) -> Evidence:
        value = bytearray(getattr(evidence, field))
        value[offset] ^= 0x40
        return dataclasses.replace(evidence, **{field: bytes(value)})

    raw = rig.reissue(rig.issue(), evidence=flip)
    denied(rig.verifier().verify(raw), "certify_signature_invalid")


# -- 5. the quote ----------------------------------------------------------------------


def test_quote_malformed_a_certification_in_place_of_the_quote(rig: Rig) -> None:
    """A TPMS_ATTEST genuinely signed by the AK, but a certification (0x8017), not a quote."""
    def swap(evidence: Evidence) -> Evidence:
        return dataclasses.replace(evidence, quote=evidence.certify,
                                   quote_signature=evidence.certify_signature)

    denied(rig.verifier().verify(rig.reissue(rig.issue(), evidence=swap)), "quote_malformed")


def test_quote_malformed_signature_unparsable(rig: Rig) -> None:
    raw = rig.reissue(rig.issue(), evidence=lambda e: dataclasses.replace(
        e, quote_signature=e.quote_signature[:9]))
    denied(rig.verifier().verify(raw), "quote_malformed")


@pytest.mark.parametrize("offset", [6, 40, -1])  # magic/type area, clock area, pcrDigest
def test_quote_signature_invalid(rig: Rig, offset: int) -> None:
    def flip(evidence: Evidence) -> Evidence:
        value = bytearray(evidence.quote)
        value[offset] ^= 0x01
        return dataclasses.replace(evidence, quote=bytes(value))

    denied(rig.verifier().verify(rig.reissue(rig.issue(), evidence=flip)),
           "quote_signature_invalid")


def test_binding_mismatch_claims_edited_after_the_quote(rig: Rig) -> None:
    raw = rig.reissue(rig.issue(), claims=lambda c: dataclasses.replace(
        c, scope=dataclasses.replace(c.scope, argv=("ls", "-l", "/etc"))))
    denied(rig.verifier().verify(raw), "binding_mismatch")


def test_binding_mismatch_quote_of_another_request(rig: Rig) -> None:
    other = jws.parse(rig.issue("ls")).claims.evidence
    raw = rig.reissue(rig.issue(), evidence=lambda e: dataclasses.replace(
        e, quote=other.quote, quote_signature=other.quote_signature))
    denied(rig.verifier().verify(raw), "binding_mismatch")


def test_clock_rollback(rig: Rig) -> None:
    """A restored TPM state (copied while stopped, put back later: a cloned or rolled-back
    TPM) resumes its clock from the copy, with the same boot counts. A quote answering a
    challenge issued 100 s after the verifier saw that clock further on is impossible.
    (Two honest artifacts verified out of order are no rollback: test_freshness.py.)"""
    sim = rig.host.sim
    saved = rig.tmp / "saved-tpm"
    sim.stop()
    shutil.copytree(sim.state_dir, saved)
    sim.start()
    rig.host.ok("measure", "command", "--", "ls")  # a new boot's log: measured anew
    now = int(time.time())
    store = rig.store()
    verifier = rig.verifier(rig.policy(nonce=NonceMode.OPTIONAL), store)
    # Seen 100 s ago (verifier time moved instead of sleeping).
    accepted(verifier.verify(rig.issue(now=now - 100), now=now - 100))
    sim.stop()
    shutil.rmtree(sim.state_dir)
    shutil.copytree(saved, sim.state_dir)
    sim.start()
    rig.host.ok("measure", "command", "--", "ls")  # a new boot's log: measured anew
    nonce = store.issue_nonce(60, now)
    decision = verifier.verify(rig.issue(nonce=nonce, now=now), now=now)
    denied(decision, "clock_rollback")
    assert "answers a challenge issued" in decision.denials[0].message


def test_tpm_reset_denied_when_the_policy_says_so(rig: Rig) -> None:
    store = rig.store()
    strict = rig.verifier(rig.policy(deny_reset=True), store)
    lenient = rig.verifier(rig.policy(deny_reset=False), store)
    accepted(strict.verify(rig.issue()))
    rig.host.sim.stop()  # TPM2_Shutdown, then TPM2_Startup(CLEAR): resetCount changes
    rig.host.sim.start()
    rig.host.ok("measure", "command", "--", "ls")  # a new boot's log: measured anew
    after_reset = rig.issue()
    denied(strict.verify(after_reset), "tpm_reset")
    # Denied consumed nothing: without deny_reset the reboot starts a new epoch.
    accepted(lenient.verify(after_reset))


def test_pcr_selection_insufficient(rig: Rig) -> None:
    """The host leaves the runtime PCR out of the quote (hiding its measurements)."""
    raw = rig.reissue(rig.issue(), selection=PCRSelection.of({"sha256": range(8)}))
    decision = rig.verifier().verify(raw)
    denied(decision, "pcr_selection_insufficient")
    assert "sha256:15" in decision.denials[0].message


def test_pcr_digest_mismatch(rig: Rig) -> None:
    """The host claims PCR 15 at its reset value; the quote's digest says otherwise."""
    raw = rig.reissue(rig.issue(), env=lambda pcrs: {**pcrs, 15: "00" * 32})
    denied(rig.verifier().verify(raw), "pcr_digest_mismatch")


# -- 6. the logs -----------------------------------------------------------------------


@pytest.mark.parametrize("log", [b"\x1e{not json", b"\x00" * 16, b"\x1e[]\n"])
def test_eventlog_malformed(rig: Rig, log: bytes) -> None:
    raw = rig.reissue(rig.issue(), evidence=lambda e: dataclasses.replace(e, runtime_log=log))
    denied(rig.verifier().verify(raw), "eventlog_malformed")


def test_eventlog_mismatch_a_measurement_hidden(rig: Rig) -> None:
    raw = rig.reissue(rig.issue(),
                      evidence=lambda e: dataclasses.replace(e, runtime_log=b""))
    denied(rig.verifier().verify(raw), "eventlog_mismatch")


def test_eventlog_mismatch_a_record_on_another_pcr(rig: Rig) -> None:
    log = jws.parse(rig.issue()).claims.evidence.runtime_log
    moved = log.replace(b'"pcr":15', b'"pcr":16', 1)
    assert moved != log
    raw = rig.reissue(rig.issue(), evidence=lambda e: dataclasses.replace(e, runtime_log=moved))
    denied(rig.verifier().verify(raw), "eventlog_mismatch")


def test_reference_value_mismatch(rig: Rig) -> None:
    policy = rig.policy()  # trusts the runtime measurements so far: ls
    rig.host.ok("measure", "command", "--", "cat")
    decision = rig.verifier(policy).verify(rig.issue())
    denied(decision, "reference_value_mismatch")
    assert "cat" in decision.denials[0].message


def test_log_prefix_unknown_a_log_sent_from_a_prefix_never_seen(rig: Rig) -> None:
    """The runtime log sent from record 1 (incremental logs) to a verifier that never
    appraised its first record: it tells the host to send the whole log."""
    from attest.artifact.model import RuntimeLogBase
    from attest.eventlog.prefix import prefix_digest

    rig.host.ok("measure", "command", "--", "cat")
    log = (rig.home / "runtime.cel").read_bytes()
    raw = rig.issue(log_base=RuntimeLogBase(1, prefix_digest(log, 1)))
    assert jws.parse(raw).claims.evidence.runtime_log_base is not None
    decision = rig.verifier(rig.policy()).verify(raw)
    denied(decision, "log_prefix_unknown")
    assert "send the whole log" in decision.denials[0].message


# -- 7. times and freshness ------------------------------------------------------------


def test_nonce_reused(rig: Rig) -> None:
    store = rig.store()
    nonce = store.issue_nonce(120, int(time.time()))
    first, second = rig.issue(nonce=nonce), rig.issue(nonce=nonce)
    verifier = rig.verifier(rig.policy(nonce=NonceMode.REQUIRED), store)
    accepted(verifier.verify(first))
    denied(verifier.verify(second), "nonce_reused")


# -- 8. single use, revocation, rules --------------------------------------------------


def test_policy_mismatch_no_rule(rig: Rig) -> None:
    policy = rig.policy(rules=[Rule(("deploy-bot",), ("exec",), ("ls -l /srv",), (HOST_ID,))])
    verifier = rig.verifier(policy)
    for raw in (rig.issue(subject="intruder"), rig.issue("ls", "-l", "/etc"),
                rig.issue(action="read")):
        denied(verifier.verify(raw), "policy_mismatch")
    accepted(verifier.verify(rig.issue()))


# -- several reasons at once; what a denial leaves behind ------------------------------


def test_several_reasons_from_evidence_and_time(rig: Rig) -> None:
    raw = rig.issue(ttl=60)
    exp = jws.parse(raw).claims.exp
    lied = rig.reissue(raw, env=lambda pcrs: {**pcrs, 15: "00" * 32})
    verifier = rig.verifier()
    verifier.store.revoke_artifact(jws.parse(raw).claims.jti, "withdrawn", int(time.time()))
    denied(verifier.verify(lied, now=exp + 100), "pcr_digest_mismatch", "expired", "revoked")


