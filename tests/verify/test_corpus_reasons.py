"""Reason codes produced from the recorded corpus: real artifacts made on swtpm
(tests/corpus), verified here without a TPM, each at a time derived from its ``now``.

These are the verifier tests whose artifact needs no TPM to make: a recorded artifact as
it is, cut, or with a byte changed (the signature then no longer holds), under a policy
derived from the recorded one. Those that need the TPM to sign something (a lying host
re-quoting or re-signing, a reboot, a restored state) stay in test_reasons.py on a live
swtpm. Each test asserts the exact reasons.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from attest.artifact import jws
from attest.artifact.model import b64url
from attest.audit.log import AuditLog
from attest.policy import EnrollmentMode, NonceMode, Rule, TrustedAK, VerifierPolicy
from attest.policy.trust import load_trust
from attest.verify.verifier import Verifier
from tests.corpus import Bench, Corpus
from tests.verify.rig import accepted, b64d, denied, make_ca


def _policy(corpus: Corpus, *, name: str = "pcr", nonce: NonceMode | None = None,
            single_use: bool | None = None, max_age: int | None = None,
            max_lifetime: int | None = None, rules: list[Rule] | None = None,
            trusted: list[str] | None = None, **changes: Any) -> VerifierPolicy:
    """The recorded policy ``name`` with changes: ``trusted`` lists the hosts whose AKs it
    trusts by name (``enrollment: policy``) instead of the store's enrollments."""
    policy = corpus.policy(name)
    freshness, limits = policy.freshness, policy.artifacts
    if nonce is not None:
        freshness = dataclasses.replace(freshness, nonce=nonce)
    if max_age is not None:
        freshness = dataclasses.replace(freshness, max_age=max_age)
    if single_use is not None:
        limits = dataclasses.replace(limits, single_use=single_use)
    if max_lifetime is not None:
        limits = dataclasses.replace(limits, max_lifetime=max_lifetime)
    if rules is not None:
        changes["rules"] = tuple(rules)
    if trusted is not None:
        changes["enrollment"] = EnrollmentMode.POLICY
        changes["trusted_aks"] = tuple(
            TrustedAK(host, e.ak_public, e.ak_qualified_name)
            for host in trusted for e in (corpus.enrollment(host),))
    return dataclasses.replace(policy, freshness=freshness, artifacts=limits, **changes)


def _unaudited(bench: Bench, policy: VerifierPolicy, **kwargs: Any) -> Verifier:
    return Verifier.unaudited(policy, bench.store, trust=bench.corpus.trust, **kwargs)


def _flip_signature(raw: bytes, index: int, xor: int) -> bytes:
    head, _, signature = raw.rpartition(b".")
    flipped = bytearray(b64d(signature))
    flipped[index] ^= xor
    return head + b"." + b64url(bytes(flipped)).encode()


def test_a_genuine_artifact_is_accepted(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-1-exec")
    decision = bench.verify(recorded)
    accepted(decision)
    assert decision.host == "web-1"
    assert decision.facts["argv"] == ["ls", "-l", "/srv"]
    assert decision.facts["key"] == jws.parse(recorded.raw).header.kid
    assert decision.facts["ak"] == corpus.enrollment("web-1").ak_name.hex()


# -- 1. the JWS ------------------------------------------------------------------------


@pytest.mark.parametrize("alter", [
    pytest.param(lambda raw: b"not a JWS at all", id="garbage"),
    pytest.param(lambda raw: raw.rsplit(b".", 1)[0], id="two-parts"),
    pytest.param(lambda raw: raw.replace(b".", b".\xff", 1), id="non-ascii"),
    pytest.param(lambda raw: raw[:-1] + (b"B" if raw[-1:] != b"B" else b"C"),
                 id="signature-not-canonical-base64url"),
])
def test_malformed_artifact(corpus: Corpus, bench: Bench, alter: Any) -> None:
    recorded = corpus.artifact("web-1-exec")
    denied(bench.verify(dataclasses.replace(recorded, raw=alter(recorded.raw))),
           "malformed_artifact")
    accepted(bench.verify(recorded))


def test_signature_encodings_that_decode_alike_are_refused(corpus: Corpus,
                                                           bench: Bench) -> None:
    """Base64url leaves 4 bits of the last character unused: 16 texts decode to one
    signature. Only the canonical one is the artifact (its SHA-256 is what children name)."""
    recorded = corpus.artifact("web-1-exec")
    raw = recorded.raw
    signature = raw.rsplit(b".", 1)[1]
    twins = [raw[:-1] + bytes([c]) for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
             b"0123456789-_" if c != signature[-1]
             and b64d(signature[:-1] + bytes([c])) == b64d(signature)]
    assert len(twins) == 15
    for twin in twins:
        denied(bench.verify(dataclasses.replace(recorded, raw=twin)), "malformed_artifact")
    accepted(bench.verify(recorded))


@pytest.mark.parametrize("name", ["web-1-exec", "web-3-authorize"])
def test_invalid_signature(corpus: Corpus, bench: Bench, name: str) -> None:
    recorded = corpus.artifact(name)
    denied(bench.verify(dataclasses.replace(
        recorded, raw=_flip_signature(recorded.raw, 40, 0x01))), "invalid_signature")


# -- 2. the AK -------------------------------------------------------------------------


def test_ak_unknown_not_enrolled(corpus: Corpus, tmp_path: Path) -> None:
    bare = corpus.bench(tmp_path / "bare", enroll=False)
    try:
        denied(bare.verify(corpus.artifact("web-1-exec")), "ak_unknown")
    finally:
        bare.close()


def test_ak_unknown_another_hosts_ak(corpus: Corpus, bench: Bench) -> None:
    """The verifier trusts only another host (another TPM, another AK)."""
    assert corpus.enrollment("web-2").ak_name != corpus.enrollment("web-1").ak_name
    recorded = corpus.artifact("web-1-exec")
    verifier = _unaudited(bench, _policy(corpus, trusted=["web-2"]))
    denied(verifier.verify(recorded.raw, now=recorded.now), "ak_unknown")
    accepted(_unaudited(bench, _policy(corpus, trusted=["web-1"])).verify(
        recorded.raw, now=recorded.now))


def test_ak_revoked(corpus: Corpus, bench: Bench) -> None:
    verifier = _unaudited(bench, corpus.policy())
    first, second = corpus.artifact("web-1-exec"), corpus.artifact("web-1-parent")
    accepted(verifier.verify(first.raw, now=first.now))
    bench.store.revoke_ak(corpus.enrollment("web-1").ak_name, "AK leaked", first.now)
    decision = verifier.verify(second.raw, now=second.now)
    denied(decision, "ak_revoked")
    assert "AK leaked" in decision.denials[0].message


def test_ek_chain_invalid_and_valid(corpus: Corpus, bench: Bench, tmp_path: Path) -> None:
    """The enrollment's EK certificate against roots that signed nothing of this TPM's,
    then against the recording swtpm's CA (root and the intermediate that signs EKs)."""
    recorded = corpus.artifact("web-1-exec")
    stranger = _policy(corpus, ek_roots=(make_ca(tmp_path, "another-manufacturer"),))
    decision = Verifier.unaudited(stranger, bench.store, trust=load_trust(stranger)).verify(
        recorded.raw, now=recorded.now)
    denied(decision, "ek_chain_invalid")
    own = _policy(corpus, ek_roots=(corpus.folder / "roots" / "web-1-root.pem",
                                    corpus.folder / "roots" / "web-1-intermediate.pem"))
    accepted(Verifier.unaudited(own, bench.store, trust=load_trust(own)).verify(
        recorded.raw, now=recorded.now))


# -- 3. the key's certification --------------------------------------------------------


def test_key_policy_mismatch(corpus: Corpus, bench: Bench) -> None:
    """The verifier expects keys sealed to another PCR 3 than the host's key is."""
    policy = corpus.policy()
    sealed = {**policy.key_policy.sealed_values, 3: b"\x11" * 32}
    changed = _policy(corpus, key_policy=dataclasses.replace(policy.key_policy,
                                                             sealed_values=sealed))
    recorded = corpus.artifact("web-1-exec")
    denied(_unaudited(bench, changed).verify(recorded.raw, now=recorded.now),
           "key_policy_mismatch")


# -- 7. times and freshness ------------------------------------------------------------


def test_expired(corpus: Corpus, bench: Bench) -> None:
    parent, child = corpus.artifact("web-1-parent"), corpus.artifact("web-1-child")
    accepted(bench.verify(parent))
    exp = child.claims.exp  # valid 60 s
    denied(bench.verify(child, at=exp + 31), "expired")  # past the 30 s clock skew
    accepted(bench.verify(child, at=exp + 30))


# Before its iat, the AK is trusted by name: the recording swtpm's EK certificate is
# valid only from the minute it was made, a few seconds before the artifacts.


def test_not_yet_valid(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-1-exec")
    iat = recorded.claims.iat
    verifier = _unaudited(bench, _policy(corpus, trusted=["web-1"]))
    denied(verifier.verify(recorded.raw, now=iat - 31), "not_yet_valid")
    accepted(verifier.verify(recorded.raw, now=iat - 30))


def test_not_yet_valid_issued_an_hour_ahead(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-2-exec")
    verifier = _unaudited(bench, _policy(corpus, trusted=["web-2"]))
    denied(verifier.verify(recorded.raw, now=recorded.now - 3600), "not_yet_valid")


def test_stale_evidence_old_iat(corpus: Corpus, bench: Bench) -> None:
    """Time-based freshness: issued 400 s ago, valid 600 s, but at most 300 s old."""
    recorded = corpus.artifact("web-2-long")
    verifier = _unaudited(bench, _policy(corpus, nonce=NonceMode.FORBIDDEN))
    denied(verifier.verify(recorded.raw, now=recorded.now + 400), "stale_evidence")
    accepted(verifier.verify(recorded.raw, now=recorded.now + 299))


def test_stale_evidence_challenge_expired(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-1-nonce")
    assert recorded.nonce is not None
    verifier = _unaudited(bench, _policy(corpus, nonce=NonceMode.REQUIRED))
    denied(verifier.verify(recorded.raw, now=recorded.nonce.expires_at + 1), "stale_evidence")
    accepted(verifier.verify(recorded.raw, now=recorded.nonce.expires_at - 1))


def test_nonce_unknown_never_issued(corpus: Corpus, tmp_path: Path) -> None:
    elsewhere = corpus.bench(tmp_path / "elsewhere", nonces=False)  # another verifier's
    try:
        denied(elsewhere.verify(corpus.artifact("web-1-nonce")), "nonce_unknown")
    finally:
        elsewhere.close()


def test_nonce_unknown_required_but_absent(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-1-exec")
    denied(_unaudited(bench, _policy(corpus, nonce=NonceMode.REQUIRED)).verify(
        recorded.raw, now=recorded.now), "nonce_unknown")


def test_nonce_reused_by_a_multi_use_artifact(corpus: Corpus, bench: Bench) -> None:
    """Not single use, the artifact may come again, but its challenge is spent."""
    recorded = corpus.artifact("web-1-nonce")
    verifier = _unaudited(bench, _policy(corpus, nonce=NonceMode.REQUIRED, single_use=False))
    accepted(verifier.verify(recorded.raw, now=recorded.now))
    denied(verifier.verify(recorded.raw, now=recorded.now + 1), "nonce_reused")


def test_accepted_with_an_interactive_nonce_and_time_based(corpus: Corpus,
                                                           bench: Bench) -> None:
    challenged, timed = corpus.artifact("web-1-nonce"), corpus.artifact("web-2-exec")
    accepted(_unaudited(bench, _policy(corpus, nonce=NonceMode.REQUIRED)).verify(
        challenged.raw, now=challenged.now))
    accepted(_unaudited(bench, _policy(corpus, nonce=NonceMode.FORBIDDEN)).verify(
        timed.raw, now=timed.now))


# -- 8. single use, revocation, lineage, rules -----------------------------------------


def test_replayed(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-2-exec")
    accepted(bench.verify(recorded))
    denied(bench.verify(recorded, at=recorded.now + 1), "replayed")
    # A verifier sharing the store (another replica, a later process) agrees.
    other = Verifier(corpus.policy(), bench.store, bench.log, trust=corpus.trust)
    denied(other.verify(recorded.raw, now=recorded.now + 2), "replayed")


def test_not_single_use_may_be_presented_again(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-2-exec")
    verifier = _unaudited(bench, _policy(corpus, single_use=False))
    accepted(verifier.verify(recorded.raw, now=recorded.now))
    accepted(verifier.verify(recorded.raw, now=recorded.now + 1))


def test_revoked_artifact(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-1-exec")
    bench.store.revoke_artifact(recorded.claims.jti, "ticket withdrawn", recorded.now)
    decision = bench.verify(recorded, audited=False)
    denied(decision, "revoked")
    assert "ticket withdrawn" in decision.denials[0].message


def test_revoked_key(corpus: Corpus, bench: Bench) -> None:
    first, second = corpus.artifact("web-1-exec"), corpus.artifact("web-1-parent")
    accepted(bench.verify(first, audited=False))
    bench.store.revoke_key(jws.parse(first.raw).header.kid, "key retired", first.now)
    denied(bench.verify(second, audited=False), "revoked")
    accepted(bench.verify(corpus.artifact("web-2-exec"), audited=False))  # another key


def test_revoked_host_with_trusted_aks(corpus: Corpus, tmp_path: Path) -> None:
    recorded = corpus.artifact("web-1-exec")
    offline = corpus.bench(tmp_path / "offline", enroll=False)  # AKs trusted by name only
    try:
        offline.store.revoke_host("web-1", "decommissioned", recorded.now)
        denied(_unaudited(offline, _policy(corpus, trusted=["web-1"])).verify(
            recorded.raw, now=recorded.now), "revoked")
    finally:
        offline.close()


def test_revoked_host_with_store_enrollment_reads_as_its_ak_revoked(
        corpus: Corpus, bench: Bench) -> None:
    """Revoking a host revokes every AK it enrolled (`attest revoke --host`)."""
    recorded = corpus.artifact("web-1-exec")
    bench.store.revoke_host("web-1", "decommissioned", recorded.now)
    decision = bench.verify(recorded, audited=False)
    denied(decision, "ak_revoked")
    assert "decommissioned" in decision.denials[0].message


def test_lineage_broken_unknown_parent(corpus: Corpus, bench: Bench) -> None:
    """The child of a parent this verifier never accepted."""
    decision = bench.verify(corpus.artifact("web-1-child"))
    denied(decision, "lineage_broken")
    assert "never accepted" in decision.denials[0].message
    accepted(bench.verify(corpus.artifact("web-1-parent")))
    accepted(bench.verify(corpus.artifact("web-1-child")))


def test_lineage_broken_revoked_parent(corpus: Corpus, bench: Bench) -> None:
    parent, child = corpus.artifact("web-1-parent"), corpus.artifact("web-1-child")
    accepted(bench.verify(parent))
    bench.store.revoke_artifact(parent.claims.jti, "compromised pipeline", parent.now)
    decision = bench.verify(child, audited=False)
    denied(decision, "lineage_broken")
    assert "compromised pipeline" in decision.denials[0].message


def test_lineage_broken_no_children_allowed(corpus: Corpus, bench: Bench) -> None:
    parent, child = corpus.artifact("web-1-parent"), corpus.artifact("web-1-child")
    policy = corpus.policy()
    childless = _unaudited(bench, _policy(corpus, lineage=dataclasses.replace(
        policy.lineage, max_depth=0)))
    accepted(childless.verify(parent.raw, now=parent.now))
    denied(childless.verify(child.raw, now=child.now), "lineage_broken")


def test_policy_mismatch_rule_for_another_host(corpus: Corpus, bench: Bench) -> None:
    only_web2 = _policy(corpus, rules=[Rule(("*",), ("exec",), ("*",), ("web-2",))])
    verifier = _unaudited(bench, only_web2)
    web1, web2 = corpus.artifact("web-1-exec"), corpus.artifact("web-2-exec")
    denied(verifier.verify(web1.raw, now=web1.now), "policy_mismatch")
    accepted(verifier.verify(web2.raw, now=web2.now))


def test_policy_mismatch_no_rule_for_the_argv(corpus: Corpus, bench: Bench) -> None:
    rules = [Rule(("deploy-bot",), ("exec",), ("ls -l /srv",), ("web-1",))]
    verifier = _unaudited(bench, _policy(corpus, rules=rules))
    other, exact = corpus.artifact("web-1-nonce"), corpus.artifact("web-1-exec")  # ls; ls -l /srv
    denied(verifier.verify(other.raw, now=other.now), "policy_mismatch")
    accepted(verifier.verify(exact.raw, now=exact.now))


def test_policy_mismatch_lifetime_too_long(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-2-long")  # valid 600 s
    decision = _unaudited(bench, _policy(corpus, max_lifetime=599)).verify(
        recorded.raw, now=recorded.now)
    denied(decision, "policy_mismatch")
    assert "lifetime" in decision.denials[0].message


def test_policy_mismatch_for_another_verifier(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-1-audience")  # aud verifier-1
    policy = corpus.policy()
    denied(_unaudited(bench, policy, verifier_id="verifier-2").verify(
        recorded.raw, now=recorded.now), "policy_mismatch")
    accepted(_unaudited(bench, policy, verifier_id="verifier-1").verify(
        recorded.raw, now=recorded.now))


def test_policy_mismatch_nonce_forbidden(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-1-nonce")
    denied(_unaudited(bench, _policy(corpus, nonce=NonceMode.FORBIDDEN)).verify(
        recorded.raw, now=recorded.now), "policy_mismatch")


# -- several reasons; what a denial leaves behind --------------------------------------


def test_several_failed_checks_are_all_reported(corpus: Corpus, bench: Bench) -> None:
    parent, child = corpus.artifact("web-1-parent"), corpus.artifact("web-1-child")
    accepted(bench.verify(parent))
    ops_only = _policy(corpus, rules=[Rule(("ops",), ("exec",), ("*",), ("*",))])
    denied(_unaudited(bench, ops_only).verify(child.raw, now=child.claims.exp + 100),
           "expired", "policy_mismatch")


def test_a_denied_artifact_consumes_neither_its_jti_nor_its_nonce(corpus: Corpus,
                                                                  bench: Bench) -> None:
    recorded = corpus.artifact("web-1-nonce")
    good = _unaudited(bench, _policy(corpus, nonce=NonceMode.REQUIRED))
    # A tampered copy seen in flight, sent first:
    denied(good.verify(_flip_signature(recorded.raw, 5, 0xFF), now=recorded.now),
           "invalid_signature")
    # The genuine artifact, denied for another reason by a stricter verifier (same store):
    strict = _unaudited(bench, _policy(corpus, nonce=NonceMode.REQUIRED,
                                       rules=[Rule(("ops",), ("exec",), ("*",), ("*",))]))
    denied(strict.verify(recorded.raw, now=recorded.now), "policy_mismatch")
    # Still unused: accepted once, then both its jti and its nonce are spent.
    accepted(good.verify(recorded.raw, now=recorded.now))
    denied(good.verify(recorded.raw, now=recorded.now), "nonce_reused", "replayed")


# -- 9. recording the acceptance -------------------------------------------------------


def test_audit_unavailable_consumes_nothing(corpus: Corpus, bench: Bench) -> None:
    """An acceptance the log can't take (here: a log opened without its key) rolls back:
    the nonce and the jti stay unused, and the same artifact is accepted once logging
    works, with its entry's index."""
    recorded = corpus.artifact("web-1-nonce")
    # AKs trusted by name: no enrollment seal to check before the acceptance.
    policy = _policy(corpus, nonce=NonceMode.REQUIRED, trusted=["web-1"])
    keyless = Verifier(policy, bench.store, AuditLog.open(bench.store, None),
                       trust=corpus.trust)
    decision = keyless.verify(recorded.raw, now=recorded.now)
    # The acceptance rolled back; its denial could not be logged either (no key).
    denied(decision, "audit_unavailable", "audit_unavailable")
    assert "the decision could not be logged" in decision.denials[0].message
    assert "without its key" in decision.denials[0].message
    decision = Verifier(policy, bench.store, bench.log, trust=corpus.trust).verify(
        recorded.raw, now=recorded.now)
    accepted(decision)
    assert decision.audit_index is not None
    (stored,) = bench.log.entries(decision.audit_index, decision.audit_index + 1)
    entry = json.loads(stored.data)
    assert (entry["decision"], entry["jti"]) == ("accepted", recorded.claims.jti)


def test_audit_unavailable_store_corrupted_mid_way(corpus: Corpus, tmp_path: Path) -> None:
    """The store's database file is destroyed between two verifications: the failure
    deep inside verification must come out as a denial, never an acceptance; a store
    out of reach is named as such (audit_unavailable), its driver's words kept out."""
    broken = corpus.bench(tmp_path / "broken")
    verifier = broken.verifier(audited=False)
    first, second = corpus.artifact("web-1-exec"), corpus.artifact("web-1-parent")
    accepted(verifier.verify(first.raw, now=first.now))
    broken.close()
    database = tmp_path / "broken" / "verifier.db"
    for leftover in database.parent.glob("verifier.db-*"):  # WAL and shared memory
        leftover.unlink()
    database.write_bytes(b"this is not a database, whatever it was " * 200)
    decision = verifier.verify(second.raw, now=second.now)
    denied(decision, "audit_unavailable")
    assert decision.denials[0].message == "the verifier's store is unavailable"


def test_every_exception_inside_is_a_denial(corpus: Corpus, bench: Bench) -> None:
    """A policy whose rules raise when consulted (a bug in a rule, say): denied."""
    class Exploding(Rule):
        def matches(self, subject: str, action: str, argv: Any, host: str) -> bool:
            raise RuntimeError("rule evaluation failed")

    policy = corpus.policy()
    broken = dataclasses.replace(policy, rules=(Exploding(("*",), ("*",), ("*",), ("*",)),))
    recorded = corpus.artifact("web-1-exec")
    decision = _unaudited(bench, broken).verify(recorded.raw, now=recorded.now)
    denied(decision, "internal_error")
    assert "rule evaluation failed" in decision.denials[0].message
    accepted(_unaudited(bench, policy).verify(recorded.raw, now=recorded.now))
