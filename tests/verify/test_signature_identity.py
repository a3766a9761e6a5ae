"""Signature malleability: an ES256 signature's high-S twin is refused, and an artifact's
identity (lineage, the store) is its signing input, which no signature can change.

Every artifact is issued and signed on swtpm (live, or recorded in tests/corpus: those
need no TPM); twins are made as a bystander would, from the artifact's bytes alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from attest.artifact import jws
from attest.artifact.model import b64url
from attest.policy import Rule
from attest.verify.verifier import Verifier
from tests.corpus import Bench, Corpus
from tests.verify.rig import Rig, accepted, denied

ANY_RULE = [Rule(("*",), ("*",), ("*",), ("*",))]
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 order


@pytest.fixture
def verifier(rig: Rig) -> Verifier:
    return rig.verifier(rig.policy(rules=ANY_RULE))


def twin(raw: bytes) -> bytes:
    """The same artifact with its signature (r, s) replaced by (r, n - s): valid ECDSA."""
    parsed = jws.parse(raw)
    r, s = parsed.signature[:32], int.from_bytes(parsed.signature[32:], "big")
    other = r + (N - s).to_bytes(32, "big")
    return parsed.signing_input + b"." + b64url(other).encode()


def test_issued_signatures_are_low_s(rig: Rig) -> None:
    raw = rig.issue()
    assert int.from_bytes(jws.parse(raw).signature[32:], "big") <= N // 2


def test_assemble_normalizes_a_high_s_signature_from_the_tpm(corpus: Corpus) -> None:
    for recorded in corpus.artifacts:
        parsed = jws.parse(recorded.raw)
        high = jws.parse(twin(recorded.raw)).signature  # the TPM's form half of the time
        assert int.from_bytes(high[32:], "big") > N // 2
        assert jws.assemble(parsed.signing_input, high) == recorded.raw


def test_the_high_s_twin_of_an_accepted_artifact_is_refused(corpus: Corpus,
                                                           bench: Bench) -> None:
    # In the recorded order: each artifact's twin first, then the artifact itself.
    for recorded in corpus.artifacts:
        decision = bench.verify(dataclasses.replace(recorded, raw=twin(recorded.raw)))
        denied(decision, "invalid_signature")
        assert "low-S" in decision.denials[0].message
        accepted(bench.verify(recorded))  # the twin did not consume the jti (or nonce)


def test_identity_is_the_signing_input_not_the_signature(rig: Rig) -> None:
    raw = rig.issue()
    parsed = jws.parse(raw)
    resigned = jws.assemble(parsed.signing_input, rig.sign(parsed.signing_input))
    assert resigned != raw  # ECDSA is randomized: another valid serialization
    assert jws.parse(resigned).sha256 == parsed.sha256 == jws.parse(twin(raw)).sha256


def test_a_front_run_parent_of_other_bytes_still_vouches_for_its_child(
        rig: Rig, verifier: Verifier) -> None:
    # Whoever sees the parent in transit presents another serialization of it first;
    # the child, naming the parent as issued, must still stand on it.
    parent = rig.issue(ttl=300)
    parsed = jws.parse(parent)
    front_run = jws.assemble(parsed.signing_input, rig.sign(parsed.signing_input))
    child = rig.issue(ttl=60, parent=parent)
    accepted(verifier.verify(front_run))
    assert "invalid_signature" in verifier.verify(twin(parent)).reasons
    accepted(verifier.verify(child))


def test_a_remembered_certification_is_found_only_by_its_exact_fields(
        rig: Rig, verifier: Verifier) -> None:
    """The verifier remembers a verified key certification. Keyed by its fields joined
    with NUL, one byte moved across a boundary (a TPMT_SIGNATURE starts with 0x00: the
    certification gains a trailing NUL, the signature loses its first byte) found the
    entry of the genuine fields: evidence that does not parse was taken as certified."""
    accepted(verifier.verify(rig.issue()))

    def moved(evidence):  # type: ignore[no-untyped-def]
        assert evidence.certify_signature[:1] == b"\x00"
        return dataclasses.replace(evidence, certify=evidence.certify + b"\x00",
                                   certify_signature=evidence.certify_signature[1:])

    shifted = rig.reissue(rig.issue(), requote=True, evidence=moved,
                          claims=lambda c: dataclasses.replace(c, jti=c.jti + "-shifted"))
    decision = verifier.verify(shifted)
    assert not decision.accepted
    assert {d.reason.value for d in decision.denials} & {
        "key_not_certified", "certify_signature_invalid", "malformed_artifact",
        "alg_not_allowed"}, decision


def test_remembered_certifications_are_bounded(rig: Rig, verifier: Verifier,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cache of a long-running verifier is bounded (attest.memo): a host can certify
    as many keys as it likes, each a new entry."""
    import attest.verify.appraisal as module

    monkeypatch.setattr(module, "AK_CACHE_SIZE", 1)
    rig.host.ok("key", "create", "--name", "second")
    accepted(verifier.verify(rig.issue()))
    accepted(verifier.verify(rig.issue(key="second")))
    assert len(verifier.memo.certified) <= 1


def test_another_host_cannot_take_a_jti_first(rig: Rig, provisioned_template: Path,
                                              tmp_path: Path) -> None:
    """Single use is on the jti, and the jti is the issuer's choice: another enrolled
    host that sees an artifact before the verifier does (the network is in the threat
    model) issues its own under the same jti, is accepted first, and the genuine
    artifact is then denied as replayed (its children, which name the jti, break)."""
    from attest.policy import TrustedAK
    from tests.conftest import Host, _copy_state

    sim = _copy_state(provisioned_template, tmp_path / "other-sim")
    sim.start()
    other = None
    try:
        host = Host(sim, tmp_path / "other-home")
        host.ok("provision")
        host.ok("key", "create")
        host.ok("measure", "command", "--", "ls")
        other = Rig(host, tmp_path / "other")
        other.tmp.mkdir()
        trusted = [TrustedAK("web-1", rig.identity.ak_public,
                             rig.identity.ak_qualified_name or None),
                   TrustedAK("web-2", other.identity.ak_public,
                             other.identity.ak_qualified_name or None)]
        verifier = rig.verifier(rig.policy(rules=ANY_RULE, trusted_aks=trusted))
        genuine = rig.issue()
        jti = jws.parse(genuine).claims.jti
        taken = other.reissue(other.issue(), requote=True,
                              claims=lambda c: dataclasses.replace(c, jti=jti))
        # Another AK's jti is outside this AK's namespace: refused before any store read.
        decision = verifier.verify(taken)
        denied(decision, "malformed_artifact")
        assert "namespace" in decision.denials[0].message
        accepted(verifier.verify(genuine))
    finally:
        if other is not None:
            other.close()
        sim.stop()
