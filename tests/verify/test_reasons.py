"""Every reason code the verifier reports, each produced from a real artifact made on swtpm.

Artifacts are issued by attest's issuance code on the rig's simulator; where a test needs
a later check to be reached, the altered artifact is re-quoted by the AK and re-signed by
the PCR-bound key inside the TPM, as a host that lies would do. Each test asserts the
exact reasons, so that a check firing for the wrong cause is caught too.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import time
from typing import Any

import pytest
from tpm2_pytss import TPMA_OBJECT

from attest.artifact import jws
from attest.artifact.model import Evidence, b64url, new_jti
from attest.audit.log import AuditLog
from attest.evidence.pcrs import PCRSelection
from attest.policy import NonceMode, Rule, TrustedAK
from attest.reasons import Reason
from attest.tpm import keys as signing
from attest.tpm.hierarchy import load_identity
from attest.verify.verifier import Verifier
from tests.conftest import Host
from tests.verify.rig import HOST_ID, Rig, accepted, b64d, denied, make_ca, split

# Which test makes each reason. test_every_reason_has_a_test keeps this complete.
PRODUCED_BY = {
    Reason.MALFORMED_ARTIFACT: "test_malformed_artifact",
    Reason.ALG_NOT_ALLOWED: "test_alg_not_allowed",
    Reason.INVALID_SIGNATURE: "test_invalid_signature",
    Reason.KEY_ATTRIBUTES_INVALID: "test_key_attributes_invalid_signing_key_with_user_with_auth",
    Reason.KEY_NOT_CERTIFIED: "test_key_not_certified_kid_names_another_key",
    Reason.CERTIFY_SIGNATURE_INVALID: "test_certify_signature_invalid",
    Reason.KEY_POLICY_MISMATCH: "test_key_policy_mismatch",
    Reason.AK_UNKNOWN: "test_ak_unknown_not_enrolled",
    Reason.AK_REVOKED: "test_ak_revoked",
    Reason.EK_CHAIN_INVALID: "test_ek_chain_invalid_and_valid",
    Reason.QUOTE_MALFORMED: "test_quote_malformed_a_certification_in_place_of_the_quote",
    Reason.QUOTE_SIGNATURE_INVALID: "test_quote_signature_invalid",
    Reason.BINDING_MISMATCH: "test_binding_mismatch_claims_edited_after_the_quote",
    Reason.NONCE_UNKNOWN: "test_nonce_unknown_never_issued",
    Reason.NONCE_REUSED: "test_nonce_reused",
    Reason.STALE_EVIDENCE: "test_stale_evidence_old_iat",
    Reason.TPM_RESET: "test_tpm_reset_denied_when_the_policy_says_so",
    Reason.CLOCK_ROLLBACK: "test_clock_rollback",
    Reason.PCR_SELECTION_INSUFFICIENT: "test_pcr_selection_insufficient",
    Reason.PCR_DIGEST_MISMATCH: "test_pcr_digest_mismatch",
    Reason.EVENTLOG_MALFORMED: "test_eventlog_malformed",
    Reason.EVENTLOG_MISMATCH: "test_eventlog_mismatch_a_measurement_hidden",
    Reason.REFERENCE_VALUE_MISMATCH: "test_reference_value_mismatch",
    Reason.LOG_PREFIX_UNKNOWN: "test_log_prefix_unknown_a_log_sent_from_a_prefix_never_seen",
    Reason.EXPIRED: "test_expired",
    Reason.NOT_YET_VALID: "test_not_yet_valid",
    Reason.REPLAYED: "test_replayed",
    Reason.REVOKED: "test_revoked_artifact",
    Reason.LINEAGE_BROKEN: "test_lineage_broken_unknown_parent",
    Reason.SCOPE_ESCALATION: "test_scope_escalation",
    Reason.POLICY_MISMATCH: "test_policy_mismatch_no_rule",
    Reason.AUDIT_UNAVAILABLE: "test_audit_unavailable_consumes_nothing",
    Reason.PROOF_INVALID: "test_proof_invalid_is_the_reason_of_an_audit_proof_that_fails",
    Reason.INTERNAL_ERROR: "test_internal_error_store_corrupted_mid_way",
}

STORE_ENROLLMENT: dict[str, Any] = {"trusted_aks": []}  # render_policy: enrollment: store


def test_every_reason_has_a_test() -> None:
    from tests.verify import test_lineage

    assert set(PRODUCED_BY) == set(Reason)
    defined = set(globals()) | set(vars(test_lineage))
    assert {name for name in PRODUCED_BY.values() if name not in defined} == set()


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


def test_a_genuine_artifact_is_accepted(rig: Rig) -> None:
    raw = rig.issue(gov={"ticket": "CHG-1"})
    decision = rig.verifier().verify(raw)
    accepted(decision)
    assert decision.host == HOST_ID
    assert decision.facts["argv"] == ["ls", "-l", "/srv"]
    assert decision.facts["key"] == signing.load_key(rig.home, rig.key).tpm_name.hex()
    assert decision.facts["ak"] == rig.identity.ak_name.hex()


# -- 1. the JWS ------------------------------------------------------------------------


def _without_jti(rig: Rig, raw: bytes) -> bytes:
    header, payload, _ = split(raw)
    del payload["jti"]
    return rig.sign_json(header, payload)


def _with_ak(value: bytes) -> Any:
    return lambda e: dataclasses.replace(e, ak_public=value)


@pytest.mark.parametrize("alter", [
    pytest.param(lambda rig, raw: b"not a JWS at all", id="garbage"),
    pytest.param(lambda rig, raw: raw.rsplit(b".", 1)[0], id="two-parts"),
    pytest.param(lambda rig, raw: raw.replace(b".", b".\xff", 1), id="non-ascii"),
    pytest.param(_without_jti, id="claim-missing-resigned"),
    pytest.param(lambda rig, raw: rig.reissue(raw, evidence=_with_ak(b"\x00\x04junk")),
                 id="evidence-ak-not-a-public-resigned"),
    pytest.param(lambda rig, raw: raw[:-1] + (b"B" if raw[-1:] != b"B" else b"C"),
                 id="signature-not-canonical-base64url"),
])
def test_malformed_artifact(rig: Rig, alter: Any) -> None:
    raw = rig.issue()
    verifier = rig.verifier()
    denied(verifier.verify(alter(rig, raw)), "malformed_artifact")
    accepted(verifier.verify(raw))


def test_signature_encodings_that_decode_alike_are_refused(rig: Rig) -> None:
    """Base64url leaves 4 bits of the last character unused: 16 texts decode to one
    signature. Only the canonical one is the artifact (its SHA-256 is what children name)."""
    raw = rig.issue()
    verifier = rig.verifier()
    signature = raw.rsplit(b".", 1)[1]
    twins = [raw[:-1] + bytes([c]) for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
             b"0123456789-_" if c != signature[-1]
             and b64d(signature[:-1] + bytes([c])) == b64d(signature)]
    assert len(twins) == 15
    for twin in twins:
        denied(verifier.verify(twin), "malformed_artifact")
    accepted(verifier.verify(raw))


@pytest.mark.parametrize("alg", ["HS256", "none", "ES384", "RS256"])
def test_alg_not_allowed(rig: Rig, alg: str) -> None:
    raw = rig.reissue(rig.issue(), header=lambda h: {**h, "alg": alg})
    denied(rig.verifier().verify(raw), "alg_not_allowed")


def test_invalid_signature(rig: Rig) -> None:
    raw = rig.issue()
    head, _, signature = raw.rpartition(b".")
    flipped = bytearray(b64d(signature))
    flipped[40] ^= 0x01
    denied(rig.verifier().verify(head + b"." + b64url(bytes(flipped)).encode()),
           "invalid_signature")


def test_invalid_signature_by_another_key_of_the_same_host(rig: Rig) -> None:
    rig.host.ok("key", "create", "--name", "other")
    raw = rig.reissue(rig.issue(), key="other")  # kid and certification still the default key's
    denied(rig.verifier().verify(raw), "invalid_signature")


# -- 2. the AK -------------------------------------------------------------------------


def test_ak_unknown_not_enrolled(rig: Rig) -> None:
    denied(rig.verifier(rig.policy(**STORE_ENROLLMENT)).verify(rig.issue()), "ak_unknown")


def test_ak_unknown_another_hosts_ak(rig: Rig, host: Host) -> None:
    """The verifier trusts only another host (another simulator, another AK)."""
    other = load_identity(host.home)
    assert other.ak_name != rig.identity.ak_name
    policy = rig.policy(trusted_aks=[TrustedAK("web-2", other.ak_public,
                                               other.ak_qualified_name or None)])
    denied(rig.verifier(policy).verify(rig.issue()), "ak_unknown")


def test_ak_unknown_iss_is_not_the_evidence_ak(rig: Rig) -> None:
    raw = rig.reissue(rig.issue(), claims=lambda c: dataclasses.replace(c, iss="000b" + "ab" * 32),
                      requote=True)
    denied(rig.verifier().verify(raw), "ak_unknown")


def test_ak_revoked(rig: Rig) -> None:
    store = rig.store()
    rig.enroll(store)
    verifier = rig.verifier(rig.policy(**STORE_ENROLLMENT), store)
    accepted(verifier.verify(rig.issue()))
    store.revoke_ak(rig.identity.ak_name, "AK leaked", int(time.time()))
    decision = verifier.verify(rig.issue())
    denied(decision, "ak_revoked")
    assert "AK leaked" in decision.denials[0].message


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


def test_ek_chain_invalid_and_valid(rig: Rig) -> None:
    store = rig.store()
    rig.enroll(store)  # with the EK certificate, as `attest enroll` stores it
    raw = rig.issue()
    stranger = make_ca(rig.tmp, "another-manufacturer")
    decision = rig.verifier(rig.policy(**STORE_ENROLLMENT, ek_roots=[str(stranger)]),
                            store).verify(raw)
    denied(decision, "ek_chain_invalid")
    # The simulator's CA (root and the intermediate that signs EK certificates).
    roots = rig.tmp / "roots"
    roots.mkdir()
    shutil.copy(rig.host.sim.root_ca_cert, roots)
    shutil.copy(rig.host.sim.intermediate_ca_cert, roots)
    accepted(rig.verifier(rig.policy(**STORE_ENROLLMENT, ek_roots=[str(roots)]),
                          store).verify(raw))


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


def test_key_policy_mismatch(rig: Rig) -> None:
    """The verifier expects keys sealed to another PCR 3 than this host's key is."""
    sealed = {i: v for (_, i), v in signing.load_key(rig.home, rig.key).sealed_values.items()}
    policy = rig.policy(sealed_values={**sealed, 3: b"\x11" * 32})
    denied(rig.verifier(policy).verify(rig.issue()), "key_policy_mismatch")


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


def test_expired(rig: Rig) -> None:
    raw = rig.issue(ttl=60)
    exp = jws.parse(raw).claims.exp
    verifier = rig.verifier()
    denied(verifier.verify(raw, now=exp + 31), "expired")  # past the 30 s clock skew
    accepted(verifier.verify(raw, now=exp + 30))


def test_not_yet_valid(rig: Rig) -> None:
    raw = rig.issue()
    iat = jws.parse(raw).claims.iat
    verifier = rig.verifier()
    denied(verifier.verify(raw, now=iat - 31), "not_yet_valid")
    accepted(verifier.verify(raw, now=iat - 30))


def test_not_yet_valid_issued_in_the_future(rig: Rig) -> None:
    raw = rig.issue(now=int(time.time()) + 3600)
    denied(rig.verifier().verify(raw), "not_yet_valid")


def test_stale_evidence_old_iat(rig: Rig) -> None:
    """Time-based freshness: issued 400 s ago, valid 600 s, but at most 300 s old."""
    raw = rig.issue(now=int(time.time()) - 400, ttl=600)
    denied(rig.verifier(rig.policy(nonce=NonceMode.FORBIDDEN)).verify(raw), "stale_evidence")


def test_stale_evidence_challenge_expired(rig: Rig) -> None:
    store = rig.store()
    now = int(time.time())
    nonce = store.issue_nonce(5, now)
    raw = rig.issue(nonce=nonce)
    verifier = rig.verifier(rig.policy(nonce=NonceMode.REQUIRED), store)
    denied(verifier.verify(raw, now=now + 6), "stale_evidence")
    accepted(verifier.verify(raw, now=now + 4))


def test_nonce_unknown_never_issued(rig: Rig) -> None:
    raw = rig.issue(nonce=b64url(secrets.token_bytes(32)))
    denied(rig.verifier().verify(raw), "nonce_unknown")


def test_nonce_unknown_required_but_absent(rig: Rig) -> None:
    denied(rig.verifier(rig.policy(nonce=NonceMode.REQUIRED)).verify(rig.issue()),
           "nonce_unknown")


def test_nonce_reused(rig: Rig) -> None:
    store = rig.store()
    nonce = store.issue_nonce(120, int(time.time()))
    first, second = rig.issue(nonce=nonce), rig.issue(nonce=nonce)
    verifier = rig.verifier(rig.policy(nonce=NonceMode.REQUIRED), store)
    accepted(verifier.verify(first))
    denied(verifier.verify(second), "nonce_reused")


def test_accepted_with_an_interactive_nonce_and_time_based(rig: Rig) -> None:
    store = rig.store()
    interactive = rig.verifier(rig.policy(nonce=NonceMode.REQUIRED), store)
    accepted(interactive.verify(rig.issue(nonce=store.issue_nonce(120, int(time.time())))))
    time_based = rig.verifier(rig.policy(nonce=NonceMode.FORBIDDEN), store)
    accepted(time_based.verify(rig.issue()))


# -- 8. single use, revocation, rules --------------------------------------------------


def test_replayed(rig: Rig) -> None:
    raw = rig.issue()
    verifier = rig.verifier()
    accepted(verifier.verify(raw))
    denied(verifier.verify(raw), "replayed")
    # A verifier sharing the store (another replica, a later process) agrees.
    denied(rig.verifier(store=verifier.store).verify(raw), "replayed")


def test_not_single_use_may_be_presented_again(rig: Rig) -> None:
    raw = rig.issue()
    verifier = rig.verifier(rig.policy(single_use=False))
    accepted(verifier.verify(raw))
    accepted(verifier.verify(raw))


def test_revoked_artifact(rig: Rig) -> None:
    raw = rig.issue()
    verifier = rig.verifier()
    verifier.store.revoke_artifact(jws.parse(raw).claims.jti, "ticket withdrawn",
                                   int(time.time()))
    decision = verifier.verify(raw)
    denied(decision, "revoked")
    assert "ticket withdrawn" in decision.denials[0].message


def test_revoked_key(rig: Rig) -> None:
    verifier = rig.verifier()
    accepted(verifier.verify(rig.issue()))
    kid = signing.load_key(rig.home, rig.key).tpm_name.hex()
    verifier.store.revoke_key(kid, "key retired", int(time.time()))
    denied(verifier.verify(rig.issue()), "revoked")


def test_revoked_host_with_trusted_aks(rig: Rig) -> None:
    verifier = rig.verifier()
    verifier.store.revoke_host(HOST_ID, "decommissioned", int(time.time()))
    denied(verifier.verify(rig.issue()), "revoked")


def test_revoked_host_with_store_enrollment_reads_as_its_ak_revoked(rig: Rig) -> None:
    """Revoking a host revokes every AK it enrolled (`attest revoke --host`)."""
    store = rig.store()
    rig.enroll(store)
    store.revoke_host(HOST_ID, "decommissioned", int(time.time()))
    decision = rig.verifier(rig.policy(**STORE_ENROLLMENT), store).verify(rig.issue())
    denied(decision, "ak_revoked")
    assert "decommissioned" in decision.denials[0].message


def test_policy_mismatch_no_rule(rig: Rig) -> None:
    policy = rig.policy(rules=[Rule(("deploy-bot",), ("exec",), ("ls -l /srv",), (HOST_ID,))])
    verifier = rig.verifier(policy)
    for raw in (rig.issue(subject="intruder"), rig.issue("ls", "-l", "/etc"),
                rig.issue(action="read")):
        denied(verifier.verify(raw), "policy_mismatch")
    accepted(verifier.verify(rig.issue()))


def test_policy_mismatch_rule_for_another_host(rig: Rig) -> None:
    policy = rig.policy(rules=[Rule(("*",), ("exec",), ("*",), ("web-2",))])
    denied(rig.verifier(policy).verify(rig.issue()), "policy_mismatch")


def test_policy_mismatch_lifetime_too_long(rig: Rig) -> None:
    decision = rig.verifier().verify(rig.issue(ttl=601))  # max_lifetime 600 s
    denied(decision, "policy_mismatch")
    assert "lifetime" in decision.denials[0].message


def test_policy_mismatch_for_another_verifier(rig: Rig) -> None:
    raw = rig.issue(audience="verifier-1")
    denied(rig.verifier(verifier_id="verifier-2").verify(raw), "policy_mismatch")
    accepted(rig.verifier(verifier_id="verifier-1").verify(raw))


def test_policy_mismatch_nonce_forbidden(rig: Rig) -> None:
    store = rig.store()
    raw = rig.issue(nonce=store.issue_nonce(120, int(time.time())))
    denied(rig.verifier(rig.policy(nonce=NonceMode.FORBIDDEN), store).verify(raw),
           "policy_mismatch")


# -- several reasons at once; what a denial leaves behind ------------------------------


def test_several_failed_checks_are_all_reported(rig: Rig) -> None:
    raw = rig.issue(subject="intruder", ttl=60)
    exp = jws.parse(raw).claims.exp
    policy = rig.policy(rules=[Rule(("deploy-bot",), ("exec",), ("*",), ("*",))])
    denied(rig.verifier(policy).verify(raw, now=exp + 100), "expired", "policy_mismatch")


def test_several_reasons_from_evidence_and_time(rig: Rig) -> None:
    raw = rig.issue(ttl=60)
    exp = jws.parse(raw).claims.exp
    lied = rig.reissue(raw, env=lambda pcrs: {**pcrs, 15: "00" * 32})
    verifier = rig.verifier()
    verifier.store.revoke_artifact(jws.parse(raw).claims.jti, "withdrawn", int(time.time()))
    denied(verifier.verify(lied, now=exp + 100), "pcr_digest_mismatch", "expired", "revoked")


def test_a_denied_artifact_consumes_neither_its_jti_nor_its_nonce(rig: Rig) -> None:
    store = rig.store()
    nonce = store.issue_nonce(120, int(time.time()))
    raw = rig.issue(nonce=nonce)
    good = rig.verifier(rig.policy(nonce=NonceMode.REQUIRED), store)
    # A tampered copy seen in flight, sent first:
    head, _, signature = raw.rpartition(b".")
    tampered = bytearray(b64d(signature))
    tampered[5] ^= 0xFF
    denied(good.verify(head + b"." + b64url(bytes(tampered)).encode()), "invalid_signature")
    # The genuine artifact, denied for another reason by a stricter verifier (same store):
    strict = rig.verifier(rig.policy(nonce=NonceMode.REQUIRED,
                                     rules=[Rule(("ops",), ("exec",), ("*",), ("*",))]), store)
    denied(strict.verify(raw), "policy_mismatch")
    # Still unused: accepted once, then both its jti and its nonce are spent.
    accepted(good.verify(raw))
    denied(good.verify(raw), "nonce_reused", "replayed")


# -- 9. recording the acceptance -------------------------------------------------------


def test_audit_unavailable_consumes_nothing(rig: Rig) -> None:
    """An acceptance the log can't take (here: a log opened without its key) rolls back:
    the nonce and the jti stay unused, and the same artifact is accepted once logging
    works, with its entry's index."""
    store = rig.store()
    nonce = store.issue_nonce(120, int(time.time()))
    raw = rig.issue(nonce=nonce)
    policy = rig.policy(nonce=NonceMode.REQUIRED)
    keyless = Verifier(policy, store, AuditLog.open(store, None))
    decision = keyless.verify(raw)
    # The acceptance rolled back; its denial could not be logged either (no key).
    denied(decision, "audit_unavailable", "audit_unavailable")
    assert "the decision could not be logged" in decision.denials[0].message
    assert "without its key" in decision.denials[0].message
    log = rig.log(store)
    decision = Verifier(policy, store, log).verify(raw)
    accepted(decision)
    assert decision.audit_index is not None
    (stored,) = log.entries(decision.audit_index, decision.audit_index + 1)
    entry = json.loads(stored.data)
    assert (entry["decision"], entry["jti"]) == ("accepted", jws.parse(raw).claims.jti)


def test_internal_error_store_corrupted_mid_way(rig: Rig) -> None:
    """The store's database file is destroyed between two verifications: an exception
    deep inside verification must come out as a denial, never an acceptance."""
    store = rig.store("broken")
    rig.enroll(store)
    verifier = rig.verifier(rig.policy(**STORE_ENROLLMENT), store)
    accepted(verifier.verify(rig.issue()))
    raw = rig.issue()
    store.close()
    database = rig.tmp / "broken" / "verifier.db"
    for leftover in database.parent.glob("verifier.db-*"):  # WAL and shared memory
        leftover.unlink()
    database.write_bytes(b"this is not a database, whatever it was " * 200)
    decision = verifier.verify(raw)
    denied(decision, "internal_error")
    assert "StoreUnavailable" in decision.denials[0].message


def test_every_exception_inside_is_a_denial(rig: Rig) -> None:
    """A policy whose rules raise when consulted (a bug in a rule, say): denied."""
    class Exploding(Rule):
        def matches(self, subject: str, action: str, argv: Any, host: str) -> bool:
            raise RuntimeError("rule evaluation failed")

    policy = rig.policy()
    broken = dataclasses.replace(policy, rules=(Exploding(("*",), ("*",), ("*",), ("*",)),))
    raw = rig.issue()
    decision = rig.verifier(broken).verify(raw)
    denied(decision, "internal_error")
    assert "rule evaluation failed" in decision.denials[0].message
    accepted(rig.verifier(policy).verify(raw))

